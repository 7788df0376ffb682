"""A switch event (:class:`Event`) and its header block, read without splitting it.

Events are the hot path (~30 of ~3 KB per call, ~100 headers each, of which a call reads a
handful). A header block as the switch writes it ("clean": ASCII, every line ``Name: value``
with exactly one colon and one space, since the switch encodes both in values;
:func:`clean_block`, a few C-level string operations) is not split at all: :func:`lookup`
finds the one line wanted, and :func:`url_decode` decodes only that value. Split out of
fsrouter.esl.protocol, which parses frames and reads every other block line by line.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote


class Event:
    """A switch event: decoded headers plus its own body (e.g. a BACKGROUND_JOB result).

    ``Event(headers, body)`` takes decoded values. Events read off the wire
    (:func:`parse_event`) keep the header block as the switch sent it: :meth:`get` (and the
    properties) decode one value when it is read; :attr:`headers` decodes all of them, once.
    Treat an event as read-only.
    """

    __slots__ = ("_text", "_raw", "_headers", "body", "size")

    def __init__(self, headers: dict[str, str], body: str = "") -> None:
        self._text: str | None = None  # a clean block (clean_block), values encoded
        self._raw: dict[str, str] | None = None  # split block, values encoded
        self._headers: dict[str, str] | None = headers  # decoded
        self.body = body
        self.size = 0  # bytes it holds, for the buffer caps (set by parse_event)

    @classmethod
    def encoded(cls, raw: dict[str, str], body: str = "") -> Event:
        """An event whose header values are still URL-encoded as the switch sent them."""
        event = cls({}, body)
        event._raw, event._headers = raw, None
        return event

    @classmethod
    def from_block(cls, block: str, body: str = "") -> Event:
        """An event read straight from a clean header block (without ``Content-Length``,
        which belongs to the frame): nothing is split until asked for."""
        event = cls({}, body)
        event._text, event._headers = block, None
        return event

    @property
    def headers(self) -> dict[str, str]:
        """Every header, decoded (on the first access; later ones return the same dict)."""
        if self._headers is None:
            if self._text is not None:
                raw = split_clean(self._text)
                raw.pop("Content-Length", None)
            else:
                raw = self._raw or {}
            self._headers = decode_values(raw)
            self._text = self._raw = None
        return self._headers

    def get(self, name: str, default: str | None = None) -> str | None:
        if self._headers is not None:
            return self._headers.get(name, default)
        if self._text is not None:
            value = lookup(self._text, name) if name != "Content-Length" else None
        else:
            value = self._raw.get(name) if self._raw is not None else None
        return default if value is None else url_decode(value)

    @property
    def name(self) -> str:
        return self.get("Event-Name") or ""

    @property
    def subclass(self) -> str:
        return self.get("Event-Subclass") or ""

    @property
    def uuid(self) -> str | None:
        return self.get("Unique-ID")

    @property
    def app_uuid(self) -> str | None:
        return self.get("Application-UUID")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.headers == other.headers and self.body == other.body

    __hash__ = None  # type: ignore[assignment]  # mutable contents, as the dataclass was

    def __repr__(self) -> str:
        return f"Event(headers={self.headers!r}, body={self.body!r})"


def url_decode(value: str) -> str:
    """Decode ``%XX`` escapes the way switch_url_decode does ('+' stays '+').

    Bytes that are not UTF-8 become U+FFFD: they come from caller-controlled text (a SIP
    display name from a Latin-1 PBX, say), and refusing the frame would refuse the call.
    """
    if "%" not in value:
        return value
    if len(value) > _CACHED_VALUE_CHARS:
        return unquote(value, encoding="utf-8", errors="replace")
    return _unquote(value)


_CACHED_VALUE_CHARS = 200  # longer values (a hostile caller name) are not kept in the cache


@lru_cache(maxsize=2048)
def _unquote(value: str) -> str:
    # Cached: a call's events repeat the same values (its channel variables) many times.
    return unquote(value, encoding="utf-8", errors="replace")


def decode_values(raw: dict[str, str]) -> dict[str, str]:
    """Every value of a split header block URL-decoded on its own."""
    return {name: url_decode(value) for name, value in raw.items()}


# Deleting these bytes leaves a block's colons, spaces, line ends and the white space the
# switch never writes in one (str.isspace's ASCII set): its skeleton.
_NOT_SKELETON = bytes(b for b in range(256) if b not in b": \n\t\r\x0b\x0c\x1c\x1d\x1e\x1f")
_CLEAN_SKELETON: dict[int, bytes] = {}  # line count -> b": \n" * (count - 1) + b": "


def clean_block(text: str) -> bool:
    """True for a header block exactly as the switch writes one (it URL-encodes colons and
    white space in values): ASCII; every line has exactly one colon, one space right after
    it or later on the line, no other white space, and a non-empty name before the colon; no
    empty line. The line-by-line reader's result for such a block is, for each line, the
    text before the colon -> the text after it less one leading space (the last line of a
    name wins), so it can be read by looking lines up. C-level string operations only."""
    if not text.isascii() or text[:1] == ":" or "\n:" in text:
        return False  # not ASCII, or an empty name
    skeleton = text.encode("ascii").translate(None, _NOT_SKELETON)
    lines = skeleton.count(b"\n") + 1
    expected = _CLEAN_SKELETON.get(lines)
    if expected is None:
        expected = b": \n" * (lines - 1) + b": "
        if lines <= 1024:
            _CLEAN_SKELETON[lines] = expected
    return skeleton == expected


def split_clean(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        name, _, value = line.partition(":")
        headers[name] = value[1:] if value[:1] == " " else value
    return headers


def lookup(text: str, name: str) -> str | None:
    """The value (not decoded) of ``name``'s last line in a clean block."""
    key = f"\n{name}:"
    start = text.rfind(key)
    if start >= 0:
        start += len(key)
    elif text.startswith(key[1:]):  # the first line
        start = len(key) - 1
    else:
        return None
    end = text.find("\n", start)
    value = text[start:] if end < 0 else text[start:end]
    return value[1:] if value[:1] == " " else value
