"""Hostile input (issue 7.2) through every route type, on the simulator with its second wall
OFF: the simulated dialplan does not set ``app_disable_expand_variables``, so any caller text
that reached an application argument would be expanded and recorded as an injection.

What is checked, per call, on what the switch *received* (every command on the call's socket):
no ``${...}`` expansion ran, no application or variable we did not send appeared (an
originate's variables are parsed back with the switch's own separators), the caller's text
is never part of an application argument or an ``api`` command, every ringing leg went to a
configured phone, and names reach the phone byte-exact (or with the documented replacement:
control characters to a space, ``${`` to ``＄{``). The daemon never crashes: every call has a
final record (or, for a destination that is no number, a logged reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import gevent
import pytest

from fsrouter.esl.escape import PAD_VARIABLE
from fsrouter.esl.protocol import url_decode
from fsrouter.sim import CallerScript, Press, SwitchRecord
from fsrouter.sim.originate import parse_originate
from fsrouter.sim.wire import url_encode
from fsrouter.store.queries import clean_caller_text
from tests.reliability.conftest import (
    AGENT_NUMBER,
    AGENT_PHONE,
    CALLER,
    CUSTOM_NUMBER,
    CUSTOM_PHONE,
    HOTLINE,
    QUEUE_NUMBER,
    QUEUE_PHONE,
    UNASSIGNED_NUMBER,
    SimDaemon,
    full_config,
    wait_for,
)

MARK = "q7Zx"  # in every hostile value, so its text can be looked for in any command
# Real caller-name shapes (callattendant#92, telnyx#588, kazoo#6049) and attacks on each
# layer: ESL framing, the originate parser, app-argument expansion, SIP headers, storage.
NAMES = [
    "CINCINNATI, OH",
    "Wood's Homes",
    "Müller, Jörg",
    "O'Brien & Söhne",
    "|",
    "^^:",
    "{}",
    "[]",
    "%[",
    f"{MARK} ${{system(touch {{tmp}}/pwned)}}",
    f"{MARK} $${{system(touch {{tmp}}/pwned)}}",
    f"{MARK} ${{api(system touch {{tmp}}/pwned)}}",
    f"{MARK}}}execute_on_answer=system touch {{tmp}}/pwned",
    f"{MARK},execute_on_answer=system touch {{tmp}}/pwned",
    f"{MARK}'|loopback/answer-0-evil/agents",
    f"{MARK}%[fsr_agent=mallory]",
    f"{MARK}\nexecute_on_answer=system touch {{tmp}}/pwned",
    f"{MARK}\r\napi system touch {{tmp}}/pwned\n\n",
    f"{MARK}%0Aevent%20plain%20ALL",
    f"{MARK}\x00nul",
    f"{MARK}\udcff\udcfe latin-1 bytes",  # invalid UTF-8 on the wire (%FF%FE)
    f"{MARK}:_:loopback/answer-0-evil/agents",
    f"{MARK}^^:a:b,c",
    f"{MARK}\\",
    f"{MARK}'",
    "  spaces  ",
    "A" * 300,
    MARK + "Ωmega " * 900,  # ~10 KB on the wire
]
# Legitimate names: they must reach the phone exactly as the caller's network sent them.
LEGITIMATE = {"CINCINNATI, OH", "Wood's Homes", "Müller, Jörg", "O'Brien & Söhne", "|", "^^:",
              "{}", "[]", "%[", "  spaces  ", "A" * 300}
NUMBERS = [
    CALLER,
    "0151 1234 5678",
    "anonymous",
    f"+49151{MARK}'${{system(touch {{tmp}}/pwned)}}",
    "+4915112345678,execute_on_answer=x",
    "+4915112345678\nexit",
    "9" * 10_000,
]
DESTINATIONS = [
    f"+4930{MARK}'${{system(touch {{tmp}}/pwned)}}",
    "+49304000910\n0",
    "*21,execute_on_answer=x",
    "%0A",
    "\x00",
    "1" * 10_000,
    "+493040009100 XML default",
]
DTMF = ["#", "*", "0", "9", "A", "D", "#*#*1", "1" * 40, "21", "*" * 20 + "1"]
# Applications fsrouter runs on a caller's channel; anything else came from somewhere else.
OUR_APPS = {"set", "multiset", "answer", "pre_answer", "play_and_get_digits", "playback", "fifo",
            "bridge", "hangup", "respond", "record", "transfer"}
OUR_API = re.compile(r"^(uuid_kill|uuid_getvar|uuid_recv_dtmf) [0-9a-f-]{36}( [A-Z_#]+| "
                     r"fifo_status)?$")
OUR_ORIGINATE_VARS = {"origination_uuid", "originate_timeout", "ignore_early_media",
                      "fifo_bridge_uuid", "fifo_bridge_uuid_required",
                      "origination_caller_id_number", "origination_caller_id_name", "fsr_kind",
                      "fsr_agent", "fsr_incident", PAD_VARIABLE}


def shown(value: str) -> str:
    """What escape.py documents for a value on the far phone: control characters become a
    space, ``${`` becomes U+FF04 ``{``, undecodable bytes U+FFFD."""
    text = on_wire(value)
    text = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)
    return text.replace("${", "\uff04{")


def on_wire(value: str) -> str:
    """The value as any ESL client decodes it from the switch: switch_url_encode keeps a
    ``%XX`` the text already has (so a caller's ``%0A`` arrives as a line break), and
    invalid UTF-8 becomes U+FFFD."""
    return url_decode(url_encode(value))


def hostile(values: list[str], tmp_path: Path) -> list[str]:
    return [v.replace("{tmp}", str(tmp_path)) for v in values]


@pytest.fixture
def unhardened(sim_daemon, tmp_path, record_commands):
    """The daemon against a simulator whose dialplan leaves expansion ON (first wall only)."""
    run: SimDaemon = sim_daemon(full_config(tmp_path), speed=10.0)
    run.sim.dialplan_disables_expansion = False
    run.commands = record_commands
    run.login("alice", "bob")
    return run


def check_switch_received(run: SimDaemon, record: SwitchRecord, texts: list[str]) -> None:
    """Nothing but our own commands reached the switch for this call (see module doc)."""
    assert record.injections == [], [(a.name, a.raw_arg[:80]) for a in record.injections]
    marks = [t for t in texts if MARK in t] and [MARK]
    mine = [r.command for r in run.commands if r.channel == record.caller_uuid]
    for cmd in mine:
        word = cmd.line.split(" ", 1)[0]
        if word == "sendmsg":
            app = cmd.header("execute-app-name")
            arg = cmd.body or cmd.header("execute-app-arg")
            assert not app or app in OUR_APPS, app
            assert not any(m in arg for m in marks), (app, arg[:120])
        elif word == "bgapi":
            check_originate(cmd.line[len("bgapi "):], marks)
        elif word == "api":
            assert OUR_API.match(cmd.line[len("api "):]), cmd.line[:120]
        else:
            assert word in ("connect", "myevents", "nixevent", "linger", "event"), cmd.line[:120]
    for leg in record.agent_legs:
        assert leg.dial in (AGENT_PHONE, QUEUE_PHONE, CUSTOM_PHONE) or \
            leg.dial.startswith("loopback/+491519"), leg.dial


def check_originate(line: str, marks: list[str]) -> None:
    req = parse_originate(line[len("originate "):])
    assert set(req.variables) <= OUR_ORIGINATE_VARS, sorted(set(req.variables) -
                                                           OUR_ORIGINATE_VARS)
    assert req.app == "fifo" and not any(m in req.app_arg for m in marks), req.app_arg
    assert not any(m in req.dial for m in marks), req.dial
    for name, value in req.variables.items():
        if name != "origination_caller_id_name":
            assert not any(m in value for m in marks), (name, value[:80])


def run_all(run: SimDaemon, number: str, names: list[str], script_for=None,
            numbers: list[str] | None = None) -> list[SwitchRecord]:
    """Every name (and caller number) at once to ``number``; wait until every caller is
    gone and every record the daemon opened is final."""
    records = [run.call(number, name=name, caller=(numbers or [CALLER])[i % len(numbers or
                        [CALLER])], script=script_for(i) if script_for else None)
               for i, name in enumerate(names)]
    for record in records:
        assert run.caller(record).hungup.wait(60), "a caller was left on the line"
    run.check_nothing_left(timeout=20)
    return records


def test_hostile_names_through_the_hotline_menu(unhardened, tmp_path):
    run = unhardened
    names = hostile(NAMES, tmp_path)
    records = run_all(run, HOTLINE, names,
                      lambda i: CallerScript(presses=[Press("1", 0.3, "menu")],
                                             hangup_in="bridged", hangup_delay_s=0.5))
    by_uuid = {r["call_uuid"]: r for r in run.rows("SELECT * FROM call_records")}
    for name, record in zip(names, records, strict=True):
        check_switch_received(run, record, [name])
        row = by_uuid[record.caller_uuid]
        assert row["outcome"] == "bridged", (name[:40], row["outcome"])
        assert row["caller_name"] == clean_caller_text(on_wire(name))
        [leg] = record.agent_legs
        # The on-call person sees the option's label and the caller's name, exact.
        assert leg.caller_id_name.startswith("Datenbank")
        if len(name.encode("utf-8", "surrogateescape")) <= 900:
            assert leg.caller_id_name.endswith(shown(name)), (name[:40], leg.caller_id_name)
    assert not (tmp_path / "pwned").exists()
    for incident in run.rows("SELECT caller_name FROM incidents"):
        assert "\x00" not in (incident["caller_name"] or "")


@pytest.mark.parametrize("number", [QUEUE_NUMBER, AGENT_NUMBER, CUSTOM_NUMBER])
def test_hostile_names_reach_the_agent_exact_and_inert(unhardened, tmp_path, number):
    run = unhardened
    names = hostile(NAMES, tmp_path)
    # One agent takes one call at a time (agent claims, issue 18.2): the agent route's
    # callers come one after another (all at once, all but one would hear the busy tone).
    records = ([record for name in names for record in run_all(run, number, [name])]
               if number == AGENT_NUMBER else run_all(run, number, names))
    rows = {r["call_uuid"]: r for r in run.rows("SELECT * FROM call_records")}
    for name, record in zip(names, records, strict=True):
        check_switch_received(run, record, [name])
        row = rows[record.caller_uuid]
        assert row["outcome"] == "bridged", (name[:40], row["outcome"])
        assert row["caller_name"] == clean_caller_text(on_wire(name))
        [leg] = record.agent_legs
        if number == QUEUE_NUMBER:
            # Originated by fsrouter: the name travels through escape.py.
            if len(name.encode("utf-8", "surrogateescape")) <= 1024:
                assert leg.caller_id_name == shown(name), (name[:40], leg.caller_id_name[:60])
            else:  # cut to 1 KB (escape.py refuses more than 4 KB), the start kept
                assert shown(name).startswith(leg.caller_id_name[:-1])
        else:
            # bridge: the switch copies the caller's ID to the leg itself.
            assert leg.caller_id_name == on_wire(name) or leg.caller_id_name == name
        if name in LEGITIMATE:
            assert leg.caller_id_name == name, (name, leg.caller_id_name)
    assert not (tmp_path / "pwned").exists()


def test_hostile_names_on_an_unassigned_number_and_a_feature_code(unhardened, tmp_path):
    run = unhardened
    names = hostile(NAMES, tmp_path)
    records = run_all(run, UNASSIGNED_NUMBER, names)
    records += run_all(run, "*21", names)  # an unknown phone: refused, nothing changes
    for name, record in zip(names + names, records, strict=True):
        check_switch_received(run, record, [name])
    assert [r["outcome"] for r in run.rows("SELECT outcome FROM call_records")] == [
        "unassigned"] * len(names)
    assert run.rows("SELECT user_id FROM agent_presence WHERE state = 'logged_out'") == []
    refused = [e for e in run.logs if e.get("event") == "feature.unknown_phone"]
    assert len(refused) == len(names)


def test_hostile_caller_numbers(unhardened, tmp_path):
    run = unhardened
    numbers = hostile(NUMBERS, tmp_path)
    for target in (QUEUE_NUMBER, HOTLINE):
        script = (lambda i: CallerScript(presses=[Press("1", 0.3, "menu")],
                                         hangup_in="bridged", hangup_delay_s=0.3)) \
            if target == HOTLINE else None
        records = run_all(run, target, ["Jane"] * len(numbers), script, numbers)
        for number, record in zip(numbers, records, strict=True):
            check_switch_received(run, record, [number])
            if len(number) > 1000:
                # The channel's data no longer fits the 64 KB header cap: the call is not
                # taken (logged), and the switch's fallback ends it, never silence.
                assert record.agent_legs == []
                assert run.caller(record).hangup_cause == "NORMAL_TEMPORARY_FAILURE"
                assert any("exceeds" in str(e.get("error")) for e in run.logs
                           if e.get("event") == "esl.outbound.setup_failed")
                continue
            [leg] = record.agent_legs
            if target == QUEUE_NUMBER:
                # The agent sees the customer's number when it is one, else ours.
                assert leg.caller_id_number in (number.replace(" ", ""), QUEUE_NUMBER)
            else:
                assert leg.caller_id_number == HOTLINE  # on-call staff see the hotline
    rows = run.rows("SELECT caller_number, outcome FROM call_records")
    assert {r["outcome"] for r in rows} == {"bridged"}
    assert not (tmp_path / "pwned").exists()


def test_hostile_destination_numbers_get_the_not_assigned_tone(unhardened, tmp_path):
    run = unhardened
    destinations = hostile(DESTINATIONS, tmp_path)
    records = [run.call(number) for number in destinations]
    for destination, record in zip(destinations, records, strict=True):
        assert run.caller(record).hungup.wait(20), destination[:40]
        check_switch_received(run, record, [destination])
        assert record.agent_legs == []
        assert run.caller(record).hangup_cause == "UNALLOCATED_NUMBER", destination[:40]
    run.check_nothing_left()
    logged = [e for e in run.logs if e.get("event") == "call.unassigned"]
    assert len(logged) == len(destinations)
    assert all(len(e.get("destination", "")) <= 40 for e in logged)  # never the whole text
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("digits", DTMF)
def test_hostile_key_presses_in_the_menu(unhardened, tmp_path, digits):
    run = unhardened
    record = run.call(HOTLINE, name=f"{MARK} ${{system(touch {tmp_path}/pwned)}}",
                      script=CallerScript(presses=[Press(digits, 0.2, "menu")],
                                          hangup_in="bridged", hangup_delay_s=0.3))
    call = run.wait_ended(record, timeout=30)
    check_switch_received(run, record, [MARK])
    if digits[0] in "12":  # a valid first key: that option
        assert call["outcome"] == "bridged"
        [incident] = run.rows("SELECT option_digit FROM incidents")
        assert incident["option_digit"] == digits[0]
    else:
        # One key per try (2 tries): the next key may still choose; else goodbye.
        assert call["outcome"] in ("no_choice", "bridged"), (digits, call["outcome"])
        if call["outcome"] == "no_choice":
            assert run.rows("SELECT id FROM incidents") == []
    gevent.sleep(0)
    assert not (tmp_path / "pwned").exists()


def test_the_check_sees_an_injection_when_caller_text_reaches_an_argument(unhardened,
                                                                            tmp_path):
    """The checks above can fail: a flow that puts the caller's name into an argument (as a
    careless app would) is caught both by the expansion recorder and by the command scan."""
    from fsrouter.calls import inbound

    run = unhardened
    original = inbound.busy_tone

    def careless(call):
        call.run("playback", f"say:{call.caller_name}")
        return original(call)

    name = f"{MARK} ${{system(touch {tmp_path}/pwned)}}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inbound, "busy_tone", careless)
        run.login("alice", busy=True)
        record = run.call(AGENT_NUMBER, name=name)
        wait_for(lambda: run.caller(record).hungup.is_set(), 20, "the call ended")
    assert record.injections
    with pytest.raises(AssertionError):
        check_switch_received(run, record, [name])
