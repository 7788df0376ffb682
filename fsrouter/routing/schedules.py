"""Who is on call for a schedule at a given moment.

Rules (documented for operators in the README):
- A rotation hands over from one user to the next every ``length`` (counted from ``start``) or
  weekly at ``handoff`` (day and time). Hand-overs happen at the same wall-clock time in the
  schedule's time zone, also across daylight-saving changes.
- A rotation with ``restrictions`` covers only those weekly windows (a window whose ``to`` is
  before its ``from`` runs past midnight). With ``holidays`` set, restricted rotations are off on
  the state's public holidays (business-hours cover does not apply on a holiday).
- Rotations are layers: where several cover the same moment, the one listed last wins.
- Overrides beat every rotation; the override listed last wins.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

from fsrouter.config.schema import DAYS, Override, Rotation, Schedule, Window

WEEK = timedelta(days=7)


def _local(moment: datetime, zone: str) -> datetime:
    """The wall-clock time at ``moment`` in ``zone``, without tzinfo (for wall-time arithmetic)."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _wall(value: datetime, zone: str) -> datetime:
    """A configured datetime as naive wall-clock time in ``zone`` (naive values are already)."""
    return value if value.tzinfo is None else _local(value, zone)


def _in_window(window: Window, local: datetime) -> bool:
    day = DAYS[local.weekday()]
    now = local.time()
    if window.from_ < window.to:
        return day in window.days and window.from_ <= now < window.to
    # Over midnight: the evening part belongs to the listed day, the morning to the day after.
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (day in window.days and now >= window.from_) or (
        yesterday in window.days and now < window.to
    )


@lru_cache(maxsize=64)
def _holiday_calendar(state: str, year: int) -> holiday_calendars.HolidayBase:
    return holiday_calendars.country_holidays("DE", subdiv=state, years=year)


def is_public_holiday(state: str, day: date) -> bool:
    """True if ``day`` is a public holiday in the German ``state`` (e.g. ``BY``)."""
    return day in _holiday_calendar(state, day.year)


def _covers(rotation: Rotation, local: datetime, holiday_state: str | None) -> bool:
    if not rotation.restrictions:
        return True
    if holiday_state and is_public_holiday(holiday_state, local.date()):
        return False
    return any(_in_window(window, local) for window in rotation.restrictions)


def _first_handoff(rotation: Rotation, start: datetime) -> datetime:
    assert rotation.handoff is not None
    days_ahead = (DAYS.index(rotation.handoff.day) - start.weekday()) % 7
    first = datetime.combine(start.date() + timedelta(days=days_ahead), rotation.handoff.time)
    return first if first >= start else first + WEEK


def shift_index(rotation: Rotation, local: datetime, zone: str) -> int | None:
    """How many hand-overs have happened by ``local``; None before the rotation starts."""
    start = _wall(rotation.start, zone)
    if local < start:
        return None
    if rotation.length is not None:
        return int((local - start) // rotation.length)
    first = _first_handoff(rotation, start)
    return 0 if local < first else 1 + int((local - first) // WEEK)


def rotation_user(rotation: Rotation, local: datetime, zone: str) -> str | None:
    """The user a rotation puts on call at wall-clock ``local`` (ignoring restrictions)."""
    index = shift_index(rotation, local, zone)
    if index is None:
        return None
    return rotation.users[index % len(rotation.users)]


def _override_user(overrides: tuple[Override, ...], local: datetime, zone: str) -> str | None:
    chosen = None
    for override in overrides:
        if _wall(override.from_, zone) <= local < _wall(override.to, zone):
            chosen = override.user
    return chosen


def on_call(schedule: Schedule, moment: datetime) -> str | None:
    """The user id on call for ``schedule`` at ``moment`` (aware), or None for a gap."""
    zone = schedule.timezone
    local = _local(moment, zone)
    override = _override_user(schedule.overrides, local, zone)
    if override is not None:
        return override
    chosen = None
    for rotation in schedule.rotations:
        if _covers(rotation, local, schedule.holidays):
            chosen = rotation_user(rotation, local, zone) or chosen
    return chosen


def next_change(schedule: Schedule, moment: datetime, horizon: timedelta,
                step: timedelta = timedelta(minutes=15)) -> datetime | None:
    """The first moment after ``moment`` (within ``horizon``) at which the on-call user changes.

    Scans in ``step`` increments: windows, hand-overs and overrides are configured in whole
    quarter hours in practice; finer changes are found to the step's precision.
    """
    current = on_call(schedule, moment)
    probe = moment + step
    end = moment + horizon
    while probe <= end:
        if on_call(schedule, probe) != current:
            return probe
        probe += step
    return None


def midnight(day: date, zone: str) -> datetime:
    """The aware start of ``day`` in ``zone``."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))
