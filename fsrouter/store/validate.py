"""Checks on what the store is given (numbers, words, texts), shared by its modules."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fsrouter.store.errors import StoreInputError

MAX_CALLER_TEXT = 128
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,39}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_caller_text(value: str | None) -> str | None:
    """Make caller-controlled text safe to store; never raises."""
    if value is None:
        return None
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("\ufffd", text)[:MAX_CALLER_TEXT]


def _e164(value: str, what: str) -> str:
    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise StoreInputError(f"{what} must be an E.164 number like +4930123456, got {value!r}")
    return value


def _one_of(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise StoreInputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _word(value: str, what: str) -> str:
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise StoreInputError(f"{what} must be a short snake_case word, got {value!r}")
    return value


def _text(value: str, what: str, limit: int = 128, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise StoreInputError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > limit or _CONTROL.search(value):
        raise StoreInputError(f"{what} must be at most {limit} printable characters")
    return value


def _optional_text(value: str | None, what: str, limit: int = 64) -> str | None:
    return None if value is None else _text(value, what, limit)
