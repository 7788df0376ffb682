"""Run-time on-call overrides in the pure schedule resolution: they beat the rotation and the
YAML overrides, name their origin, and move the coverage's change points."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fsrouter.config import load_config
from fsrouter.routing.coverage import coverage
from fsrouter.routing.escalation import plan_escalation
from fsrouter.routing.schedules import (
    on_call,
    on_call_origin,
    runtime_override,
    with_runtime_overrides,
)

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
CONFIG = load_config(EXAMPLE)  # it_infra: anna/bernd weekly from 2024-01-01 09:00,
# a YAML override puts bernd on from 2024-08-05 09:00 to 2024-08-12 09:00


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def test_a_runtime_override_beats_the_rotation_only_in_its_window():
    at = berlin(2026, 12, 5, 20, 0)
    assert on_call(CONFIG.schedules["it_infra"], at) == "anna"
    override = runtime_override(7, "it_infra", "carla", berlin(2026, 12, 5, 18, 0),
                                berlin(2026, 12, 6, 8, 0), "anna sick")
    schedules = with_runtime_overrides(CONFIG.schedules, [override], CONFIG.users)
    plan = schedules["it_infra"]
    assert on_call(plan, at) == "carla"
    assert on_call(plan, berlin(2026, 12, 5, 17, 59)) == "anna"
    assert on_call(plan, berlin(2026, 12, 6, 8, 0)) == "anna"  # the end is exclusive
    assert on_call_origin(plan, at).source == "run-time override"
    assert (on_call_origin(plan, at).override_id, on_call_origin(plan, at).reason) == (
        7, "anna sick")
    assert on_call_origin(plan, berlin(2026, 12, 6, 9, 0)).source == "rotation"
    # The configuration itself is untouched (the next call reads the store again).
    assert on_call(CONFIG.schedules["it_infra"], at) == "anna"


def test_a_runtime_override_beats_a_yaml_override():
    at = berlin(2024, 8, 6, 12, 0)
    assert on_call_origin(CONFIG.schedules["it_infra"], at).source == "yaml override"
    assert on_call(CONFIG.schedules["it_infra"], at) == "bernd"
    override = runtime_override(1, "it_infra", "dirk", berlin(2024, 8, 6, 0, 0),
                                berlin(2024, 8, 7, 0, 0))
    plan = with_runtime_overrides(CONFIG.schedules, [override], CONFIG.users)["it_infra"]
    assert on_call(plan, at) == "dirk"
    assert on_call(plan, berlin(2024, 8, 7, 12, 0)) == "bernd"  # the YAML one again


def test_overrides_for_unknown_schedules_or_users_are_left_out():
    start, end = berlin(2026, 12, 5, 0, 0), berlin(2026, 12, 6, 0, 0)
    gone_user = runtime_override(1, "it_infra", "zoe", start, end)
    gone_schedule = runtime_override(2, "retired", "carla", start, end)
    schedules = with_runtime_overrides(CONFIG.schedules, [gone_user, gone_schedule],
                                       CONFIG.users)
    assert schedules == dict(CONFIG.schedules)
    assert on_call(schedules["it_infra"], berlin(2026, 12, 5, 12, 0)) == "anna"


def test_the_escalation_rings_the_override_user():
    override = runtime_override(3, "it_infra", "bernd", berlin(2026, 12, 5, 18, 0),
                                berlin(2026, 12, 6, 8, 0))
    schedules = with_runtime_overrides(CONFIG.schedules, [override], CONFIG.users)
    at = berlin(2026, 12, 5, 22, 0)
    before = plan_escalation(CONFIG.policies["it_infra"], CONFIG.users, CONFIG.schedules, at)
    after = plan_escalation(CONFIG.policies["it_infra"], CONFIG.users, schedules, at)
    assert before.attempts[0].user_id == "anna"
    assert after.attempts[0].user_id == "bernd"


def test_coverage_cuts_segments_at_the_override_and_names_the_origin():
    override = runtime_override(3, "it_infra", "bernd", berlin(2026, 12, 5, 18, 0),
                                berlin(2026, 12, 6, 8, 0), "sick")
    config = CONFIG.model_copy(update={"schedules": with_runtime_overrides(
        CONFIG.schedules, [override], CONFIG.users)})
    [option, _] = coverage(config, berlin(2026, 12, 5, 12, 0), berlin(2026, 12, 6, 12, 0))
    spans = [(s.start.astimezone(BERLIN).hour, s.state.first_level,
              [(sid, o.source, o.override_id) for sid, o in s.state.origins])
             for s in option.segments]
    assert spans == [
        (12, ("anna",), [("it_infra", "rotation", None)]),
        (18, ("bernd",), [("it_infra", "run-time override", 3)]),
        (8, ("anna",), [("it_infra", "rotation", None)])]
    assert option.segments[1].start == datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
