"""``${var}`` expansion of application arguments, as switch_channel_expand_variables does.

The simulator expands exactly like the switch so tests can catch caller text that reaches an
argument. ``${system(...)}`` / ``${api(...)}`` style expansions are never executed; they are
reported as injections so the record shows the hole.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_API_CALL = re.compile(r"^\s*([A-Za-z_][\w]*)\s*\((.*)\)\s*$", re.S)


def expand(text: str, lookup: Callable[[str], str], depth: int = 0) -> tuple[str, bool]:
    """Return (expanded text, injection flag). Nested ``${...}`` and ``$${...}`` handled."""
    out: list[str] = []
    injected = False
    i = 0
    while i < len(text):
        if text.startswith("${", i):
            end = _closing(text, i + 2)
            if end < 0:
                out.append(text[i:])
                break
            inner = text[i + 2:end]
            if depth < 8 and "${" in inner:
                inner, nested = expand(inner, lookup, depth + 1)
                injected |= nested
            value, hit = _resolve(inner, lookup)
            out.append(value)
            injected |= hit
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out), injected


def _closing(text: str, start: int) -> int:
    depth = 1
    for pos in range(start, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return pos
    return -1


def _resolve(inner: str, lookup: Callable[[str], str]) -> tuple[str, bool]:
    call = _API_CALL.match(inner)
    if call:
        # A real switch would run this API command: record it, run nothing.
        return "", True
    return lookup(inner.strip()), False
