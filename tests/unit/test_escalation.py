"""Escalation plans: strategies, repeats, duplicates, gaps, phones, ring timeouts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from fsrouter.config.schema import Policy, Schedule, User
from fsrouter.routing.escalation import Plan, level_users, plan_escalation
from tests.hypothesis_profiles import examples

BERLIN = ZoneInfo("Europe/Berlin")
MOMENT = datetime(2026, 1, 7, 10, 0, tzinfo=BERLIN)  # Wednesday, business hours


def user(name: str, *phones: dict[str, str]) -> User:
    return User.model_validate({"name": name, "phones": list(phones)},
                               context={"region": "DE"})


def mobile(number: str) -> dict[str, str]:
    return {"type": "mobile", "number": number}


def landline(number: str) -> dict[str, str]:
    return {"type": "landline", "number": number}


SIP = {"type": "sip", "dial_string": "user/1001"}
USERS = {
    "anna": user("Anna", mobile("+4915100000001"), landline("+493000000001")),
    "bernd": user("Bernd", mobile("+4915100000002")),
    "carla": user("Carla", SIP, landline("+498900000003"), mobile("+4915100000003")),
    "dirk": user("Dirk", mobile("+4915100000004")),
    "sipsi": user("Sip Only", SIP),
    "nophone": user("No Phone"),
}
SCHEDULES = {
    "day": Schedule.model_validate({"rotations": [{
        "users": ["dirk", "bernd"], "start": "2026-01-05 08:00", "length": "1w",
        "restrictions": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}]}]}),
    "empty": Schedule(),
}


def policy(levels: list[dict[str, Any]], **data: Any) -> Policy:
    return Policy.model_validate({"levels": levels, **data})


def plan(levels: list[dict[str, Any]], offset: int = 0, moment: datetime = MOMENT,
         **data: Any) -> Plan:
    return plan_escalation(policy(levels, **data), USERS, SCHEDULES, moment, offset)


def users_of(result: Plan) -> list[str]:
    return [attempt.user_id for attempt in result.attempts]


def phones_of(result: Plan) -> list[str]:
    return [attempt.phone for attempt in result.attempts]


def targets(*names: str) -> list[dict[str, str]]:
    return [{"schedule": n[1:]} if n.startswith("@") else {"user": n} for n in names]


def test_in_order_calls_each_phone_of_each_person_one_after_another() -> None:
    result = plan([{"targets": targets("anna", "bernd")}])
    assert phones_of(result) == ["+4915100000001", "+493000000001", "+4915100000002"]
    assert all(len(wave.attempts) == 1 for wave in result.waves)
    first = result.attempts[0]
    assert (first.user_id, first.user_name, first.phone_type) == ("anna", "Anna", "mobile")
    assert (first.level, first.pass_no, first.ring_timeout) == (0, 0, 20)
    assert result.gaps == ()


def test_all_at_once_rings_first_phones_together_then_second_phones() -> None:
    result = plan([{"targets": targets("anna", "bernd", "carla"), "strategy": "all_at_once"}])
    waves = [[a.phone for a in wave.attempts] for wave in result.waves]
    assert waves == [["+4915100000001", "+4915100000002", "+498900000003"],
                     ["+493000000001", "+4915100000003"]]


def test_round_robin_offset_picks_who_goes_first() -> None:
    level = [{"targets": targets("anna", "bernd", "dirk"), "strategy": "round_robin"}]
    assert users_of(plan(level, 0)) == ["anna", "anna", "bernd", "dirk"]
    assert users_of(plan(level, 1)) == ["bernd", "dirk", "anna", "anna"]
    assert users_of(plan(level, 2)) == ["dirk", "anna", "anna", "bernd"]
    assert users_of(plan(level, 3)) == users_of(plan(level, 0))
    assert users_of(plan(level, -1)) == users_of(plan(level, 2))


def test_round_robin_only_rotates_its_own_level() -> None:
    levels = [{"targets": targets("anna")},
              {"targets": targets("bernd", "dirk"), "strategy": "round_robin"}]
    assert users_of(plan(levels, 1)) == ["anna", "anna", "dirk", "bernd"]


def test_repeat_passes_call_everybody_again() -> None:
    result = plan([{"targets": targets("bernd")}, {"targets": targets("dirk")}], repeat=2)
    assert users_of(result) == ["bernd", "dirk"] * 3
    assert [a.pass_no for a in result.attempts] == [0, 0, 1, 1, 2, 2]
    assert [a.level for a in result.attempts] == [0, 1] * 3


def test_ring_timeout_comes_from_each_level() -> None:
    result = plan([{"targets": targets("bernd"), "ring_timeout": 30},
                   {"targets": targets("dirk"), "ring_timeout": 15}])
    assert [a.ring_timeout for a in result.attempts] == [30, 15]


def test_person_targeted_twice_is_called_once_per_pass() -> None:
    # dirk is on call for "day" this week and also named directly, on two levels.
    levels = [{"targets": targets("dirk", "@day", "dirk")}, {"targets": targets("@day", "bernd")}]
    result = plan(levels, repeat=1)
    assert users_of(result) == ["dirk", "bernd", "dirk", "bernd"]
    assert [a.level for a in result.attempts] == [0, 1, 0, 1]


def test_schedule_targets_resolve_at_the_moment() -> None:
    level = [{"targets": targets("@day")}]
    assert users_of(plan(level)) == ["dirk"]
    assert users_of(plan(level, moment=datetime(2026, 1, 14, 10, tzinfo=BERLIN))) == ["bernd"]


def test_schedule_gap_is_reported_and_the_next_level_still_called() -> None:
    evening = datetime(2026, 1, 7, 20, 0, tzinfo=BERLIN)
    result = plan([{"targets": targets("@day")}, {"targets": targets("@empty", "anna")}],
                  moment=evening, repeat=1)
    assert users_of(result) == ["anna", "anna"] * 2
    assert result.gaps == ("level 1: schedule day: nobody on call",
                           "level 2: schedule empty: nobody on call")


def test_sip_phones_are_never_called_and_people_without_mobile_are_reported() -> None:
    result = plan([{"targets": targets("sipsi", "carla", "nophone")}], repeat=1)
    assert {a.phone_type for a in result.attempts} == {"landline", "mobile"}
    assert "user/1001" not in phones_of(result)
    assert users_of(result) == ["carla", "carla"] * 2
    assert result.gaps == ("level 1: sipsi has no mobile or landline phone",
                           "level 1: nophone has no mobile or landline phone")


def test_nobody_callable_gives_an_empty_plan_with_reasons() -> None:
    result = plan([{"targets": targets("sipsi", "@empty")}])
    assert result.waves == () and result.attempts == ()
    assert len(result.gaps) == 2


def test_unknown_ids_are_gaps_not_crashes() -> None:
    result = plan([{"targets": targets("ghost", "@nosuch", "bernd")}])
    assert users_of(result) == ["bernd"]
    assert "level 1: schedule nosuch: unknown schedule" in result.gaps
    assert "level 1: ghost: unknown user" in result.gaps


def test_level_users_in_order_without_repeats() -> None:
    level = policy([{"targets": targets("bernd", "@day", "bernd", "@empty")}]).levels[0]
    assert level_users(level, SCHEDULES, MOMENT) == (
        ["bernd", "dirk"], ["schedule empty: nobody on call"])


def test_plan_is_the_same_for_the_same_instant_in_any_zone() -> None:
    levels = [{"targets": targets("@day", "anna"), "strategy": "all_at_once"}]
    assert plan(levels, moment=MOMENT) == plan(levels, moment=MOMENT.astimezone(UTC))


names = st.sampled_from(["anna", "bernd", "carla", "dirk", "sipsi", "nophone", "@day", "@empty"])
levels_strategy = st.lists(st.fixed_dictionaries({
    "targets": st.lists(names, min_size=1, max_size=5).map(lambda n: targets(*n)),
    "strategy": st.sampled_from(["in_order", "all_at_once", "round_robin"]),
    "ring_timeout": st.integers(5, 120)}), min_size=1, max_size=4)


@settings(max_examples=examples(200), deadline=None)
@given(levels=levels_strategy, repeat=st.integers(0, 3), offset=st.integers(-10, 10),
       moment=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1),
                           timezones=st.just(UTC)))
def test_plan_properties(levels: list[dict[str, Any]], repeat: int, offset: int,
                         moment: datetime) -> None:
    result = plan(levels, offset, moment, repeat=repeat)
    for wave in result.waves:
        assert wave.attempts, "a wave is never empty"
        assert len({a.user_id for a in wave.attempts}) == len(wave.attempts)
    for attempt in result.attempts:
        assert attempt.phone_type in ("mobile", "landline") and attempt.phone.startswith("+")
        assert attempt.ring_timeout == levels[attempt.level]["ring_timeout"]
    per_pass = [[a for a in result.attempts if a.pass_no == n] for n in range(repeat + 1)]
    assert all([a.phone for a in p] == [a.phone for a in per_pass[0]] for p in per_pass)
    phones = [a.phone for a in per_pass[0]]
    assert len(phones) == len(set(phones)), "no phone twice in one pass"
