"""Who is on call: rotations, DST, restrictions, holidays, layers, overrides, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fsrouter.config.schema import Rotation, Schedule
from fsrouter.routing.schedules import (
    is_public_holiday,
    midnight,
    next_change,
    on_call,
    rotation_user,
    shift_index,
)
from tests.hypothesis_profiles import examples

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def schedule(**data: Any) -> Schedule:
    return Schedule.model_validate(data)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def rotation(**data: Any) -> dict[str, Any]:
    return {"users": ["anna", "bernd", "carla"], "start": "2026-01-05 09:00", **data}


# --- rotations by length ----------------------------------------------------------------


def test_weekly_length_rotation_hands_over_every_week() -> None:
    plan = schedule(rotations=[rotation(length="1w")])
    assert on_call(plan, berlin(2026, 1, 5, 9, 0)) == "anna"
    assert on_call(plan, berlin(2026, 1, 12, 8, 59)) == "anna"
    assert on_call(plan, berlin(2026, 1, 12, 9, 0)) == "bernd"
    assert on_call(plan, berlin(2026, 1, 19, 9, 0)) == "carla"
    assert on_call(plan, berlin(2026, 1, 26, 9, 0)) == "anna"


def test_before_rotation_start_nobody_is_on_call() -> None:
    plan = schedule(rotations=[rotation(length="1d")])
    assert on_call(plan, berlin(2026, 1, 5, 8, 59)) is None
    assert on_call(plan, berlin(2025, 6, 1, 12, 0)) is None
    assert shift_index(plan.rotations[0], datetime(2026, 1, 5, 8), "Europe/Berlin") is None


def test_twelve_hour_shifts() -> None:
    plan = schedule(rotations=[rotation(users=["day", "night"], start="2026-01-05 08:00",
                                        length="12h")])
    assert on_call(plan, berlin(2026, 1, 5, 19, 59)) == "day"
    assert on_call(plan, berlin(2026, 1, 5, 20, 0)) == "night"
    assert on_call(plan, berlin(2026, 1, 6, 7, 59)) == "night"
    assert on_call(plan, berlin(2026, 1, 6, 8, 0)) == "day"


def test_daily_hand_over_keeps_wall_clock_time_across_spring_change() -> None:
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST.
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-03-28 09:00",
                                        length="1d")])
    assert on_call(plan, utc(2026, 3, 29, 6, 59)) == "anna"  # 08:59 CEST
    assert on_call(plan, utc(2026, 3, 29, 7, 0)) == "bernd"  # 09:00 CEST
    assert on_call(plan, berlin(2026, 3, 30, 9, 0)) == "anna"


def test_daily_hand_over_keeps_wall_clock_time_across_autumn_change() -> None:
    # 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET.
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-10-24 09:00",
                                        length="1d")])
    assert on_call(plan, utc(2026, 10, 25, 7, 59)) == "anna"  # 08:59 CET
    assert on_call(plan, utc(2026, 10, 25, 8, 0)) == "bernd"  # 09:00 CET
    assert on_call(plan, utc(2026, 10, 25, 7, 0)) == "anna"  # where 09:00 CEST would be


def test_weekly_length_over_both_changes_stays_at_monday_nine() -> None:
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-01-05 09:00",
                                        length="1w")])
    # Monday 2026-03-30 is the first Monday of summer time: 09:00 CEST is 07:00 UTC.
    before = on_call(plan, utc(2026, 3, 30, 6, 59))
    assert on_call(plan, utc(2026, 3, 30, 7, 0)) != before
    # Monday 2026-10-26 is the first Monday of winter time: 09:00 CET is 08:00 UTC.
    before = on_call(plan, utc(2026, 10, 26, 7, 59))
    assert on_call(plan, utc(2026, 10, 26, 8, 0)) != before


def test_hand_over_in_spring_gap_happens_when_clock_jumps() -> None:
    # 02:30 does not exist on 2026-03-29; the hand-over happens at 03:00 CEST (01:00 UTC).
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-03-28 02:30",
                                        length="1d")])
    assert on_call(plan, utc(2026, 3, 29, 0, 59)) == "anna"
    assert on_call(plan, utc(2026, 3, 29, 1, 0)) == "bernd"
    assert on_call(plan, berlin(2026, 3, 30, 2, 30)) == "anna"


def test_hand_over_in_repeated_hour_happens_once_and_never_hands_back() -> None:
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-10-24 02:30",
                                        length="1d")])
    assert on_call(plan, utc(2026, 10, 25, 0, 29)) == "anna"  # 02:29 CEST
    assert on_call(plan, utc(2026, 10, 25, 0, 30)) == "bernd"  # 02:30 CEST
    # 02:00-02:30 CET repeats the wall-clock times before the hand-over: still bernd.
    for minute in range(0, 60, 5):
        assert on_call(plan, utc(2026, 10, 25, 1, minute)) == "bernd"


def test_aware_rotation_start_is_an_exact_instant() -> None:
    plan = schedule(rotations=[rotation(users=["anna"], start="2026-01-05T08:00:00+00:00",
                                        length="1w")])
    assert on_call(plan, berlin(2026, 1, 5, 8, 59)) is None
    assert on_call(plan, berlin(2026, 1, 5, 9, 0)) == "anna"


# --- rotations by weekly hand-over -------------------------------------------------------


def test_handoff_on_start_keeps_first_user_for_the_first_week() -> None:
    plan = schedule(rotations=[rotation(handoff={"day": "mon", "time": "09:00"})])
    assert on_call(plan, berlin(2026, 1, 5, 9, 0)) == "anna"
    assert on_call(plan, berlin(2026, 1, 12, 8, 59)) == "anna"
    assert on_call(plan, berlin(2026, 1, 12, 9, 0)) == "bernd"
    assert on_call(plan, berlin(2026, 1, 19, 9, 0)) == "carla"


def test_handoff_mid_week_start_gives_first_user_a_short_week() -> None:
    plan = schedule(rotations=[rotation(start="2026-01-07 12:00",
                                        handoff={"day": "fri", "time": "16:30"})])
    assert on_call(plan, berlin(2026, 1, 7, 11, 59)) is None
    assert on_call(plan, berlin(2026, 1, 9, 16, 29)) == "anna"
    assert on_call(plan, berlin(2026, 1, 9, 16, 30)) == "bernd"
    assert on_call(plan, berlin(2026, 1, 16, 16, 30)) == "carla"
    index = shift_index(plan.rotations[0], datetime(2026, 1, 16, 16, 30), "Europe/Berlin")
    assert index == 2


def test_handoff_same_day_later_time_is_a_hand_over() -> None:
    plan = schedule(rotations=[rotation(start="2026-01-05 06:00",
                                        handoff={"day": "mon", "time": "09:00"})])
    assert on_call(plan, berlin(2026, 1, 5, 8, 59)) == "anna"
    assert on_call(plan, berlin(2026, 1, 5, 9, 0)) == "bernd"


def test_weekly_handoff_across_dst_changes() -> None:
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-03-02 08:00",
                                        handoff={"day": "mon", "time": "08:00"})])
    # 2026-03-30 08:00 CEST = 06:00 UTC; 2026-11-02 08:00 CET = 07:00 UTC.
    assert on_call(plan, utc(2026, 3, 30, 5, 59)) != on_call(plan, utc(2026, 3, 30, 6, 0))
    assert on_call(plan, utc(2026, 11, 2, 6, 59)) != on_call(plan, utc(2026, 11, 2, 7, 0))
    assert on_call(plan, utc(2026, 3, 30, 6, 0)) == on_call(plan, utc(2026, 4, 6, 5, 59))


def test_weekly_handoff_in_autumn_repeated_hour_does_not_hand_back() -> None:
    plan = schedule(rotations=[rotation(users=["anna", "bernd"], start="2026-10-19 00:00",
                                        handoff={"day": "sun", "time": "02:15"})])
    assert on_call(plan, utc(2026, 10, 25, 0, 14)) == "anna"
    assert on_call(plan, utc(2026, 10, 25, 0, 15)) == "bernd"
    assert on_call(plan, utc(2026, 10, 25, 1, 0)) == "bernd"  # 02:00 CET, before 02:15 again
    assert on_call(plan, utc(2026, 10, 25, 1, 15)) == "bernd"


def test_rotation_user_ignores_restrictions() -> None:
    rot = Rotation.model_validate(rotation(length="1w", restrictions=[
        {"days": "mon-fri", "from": "08:00", "to": "18:00"}]))
    assert rotation_user(rot, datetime(2026, 1, 10, 23, 0), "Europe/Berlin") == "anna"


# --- restrictions and holidays -----------------------------------------------------------


BUSINESS = {"days": "mon-fri", "from": "08:00", "to": "18:00"}


def test_business_hours_restriction() -> None:
    plan = schedule(rotations=[rotation(length="1w", restrictions=[BUSINESS])])
    assert on_call(plan, berlin(2026, 1, 9, 7, 59)) is None  # Friday
    assert on_call(plan, berlin(2026, 1, 9, 8, 0)) == "anna"
    assert on_call(plan, berlin(2026, 1, 9, 17, 59)) == "anna"
    assert on_call(plan, berlin(2026, 1, 9, 18, 0)) is None
    assert on_call(plan, berlin(2026, 1, 10, 12, 0)) is None  # Saturday


def test_window_over_midnight_belongs_to_the_listed_day() -> None:
    night = {"days": ["fri"], "from": "22:00", "to": "06:00"}
    plan = schedule(rotations=[rotation(length="1w", restrictions=[night])])
    assert on_call(plan, berlin(2026, 1, 9, 21, 59)) is None  # Friday
    assert on_call(plan, berlin(2026, 1, 9, 22, 0)) == "anna"
    assert on_call(plan, berlin(2026, 1, 10, 5, 59)) == "anna"  # Saturday morning
    assert on_call(plan, berlin(2026, 1, 10, 6, 0)) is None
    assert on_call(plan, berlin(2026, 1, 10, 23, 0)) is None  # Saturday night: not listed
    assert on_call(plan, berlin(2026, 1, 9, 5, 0)) is None  # Friday morning: Thursday's night


def test_window_until_24_00_covers_the_last_minute() -> None:
    late = {"days": ["mon"], "from": "20:00", "to": "24:00"}
    plan = schedule(rotations=[rotation(length="1w", restrictions=[late])])
    assert on_call(plan, berlin(2026, 1, 5, 23, 59, 59)) == "anna"
    assert on_call(plan, berlin(2026, 1, 6, 0, 0)) is None


def test_several_windows_and_weekday_lists() -> None:
    windows = [{"days": ["mon", "wed"], "from": "09:00", "to": "12:00"},
               {"days": "sat-sun", "from": "10:00", "to": "14:00"}]
    plan = schedule(rotations=[rotation(length="1w", restrictions=windows)])
    assert on_call(plan, berlin(2026, 1, 5, 10, 0)) == "anna"  # Monday
    assert on_call(plan, berlin(2026, 1, 6, 10, 0)) is None  # Tuesday
    assert on_call(plan, berlin(2026, 1, 7, 11, 59)) == "anna"  # Wednesday
    assert on_call(plan, berlin(2026, 1, 11, 13, 0)) == "anna"  # Sunday
    assert on_call(plan, berlin(2026, 1, 11, 9, 0)) is None


def test_public_holidays_per_state() -> None:
    assert is_public_holiday("BY", date(2026, 1, 6))  # Heilige Drei Könige
    assert not is_public_holiday("BE", date(2026, 1, 6))
    assert is_public_holiday("BE", date(2027, 3, 8))  # Internationaler Frauentag
    assert not is_public_holiday("BY", date(2027, 3, 8))
    assert is_public_holiday("BE", date(2026, 12, 25))
    assert not is_public_holiday("BE", date(2026, 12, 23))


def test_business_hours_are_off_on_the_states_holidays() -> None:
    base = [{"users": ["night"], "start": "2026-01-01 00:00", "length": "1w"},
            rotation(length="1w", restrictions=[BUSINESS])]
    moment = berlin(2026, 1, 6, 10, 0)  # Tuesday, Heilige Drei Könige
    assert on_call(schedule(rotations=base, holidays="BY"), moment) == "night"
    assert on_call(schedule(rotations=base, holidays="by"), moment) == "night"
    assert on_call(schedule(rotations=base, holidays="BE"), moment) == "anna"
    assert on_call(schedule(rotations=base), moment) == "anna"
    assert on_call(schedule(rotations=base, holidays="BY"), berlin(2026, 1, 7, 10)) == "anna"


def test_holidays_do_not_touch_unrestricted_rotations() -> None:
    plan = schedule(rotations=[rotation(length="1w")], holidays="BY")
    assert on_call(plan, berlin(2026, 1, 6, 10, 0)) == "anna"


# --- layers, overrides, gaps -------------------------------------------------------------


def test_last_listed_rotation_wins_where_layers_overlap() -> None:
    base = {"users": ["base"], "start": "2026-01-01 00:00", "length": "1w"}
    day = rotation(users=["day"], length="1w", restrictions=[BUSINESS])
    assert on_call(schedule(rotations=[base, day]), berlin(2026, 1, 7, 10)) == "day"
    assert on_call(schedule(rotations=[base, day]), berlin(2026, 1, 7, 20)) == "base"
    # Listed the other way round the unrestricted layer hides the day layer.
    assert on_call(schedule(rotations=[day, base]), berlin(2026, 1, 7, 10)) == "base"


def test_layer_not_started_yet_leaves_the_earlier_layer() -> None:
    base = {"users": ["base"], "start": "2026-01-01 00:00", "length": "1w"}
    later = {"users": ["later"], "start": "2026-02-01 00:00", "length": "1w"}
    plan = schedule(rotations=[base, later])
    assert on_call(plan, berlin(2026, 1, 20)) == "base"
    assert on_call(plan, berlin(2026, 2, 1)) == "later"


def test_overrides_beat_rotations_and_last_override_wins() -> None:
    plan = schedule(
        rotations=[rotation(length="1w")],
        overrides=[{"user": "olga", "from": "2026-01-06 08:00", "to": "2026-01-08 08:00"},
                   {"user": "paul", "from": "2026-01-07 12:00", "to": "2026-01-07 14:00"}])
    assert on_call(plan, berlin(2026, 1, 6, 7, 59)) == "anna"
    assert on_call(plan, berlin(2026, 1, 6, 8, 0)) == "olga"
    assert on_call(plan, berlin(2026, 1, 7, 12, 30)) == "paul"
    assert on_call(plan, berlin(2026, 1, 7, 14, 0)) == "olga"
    assert on_call(plan, berlin(2026, 1, 8, 8, 0)) == "anna"  # `to` is exclusive


def test_override_fills_a_gap_and_ends_in_a_gap() -> None:
    plan = schedule(overrides=[{"user": "olga", "from": "2026-01-06 08:00",
                                "to": "2026-01-06 09:00"}])
    assert on_call(plan, berlin(2026, 1, 6, 8, 30)) == "olga"
    assert on_call(plan, berlin(2026, 1, 6, 9, 0)) is None


def test_aware_override_is_an_exact_instant() -> None:
    plan = schedule(rotations=[rotation(length="1w")],
                    overrides=[{"user": "olga", "from": "2026-01-06T08:00:00Z",
                                "to": "2026-01-06T09:00:00+00:00"}])
    assert on_call(plan, berlin(2026, 1, 6, 8, 59)) == "anna"  # 07:59 UTC
    assert on_call(plan, berlin(2026, 1, 6, 9, 0)) == "olga"
    assert on_call(plan, utc(2026, 1, 6, 9, 0)) == "anna"


def test_aware_override_inside_the_repeated_autumn_hour() -> None:
    # From the first 02:30 (CEST) to the second 02:30 (CET): exactly one hour.
    plan = schedule(rotations=[rotation(length="1w")],
                    overrides=[{"user": "olga", "from": "2026-10-25T02:30:00+02:00",
                                "to": "2026-10-25T02:30:00+01:00"}])
    assert on_call(plan, utc(2026, 10, 25, 0, 29)) != "olga"
    assert on_call(plan, utc(2026, 10, 25, 0, 30)) == "olga"
    assert on_call(plan, utc(2026, 10, 25, 1, 29)) == "olga"
    assert on_call(plan, utc(2026, 10, 25, 1, 30)) != "olga"


def test_schedule_without_rotations_is_a_gap() -> None:
    assert on_call(schedule(), berlin(2026, 1, 6, 12)) is None


def test_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        on_call(schedule(rotations=[rotation(length="1w")]), datetime(2026, 1, 6, 12))


@pytest.mark.parametrize("moment", [datetime.max.replace(tzinfo=UTC),
                                    datetime.min.replace(tzinfo=UTC)])
def test_moments_at_the_end_of_time_have_nobody(moment: datetime) -> None:
    plan = schedule(rotations=[rotation(length="1d")], holidays="BY",
                    overrides=[{"user": "olga", "from": "2026-01-06 08:00",
                                "to": "2026-01-06 09:00"}])
    assert on_call(plan, moment) in (None, "anna", "bernd", "carla")


# --- time zones --------------------------------------------------------------------------


def test_new_york_schedule_at_the_same_utc_instant() -> None:
    new_york = schedule(timezone="America/New_York",
                        rotations=[rotation(users=["ny1", "ny2"], start="2026-01-05 09:00",
                                            length="1d")])
    berlin_plan = schedule(rotations=[rotation(users=["b1", "b2"], start="2026-01-05 09:00",
                                               length="1d")])
    moment = utc(2026, 1, 5, 13, 59)  # 08:59 EST, 14:59 CET
    assert on_call(new_york, moment) is None
    assert on_call(berlin_plan, moment) == "b1"
    assert on_call(new_york, utc(2026, 1, 5, 14, 0)) == "ny1"
    assert on_call(new_york, datetime(2026, 1, 6, 9, 0, tzinfo=NEW_YORK)) == "ny2"


def test_new_york_dst_starts_three_weeks_before_berlin() -> None:
    plan = schedule(timezone="America/New_York",
                    rotations=[rotation(users=["ny1", "ny2"], start="2026-03-01 09:00",
                                        length="1d", restrictions=[
                                            {"days": "mon-fri", "from": "09:00", "to": "17:00"}])])
    # 2026-03-09 (Monday) is summer time in New York, winter time in Berlin: 09:00 EDT = 13:00 UTC.
    assert on_call(plan, utc(2026, 3, 9, 12, 59)) is None
    assert on_call(plan, utc(2026, 3, 9, 13, 0)) is not None
    assert on_call(plan, berlin(2026, 3, 9, 14, 0)) is not None  # 09:00 EDT


# --- next_change and midnight ------------------------------------------------------------


def test_next_change_finds_the_hand_over() -> None:
    plan = schedule(rotations=[rotation(length="1d")])
    change = next_change(plan, berlin(2026, 1, 6, 0, 0), timedelta(days=2))
    assert change == berlin(2026, 1, 6, 9, 0)
    assert next_change(schedule(), berlin(2026, 1, 6), timedelta(days=1)) is None


def test_midnight_is_aware_local_start_of_day() -> None:
    assert midnight(date(2026, 3, 29), "Europe/Berlin") == utc(2026, 3, 28, 23, 0)


# --- properties --------------------------------------------------------------------------

ZONES = ["Europe/Berlin", "Europe/Berlin", "America/New_York", "UTC",
         "Australia/Lord_Howe", "Asia/Kolkata"]
LENGTHS = ["15m", "30m", "1h", "90m", "8h", "12h", "1d", "2d", "1w", "2w"]
HANDOFF_TIMES = ["00:00", "01:59", "02:00", "02:15", "02:30", "03:00", "09:00", "23:45"]

any_moment = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2030, 12, 31),
                          timezones=st.just(UTC))
# DST changes (UTC) of the zones above, where wall-clock arithmetic goes wrong.
DST_CHANGES = [utc(2025, 3, 30, 1), utc(2025, 10, 26, 1), utc(2026, 3, 29, 1),
               utc(2026, 10, 25, 1), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),
               utc(2026, 4, 4, 15), utc(2026, 10, 3, 15)]  # Lord Howe: 30-minute change
near_dst = st.builds(lambda change, seconds: change + timedelta(seconds=seconds),
                     st.sampled_from(DST_CHANGES), st.integers(-3 * 3600, 3 * 3600))
moments = st.one_of(any_moment, near_dst)


@st.composite
def rotations(draw: st.DrawFn) -> Rotation:
    start = draw(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1)))
    start = start.replace(second=0, microsecond=0)
    if draw(st.booleans()):  # on a quarter hour, like real hand-overs
        start = start.replace(minute=start.minute // 15 * 15)
    data: dict[str, Any] = {"users": ["u1", "u2", "u3"], "start": start.isoformat()}
    if draw(st.booleans()):
        data["length"] = draw(st.sampled_from(LENGTHS))
    else:
        data["handoff"] = {"day": draw(st.sampled_from(["mon", "sun", "sat"])),
                           "time": draw(st.sampled_from(HANDOFF_TIMES))}
    if draw(st.booleans()):
        data["restrictions"] = [BUSINESS, {"days": "sat-sun", "from": "22:00", "to": "02:30"}]
    return Rotation.model_validate(data)


@settings(max_examples=examples(400), deadline=None)
@given(rot=rotations(), zone=st.sampled_from(ZONES), first=moments,
       gap=st.one_of(st.integers(1, 7200), st.integers(1, 10**8)))
def test_shift_index_never_goes_backwards(rot: Rotation, zone: str, first: datetime,
                                          gap: int) -> None:
    early, late = first, first + timedelta(seconds=gap)
    tz = ZoneInfo(zone)
    a = shift_index(rot, early.astimezone(tz).replace(tzinfo=None), zone)
    b = shift_index(rot, late.astimezone(tz).replace(tzinfo=None), zone)
    if a is not None:
        assert b is not None and b >= a


@settings(max_examples=examples(200), deadline=None)
@given(rot=rotations(), zone=st.sampled_from(ZONES), moment=moments)
@example(rot=Rotation.model_validate({"users": ["u1"], "start": "2026-10-24 00:00",
                                      "length": "30m"}),
         zone="Europe/Berlin", moment=utc(2026, 10, 25, 0, 59))  # 02:59 CEST -> 02:00 CET
def test_shift_index_steps_by_one_per_minute_outside_jumps(rot: Rotation, zone: str,
                                                     moment: datetime) -> None:
    tz = ZoneInfo(zone)
    a = shift_index(rot, moment.astimezone(tz).replace(tzinfo=None), zone)
    later = moment + timedelta(minutes=1)
    b = shift_index(rot, later.astimezone(tz).replace(tzinfo=None), zone)
    if a is not None and b is not None:
        assert b >= a
        # Where the clock jumps forward, the skipped wall-clock hand-overs happen at once.
        if moment.astimezone(tz).utcoffset() == later.astimezone(tz).utcoffset():
            assert b - a <= 1


@settings(max_examples=examples(200), deadline=None)
@given(start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1)),
       length=st.sampled_from(LENGTHS), moment=moments)
def test_length_rotation_in_utc_is_plain_division(start: datetime, length: str,
                                                  moment: datetime) -> None:
    rot = Rotation.model_validate({"users": ["u"], "start": start.isoformat(), "length": length})
    index = shift_index(rot, moment.replace(tzinfo=None), "UTC")
    expected = None if moment.replace(tzinfo=None) < start else \
        (moment.replace(tzinfo=None) - start) // rot.length  # type: ignore[operator]
    assert index == expected


@settings(max_examples=examples(300), deadline=None)
@given(rots=st.lists(rotations(), max_size=3), zone=st.sampled_from(ZONES),
       state=st.sampled_from([None, "BY", "BE", "NW"]),
       moment=st.datetimes(timezones=st.sampled_from([UTC, BERLIN, NEW_YORK])))
def test_on_call_is_one_user_or_nobody_and_never_raises(
        rots: list[Rotation], zone: str, state: str | None, moment: datetime) -> None:
    plan = Schedule(timezone=zone, rotations=tuple(rots), holidays=state)
    assert on_call(plan, moment) in (None, "u1", "u2", "u3")


def test_thirty_minute_shifts_never_go_back_in_the_repeated_hour() -> None:
    rot = Rotation.model_validate({"users": ["u1", "u2"], "start": "2026-10-24 00:00",
                                   "length": "30m"})
    indexes = []
    for minute in range(0, 240, 5):  # 00:00-04:00 UTC on the autumn change
        moment = utc(2026, 10, 24, 23, 0) + timedelta(minutes=minute)
        indexes.append(shift_index(rot, moment.astimezone(BERLIN).replace(tzinfo=None),
                                   "Europe/Berlin"))
    assert indexes == sorted(indexes)
    # Wall-clock hand-overs at 01:30, 02:00, 02:30, 03:00 and 03:30 each happen once.
    assert indexes[-1] - indexes[0] == 5
