"""FreeSWITCH 1.11.1's own string parsing, ported byte for byte, for the simulator.

Follows src/switch_utils.c (``switch_separate_string``, its two tokenizers,
``cleanup_separated_string``, ``switch_find_end_paren``), src/switch_event.c
(``switch_event_create_brackets``), src/switch_ivr_originate.c (``:_:`` check, ``|`` split, the
``[`` comma pre-pass, ``,`` split) and mod_commands.c ``originate_function``. The simulator
parses ``originate`` with it, and tests/unit/test_escape.py checks fsrouter.esl.escape against
it (tests/e2e/test_escape_realswitch.py checks the same corpus on the real switch).
"""

from __future__ import annotations

QUOTE, BACKSLASH, SPACE = ord("'"), ord("\\"), ord(" ")
QUOTED_ESC_COMMA, UNQUOTED_ESC_COMMA = 1, 2
UNESCAPE = {ord("n"): ord("\n"), ord("r"): ord("\r"), ord("t"): ord("\t"), ord("s"): SPACE}


class ParseError(Exception):
    pass


# --- src/switch_utils.c ------------------------------------------------------------------


def cleanup(token: bytes, delim: int) -> bytes:
    """cleanup_separated_string: strip one level of quotes and escapes, outer spaces."""
    i = 0
    while i < len(token) and token[i] == SPACE:
        i += 1
    out = bytearray()
    end = None
    inside = False
    while i < len(token):
        ch = token[i]
        nxt = token[i + 1] if i + 1 < len(token) else 0
        if ch == BACKSLASH and (
            nxt in (QUOTE, ord('"'), BACKSLASH) or (delim and nxt == delim) or nxt in UNESCAPE
        ):
            out.append(UNESCAPE.get(nxt, nxt))
            end = len(out)
            i += 2
            continue
        if ch == QUOTE and (inside or QUOTE in token[i + 1 :]):
            inside = not inside
            if inside:
                end = len(out)
        else:
            out.append(ch)
            if ch != SPACE or inside:
                end = len(out)
        i += 1
    return bytes(out[:end]) if end is not None else bytes(out)


def _cut(buf: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [-1, *cuts, len(buf)]
    return [buf[a + 1 : b] for a, b in zip(bounds, bounds[1:], strict=False)]


def separate_char(buf: bytes, delim: int, limit: int) -> list[bytes]:
    cuts: list[int] = []
    count, i, inside, start = 0, 0, False, True
    while i < len(buf) and count < limit:
        if start:
            count += 1
            start = False
            continue
        ch = buf[i]
        if ch == BACKSLASH:
            i += 1
        elif ch == QUOTE and (inside or QUOTE in buf[i + 1 :]):
            inside = not inside
        elif ch == delim and not inside:
            cuts.append(i)
            start = True
        i += 1
    return [cleanup(t, delim) for t in _cut(buf, cuts)[:count]]


def separate_blank(buf: bytes, limit: int) -> list[bytes]:
    cuts: list[int] = []
    count, i, inside, state = 0, 0, False, "start"
    while i < len(buf) and count < limit:
        ch = buf[i]
        if state == "start":
            count += 1
            state = "skip_initial"
        elif state == "skip_initial":
            if ch == SPACE:
                i += 1
            else:
                state = "find"
        elif state == "find":
            if ch == BACKSLASH:
                i += 1
            elif ch == QUOTE:
                inside = not inside
            elif ch == SPACE and not inside:
                cuts.append(i)
                state = "skip_ending"
            i += 1
        elif ch == SPACE:
            i += 1
        else:
            state = "start"
    return [cleanup(t, 0) for t in _cut(buf, cuts)[:count]]


def separate(buf: bytes, delim: int, limit: int = 1024) -> list[bytes]:
    if buf[:2] == b"^^" and len(buf) > 3:
        delim, buf = buf[2], buf[3:]
    if not buf:
        return []
    return separate_blank(buf, limit) if delim == SPACE else separate_char(buf, delim, limit)


def find_end_paren(s: bytes, start: int, opener: int, closer: int) -> int | None:
    while start < len(s) and s[start] == SPACE:
        start += 1
    if start >= len(s) or s[start] != opener:
        return None
    depth = 0
    for i in range(start, len(s)):
        if s[i] == opener:
            depth += 1
        elif s[i] == closer:
            depth -= 1
            if not depth:
                return i
    return None


# --- switch_event.c / switch_ivr_originate.c / mod_commands.c ----------------------------


def create_brackets(data: bytes, opener: int, closer: int, sep: int) -> tuple[dict, bytes]:
    end = find_end_paren(data, 0, opener, closer)
    if end is None:
        raise ParseError("no end of block")
    content = data[1:end]
    if content[:2] == b"^^" and len(content) > 2:
        sep, content = content[2], content[3:]
    found: dict[bytes, bytes] = {}
    for item in separate(content, sep) if content else []:
        pair = separate(item, ord("="), 2)
        if len(pair) == 2:
            found[pair[0]] = pair[1]
    return found, data[end + 1 :]


def bracket_prepass(leg: bytes) -> bytes:
    out = bytearray(leg)
    end, quoted, alt = None, False, False
    for i, ch in enumerate(leg):
        if end is None and ch == ord("["):
            end = find_end_paren(leg, i, ord("["), ord("]"))
            alt, quoted = leg[i + 1 : i + 3] == b"^^", False
        if ch == QUOTE:
            quoted = not quoted
        if end is not None and i < end and ch == ord(",") and leg[i - 1] != BACKSLASH:
            out[i] = QUOTED_ESC_COMMA if (quoted or alt) else UNQUOTED_ESC_COMMA
        if i == end:
            end = None
    return bytes(out)


def parse_originate(command: str) -> tuple[dict, bytes, list[bytes]]:
    """Return (variables, dial string, API arguments) as FreeSWITCH would see them."""
    assert command.startswith("originate ")
    argv = separate(command[len("originate ") :].strip().encode("utf-8"), SPACE, 10)
    data = argv[0]
    if b":_:" in data:
        raise ParseError("enterprise originate")
    found: dict[bytes, bytes] = {}
    if data[:1] == b"{":
        found, data = create_brackets(data, ord("{"), ord("}"), ord(","))
    legs = separate(bracket_prepass(separate(data, ord("|"))[0]), ord(","))
    leg = legs[0].lstrip(b" ")
    if leg[:1] == b"[":
        bend = find_end_paren(leg, 0, ord("["), ord("]")) or 0
        leg = leg[:bend].replace(bytes([QUOTED_ESC_COMMA]), b",") + leg[bend:]
        more, leg = create_brackets(leg, ord("["), ord("]"), UNQUOTED_ESC_COMMA)
        found.update(more)
    if len(legs) != 1:
        raise ParseError("extra simultaneous leg")
    return found, leg, argv
