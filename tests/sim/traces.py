"""Helpers to replay real-switch ESL traces (/work/shared/esl-traces) against the simulator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gevent
from gevent import socket

TRACES = Path("/work/shared/esl-traces")


def split_frames(buf: bytes) -> tuple[list[bytes], bytes]:
    """Whole frames (head + Content-Length body) from ``buf``, and the rest."""
    out = []
    while True:
        end = buf.find(b"\n\n")
        if end < 0:
            return out, buf
        head = buf[:end].decode("utf-8", "replace")
        length = 0
        for line in head.split("\n"):
            if line.startswith("Content-Length: "):
                length = int(line[16:])
        if len(buf) < end + 2 + length:
            return out, buf
        out.append(buf[: end + 2 + length])
        buf = buf[end + 2 + length:]


def event_headers(frame: bytes) -> list[tuple[str, str]]:
    text = frame.decode("utf-8", "replace")
    _, _, body = text.partition("\n\n")
    lines = body.split("\n\n")[0].split("\n")
    return [tuple(ln.split(": ", 1)) for ln in lines if ": " in ln]  # type: ignore[misc]


def shape(frame: bytes) -> tuple[str, ...]:
    """Event name (+FIFO action) and header names in order, without ``variable_*``."""
    text = frame.decode("utf-8", "replace")
    head = text.partition("\n\n")[0]
    if "text/event-plain" in head:
        pairs = event_headers(frame)
        kind = dict(pairs)
        tag = kind["Event-Name"] + kind.get("FIFO-Action", "")
        return (tag, *[n for n, _ in pairs if not n.startswith("variable_")])
    # CHANNEL_DATA's variables depend on the dialplan the trace ran (ours adds a ``set``).
    names = (ln.split(": ", 1)[0] for ln in head.split("\n"))
    return tuple(n for n in names if not n.startswith("variable_"))


@dataclass
class Step:
    conn: str
    direction: str
    data: str


def load(name: str) -> tuple[dict[str, object], list[Step]]:
    lines = (TRACES / name).read_text().splitlines()
    meta = json.loads(lines[0])["meta"]
    steps = [Step(r["conn"], r["dir"], r["data"]) for r in map(json.loads, lines[1:])]
    return meta, steps


def expected_frames(steps: list[Step], conn: str) -> list[bytes]:
    data = "".join(s.data for s in steps if s.conn == conn and s.direction == "fs->app")
    return split_frames(data.encode())[0]


class Reader:
    """Collects whole frames from one socket; ``until(n)`` waits for the n-th."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[bytes] = []
        self._buf = b""
        self.eof = False

    def until(self, count: int, timeout: float = 5.0) -> None:
        with gevent.Timeout(timeout, AssertionError(f"only {len(self.frames)}/{count} frames")):
            while len(self.frames) < count and not self.eof:
                data = self.sock.recv(65536)
                if not data:
                    self.eof = True
                    break
                frames, self._buf = split_frames(self._buf + data)
                self.frames.extend(frames)

    def pump(self, seconds: float) -> None:
        """Collect whatever arrives within ``seconds``."""
        try:
            self.until(10**9, timeout=seconds)
        except AssertionError:
            pass

    def names(self) -> list[str]:
        return [shape(f)[0] for f in self.frames]
