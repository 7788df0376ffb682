"""fsrouter.esl.escape against a reference parser ported from FreeSWITCH 1.11.1.

The parser below follows src/switch_utils.c (``switch_separate_string``, its two tokenizers,
``cleanup_separated_string``, ``switch_find_end_paren``), src/switch_event.c
(``switch_event_create_brackets``), src/switch_ivr_originate.c (``:_:`` check, ``|`` split,
the ``[`` comma pre-pass, ``,`` split) and mod_commands.c ``originate_function``.
tests/e2e/test_escape_realswitch.py checks the same corpus on the real switch.
"""

from __future__ import annotations

import re

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from fsrouter.esl.escape import (
    MAX_VALUE_BYTES,
    PAD_VARIABLE,
    UnsafeText,
    app_arg,
    caller_number,
    dial_digits,
    originate_command,
    originate_var,
)
from fsrouter.sim.fsparse import (
    ParseError,
    parse_originate,
)
from tests.hypothesis_profiles import examples


def bracket_command(value: str) -> str:
    return f"originate [{originate_var('cid', value, block='[')}]loopback/x/agents &park()"


def expected(value: str) -> bytes:
    """The documented replacements: control characters to space, ``${`` to ``＄{``."""
    text = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in value)
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text.replace("${", "\uff04{").encode("utf-8")


def _fullwidth_unmatched(value: str) -> str:
    """Independent spelling of the rule: match ``[``/``]`` pairs right to left."""
    chars = list(expected(value).decode())
    closers = 0
    for index in range(len(chars) - 1, -1, -1):
        if chars[index] == "]":
            closers += 1
        elif chars[index] == "[":
            if closers:
                closers -= 1
            else:
                chars[index] = "\uff3b"
    return "".join(chars)


HOSTILE = st.text(alphabet=st.sampled_from(list("'\\,}{][ |=:_$^%\n\r\x00\x02\"sntabü")))
ANY_TEXT = st.text(max_size=300) | HOSTILE


# --- the properties ---------------------------------------------------------------------


@settings(max_examples=examples(600), deadline=None)
@given(ANY_TEXT)
def test_curly_block_value_survives_freeswitch_parsing(value: str) -> None:
    command = originate_command(
        {"origination_caller_id_name": value, "origination_caller_id_number": "+4930123"},
        "loopback/answer-0-1/agents",
        "park",
        "",
    )
    assert not {"\n", "\r", "\x00"} & set(command)
    found, dial, argv = parse_originate(command)
    assert found.pop(b"origination_caller_id_name") == expected(value)
    assert found.pop(b"origination_caller_id_number") == b"+4930123"
    assert set(found) <= {PAD_VARIABLE.encode()}
    assert dial == b"loopback/answer-0-1/agents"
    assert argv[1:] == [b"&park()"]


@settings(max_examples=examples(600), deadline=None)
@given(ANY_TEXT)
def test_square_block_value_survives_freeswitch_parsing(value: str) -> None:
    found, dial, argv = parse_originate(bracket_command(value))
    want = expected(value).decode()
    if want.count("'") % 2:  # documented: unmatched "[" becomes U+FF3B after odd quotes
        while (reduced := want.replace("[]", "")) != want:
            want = reduced
        want = expected(value).decode() if "[" not in want else _fullwidth_unmatched(value)
    assert found.pop(b"cid") == want.encode()
    assert set(found) <= {PAD_VARIABLE.encode()}
    assert (dial, argv[1:]) == (b"loopback/x/agents", [b"&park()"])


@settings(max_examples=examples(300), deadline=None)
@given(ANY_TEXT)
def test_commas_in_the_value_are_always_escaped(value: str) -> None:
    pattern = r"(?:fsrouter_pad=\{+,)?v=(.*?)(?:,fsrouter_pad=\}+)?"
    pads = re.fullmatch(pattern, originate_var("v", value))
    assert pads is not None
    encoded = pads.group(1)
    for i, ch in enumerate(encoded):
        if ch == ",":
            assert encoded[i - 1] == "\\"


@pytest.mark.parametrize(
    "value",
    ["Müller, Jörg", "Wood's Homes", "O'Brien & Söhne", "CINCINNATI, OH", "a^^:b,c", "{x}",
     "[y]", "%[z=1]", "}", "]", "\\", "'", "O'Brien's", ":_:", " x ", "a|b", "}}{{", "ä" * 2048],
)
def test_corpus_round_trips_in_both_blocks(value: str) -> None:
    command = originate_command({"n": value}, "loopback/x/agents", "park", "")
    assert parse_originate(command)[0][b"n"] == value.encode()
    assert parse_originate(bracket_command(value))[0][b"cid"] == value.encode()


