"""Who is on call for a schedule at a given moment.

Rules (documented for operators in the README):
- A rotation hands over from one user to the next every ``length`` (counted from ``start``) or
  weekly at ``handoff`` (day and time). Hand-overs happen at the same wall-clock time in the
  schedule's time zone, also across daylight-saving changes.
- A rotation with ``restrictions`` covers only those weekly windows (a window whose ``to`` is
  before its ``from`` runs past midnight). With ``holidays`` set, restricted rotations are off on
  its public holidays and closure days (business-hours cover does not apply on a day off).
- Rotations are layers: where several cover the same moment, the one listed last wins.
- Overrides beat every rotation; the override listed last wins. Override times with a UTC offset
  are exact instants; times without one are wall-clock times in the schedule's zone. Run-time
  overrides (database, ``fsrouter oncall override add``) come after the YAML ones: they win.
- A weekly ``handoff`` that falls exactly on ``start`` is not a hand-over: the first user keeps
  the whole first week.

Wall-clock edge cases (a hand-over or override time that does not exist or exists twice): a
change at wall time W happens at the first instant the clock reads W or later. On the spring
change a hand-over at 02:30 happens at 03:00; on the autumn change it happens at the first 02:30
(summer time), and the repeated hour does not hand back. So the shift index never goes backwards.
Moments whose local time cannot be represented (around year 1 or 9999) have nobody on call.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fsrouter.config.holidays import Holidays
from fsrouter.config.schema import DAYS, Override, Rotation, Schedule, Window
from fsrouter.routing.holidays import is_public_holiday

WEEK = timedelta(days=7)


def _local(moment: datetime, zone: str) -> datetime:
    """The wall-clock time at ``moment`` in ``zone``, without tzinfo (for wall-time arithmetic)."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _wall(value: datetime, zone: str) -> datetime:
    """A configured datetime as naive wall-clock time in ``zone`` (naive values are already)."""
    return value if value.tzinfo is None else _local(value, zone)


def _instant_of_local(local: datetime, zone: str) -> datetime:
    """The instant (UTC) of naive wall time ``local``; its ``fold`` picks the repeated hour."""
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _instant(wall: datetime, zone: str) -> datetime:
    """The first instant (UTC) at which the clock in ``zone`` reads ``wall`` or later."""
    tz = ZoneInfo(zone)
    earlier = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    later = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if earlier.astimezone(tz).replace(tzinfo=None) == wall.replace(fold=0):
        return min(earlier, later)  # exists (once, or twice on the autumn change)
    # In the spring gap: the clock jumps over ``wall`` at the transition, between the two.
    return _transition(min(earlier, later), max(earlier, later), tz)


