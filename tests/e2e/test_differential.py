"""Differential calibration: every scenario on the real FreeSWITCH and on the simulator.

Both runs are recorded from the switch's own events (an inbound event connection), by the same
code, against the same calibration app; the records must be equal apart from UUIDs, ports and
timestamps. Each real-switch record is also checked against what the scenario must show, so the
two switches cannot agree on a wrong result.
"""

from __future__ import annotations

import gevent
import pytest

from fsrouter.testing.scenario import ROUTING_NUMBER, comparable, run_scenario
from tests.e2e.scenarios import EXPECTED, SCENARIOS

pytestmark = pytest.mark.realswitch


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_simulator_agrees_with_real_switch(real_switch, sim_switch, scenario):
    # Both runs at once: each mostly waits for its switch, and the tier has a time budget.
    runs = [gevent.spawn(run_scenario, switch, scenario) for switch in (real_switch, sim_switch)]
    real, sim = (run.get() for run in runs)
    expected = EXPECTED[scenario.name]
    real_view = comparable(real)
    assert [leg["result"] for leg in real_view["agent_legs"]] == expected["results"]
    assert real_view["hangup_causes"].get("caller") == expected["caller_cause"]
    for leg in real_view["agent_legs"]:
        assert leg["caller_id_number"] == ROUTING_NUMBER
    assert comparable(sim) == real_view


def _drop_bridge_events(sim):
    publish = sim.publish

    def publish_without_bridge(headers, body=None):
        if dict(headers).get("Event-Name") != "CHANNEL_BRIDGE":
            publish(headers, body)

    sim.publish = publish_without_bridge


def _wrong_busy_cause(sim):
    hangup = sim.hangup

    def hangup_with_wrong_cause(chan, cause="NORMAL_CLEARING"):
        hangup(chan, "CALL_REJECTED" if cause == "USER_BUSY" else cause)

    sim.hangup = hangup_with_wrong_cause


def _answer_reported_late(sim):
    """Publish the caller's CHANNEL_EXECUTE of answer after the next application's."""
    publish = sim.publish
    held: list = []

    def publish_reordered(headers, body=None):
        head = dict(headers)
        if head.get("Event-Name") == "CHANNEL_EXECUTE" and head.get("Application") == "answer":
            held.append((headers, body))
            return
        publish(headers, body)
        if held and head.get("Event-Name") == "CHANNEL_EXECUTE":
            publish(*held.pop())

    sim.publish = publish_reordered


SABOTAGE = {
    "bridge_event_dropped": (_drop_bridge_events, "menu_valid_key_answered"),
    "wrong_hangup_cause": (_wrong_busy_cause, "no_answer_then_busy_then_answer"),
    "events_reordered": (_answer_reported_late, "hangup_in_menu"),
}


@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_differential_catches_a_broken_simulator(real_switch, tmp_path, sabotage):
    """The comparison is not blind: a simulator broken on purpose must be caught."""
    from fsrouter.sim.driver import SimSwitch

    breaker, name = SABOTAGE[sabotage]
    scenario = next(s for s in SCENARIOS if s.name == name)
    broken = SimSwitch(tmp_path / "sim", speed=1.0)
    broken.start()
    try:
        breaker(broken.sim)
        try:
            sim = comparable(run_scenario(broken, scenario, timeout=15))
        except TimeoutError:
            return  # a broken switch that loses the call is caught as well
        assert sim != comparable(run_scenario(real_switch, scenario))
    finally:
        broken.stop()
