"""``holidays:`` of a schedule or of business hours: public holidays of a country (and
subdivision) that the ``holidays`` library knows, plus the company's own closure days.

Written as ``holidays: AT-9`` (country and subdivision), ``holidays: AT`` (the whole country),
``holidays: {country: AT, subdivision: "9", closed: ["12-24", {date: "12-31", name: ...}]}``
or only ``{closed: [...]}``. A bare German state code (``BY``, ``BE``) keeps the meaning it has
always had, ``DE-BY``; Belgium or Belarus are written ``{country: BE}`` / ``{country: BY}``.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from functools import lru_cache
from typing import Annotated, Any

import holidays as calendars
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

GERMAN_STATES = tuple(s for s in calendars.DE.subdivisions if len(s) == 2)
_CODE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,10})?")
_CLOSED_DATE = re.compile(r"(?:(\d{4})-)?(\d{2})-(\d{2})")
DEFAULT_CLOSURE_NAME = "company closure"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


@lru_cache(maxsize=1)
def supported() -> dict[str, tuple[str, ...]]:
    """{country: subdivision codes} as the installed ``holidays`` library knows them."""
    return {country: tuple(subdivs)
            for country, subdivs in calendars.list_supported_countries().items()}


@lru_cache(maxsize=256)
def _aliases(country: str) -> dict[str, str]:
    """Subdivision aliases (``AT``: ``W`` and ``Wien`` for ``9``), upper-cased."""
    aliases = getattr(calendars.country_holidays(country), "subdivisions_aliases", {}) or {}
    return {alias.upper(): code for alias, code in aliases.items()}


def _suggest(text: str, known: list[str]) -> str:
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_country(value: str) -> str:
    upper = value.strip().upper()
    if upper not in supported():
        raise ValueError(f"unknown holiday country {value[:20]!r}: the holidays library knows "
                         f"ISO codes like AT, CH, DE{_suggest(upper, sorted(supported()))}")
    return upper


def check_subdivision(country: str, value: str) -> str:
    codes = supported()[country]
    by_upper = {code.upper(): code for code in codes}
    text = value.strip().upper()
    if text in by_upper:
        return by_upper[text]
    if text in _aliases(country):
        return _aliases(country)[text]
    if not codes:
        raise ValueError(f"{country} has no subdivisions in the holidays library: write "
                         f"holidays: {country}")
    listed = ", ".join(codes) if len(codes) <= 30 else f"{len(codes)} codes"
    raise ValueError(f"{country} has no subdivision {value[:20]!r} (known: {listed})"
                     f"{_suggest(text, sorted(by_upper))}")


class ClosedDay(_Frozen):
    """A day the company is closed: every year (``12-24``) or once (``2026-12-28``)."""

    date: str
    name: Annotated[str, Field(min_length=1, max_length=60)] = DEFAULT_CLOSURE_NAME
    year: int | None = Field(default=None, exclude=True)
    month: int = Field(default=1, exclude=True)
    day: int = Field(default=1, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str | date):
            data = {"date": data}
        if not isinstance(data, dict) or "date" not in data:
            return data
        text = data["date"].isoformat() if isinstance(data["date"], date) else data["date"]
        match = _CLOSED_DATE.fullmatch(str(text).strip())
        if not match:
            raise ValueError(f"a closure day is MM-DD (every year) or YYYY-MM-DD, got "
                             f"{str(text)[:20]!r}")
        year = int(match[1]) if match[1] else None
        month, day = int(match[2]), int(match[3])
        try:
            date(year or 2000, month, day)  # 2000: a leap year, so 02-29 is allowed
        except ValueError:
            raise ValueError(f"not a day of the year: {str(text)[:20]!r}") from None
        return {**data, "date": str(text).strip(), "year": year, "month": month, "day": day}

    def matches(self, day: date) -> bool:
        return (day.month, day.day) == (self.month, self.day) and self.year in (None, day.year)


class Holidays(_Frozen):
    country: str | None = None
    subdivision: str | None = None
    closed: tuple[ClosedDay, ...] = ()

    @model_validator(mode="after")
    def _known(self) -> Holidays:
        if self.country is None:
            if self.subdivision is not None:
                raise ValueError("subdivision needs country")
            if not self.closed:
                raise ValueError("give country (e.g. AT-9 or {country: AT, subdivision: '9'}) "
                                 "or closed days")
            return self
        country, _, sub = self.country.partition("-")
        country = check_country(country)
        if sub and self.subdivision is not None:
            raise ValueError(f"give the subdivision once: {self.country!r} already names one")
        sub = sub or self.subdivision
        object.__setattr__(self, "country", country)
        object.__setattr__(self, "subdivision",
                           check_subdivision(country, sub) if sub else None)
        return self

    @property
    def label(self) -> str:
        """``AT-9``, ``AT`` or ``closure days`` (how simulate and oncall name the source)."""
        if self.country is None:
            return "closure days"
        return f"{self.country}-{self.subdivision}" if self.subdivision else self.country

    def __str__(self) -> str:
        return self.label


def _parse(value: Any) -> Any:
    """``AT-9``, ``AT`` and a bare German state code (``BY``: DE-BY, as it always meant)."""
    if isinstance(value, Holidays) or not isinstance(value, str):
        return value
    text = value.strip()
    if not _CODE.fullmatch(text):
        raise ValueError(f"must be a country code like AT or AT-9 (country-subdivision), or a "
                         f"mapping with country, subdivision and closed, got {text[:20]!r}")
    if text.upper() in GERMAN_STATES:
        return {"country": "DE", "subdivision": text.upper()}
    return {"country": text}


HolidaysSpec = Annotated[Holidays, BeforeValidator(_parse)]
