"""Is a day a holiday, and which: public holidays from the ``holidays`` library (pure
computation, no I/O) and the company's own closure days.

Names are in English where the library has them (``Christmas Day``), else in the country's
language, so ``simulate`` and ``oncall`` read the same for every country.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays as calendars
from pydantic import TypeAdapter

from fsrouter.config.holidays import DEFAULT_CLOSURE_NAME, Holidays, HolidaysSpec

_PARSE = TypeAdapter(HolidaysSpec)


@lru_cache(maxsize=256)
def _calendar(country: str, subdivision: str | None, year: int) -> calendars.HolidayBase:
    languages = calendars.country_holidays(country).supported_languages or ()
    english = next((lang for lang in ("en_US", "en_GB", "en") if lang in languages), None)
    return calendars.country_holidays(country, subdiv=subdivision, years=year,
                                      language=english)


def holiday_name(spec: Holidays | str, day: date) -> str | None:
    """``Christmas Day (AT-9)`` or ``Heiliger Abend (company closure)`` for a day off;
    None for a working day. A string is read as the configuration reads it (``BY``, ``AT-9``).
    """
    if isinstance(spec, str):
        spec = _PARSE.validate_python(spec)
    for closed in spec.closed:
        if closed.matches(day):
            if closed.name == DEFAULT_CLOSURE_NAME:
                return DEFAULT_CLOSURE_NAME
            return f"{closed.name} ({DEFAULT_CLOSURE_NAME})"
    if spec.country is None:
        return None
    name = _calendar(spec.country, spec.subdivision, day.year).get(day)
    return None if name is None else f"{name} ({spec.label})"


def is_public_holiday(spec: Holidays | str, day: date) -> bool:
    """True if ``day`` is a holiday or closure day of ``spec``."""
    return holiday_name(spec, day) is not None
