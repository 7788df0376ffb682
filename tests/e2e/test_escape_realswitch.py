"""Caller text through fsrouter.esl.escape onto the REAL FreeSWITCH (loopback only).

Each value is originated as ``origination_caller_id_name`` to a scripted phone
(``loopback/answer-0-<id>/agents``); the callee leg's Caller-Caller-ID-Name must be the
value byte for byte (or its documented replacement), no file may appear from
``${system(touch ...)}``, and the originated leg may carry no variable a plain call lacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsrouter.esl.escape import PAD_VARIABLE, originate_command, originate_var
from fsrouter.testing.realswitch import RealSwitch, find_freeswitch

CORPUS = [
    "${system(touch {tmp}/pwned)}",
    "$${system(touch {tmp}/pwned)}",
    "Müller, Jörg",
    "Wood's Homes",
    "O'Brien & Söhne",
    "O'Brien's",
    "CINCINNATI, OH",
    "a^^:b,c",
    "{x}",
    "[y]",
    "%[z=1]",
    "}",
    "]",
    "{",
    "\\",
    "C:\\srv\\new",
    "'",
    "a\nb",
    "line\r\nexecute_on_answer=system touch {tmp}/pwned",
    "x,execute_on_answer=system touch {tmp}/pwned",
    "x}execute_on_answer=system touch {tmp}/pwned",
    ":_:",
    "  spaces  ",
    "a|b",
    "origination_nested_vars=true",
    "",
    "Ωmega " * 350,
]


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealSwitch]:
    # Self-contained until fsrouter/testing/pytest_plugin.py ships a shared real_switch.
    if find_freeswitch() is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no FreeSWITCH was found")
        pytest.skip("no FreeSWITCH on this host")
    real = RealSwitch(tmp_path_factory.mktemp("escape") / "fs")
    real.start()
    try:
        yield real
    finally:
        real.stop()


def expected(value: str) -> str:
    """The documented replacements: control characters to space, ``${`` to ``＄{``."""
    text = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in value)
    return text.replace("${", "\uff04{")


def originate(switch: RealSwitch, command: str) -> tuple[dict, dict]:
    """Run ``api <command>``; return (originated leg, callee leg) as uuid_dump dicts.

    An empty caller ID name arrives as an absent header (events omit empty values).
    """
    reply = switch.api(command).strip()
    assert reply.startswith("+OK "), reply
    a_leg = json.loads(switch.api(f"uuid_dump {reply.split()[1]} json"))
    b_leg = json.loads(switch.api(f"uuid_dump {a_leg['variable_other_loopback_leg_uuid']} json"))
    switch.api(f"uuid_kill {reply.split()[1]}")
    return a_leg, b_leg


def variable_names(leg: dict) -> set[str]:
    return {key for key in leg if key.startswith("variable_")}


def test_corpus_arrives_exact_and_inert(switch: RealSwitch, tmp_path: Path) -> None:
    def dial() -> str:
        return f"loopback/answer-0-{switch.fresh_id()}/agents"

    plain, _ = originate(switch, originate_command({"origination_caller_id_name": "x"},
                                                   dial(), "park", ""))
    allowed = variable_names(plain) | {f"variable_{PAD_VARIABLE}"}
    for raw in CORPUS:
        value = raw.replace("{tmp}", str(tmp_path))
        command = originate_command({"origination_caller_id_name": value}, dial(), "park", "")
        a_leg, b_leg = originate(switch, command)
        assert b_leg.get("Caller-Caller-ID-Name", "") == expected(value), repr(value)
        assert variable_names(a_leg) <= allowed, repr(value)
        assert "variable_z" not in a_leg and "variable_execute_on_answer" not in a_leg
        bracket = f"originate [{originate_var('origination_caller_id_name', value, block='[')}]"
        _, b_leg = originate(switch, f"{bracket}{dial()} &park()")
        assert b_leg.get("Caller-Caller-ID-Name", "") == expected(value), repr(value)
    assert not (tmp_path / "pwned").exists()
