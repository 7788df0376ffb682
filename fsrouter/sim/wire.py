"""The FreeSWITCH side of the Event Socket wire: what mod_event_socket sends and how it reads.

Encoding follows mod_event_socket.c and switch_event_serialize (see freeswitch-facts.md §1):
header values of events are URL-encoded with FreeSWITCH's own unsafe-character list, and an
event body follows as an inner ``Content-Length``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

# switch_utils.c: characters FreeSWITCH escapes besides controls and non-ASCII bytes.
_URL_UNSAFE = frozenset(b'\r\n "#%&+:;<=>?@[\\]^`{|}')
_HEX = b"0123456789ABCDEF"
MAX_BODY = 16 * 1024 * 1024  # mod_event_socket caps a client body at 16 MiB
MAX_HEAD = 64 * 1024  # a command head larger than this is garbage, not a command

Headers = list[tuple[str, str]]


# Anything outside printable ASCII or in the unsafe list needs the slow path.
_NEEDS_ENCODING = re.compile(r'[^\x21-\x7e]|["#%&+:;<=>?@\[\\\]^`{|}]')


@functools.lru_cache(maxsize=65536)
def url_encode(value: str) -> str:
    """Encode like switch_url_encode (double_encode off): an existing ``%XX`` is kept."""
    if _NEEDS_ENCODING.search(value) is None:
        return value  # most header values: nothing to do (and this runs per header)
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    for i, byte in enumerate(raw):
        if byte == 0x25 and _is_hex_pair(raw, i + 1):
            out.append(byte)
        elif byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE:
            out += b"%" + bytes((_HEX[byte >> 4], _HEX[byte & 15]))
        else:
            out.append(byte)
    return out.decode("ascii")


def _is_hex_pair(raw: bytes, start: int) -> bool:
    return start + 1 < len(raw) and raw[start] in _HEX and raw[start + 1] in _HEX


def _head(headers: Headers) -> str:
    return "".join(f"{name}: {value}\n" for name, value in headers)


def command_reply(text: str, extra: Headers | None = None) -> bytes:
    """``command/reply`` as sent for every command except api."""
    headers = [("Content-Type", "command/reply"), ("Reply-Text", text)] + (extra or [])
    return (_head(headers) + "\n").encode()


def api_response(body: str) -> bytes:
    data = body.encode("utf-8", "surrogateescape")
    head = f"Content-Type: api/response\nContent-Length: {len(data)}\n\n"
    return head.encode() + data


def auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def serialize_event(headers: Headers, body: str | None = None) -> bytes:
    """switch_event_serialize: encoded ``Name: value`` lines, then an inner body if any."""
    text = "".join(f"{name}: {url_encode(value)}\n" for name, value in headers)
    if body is None:
        return (text + "\n").encode()
    data = body.encode("utf-8", "surrogateescape")
    return (text + f"Content-Length: {len(data)}\n\n").encode() + data


def event_plain(headers: Headers, body: str | None = None) -> bytes:
    payload = serialize_event(headers, body)
    head = f"Content-Length: {len(payload)}\nContent-Type: text/event-plain\n\n"
    return head.encode() + payload


def channel_data_reply(headers: Headers) -> bytes:
    """Reply to ``connect``: the whole channel as headers of a command/reply, no body."""
    return serialize_event(headers)


def linger_notice(session_uuid: str, channel_name: str, seconds: int) -> bytes:
    headers = [
        ("Content-Type", "text/disconnect-notice"),
        ("Controlled-Session-UUID", session_uuid),
        ("Content-Disposition", "linger"),
        ("Channel-Name", channel_name),
        ("Linger-Time", str(seconds)),
        ("Content-Length", "0"),
    ]
    return (_head(headers) + "\n").encode()


GOODBYE_BODY = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def goodbye_notice() -> bytes:
    data = GOODBYE_BODY.encode()
    return f"Content-Type: text/disconnect-notice\nContent-Length: {len(data)}\n\n".encode() + data


def disconnect_notice(session_uuid: str, channel_name: str) -> bytes:
    """Sent without linger when the channel hangs up (send_disconnect)."""
    data = GOODBYE_BODY.encode()
    head = [
        ("Content-Type", "text/disconnect-notice"),
        ("Controlled-Session-UUID", session_uuid),
        ("Content-Disposition", "disconnect"),
        ("Content-Length", str(len(data))),
    ]
    return (_head(head) + "\n").encode() + data


class FrameError(ValueError):
    """A client sent something that is not an ESL command."""


@dataclass
class Command:
    """One client command: first line, headers in order (not URL-decoded), optional body."""

    line: str
    headers: Headers = field(default_factory=list)
    body: str = ""

    def header(self, name: str, default: str = "") -> str:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return default


class CommandReader:
    """Incremental parser of client commands, tolerant of any split across reads."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: Command | None = None
        self._need = 0

    def feed(self, data: bytes) -> list[Command]:
        self._buf += data
        out: list[Command] = []
        while True:
            cmd = self._next()
            if cmd is None:
                return out
            out.append(cmd)

    def _next(self) -> Command | None:
        if self._pending is not None:
            if len(self._buf) < self._need:
                return None
            cmd = self._pending
            cmd.body = bytes(self._buf[: self._need]).decode("utf-8", "surrogateescape")
            del self._buf[: self._need]
            self._pending = None
            return cmd
        end = self._buf.find(b"\n\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise FrameError("command head too long")
            return None
        text = bytes(self._buf[:end]).decode("utf-8", "surrogateescape").replace("\r", "")
        del self._buf[: end + 2]
        return self._parse_head(text)

    def _parse_head(self, text: str) -> Command | None:
        lines = text.split("\n")
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            return None
        cmd = Command(line=lines[0].strip())
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                cmd.headers.append((name.strip(), value.strip()))
        length = cmd.header("Content-Length")
        if length:
            if not length.isdigit() or int(length) > MAX_BODY:
                raise FrameError(f"bad Content-Length {length[:20]!r}")
            self._pending, self._need = cmd, int(length)
            return self._next()
        return cmd