def _transition(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The first whole second in (low, high] that has ``high``'s UTC offset."""
    after = high.astimezone(tz).utcoffset()
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _configured_instant(value: datetime, zone: str) -> datetime:
    """A configured datetime as an instant: exact if it has an offset, else wall time."""
    return value.astimezone(UTC) if value.tzinfo is not None else _instant(value, zone)


def in_window(window: Window, local: datetime) -> bool:
    day = DAYS[local.weekday()]
    now = local.time()
    if window.from_ < window.to:
        return day in window.days and window.from_ <= now < window.to
    # Over midnight: the evening part belongs to the listed day, the morning to the day after.
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (day in window.days and now >= window.from_) or (
        yesterday in window.days and now < window.to
    )


def _covers(rotation: Rotation, local: datetime, days_off: Holidays | None) -> bool:
    if not rotation.restrictions:
        return True
    if days_off is not None and is_public_holiday(days_off, local.date()):
        return False
    return any(in_window(window, local) for window in rotation.restrictions)


def _first_handoff(rotation: Rotation, start: datetime) -> datetime:
    assert rotation.handoff is not None
    days_ahead = (DAYS.index(rotation.handoff.day) - start.weekday()) % 7
    first = datetime.combine(start.date() + timedelta(days=days_ahead), rotation.handoff.time)
    # A hand-over exactly at the start is no hand-over: the first user keeps the first week.
    return first if first > start else first + WEEK


def _handover_walls(rotation: Rotation, base: datetime) -> tuple[datetime, timedelta]:
    """Wall time of hand-over 1 and the wall-clock step between hand-overs."""
    if rotation.length is not None:
        return base + rotation.length, rotation.length
    return _first_handoff(rotation, base), WEEK


def shift_index(rotation: Rotation, local: datetime, zone: str) -> int | None:
    """How many hand-overs have happened by ``local``; None before the rotation starts.

    ``local`` is naive wall time in ``zone``; its ``fold`` (set by ``astimezone``) tells the
    two passes of the repeated autumn hour apart.
    """
    moment = _instant_of_local(local, zone)
    if moment < _configured_instant(rotation.start, zone):
        return None
    first, step = _handover_walls(rotation, _wall(rotation.start, zone).replace(fold=0))
    # Wall-clock arithmetic gives the answer but for the hours around a DST change; the
    # instants of the neighbouring hand-overs settle those.
    count = max(0, int((local.replace(fold=0) - first) // step) + 1)
    while count > 0 and _instant(first + (count - 1) * step, zone) > moment:
        count -= 1
    while _instant(first + count * step, zone) <= moment:
        count += 1
    return count


def rotation_user(rotation: Rotation, local: datetime, zone: str) -> str | None:
    """The user a rotation puts on call at wall-clock ``local`` (ignoring restrictions)."""
    index = shift_index(rotation, local, zone)
    if index is None:
        return None
    return rotation.users[index % len(rotation.users)]


class RuntimeOverride(Override):
    """An override stored at run time (not in the YAML): its row id, schedule and reason."""

    id: int
    schedule: str
    reason: str | None = None


def runtime_override(override_id: int, schedule: str, user: str, start: datetime,
                     end: datetime, reason: str | None = None) -> RuntimeOverride:
    """A run-time override from exact instants (aware datetimes)."""
    return RuntimeOverride.model_validate({"id": override_id, "schedule": schedule,
                                           "user": user, "from": start, "to": end,
                                           "reason": reason})


def with_runtime_overrides(schedules: Mapping[str, Schedule],
                           overrides: Iterable[RuntimeOverride],
                           users: Collection[str]) -> dict[str, Schedule]:
    """``schedules`` with the run-time overrides appended to their own (so they win).

    Overrides of a schedule or a user the configuration no longer has are left out: the
    rotation applies again rather than ringing nobody.
    """
    extra: dict[str, list[RuntimeOverride]] = {}
    for override in overrides:
        if override.schedule in schedules and override.user in users:
            extra.setdefault(override.schedule, []).append(override)
    return {schedule_id: (schedule.model_copy(update={
                "overrides": schedule.overrides + tuple(extra[schedule_id])})
            if schedule_id in extra else schedule)
            for schedule_id, schedule in schedules.items()}


@dataclass(frozen=True)
class Origin:
    """Who is on call and why: ``rotation``, ``yaml override`` or ``run-time override``."""

    user: str | None
    source: str  # also "nobody" for a gap
    override_id: int | None = None
    reason: str | None = None


def _active_override(overrides: tuple[Override, ...], moment: datetime, zone: str
                     ) -> Override | None:
    chosen = None
    for override in overrides:
        start = _configured_instant(override.from_, zone)
        if start <= moment < _configured_instant(override.to, zone):
            chosen = override
    return chosen


def _override_user(overrides: tuple[Override, ...], moment: datetime, zone: str) -> str | None:
    chosen = _active_override(overrides, moment, zone)
    return None if chosen is None else chosen.user


def on_call_origin(schedule: Schedule, moment: datetime) -> Origin:
    """Who :func:`on_call` names at ``moment``, and where that comes from."""
    user = on_call(schedule, moment)
    if user is None:
        return Origin(None, "nobody")
    try:
        override = _active_override(schedule.overrides, moment.astimezone(UTC),
                                    schedule.timezone)
    except OverflowError:
        override = None
    if isinstance(override, RuntimeOverride):
        return Origin(user, "run-time override", override.id, override.reason)
    if override is not None:
        return Origin(user, "yaml override")
    return Origin(user, "rotation")


def on_call(schedule: Schedule, moment: datetime) -> str | None:
    """The user id on call for ``schedule`` at ``moment`` (aware), or None for a gap."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    try:
        return _on_call(schedule, moment)
    except OverflowError:
        return None  # local time out of datetime's range (years 1 and 9999): nobody


def _on_call(schedule: Schedule, moment: datetime) -> str | None:
    zone = schedule.timezone
    local = _local(moment, zone)
    override = _override_user(schedule.overrides, moment.astimezone(UTC), zone)
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


# --- change points: step from change to change (coverage), never minute by minute -----------

# More candidate instants than this in one range means a rotation hands over every few seconds.
MAX_CHANGE_POINTS = 200_000


def _zone_transitions(zone: str, start: datetime, end: datetime) -> set[datetime]:
    """The instants in (start, end] at which ``zone``'s UTC offset changes (DST)."""
    tz = ZoneInfo(zone)
    found: set[datetime] = set()
    low = start
    while low < end:
        high = min(low + timedelta(days=1), end)
        if low.astimezone(tz).utcoffset() != high.astimezone(tz).utcoffset():
            found.add(_transition(low, high, tz))
        low = high
    return found


def _wall_instants(wall: datetime, zone: str) -> set[datetime]:
    """When the clock in ``zone`` reaches ``wall``: both passes of a repeated hour, and the
    jump over a skipped one."""
    repeated = wall.replace(tzinfo=ZoneInfo(zone), fold=1).astimezone(UTC)
    return {_instant(wall.replace(fold=0), zone), repeated}


def window_edges(windows: Sequence[Window], zone: str, start: datetime, end: datetime,
                 midnights: bool = False) -> set[datetime]:
    """Instants in (start, end) at which one of the weekly ``windows`` may open or close in
    ``zone``; with ``midnights`` also every local midnight (holidays start and end there).

    A superset of the real edges (every day's ``from`` and ``to``, DST transitions), so a
    caller evaluates its rule at each instant and keeps those where the answer changes.
    ``24:00`` counts as the next midnight.
    """
    clocks = {clock for window in windows for clock in (window.from_, window.to)}
    if midnights:
        clocks.add(time(0))
    if not clocks:
        return set()
    points = _zone_transitions(zone, start, end)
    day, last = _local(start, zone).date() - timedelta(days=1), _local(end, zone).date()
    while day <= last:
        for clock in clocks:
            wall = (datetime.combine(day + timedelta(days=1), time(0)) if clock == time.max
                    else datetime.combine(day, clock))
            points |= _wall_instants(wall, zone)
        day += timedelta(days=1)
    return {point for point in points if start < point < end}


def _handover_instants(rotation: Rotation, zone: str, start: datetime, end: datetime
                       ) -> set[datetime]:
    """The rotation's start and its hand-overs in [start, end) (the instants ``shift_index``
    counts)."""
    points = {_configured_instant(rotation.start, zone)}
    first, step = _handover_walls(rotation, _wall(rotation.start, zone).replace(fold=0))
    if (end - start) / step > MAX_CHANGE_POINTS:
        raise ValueError(f"a rotation handing over every {step} has too many changes to list")
    index = max(0, int((_local(start, zone) - first) // step) - 1)
    while (instant := _instant(first + index * step, zone)) < end:
        points.add(instant)
        index += 1
    return points


def change_points(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Sorted instants in (start, end) at which ``on_call(schedule, ...)`` may change.

    Exact, with no step size: rotation starts and hand-overs, override bounds, restriction
    window edges, local midnights (holidays) and DST transitions. It is a superset of the
    real changes: evaluate ``on_call`` at each point and keep those where the answer differs.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    zone = schedule.timezone
    points: set[datetime] = set()
    for override in schedule.overrides:
        points.add(_configured_instant(override.from_, zone))
        points.add(_configured_instant(override.to, zone))
    for rotation in schedule.rotations:
        points |= _handover_instants(rotation, zone, start, end)
    windows = [window for rotation in schedule.rotations for window in rotation.restrictions]
    points |= window_edges(windows, zone, start, end, midnights=schedule.holidays is not None)
    return sorted(point for point in points if start < point < end)
