"""Phone numbers to E.164, for the configuration and for numbers FreeSWITCH delivers at run time.

The input is hostile at run time (caller ID number), so it is capped in length and checked
against a small character set before ``phonenumbers`` sees it.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

MAX_LENGTH = 40
# Separators people and switches write: spaces, dashes, slashes, dots, brackets (+49 (0)30 ...).
_ALLOWED = re.compile(r"[0-9+\-/(). ]+")
_DIGITS_ONLY = re.compile(r"[1-9][0-9]{6,16}")


def normalise_number(text: str, default_region: str | None) -> str:
    """Return ``text`` as an E.164 number (``+493012345678``) or raise ``ValueError``.

    Accepts ``+49 30 1234567``, ``0049301234567``, national ``030 1234567`` (read with
    ``default_region``, an ISO region such as ``"DE"``) and digits without ``+`` as switches
    deliver them (``49301234567``: tried as international first, then as national).
    Without ``default_region`` (no ``defaults.country``) a national number is an error: it is
    never guessed to be German; ``00`` is then read as the international prefix (ITU E.164).
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a phone number as text, got {type(text).__name__}")
    stripped = text.strip()
    if len(stripped) > MAX_LENGTH:
        raise ValueError(f"too long for a phone number ({len(stripped)} characters, at most "
                         f"{MAX_LENGTH})")
    if not stripped:
        raise ValueError("empty phone number")
    if not _ALLOWED.fullmatch(stripped):
        bad = next(ch for ch in stripped if not _ALLOWED.fullmatch(ch))
        raise ValueError(f"not a phone number: character {bad!r} is not allowed "
                         "(digits, spaces, + - / ( ) . only)")
    if stripped.count("+") > 1 or "+" in stripped[1:]:
        raise ValueError(f"not a phone number: misplaced '+' in {stripped!r}")
    return _normalise(stripped, default_region.upper() if default_region else None)


@lru_cache(maxsize=4096)
def _normalise(text: str, region: str | None) -> str:
    candidates = [text]
    if _DIGITS_ONLY.fullmatch(text):
        # Switches often drop the '+': "4930..." is international, "0..." never is.
        candidates.insert(0, "+" + text)
    if region is None:
        candidates = _international_only(text, candidates)
    for candidate in candidates:
        number = _parse(candidate, region)
        if number is not None and phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if region is None and not text.startswith(("+", "00")):
        raise ValueError(f"national number {text!r} needs defaults.country (e.g. AT) to be "
                         "read; set it, or write the number as +<country code> ...")
    raise ValueError(f"not a valid phone number: {text!r}")


def _international_only(text: str, candidates: list[str]) -> list[str]:
    """The candidates that say their country themselves (+.., 00..)."""
    compact = re.sub(r"[\-/(). ]", "", text)
    if compact.startswith("00"):
        return ["+" + compact[2:]]
    return [c for c in candidates if c.startswith("+")]


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
