"""The ESL wire format and nothing else: no sockets, no greenlets.

FreeSWITCH's event socket speaks in frames: ``Name: value`` header lines, a blank line, and
``Content-Length`` bytes of body when that header is present. :class:`FrameParser` reads the
frames the switch sends (any chunking, several frames per read); :class:`CommandParser` reads
the commands an application sends (used by the simulator and by test peers); and
:func:`encode_command` writes a command, refusing anything that could smuggle in a second one.

Example::

    parser = FrameParser()
    for frame in parser.feed(sock.recv(65536)):
        if frame.content_type == "text/event-plain":
            event = parse_event(frame)
            print(event.name, event.uuid)

URL-decoding follows what the switch encodes (``switch_event_serialize`` percent-encodes each
header value; hand-written frames such as ``Reply-Text`` are sent raw). So event bodies are
split into lines first and each value is decoded on its own, and an outer frame is decoded
only when it is a serialized event itself (the ``connect`` reply, which carries
``Event-Name``). Decoding a raw frame would corrupt text that happens to contain ``%2B``.

Events are the hot path (~30 of ~3 KB per call, ~100 headers each, of which a call reads a
handful). A header block as the switch writes it ("clean": ASCII, every line ``Name: value``
with exactly one colon and one space, since the switch encodes both in values;
:func:`clean_block`, a few C-level string operations) is not split at all:
:meth:`Event.get` finds the one line it wants, and URL-decodes only that value. Any other
block goes through the line-by-line reader, which strips names and refuses lines without
one, as it always did. Either way a name maps to the value of its last line, decoded on its
own (never the block before splitting). :class:`Event` and the clean-block reading live in
:mod:`fsrouter.esl.events`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from fsrouter.esl.events import Event, clean_block, decode_values, lookup, split_clean, url_decode

T = TypeVar("T")

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
# What a queued event costs besides its text (the Event, its slots, a queue slot); its
# text is counted as Python holds it (sys.getsizeof), which is up to 4x its wire bytes.
EVENT_OVERHEAD = 256

# Content types the switch sends (mod_event_socket.c).
AUTH_REQUEST = "auth/request"
COMMAND_REPLY = "command/reply"
API_RESPONSE = "api/response"
EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
DISCONNECT_NOTICE = "text/disconnect-notice"
LOG_DATA = "log/data"
RUDE_REJECTION = "text/rude-rejection"


class ProtocolError(Exception):
    """The bytes on the wire are not a valid ESL frame (or a frame we refuse to buffer)."""


class UnsafeCommand(ProtocolError, ValueError):
    """A command would carry a newline or other byte that could inject a second command."""


class Account(Protocol):
    """Where a parser charges the bytes it holds back (fsrouter.esl.buffers.BufferAccount)."""

    def charge(self, size: int, what: str) -> None: ...

    def release(self, size: int) -> None: ...


@dataclass(frozen=True)
class Frame:
    """One frame as the switch sent it: outer headers and the body as text."""

    headers: dict[str, str]
    body: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")


@dataclass(frozen=True)
class Command:
    """One command as an application sent it: ``line``, headers, optional body."""

    line: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def name(self) -> str:
        return self.line.split(" ", 1)[0]

    @property
    def args(self) -> str:
        parts = self.line.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""


def _decode_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not valid UTF-8 (byte {exc.start})") from exc


def _split_header_line(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        raise ProtocolError(f"header line without 'Name:': {line[:80]!r}")
    return name.strip(), value[1:] if value.startswith(" ") else value


def parse_header_lines(text: str, decode: bool) -> dict[str, str]:
    """Split ``Name: value`` lines; decode each value on its own when ``decode``."""
    raw = split_header_block(text)
    return decode_values(raw) if decode else raw


def split_header_block(text: str) -> dict[str, str]:
    """``Name: value`` lines as they are (not decoded); empty lines are skipped, a line
    without a name is a :class:`ProtocolError`, a repeated name keeps its last value."""
    if clean_block(text):
        return split_clean(text)
    return _split_lines(text)


def _split_lines(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        name, value = _split_header_line(line)
        headers[name] = value
    return headers


def parse_count(raw: str, what: str) -> int:
    """A non-negative decimal number as the switch writes one (ASCII digits, at most 12);
    anything else, '²' or '٥' included (str.isdigit() accepts both), is a ProtocolError."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ProtocolError(f"bad {what} {raw[:40]!r}")
    return int(text)


def linger_seconds(frame: Frame) -> int | None:
    """A linger notice's ``Linger-Time``: seconds, or None for a plain ``linger`` (no time:
    mod_event_socket writes ``(int)linger_timeout``, i.e. -1) or none given; anything else is
    a :class:`ProtocolError`."""
    raw = frame.headers.get("Linger-Time")
    return None if raw is None or raw == "-1" else parse_count(raw, "Linger-Time")


