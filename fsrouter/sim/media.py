"""Durations of what a channel plays, in simulated milliseconds."""

from __future__ import annotations

import re

_TONE = re.compile(r"%\((\d+),(\d+)(?:,[\d.,]+)?\)")


def tone_ms(spec: str) -> int:
    """``%(on,off,f..)[;loops=N]`` segments; loops=-1 means forever (-1 returned)."""
    loops = 1
    match = re.search(r"loops=(-?\d+)", spec)
    if match:
        loops = int(match.group(1))
    once = sum(int(a) + int(b) for a, b in _TONE.findall(spec))
    if loops < 0:
        return -1
    return once * max(loops, 1)


def play_ms(path: str, default_file_ms: int = 1000) -> int:
    if path.startswith("tone_stream://"):
        return tone_ms(path[len("tone_stream://"):])
    if path.startswith("silence_stream://"):
        head = path[len("silence_stream://"):].split(",")[0]
        return int(head) if head.lstrip("-").isdigit() else 0
    if path.startswith("local_stream://"):
        return -1
    return default_file_ms
