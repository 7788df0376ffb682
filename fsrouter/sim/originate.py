"""Parsing of API arguments and originate strings the way FreeSWITCH does it.

switch_separate_string splits on spaces with ``'`` quoting; a ``{...}`` block ends at the first
``}`` (switch_find_end_paren ignores quotes) and is split on ``,`` unless escaped as ``\\,``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fsrouter.sim import fsparse
from fsrouter.testing.phones import phone_name


def split_args(text: str) -> list[str]:
    """Split API arguments on spaces; ``'`` groups and is removed; ``\\x`` is kept as is
    (the ``{...}`` block parser unescapes it later, so ``\\,`` and ``\\'`` survive)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == "'":
            quoted = not quoted
        elif ch == " " and not quoted:
            if cur:
                out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        out.append("".join(cur))
    return out


@dataclass
class OriginateRequest:
    variables: dict[str, str]
    dial: str
    app: str = ""
    app_arg: str = ""
    exten: str = ""
    raw: str = ""
    extra: list[str] = field(default_factory=list)
    origin: str = ""  # the channel whose ``bridge`` placed this originate (its a-leg's originator)
    # (name, number) the legs show unless the variables set origination_caller_id_*: for a
    # ``bridge``, the caller's (switch_ivr_originate copies the originating channel's profile).
    caller_id: tuple[str, str] | None = None
    leg_uuid: str = ""  # set by Simulator.originate: the uuid the (a-)leg got


class OriginateError(ValueError):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def parse_originate(arg: str) -> OriginateRequest:
    """``originate`` arguments as mod_commands and switch_ivr_originate parse them (fsparse)."""
    try:
        found, leg, argv = fsparse.parse_originate("originate " + arg)
    except fsparse.ParseError as error:
        raise OriginateError("CHAN_NOT_IMPLEMENTED") from error
    if len(argv) < 2:
        raise OriginateError("INVALID_ARGS")  # real: "-USAGE: ..." reply
    text = [part.decode("utf-8", "replace") for part in argv]
    variables = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                 for k, v in found.items()}
    req = OriginateRequest(variables=variables, dial=leg.decode("utf-8", "replace"), raw=arg,
                           extra=text[2:])
    app = re.match(r"^&([\w]+)(?:\((.*)\))?$", text[1], re.S)
    if app:
        # originate cuts the &app(...) argument at the first ')'.
        req.app, req.app_arg = app.group(1), (app.group(2) or "").split(")")[0]
    else:
        req.exten = text[1]
    return req


@dataclass
class PhoneBehaviour:
    """What a dialled phone does: ring for ``ring_ms`` then answer / busy / etc."""

    kind: str  # answer | noanswer | busy | gone | press | hangup | unregistered
    ring_ms: int = 0
    digit: str = ""
    after_ms: int = 0
    ident: str = ""


_PATTERNS = [
    (re.compile(r"^answer-(\d+)-(.+)$"), lambda m: PhoneBehaviour("answer", int(m[1]), ident=m[2])),
    (re.compile(r"^answer-(.+)$"), lambda m: PhoneBehaviour("answer", 20, ident=m[1])),
    (re.compile(r"^noanswer-(.+)$"), lambda m: PhoneBehaviour("noanswer", ident=m[1])),
    (re.compile(r"^busy-(.+)$"), lambda m: PhoneBehaviour("busy", 20, ident=m[1])),
    (re.compile(r"^gone-(.+)$"), lambda m: PhoneBehaviour("gone", 20, ident=m[1])),
    # As the real test phones: ring <ms>, answer, send the digit 300 ms later, stay.
    (re.compile(r"^press-([0-9*#])-(\d+)-(.+)$"),
     lambda m: PhoneBehaviour("press", int(m[2]), digit=m[1], after_ms=300, ident=m[3])),
    (re.compile(r"^hangup-(\d+)-(.+)$"),
     lambda m: PhoneBehaviour("hangup", 20, after_ms=int(m[1]), ident=m[2])),
]


def behaviour_for(name: str) -> PhoneBehaviour | None:
    """Phone behaviour from a scripted-phone name such as ``answer-1500-alice``.

    A number ``+491519...`` stands for a scripted phone too (fsrouter.testing.phones), as the
    test switch's ``agents`` context maps it.
    """
    name = phone_name(name) or name
    for pattern, make in _PATTERNS:
        match = pattern.match(name)
        if match:
            return make(match)
    return None


def dial_target(dial: str) -> tuple[str, str, str]:
    """(endpoint, name, context) of a dial string; ``loopback/x/ctx`` -> ("loopback", x, ctx)."""
    parts = dial.split("/")
    if parts[0] == "loopback" and len(parts) >= 2:
        return "loopback", parts[1], parts[2] if len(parts) > 2 else "default"
    return parts[0], "/".join(parts[1:]), ""
