"""Validated field types shared by the schema.

Anything that reaches a FreeSWITCH dial string or application argument is checked against a
whitelist here: ``${...}`` is expanded by the switch in every argument, ``^^`` changes the
argument separator, ``{}``/``[]`` set channel variables and ``,`` splits originate legs.
Error messages are short and plain because they are shown as ``file:line:col: path: message``.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, time, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, BeforeValidator

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_QUEUE = re.compile(r"[a-z0-9_]{1,64}")
_PATH_CHAR = re.compile(r"[A-Za-z0-9_./:+=-]")
_DIAL_CHAR = re.compile(r"[A-Za-z0-9@._:+/-]")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./:+=-]{1,255}")
_SAFE_DIAL = re.compile(r"[A-Za-z0-9@._:+/-]{1,255}")
_TONE = re.compile(r"tone_stream://[%(),.;=0-9a-z_-]{1,255}")
_WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_DURATION = re.compile(r"(?:\d+[wdhms])+")
_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_EMAIL = re.compile(r"[^@\s\"'<>,;${}]{1,64}@[A-Za-z0-9.-]{1,253}")
_DIGITS = re.compile(r"[0-9]{1,10}")
_LANGUAGE = re.compile(r"[a-z]{2}(-[A-Z]{2})?")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# Bounds that keep every date computation (a rotation's hand-overs, a coverage window, the
# zone conversions) far inside what datetime can hold (years 1-9999, timedelta < 1e9 days):
# a huge value is a clear config error at its line, never an OverflowError.
MAX_DURATION = timedelta(days=366)
FIRST_YEAR, LAST_YEAR = 1970, 2199
# Text for TTS goes into `speak engine|voice|text`: no expansion, separators or quotes.
_TEXT_FORBIDDEN = ("${", "$${", "^^", "|", "{", "}", "[", "]", '"', "\\", "\n", "\r",
                   # a prompt is one single-quoted play_and_get_digits argument, joined by !
                   "'", "!")


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _first_bad(value: str, allowed: re.Pattern[str]) -> str:
    """Name the first character a whitelist refuses, for a readable message."""
    if "${" in value:
        return "'${'"
    for char in value:
        if not allowed.fullmatch(char):
            return f"{char!r}"
    return f"(length {len(value)})"


def ranged(low: int, high: int) -> AfterValidator:
    """An int check with the message operators expect: ``must be 1-9, got 12``."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be {low}-{high}, got {value}")
        return value

    return AfterValidator(check)


def non_empty(what: str) -> AfterValidator:
    """A list check that names what is missing: ``must list at least one user``."""

    def check(value: tuple[object, ...]) -> tuple[object, ...]:
        if not value:
            raise ValueError(f"must list at least one {what}")
        return value

    return AfterValidator(check)


def check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"must be lower-case letters, digits, '_', '.' or '-', got "
                         f"{_shown(value)}")
    return value


def _check_queue(value: str) -> str:
    if not _QUEUE.fullmatch(value):
        raise ValueError(f"queue name must match ^[a-z0-9_]+$, got {_shown(value)}")
    return value


def _check_path(value: str) -> str:
    if not _SAFE_PATH.fullmatch(value) or "${" in value or ".." in value.split("/"):
        bad = "'..'" if ".." in value.split("/") else _first_bad(value, _PATH_CHAR)
        raise ValueError(f"unsafe character {bad} in file name {_shown(value)} (allowed: "
                         "letters, digits, _ . / : + = -)")
    return value


def check_dial(value: str) -> str:
    if not _SAFE_DIAL.fullmatch(value) or "${" in value:
        raise ValueError(f"unsafe character {_first_bad(value, _DIAL_CHAR)} in dial string "
                         f"{_shown(value)} (allowed: letters, digits, @ . _ : + - /)")
    return value


def check_sound(value: str) -> str:
    if value.startswith("tone_stream://"):
        return _check_tone(value)
    return _check_path(value)


def _check_tone(value: str) -> str:
    if not _TONE.fullmatch(value):
        raise ValueError(f"must be tone_stream://%(on,off,freq...);loops=N or similar, got "
                         f"{_shown(value)}")
    return value


