"""On-call coverage per hotline option: exact change points, DST weeks, gaps, business hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsrouter.config import load_config
from fsrouter.config.schema import Config, Rotation, Schedule
from fsrouter.routing.coverage import OptionCoverage, coverage, option_state
from fsrouter.routing.schedules import change_points, on_call
from tests.hypothesis_profiles import examples

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def phone(n: int) -> list[dict[str, str]]:
    return [{"type": "mobile", "number": f"+49151000000{n:02d}"}]


USERS = {name: {"name": name.title(), "phones": phone(i)}
         for i, name in enumerate(["anna", "bernd", "carla", "dirk"], start=1)}


def config(schedules: dict[str, Any], option: dict[str, Any] | None = None,
           policies: dict[str, Any] | None = None, users: dict[str, Any] | None = None
           ) -> Config:
    """A hotline with one option whose policy rings the schedule ``team``."""
    data = {
        "switch": {"password_env": "FSROUTER_TEST_PW"},
        "users": users or USERS,
        "schedules": schedules,
        "policies": policies or {"team": {"levels": [{"targets": [{"schedule": "team"}]}]}},
        "numbers": [{"number": "+493012345000", "type": "call_routing",
                     "options": [{"digit": 1, "label": "Support", "policy": "team",
                                  **(option or {})}]}],
    }
    return Config.model_validate(data, context={"region": "DE"})


def only(result: list[OptionCoverage]) -> OptionCoverage:
    assert len(result) == 1
    return result[0]


def timeline(cov: OptionCoverage) -> list[tuple[datetime, datetime, tuple[str, ...], bool]]:
    return [(s.start, s.end, s.state.first_level, s.state.gap) for s in cov.segments]


# --- DST weeks -------------------------------------------------------------------------------


def test_daily_hand_over_in_the_spring_dst_week_stays_at_nine_local():
    # 2026-03-29: Berlin goes from CET (+01) to CEST (+02) at 02:00.
    cfg = config({"team": {"rotations": [
        {"users": ["anna", "bernd"], "start": "2026-03-23 09:00", "length": "1d"}]}})
    cov = only(coverage(cfg, berlin(2026, 3, 27, 0, 0), berlin(2026, 3, 31, 0, 0)))
    assert timeline(cov) == [
        (utc(2026, 3, 26, 23), utc(2026, 3, 27, 8), ("bernd",), False),  # since Thu 09:00
        (utc(2026, 3, 27, 8), utc(2026, 3, 28, 8), ("anna",), False),    # Fri 09:00 +01
        (utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), ("bernd",), False),   # Sat 09:00 +01
        (utc(2026, 3, 29, 7), utc(2026, 3, 30, 7), ("anna",), False),    # Sun 09:00 +02
        (utc(2026, 3, 30, 7), utc(2026, 3, 30, 22), ("bernd",), False),  # Mon 09:00 +02
    ]
    assert cov.gaps == ()


def test_hand_over_inside_the_skipped_and_the_repeated_hour():
    # Daily at 02:30: on 2026-03-29 there is no 02:30 (it happens at 03:00 CEST); on
    # 2026-10-25 02:30 comes twice and only the first one hands over.
    cfg = config({"team": {"rotations": [
        {"users": ["anna", "bernd"], "start": "2026-03-01 02:30", "length": "1d"}]}})
    spring = only(coverage(cfg, berlin(2026, 3, 28, 12), berlin(2026, 3, 30, 12)))
    assert [s.start for s in spring.segments[1:]] == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]
    autumn = only(coverage(cfg, berlin(2026, 10, 24, 12), berlin(2026, 10, 26, 12)))
    # 02:30 CEST = 00:30 UTC on the 25th; the second 02:30 (01:30 UTC) changes nothing.
    assert [s.start for s in autumn.segments[1:]] == [utc(2026, 10, 25, 0, 30),
                                                      utc(2026, 10, 26, 1, 30)]


def test_business_hours_window_across_the_autumn_change_matches_on_call():
    cfg = config({"team": {"rotations": [
        {"users": ["anna"], "start": "2026-01-01 00:00", "length": "1w",
         "restrictions": [{"days": "sat-sun", "from": "01:00", "to": "02:45"}]}]}})
    start, end = berlin(2026, 10, 24, 0), berlin(2026, 10, 26, 0)
    cov = only(coverage(cfg, start, end))
    assert_matches_sampling(cfg, cov, start, end, timedelta(minutes=5))
    # On the 25th the clock reads 01:00-02:45 twice over: covered, uncovered at the first
    # 02:45, covered again when the clock goes back to 02:00, uncovered at the second 02:45.
    covered = [(s.start, s.end) for s in cov.segments if not s.state.gap]
    assert (utc(2026, 10, 24, 23), utc(2026, 10, 25, 0, 45)) in covered
    assert (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 45)) in covered


# --- gaps and business hours ---------------------------------------------------------------

DAY_ONLY = {"team": {"rotations": [
    {"users": ["carla"], "start": "2026-01-05 08:00", "length": "1w",
     "restrictions": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}]}]}}
HOURS = {"windows": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}]}


def test_nights_and_weekends_without_anybody_are_gaps():
    cov = only(coverage(config(DAY_ONLY), berlin(2026, 6, 5, 12), berlin(2026, 6, 8, 12)))
    assert timeline(cov) == [
        (utc(2026, 6, 5, 10), utc(2026, 6, 5, 16), ("carla",), False),  # Friday until 18:00
        (utc(2026, 6, 5, 16), utc(2026, 6, 8, 6), (), True),            # weekend: nobody
        (utc(2026, 6, 8, 6), utc(2026, 6, 8, 10), ("carla",), False),
    ]
    assert [g.state.problems for g in cov.gaps] == [("level 1: schedule team: nobody on call",)]


def test_out_of_hours_voicemail_is_not_a_gap():
    cfg = config(DAY_ONLY, {"hours": HOURS, "out_of_hours": "voicemail:anna"})
    cov = only(coverage(cfg, berlin(2026, 6, 5, 12), berlin(2026, 6, 8, 12)))
    assert cov.gaps == ()
    weekend = cov.segments[1].state
    assert (weekend.policy, weekend.out_of_hours, weekend.action) == (None, True,
                                                                       "voicemail:anna")


def test_out_of_hours_policy_is_checked_too():
    policies = {"team": {"levels": [{"targets": [{"schedule": "team"}]}]},
                "night": {"levels": [{"targets": [{"schedule": "night"}]}]}}
    night = {"rotations": [{"users": ["dirk"], "start": "2026-06-05 20:00", "length": "1w"}]}
    cfg = config({**DAY_ONLY, "night": night},
                 {"hours": HOURS, "out_of_hours": "policy:night"}, policies)
    cov = only(coverage(cfg, berlin(2026, 6, 5, 12), berlin(2026, 6, 8, 12)))
    # Friday 18:00-20:00 the night rotation has not started yet: that is the only gap.
    assert [(g.start, g.end) for g in cov.gaps] == [(utc(2026, 6, 5, 16), utc(2026, 6, 5, 18))]
    assert cov.segments[-2].state.first_level == ("dirk",)
    assert cov.segments[-2].state.out_of_hours


def test_public_holiday_takes_restricted_cover_off_but_hours_with_holidays_are_no_gap():
    schedules = {"team": {**DAY_ONLY["team"], "holidays": "BE"}}
    start, end = berlin(2026, 12, 24, 12), berlin(2026, 12, 28, 12)  # 25th: a holiday
    gaps = only(coverage(config(schedules), start, end)).gaps
    assert (utc(2026, 12, 24, 17), utc(2026, 12, 28, 7)) in [(g.start, g.end) for g in gaps]
    cfg = config(schedules, {"hours": {**HOURS, "holidays": "BE"},
                             "out_of_hours": "message:/var/lib/fsrouter/closed.wav"})
    assert only(coverage(cfg, start, end)).gaps == ()


def test_people_without_a_phone_or_unknown_schedules_are_gaps_with_reasons():
    users = {**USERS, "nophone": {"name": "No Phone"}}
    schedules = {"team": {"rotations": [{"users": ["nophone"], "start": "2026-01-01 00:00",
                                         "length": "1w"}]}}
    cov = only(coverage(config(schedules, users=users), berlin(2026, 6, 1), berlin(2026, 6, 2)))
    assert [s.state.problems for s in cov.gaps] == [
        ("level 1: nophone has no mobile or landline phone",)]
    policies = {"team": {"levels": [{"targets": [{"schedule": "gone"}]}]}}
    cov = only(coverage(config(schedules, policies=policies), berlin(2026, 6, 1),
                        berlin(2026, 6, 2)))
    assert [s.state.problems for s in cov.gaps] == [("level 1: schedule gone: unknown schedule",)]


def test_later_levels_are_shown_and_only_nobody_at_all_is_a_gap():
    policies = {"team": {"levels": [{"targets": [{"schedule": "team"}]},
                                    {"targets": [{"user": "anna"}, {"user": "bernd"}]}]}}
    cov = only(coverage(config(DAY_ONLY, policies=policies), berlin(2026, 6, 5, 12),
                        berlin(2026, 6, 6, 12)))
    assert cov.gaps == ()
    assert [(s.state.first_level, s.state.later) for s in cov.segments] == [
        (("carla",), ("anna", "bernd")), ((), ("anna", "bernd"))]


# --- exactness -------------------------------------------------------------------------------


def test_change_points_are_exact_and_few():
    # A hand-over at 09:07:30 is found to the second; a weekly rotation over two weeks needs
    # a handful of evaluations, not one per minute.
    plan = Schedule.model_validate({"rotations": [
        {"users": ["anna", "bernd"], "start": "2026-01-05 09:07:30", "length": "1w"}]})
    points = change_points(plan, berlin(2026, 1, 6), berlin(2026, 1, 20))
    assert points == [berlin(2026, 1, 12, 9, 7, 30), berlin(2026, 1, 19, 9, 7, 30)]
    assert on_call(plan, points[0] - timedelta(seconds=1)) == "anna"
    assert on_call(plan, points[0]) == "bernd"


def test_overrides_with_an_offset_are_exact_instants():
    cfg = config({"team": {
        "rotations": [{"users": ["anna"], "start": "2026-01-01 00:00", "length": "1w"}],
        "overrides": [{"user": "dirk", "from": "2026-06-02T10:15:00+00:00",
                       "to": "2026-06-02T11:00:00+00:00"}]}})
    cov = only(coverage(cfg, utc(2026, 6, 2), utc(2026, 6, 3)))
    assert timeline(cov) == [(utc(2026, 6, 2), utc(2026, 6, 2, 10, 15), ("anna",), False),
                             (utc(2026, 6, 2, 10, 15), utc(2026, 6, 2, 11), ("dirk",), False),
                             (utc(2026, 6, 2, 11), utc(2026, 6, 3), ("anna",), False)]


def assert_matches_sampling(cfg: Config, cov: OptionCoverage, start: datetime, end: datetime,
                            step: timedelta) -> None:
    """Every sampled moment (and each segment's first and last second) has its segment's
    state: the change points missed nothing."""
    number = cfg.numbers[0]
    option = next(o for o in number.options if o.digit == cov.digit)  # type: ignore[union-attr]
    moments = [start + step * i for i in range(int((end - start) / step))]
    moments += [s.start for s in cov.segments] + [s.end - timedelta(seconds=1)
                                                  for s in cov.segments]
    for moment in moments:
        segment = next(s for s in cov.segments if s.start <= moment < s.end)
        assert option_state(cfg, option, moment) == segment.state, moment
    for before, after in zip(cov.segments, cov.segments[1:], strict=False):
        assert before.end == after.start and before.state != after.state


@pytest.mark.parametrize("start", [berlin(2026, 3, 23), berlin(2026, 10, 19)])
def test_example_config_over_a_dst_week_matches_sampling(start):
    cfg = load_config(EXAMPLE)
    end = start + timedelta(days=8)
    result = coverage(cfg, start, end)
    assert [(c.number, c.digit) for c in result] == [("+493023125000", 1), ("+493023125000", 2)]
    for cov in result:
        assert_matches_sampling(cfg, cov, start, end, timedelta(minutes=10))
        assert cov.gaps == ()


def test_naive_or_reversed_ranges_are_refused():
    cfg = config(DAY_ONLY)
    with pytest.raises(ValueError, match="timezone-aware"):
        coverage(cfg, datetime(2026, 1, 1), berlin(2026, 1, 2))
    with pytest.raises(ValueError, match="after"):
        coverage(cfg, berlin(2026, 1, 2), berlin(2026, 1, 1))


# --- property: nothing changes between change points ----------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]
DST_CHANGES = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 3, 8, 7),
               utc(2026, 11, 1, 6), utc(2026, 4, 4, 15), utc(2026, 10, 3, 15)]
WINDOWS = [{"days": "mon-fri", "from": "08:00", "to": "18:00"},
           {"days": "sat-sun", "from": "22:00", "to": "02:30"},
           {"days": ["sun"], "from": "01:45", "to": "03:15"},
           {"days": "mon-sun", "from": "00:00", "to": "24:00"}]


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    rotations = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.datetimes(min_value=datetime(2026, 1, 1),
                                  max_value=datetime(2026, 12, 31))).replace(microsecond=0)
        data: dict[str, Any] = {"users": ["u1", "u2", "u3"], "start": start.isoformat()}
        if draw(st.booleans()):
            data["length"] = draw(st.sampled_from(["15m", "90m", "8h", "1d", "1w"]))
        else:
            data["handoff"] = {"day": draw(st.sampled_from(["mon", "sun"])),
                               "time": draw(st.sampled_from(["00:00", "02:30", "09:00"]))}
        data["restrictions"] = draw(st.lists(st.sampled_from(WINDOWS), max_size=2))
        rotations.append(Rotation.model_validate(data))
    overrides = [{"user": "u9", "from": "2026-03-29 01:30", "to": "2026-03-29 03:30"}] \
        if draw(st.booleans()) else []
    return Schedule.model_validate({
        "timezone": draw(st.sampled_from(ZONES)), "rotations": rotations,
        "overrides": overrides, "holidays": draw(st.sampled_from([None, "BE"]))})


@settings(max_examples=examples(150), deadline=None)
@given(plan=schedules(), change=st.sampled_from(DST_CHANGES),
       offset=st.integers(-36 * 3600, 12 * 3600), probe=st.integers(0, 2 * 86400 - 1))
def test_on_call_is_constant_between_change_points(plan: Schedule, change: datetime,
                                                   offset: int, probe: int):
    start = change + timedelta(seconds=offset)
    end = start + timedelta(days=2)
    points = [start, *change_points(plan, start, end)]
    assert points == sorted(set(points))
    moment = start + timedelta(seconds=probe)  # in [start, end)
    last = max(point for point in points if point <= moment)
    assert on_call(plan, moment) == on_call(plan, last)
    # The last second before each point still has the state of the point before it.
    for low, high in zip(points, [*points[1:], end], strict=True):
        assert on_call(plan, high - timedelta(seconds=1)) == on_call(plan, low), (low, high)