def test_naive_quoting_is_broken_by_the_reference_parser() -> None:
    # Shows the parser is strict enough to catch what broke the real switch (facts §8).
    found, dial, _ = parse_originate("originate {n='a}b'}loopback/x/agents &park()")
    assert (found[b"n"], dial) == (b"a", b"b}loopback/x/agents")  # -ERR CHAN_NOT_IMPLEMENTED
    with pytest.raises(ParseError):
        parse_originate("originate {n=a:_:b}loopback/x/agents &park()")
    found, _, _ = parse_originate(r"originate {n=C:\srv}loopback/x/agents &park()")
    assert found[b"n"] == b"C: rv"  # a naive backslash is an escape: C:\srv is mangled


def test_unbalanced_brackets_get_padding_variables() -> None:
    assert originate_var("n", "a}b") == f"{PAD_VARIABLE}={{,n=a}}b"
    assert originate_var("n", "a{b") == f"n=a{{b,{PAD_VARIABLE}=}}"
    assert originate_var("n", "{x}") == "n={x}"
    assert originate_var("n", "a]b", block="[") == f"{PAD_VARIABLE}=[,n=a]b"


def test_replacements_are_logged_without_the_text() -> None:
    with structlog.testing.capture_logs() as logs:
        assert originate_var("n", "a\nb${x}") == "n=a\\sb\uff04{x}"
    assert logs[0]["kinds"] == ["control", "dollar_brace"]
    assert "a\nb" not in repr(logs)


def test_plain_text_is_not_logged() -> None:
    with structlog.testing.capture_logs() as logs:
        originate_var("n", "Müller, Jörg")
    assert logs == []


@pytest.mark.parametrize("name", ["", "A", "1a", "a-b", "a b", "a=b", "ä", "a,b", "a}"])
def test_variable_names_are_whitelisted(name: str) -> None:
    with pytest.raises(UnsafeText):
        originate_var(name, "x")


def test_value_length_is_bounded() -> None:
    assert originate_var("n", "x" * MAX_VALUE_BYTES)
    with pytest.raises(UnsafeText, match="longer than"):
        originate_var("n", "ü" * (MAX_VALUE_BYTES // 2 + 1))


def test_unknown_block_is_refused() -> None:
    with pytest.raises(ValueError, match="block"):
        originate_var("n", "x", block="<")


def test_originate_command_shape() -> None:
    command = originate_command(
        {"fifo_bridge_uuid": "abc-1", "origination_caller_id_number": "+4930123"},
        "sofia/gateway/gw1/+4915112345678",
        "fifo",
        "support out nowait",
    )
    assert command == (
        "originate {fifo_bridge_uuid=abc-1,origination_caller_id_number=+4930123}"
        "sofia/gateway/gw1/+4915112345678 '&fifo(support out nowait)'"
    )
    assert originate_command({}, "user/1000", "park", "") == "originate user/1000 '&park()'"


@pytest.mark.parametrize(
    ("dial", "app", "args"),
    [
        ("user/1000 x", "park", ""),
        ("user/{1000}", "park", ""),
        ("user/1000,user/1001", "park", ""),
        ("user/1000|user/1001", "park", ""),
        ("a:_:b", "park", ""),
        ("user/1000", "park()", ""),
        ("user/1000", "Park", ""),
        ("user/1000", "fifo", "q out)"),
        ("user/1000", "fifo", "q' out"),
        ("user/1000", "log", "${system(id)}"),
        ("user/1000", "log", "%[x=1]"),
        ("user/1000", "log", "a\nb"),
    ],
)
def test_originate_command_refuses_unsafe_config(dial: str, app: str, args: str) -> None:
    with pytest.raises(UnsafeText):
        originate_command({}, dial, app, args)


@pytest.mark.parametrize("text", ["1234", "+4930123", "*#", "queue_1", "a.b-c@d"])
def test_app_arg_accepts_whitelist(text: str) -> None:
    assert app_arg(text) == text


@pytest.mark.parametrize(
    "text", ["", "${system(id)}", "$${x}", "%[a=b]", "a b", "a'b", "a\\b", "a\nb", "a,b", "x" * 257]
)
def test_app_arg_refuses_everything_else(text: str) -> None:
    with pytest.raises(UnsafeText):
        app_arg(text)


@pytest.mark.parametrize("text", ["0", "+4930123456", "004930123", "1" * 20])
def test_dial_digits_accepts_numbers(text: str) -> None:
    assert dial_digits(text) == text


@pytest.mark.parametrize(
    "text", ["", "+", "++49", "49 30", "1" * 21, "12a", "１２", "1\n", "+49${x}", "*1"]
)
def test_dial_digits_refuses_the_rest(text: str) -> None:
    with pytest.raises(UnsafeText):
        dial_digits(text)


def test_caller_number_drops_separators_only() -> None:
    assert caller_number("+49 (30) 123-45/6.7") == "+49301234567"
    for bad in ["anonymous", "", "+49 30 ${x}", "49\n30", "٣٠", "+" + "1" * 21]:
        with pytest.raises(UnsafeText):
            caller_number(bad)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=40))
def test_numbers_that_pass_are_plain_ascii_digits(text: str) -> None:
    for check in (dial_digits, caller_number):
        try:
            number = check(text)
        except UnsafeText:
            continue
        assert number.lstrip("+").isascii() and number.lstrip("+").isdigit()