def _parse_length(raw: str | None, limit: int) -> int:
    if raw is None:
        return 0
    length = parse_count(raw, "Content-Length")
    if length > limit:
        raise ProtocolError(f"Content-Length {length} exceeds the limit of {limit} bytes")
    return length


class _BlockParser:
    """Shared incremental splitter: header block, blank line, Content-Length body."""

    def __init__(
        self, max_header_bytes: int, max_body_bytes: int, account: Account | None = None
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._account = account
        self._held = 0  # bytes of _buf charged to the account
        self._buf = bytearray()
        self._scan_from = 0
        self._pending: tuple[str, int] | None = None  # header text, body length
        self._failed: ProtocolError | None = None

    def _blocks(self, data: bytes, build: Callable[[str, str], T]) -> list[T]:
        """Split off every complete block and ``build`` it; any error fails the parser."""
        if self._failed is not None:
            raise ProtocolError(f"parser already failed: {self._failed}")
        self._buf += data
        items: list[T] = []
        try:
            while (block := self._next_block()) is not None:
                items.append(build(*block))
            self._hold(len(self._buf))
        except ProtocolError as exc:
            self._failed = exc
            self._buf.clear()
            self._hold(0)
            raise
        except RecursionError as exc:  # no parse path should recurse; never an internal error
            self._failed = ProtocolError(f"frame nested too deeply: {exc}")
            self._buf.clear()
            self._hold(0)
            raise self._failed from exc
        return items

    def _hold(self, size: int) -> None:
        """Charge (or give back) what the buffer holds now to the account, if any."""
        if self._account is None or size == self._held:
            return
        if size > self._held:
            self._account.charge(size - self._held, "a partial frame")
        else:
            self._account.release(self._held - size)
        self._held = size

    def _next_block(self) -> tuple[str, str] | None:
        if self._pending is None and not self._take_header():
            return None
        assert self._pending is not None
        head, length = self._pending
        if len(self._buf) < length:
            return None
        # Not strict: an api/response body is raw text of the switch, caller names included
        # (``uuid_dump``/``show channels as json`` of a caller from a Latin-1 PBX); one such
        # caller must not take the event connection down. The frame was cut by bytes.
        body = bytes(self._buf[:length]).decode("utf-8", "replace")
        del self._buf[:length]
        self._pending = None
        return head, body

    def _take_header(self) -> bool:
        # Blank lines between frames carry nothing; the switch's own client skips them too.
        while self._buf[:1] == b"\n":
            del self._buf[:1]
        end = self._buf.find(b"\n\n", max(0, self._scan_from - 1))
        if end < 0:
            self._scan_from = len(self._buf)
            if len(self._buf) > self.max_header_bytes:
                raise ProtocolError(f"header block exceeds {self.max_header_bytes} bytes")
            return False
        if end > self.max_header_bytes:
            raise ProtocolError(f"header block exceeds {self.max_header_bytes} bytes")
        head = _decode_text(bytes(self._buf[:end]), "header block")
        del self._buf[: end + 2]
        self._scan_from = 0
        self._pending = (head, self._length_of(head))
        return True

    def _length_of(self, head: str) -> int:
        raw = None
        for line in head.split("\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                raw = value
        return _parse_length(raw, self.max_body_bytes)

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame (bounded by the caps)."""
        return len(self._buf)


class FrameParser(_BlockParser):
    """Incremental parser for what the switch sends (the client side of the socket).

    ``feed`` returns every frame completed by ``data``; partial frames wait for more bytes.
    A malformed or oversized frame raises :class:`ProtocolError` and the parser stays failed:
    the stream position is lost, so the connection must be dropped.
    """

    def __init__(
        self,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        account: Account | None = None,
    ) -> None:
        super().__init__(max_header_bytes, max_body_bytes, account)

    def feed(self, data: bytes) -> list[Frame]:
        return self._blocks(data, _make_frame)


def _make_frame(head: str, body: str) -> Frame:
    raw = split_header_block(head)
    if "Event-Name" in raw:
        # A serialized event as the outer frame (the connect reply): values are URL-encoded.
        return Frame(decode_values(raw), body)
    return Frame(raw, body)


class CommandParser(_BlockParser):
    """Incremental parser for what an application sends (the switch side of the socket)."""

    def __init__(
        self, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        super().__init__(max_header_bytes, max_body_bytes)

    def feed(self, data: bytes) -> list[Command]:
        return self._blocks(data, _make_command)


def _make_command(head: str, body: str) -> Command:
    line, _, rest = head.partition("\n")
    if not line.strip():
        raise ProtocolError("empty command line")
    return Command(line, parse_header_lines(rest, decode=False), body)


def parse_event(frame: Frame) -> Event:
    """Turn a ``text/event-plain`` (or ``text/event-json``) frame into an :class:`Event`;
    any malformed input is a :class:`ProtocolError`. ``size`` is what it holds in memory."""
    if frame.content_type == EVENT_JSON:
        event = _parse_json_event(frame.body)
        # A decoded header dict costs several times its text.
        event.size = 3 * sys.getsizeof(frame.body) + EVENT_OVERHEAD
        return event
    if frame.content_type != EVENT_PLAIN:
        raise ProtocolError(f"not an event frame: Content-Type {frame.content_type!r}")
    event = _parse_plain_event(frame.body)
    event.size = sys.getsizeof(frame.body) + EVENT_OVERHEAD
    return event


def _parse_plain_event(text: str) -> Event:
    head, sep, rest = text.partition("\n\n")
    if clean_block(head):  # the switch's own: read by lookups, values decoded when read
        length = lookup(head, "Content-Length")
        event = Event.from_block(head)
    else:
        raw = _split_lines(head)
        length = raw.pop("Content-Length", None)
        event = Event.encoded(raw)
    if length is None:
        return event
    size = _parse_length(url_decode(length), MAX_BODY_BYTES)
    data = rest.encode("utf-8")
    if not sep or len(data) < size:
        raise ProtocolError(f"event body shorter than its Content-Length {size}")
    event.body = data[:size].decode("utf-8", "replace")
    return event


def _parse_json_event(text: str) -> Event:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise ProtocolError(f"event-json body is not JSON: {str(exc)[:80]}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("event-json body is not an object")
    # The switch writes a flat object of strings (switch_event_serialize_json); a nested
    # value is kept as its JSON text, and one JSON cannot write back is refused.
    body = data.pop("_body", "")
    try:
        headers = {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        if not isinstance(body, str):
            body = json.dumps(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"event-json value cannot be kept: {str(exc)[:80]}") from exc
    for value in (*headers, *headers.values(), body):
        if not _is_unicode(value):
            raise ProtocolError("event-json text has a lone surrogate (\\ud800-\\udfff)")
    headers.pop("Content-Length", None)
    return Event(headers, body)


def _is_unicode(text: str) -> bool:
    """False for text with lone surrogates (JSON can escape them; UTF-8 cannot carry them)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_FORBIDDEN = ("\n", "\r", "\x00")


def _check_safe(text: str, what: str) -> None:
    for char in _FORBIDDEN:
        if char in text:
            raise UnsafeCommand(f"{what} contains {char!r}; it would end the ESL command")


def encode_command(
    line: str, headers: dict[str, str] | None = None, body: str | None = None
) -> bytes:
    """Encode one command; newlines only ever travel inside a Content-Length body.

    >>> encode_command("api status")
    b'api status\\n\\n'
    """
    _check_safe(line, "command line")
    if not line.strip():
        raise UnsafeCommand("empty command line")
    out = [line]
    for name, value in (headers or {}).items():
        _check_safe(name, "header name")
        _check_safe(value, f"header {name!r}")
        if not name.strip() or ":" in name:
            raise UnsafeCommand(f"bad header name {name!r}")
        if name.strip().lower() == "content-length":
            raise UnsafeCommand("Content-Length is set from the body, not by the caller")
        out.append(f"{name}: {value}")
    payload = b""
    if body is not None:
        payload = body.encode("utf-8")
        out.append(f"Content-Length: {len(payload)}")
    return ("\n".join(out) + "\n\n").encode("utf-8") + payload


def encode_frame(headers: dict[str, str], body: str = "") -> bytes:
    """Encode a frame the way the switch does (for simulators and test peers)."""
    payload = body.encode("utf-8")
    lines = [f"{name}: {value}" for name, value in headers.items() if name != "Content-Length"]
    if payload:
        lines.insert(0, f"Content-Length: {len(payload)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + payload


# switch_url_encode's unsafe set (src/switch_utils.c); control and non-ASCII bytes too.
_URL_UNSAFE = frozenset(b'\r\n "#%&+:;<=>?@[\\]^`{|}')


def url_encode(value: str) -> str:
    """Encode a header value the way switch_url_encode does."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in _URL_UNSAFE or byte < 32 or byte > 126:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def encode_event(headers: dict[str, str], body: str = "") -> bytes:
    """Encode a ``text/event-plain`` frame as the switch serializes one (for peers/simulators)."""
    lines = [f"{name}: {url_encode(value)}" for name, value in headers.items()]
    inner = "\n".join(lines) + "\n"
    if body:
        inner += f"Content-Length: {len(body.encode('utf-8'))}\n\n{body}"
    else:
        inner += "\n"
    return encode_frame({"Content-Type": EVENT_PLAIN}, inner)