def _check_word(value: str) -> str:
    if not _WORD.fullmatch(value):
        raise ValueError(f"must be letters, digits, '_' or '-', got {_shown(value)}")
    return value


def _check_text(value: str) -> str:
    for bad in _TEXT_FORBIDDEN:
        if bad in value:
            raise ValueError(f"text must not contain {bad!r}")
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > 500:
        raise ValueError(f"too long ({len(value)} characters, at most 500)")
    return value


def _check_name(value: str) -> str:
    if any(ord(ch) < 32 for ch in value) or "${" in value:
        raise ValueError("must not contain control characters or '${'")
    if not value.strip() or len(value) > 200:
        raise ValueError("must be 1-200 characters")
    return value


def parse_duration(value: object) -> timedelta:
    """``"1w"``, ``"12h"``, ``"1d12h"``, ``"90s"`` or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        parts = _DURATION_PART.findall(value.strip())
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    else:
        raise ValueError(f"must be a duration like 1w, 1d, 12h or 30m, got {value!r}"[:120])
    if seconds <= 0:
        raise ValueError(f"must be longer than zero, got {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"must be at most {MAX_DURATION.days}d, got {value!r}"[:120])
    return timedelta(seconds=seconds)


def check_moment(value: datetime) -> datetime:
    """A configured or given date and time, within the years fsrouter computes with."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR}-{LAST_YEAR}, got {value.year}")
    return value


def parse_clock(value: object) -> time:
    """``"08:00"`` -> time; ``"24:00"`` (end of day) -> ``time.max``."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and value.strip() == "24:00":
        return time.max
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"must be a time like 08:00 or 18:30, got {value!r}"[:120])
    return time(int(match.group(1)), int(match.group(2)))


def check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name longer than the file system takes (ENAMETOOLONG), found by
        # tests/reliability/test_fuzz_config.py: a clear config error, not a crash.
        raise ValueError(f"unknown time zone {_shown(value)} (e.g. Europe/Berlin)") from None
    return value


def _check_region(value: str) -> str:
    upper = value.upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown country code {_shown(value)} (ISO 3166 like DE, AT, CH)")
    return upper


def _check_address(value: str) -> str:
    try:
        ip_address(value)
    except ValueError:
        raise ValueError(f"must be an IP address like 127.0.0.1 or ::1, got "
                         f"{_shown(value)}") from None
    return value


def _parse_network(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"must be an IP address or network like 10.0.0.0/8: {exc}") from None


def _check_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"must be an email address, got {_shown(value)}")
    return value


def _check_digits(value: str) -> str:
    if not _DIGITS.fullmatch(value):
        raise ValueError(f"must be 1-10 digits, got {_shown(value)}")
    return value


def _check_language(value: str) -> str:
    if not _LANGUAGE.fullmatch(value):
        raise ValueError(f"must be a language code like de or en-GB, got {_shown(value)}")
    return value


def _check_key(value: str) -> str:
    if value not in tuple("0123456789*#"):
        raise ValueError(f"must be one key of 0-9, * or #, got {_shown(value)}")
    return value


Id = Annotated[str, AfterValidator(check_id)]
QueueName = Annotated[str, AfterValidator(_check_queue)]
SafePath = Annotated[str, AfterValidator(_check_path)]
Sound = Annotated[str, AfterValidator(check_sound)]
DialString = Annotated[str, AfterValidator(check_dial)]
ToneString = Annotated[str, AfterValidator(check_sound)]
Word = Annotated[str, AfterValidator(_check_word)]
SpokenText = Annotated[str, AfterValidator(_check_text)]
Name = Annotated[str, AfterValidator(_check_name)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Moment = Annotated[datetime, AfterValidator(check_moment)]
Clock = Annotated[time, BeforeValidator(parse_clock)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]
Region = Annotated[str, AfterValidator(_check_region)]
IPAddress = Annotated[str, AfterValidator(_check_address)]
Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_parse_network)]
Email = Annotated[str, AfterValidator(_check_email)]
Digits = Annotated[str, AfterValidator(_check_digits)]
Language = Annotated[str, AfterValidator(_check_language)]
Key = Annotated[str, AfterValidator(_check_key)]
