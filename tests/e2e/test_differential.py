"""Differential calibration: every scenario on the real FreeSWITCH and on the simulator.

Both runs are recorded from the switch's own events (an inbound event connection), by the same
code, against the same calibration app; the records must be equal apart from UUIDs, ports and
timestamps. Each real-switch record is also checked against what the scenario must show, so the
two switches cannot agree on a wrong result.
"""

from __future__ import annotations

import gevent
import pytest

from fsrouter.testing.scenario import (
    BUSY_TONE,
    MENU_FILE,
    ROUTING_NUMBER,
    VOICE,
    Scenario,
    comparable,
    run_scenario,
)
from tests.e2e.scenarios import EXPECTED, SCENARIOS

pytestmark = pytest.mark.realswitch

CALLER = Scenario("x").caller_number
# The contact-center steps fsrouter takes (fsrouter/calls/inbound.py, queueing.py), as the
# real switch answers them: bridge failures with and without continue_on_fail, a bridged
# agent, mod_fifo's exit key and maximum wait, a caller talking into a recording.
CONTACT_CENTER = [
    Scenario("bridge_no_answer_keeps_the_caller", flow="bridge", phones=("noanswer",)),
    Scenario("bridge_busy_hangs_the_caller_up", flow="bridge", phones=("busy",)),
    Scenario("bridge_busy_with_continue_on_fail", flow="bridge", phones=("busy",),
             continue_on_fail=True),
    Scenario("bridge_answered_then_agent_hangs_up", flow="bridge", phones=("answer-200",),
             talk_ms=800),
    Scenario("bridge_caller_hangs_up_while_ringing", flow="bridge", phones=("noanswer",),
             ring_timeout=5, hangup=("ringing", 0.5)),
    Scenario("queue_exit_key_pressed", flow="queue_exit", digits=((1.0, "#"),),
             digits_after="queue"),
    Scenario("queue_exit_key_sent_by_the_app", flow="queue_exit", recv_dtmf_after=1.0),
    Scenario("queue_maximum_wait", flow="queue_exit", max_wait=2),
    Scenario("broadcast_into_a_recording", flow="record", broadcast=(0.5, VOICE),
             hangup=("record", 2.5)),
]


def _bridge(disposition, dialstatus, failed, last, hangup, bridge_cause="-", leg_cause=None):
    causes = f"<uuid>;{leg_cause or disposition}"
    return (f"bridge done: originate_disposition={disposition} DIALSTATUS={dialstatus} "
            f"originate_failed_cause={failed} last_bridge_hangup_cause={last} "
            f"bridge_hangup_cause={bridge_cause} originate_causes={causes} hangup={hangup}")


# What the real switch must show: agent leg results, the caller's cause, the caller ID the
# agent's phone sees, and facts (bridge/fifo variables, API replies) that must be there.
CC_EXPECTED = {
    "bridge_no_answer_keeps_the_caller": {
        "results": [""], "caller_cause": "NORMAL_CLEARING", "agent_caller_id": CALLER,
        "prompts": [BUSY_TONE],
        "facts": [_bridge("NO_ANSWER", "NOANSWER", "NO_ANSWER", "NO_ANSWER", "-"),
                  "agent leg Other-Type=originator"]},
    "bridge_busy_hangs_the_caller_up": {
        "results": [""], "caller_cause": "USER_BUSY", "agent_caller_id": CALLER, "prompts": [],
        "facts": [_bridge("USER_BUSY", "BUSY", "USER_BUSY", "USER_BUSY", "USER_BUSY")]},
    "bridge_busy_with_continue_on_fail": {
        "results": [""], "caller_cause": "NORMAL_CLEARING", "agent_caller_id": CALLER,
        "prompts": [BUSY_TONE],
        "facts": [_bridge("USER_BUSY", "BUSY", "USER_BUSY", "USER_BUSY", "-")]},
    "bridge_answered_then_agent_hangs_up": {
        "results": [""], "caller_cause": "NORMAL_CLEARING", "agent_caller_id": CALLER,
        "prompts": [],
        "facts": [_bridge("SUCCESS", "SUCCESS", "-", "NORMAL_CLEARING", "NORMAL_CLEARING",
                          bridge_cause="NORMAL_CLEARING", leg_cause="NONE"),
                  "agent leg Other-Type=originator"]},
    "bridge_caller_hangs_up_while_ringing": {
        "results": [""], "caller_cause": "NORMAL_CLEARING", "agent_caller_id": CALLER,
        "prompts": [],
        "facts": [_bridge("ORIGINATOR_CANCEL", "CANCEL", "ORIGINATOR_CANCEL", "-",
                          "NORMAL_CLEARING")]},
    "queue_exit_key_pressed": {
        "results": [], "caller_cause": "NORMAL_CLEARING", "prompts": [BUSY_TONE],
        "facts": ["dtmf #", "fifo abort", "fifo done: status=ABORTED exit_key=# hangup=-"]},
    "queue_exit_key_sent_by_the_app": {
        "results": [], "caller_cause": "NORMAL_CLEARING", "prompts": [BUSY_TONE],
        "facts": ["dtmf #", "fifo abort", "fifo done: status=ABORTED exit_key=# hangup=-",
                  "uuid_recv_dtmf: +OK <uuid> received DTMF #."]},
    "queue_maximum_wait": {
        "results": [], "caller_cause": "NORMAL_CLEARING", "prompts": [BUSY_TONE],
        "facts": ["fifo timeout", "fifo done: status=TIMEOUT exit_key=# hangup=-"]},
    "broadcast_into_a_recording": {
        "results": [], "caller_cause": "NORMAL_CLEARING", "prompts": [],
        "facts": [f"caller-a playback {VOICE}", "uuid_broadcast: +OK Message sent"]},
}
# Crash recovery (fsrouter/recovery.py): a waiting caller whose daemon died is sent through
# the dialplan again with uuid_setvar + uuid_transfer and comes back to the socket.
ADOPTION = [
    Scenario("adopt_caller_in_menu", flow="adopt"),
    Scenario("adopt_caller_in_queue", flow="adopt", adopt_in="queue"),
]
_API_FACTS = [
    "uuid_setvar no channel: -ERR No such channel!",
    "uuid_setvar usage: -USAGE: <uuid> <var> [value]",
    "uuid_transfer no channel: -ERR No such channel!",
    "uuid_transfer usage: -USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]",
    "uuid_setvar: +OK", "uuid_getvar: true", "uuid_transfer: +OK",
    "adopted: fsr_adopted=true dialplan=XML context=public rdnis=<dest> profile=2 "
    "transfer_source=<epoch>:<uuid>:bl_xfer:<dest>/public/XML transfer_history=same "
    "max_forwards=70 state=CS_EXECUTE/answered",
]
# The dialplan runs again from its first action (set, socket); the fallback after the first
# socket (SIT, NORMAL_TEMPORARY_FAILURE) is skipped.
_READOPTED = ["set", "socket", "playback", "hangup"]
ADOPT_EXPECTED = {
    "adopt_caller_in_menu": {
        "results": [], "caller_cause": "NORMAL_CLEARING", "prompts": [MENU_FILE, BUSY_TONE],
        "apps": ["set", "socket", "answer", "play_and_get_digits", *_READOPTED],
        "facts": ["menu interrupted: read_result=failure profile=2 dialplan=XML hangup=-",
                  *_API_FACTS]},
    "adopt_caller_in_queue": {
        "results": [], "caller_cause": "NORMAL_CLEARING", "prompts": [BUSY_TONE],
        "apps": ["set", "socket", "answer", "fifo", *_READOPTED],
        "facts": ["fifo abort", "fifo done: status=ABORTED exit_key=- hangup=-", *_API_FACTS]},
}
ALL_SCENARIOS = SCENARIOS + CONTACT_CENTER + ADOPTION
ALL_EXPECTED = {**EXPECTED, **CC_EXPECTED, **ADOPT_EXPECTED}


@pytest.mark.parametrize("scenario", ALL_SCENARIOS, ids=lambda s: s.name)
def test_simulator_agrees_with_real_switch(real_switch, sim_switch, scenario):
    # Both runs at once: each mostly waits for its switch, and the tier has a time budget.
    runs = [gevent.spawn(run_scenario, switch, scenario) for switch in (real_switch, sim_switch)]
    real, sim = (run.get() for run in runs)
    expected = ALL_EXPECTED[scenario.name]
    real_view = comparable(real)
    assert [leg["result"] for leg in real_view["agent_legs"]] == expected["results"]
    assert real_view["hangup_causes"].get("caller") == expected["caller_cause"]
    for leg in real_view["agent_legs"]:
        assert leg["caller_id_number"] == expected.get("agent_caller_id", ROUTING_NUMBER)
    if "prompts" in expected:
        assert real_view["prompts"] == expected["prompts"]
    if "apps" in expected:
        assert [app["name"] for app in real_view["apps"]] == expected["apps"]
    for fact in expected.get("facts", []):
        assert fact in real_view["faults"]
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
    # Held per channel: released by any channel's next execute, the answer came out in order
    # whenever the a-leg's park (30 ms after the answer) beat the app's next command (a
    # socket round trip: on a loaded host it did, and the sabotage went unseen).
    held: dict[str, tuple] = {}

    def publish_reordered(headers, body=None):
        head = dict(headers)
        uuid = head.get("Unique-ID") or ""
        if head.get("Event-Name") == "CHANNEL_EXECUTE" and head.get("Application") == "answer":
            held[uuid] = (headers, body)
            return
        publish(headers, body)
        if uuid in held and head.get("Event-Name") == "CHANNEL_EXECUTE":
            publish(*held.pop(uuid))

    sim.publish = publish_reordered


def _bridge_failure_always_hangs_up(sim):
    """A ``bridge`` that ignores continue_on_fail (the old simulator kept every caller up)."""
    bridge_app = sim.bridge_app

    def hanging_up(ctx):
        bridge_app(ctx)
        cause = ctx.chan.get_var("originate_disposition")
        if ctx.chan.alive and cause not in ("", "SUCCESS"):
            sim.hangup(ctx.chan, cause)

    sim.bridge_app = hanging_up


def _queue_without_maximum_wait(sim):
    """mod_fifo without fifo_orbit_exten: the caller is never given back."""
    wait = sim.fifos._wait

    def forever(ctx, entry):
        ctx.chan.set_var("fifo_orbit_exten", None)
        return wait(ctx, entry)

    sim.fifos._wait = forever


def _transfer_hangs_up(sim):
    """uuid_transfer as the old simulator's ``transfer``: the channel is hung up instead of
    going through the dialplan again."""
    set_state = sim.set_state

    def hanging_up_on_routing(chan, state):
        set_state(chan, state)
        if state == "CS_ROUTING":
            sim.hangup(chan, "NORMAL_CLEARING")

    sim.set_state = hanging_up_on_routing


SABOTAGE = {
    "bridge_event_dropped": (_drop_bridge_events, "menu_valid_key_answered"),
    "wrong_hangup_cause": (_wrong_busy_cause, "no_answer_then_busy_then_answer"),
    "events_reordered": (_answer_reported_late, "hangup_in_menu"),
    "continue_on_fail_ignored": (_bridge_failure_always_hangs_up,
                                 "bridge_busy_with_continue_on_fail"),
    "no_maximum_wait": (_queue_without_maximum_wait, "queue_maximum_wait"),
    "transfer_hangs_up": (_transfer_hangs_up, "adopt_caller_in_queue"),
}


@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_differential_catches_a_broken_simulator(real_switch, tmp_path, sabotage):
    """The comparison is not blind: a simulator broken on purpose must be caught."""
    from fsrouter.sim.driver import SimSwitch

    breaker, name = SABOTAGE[sabotage]
    scenario = next(s for s in ALL_SCENARIOS if s.name == name)
    broken = SimSwitch(tmp_path / "sim", speed=1.0)
    broken.start()
    try:
        breaker(broken.sim)
        try:
            sim = comparable(run_scenario(broken, scenario, timeout=6))  # waits 2x this
        except TimeoutError:
            return  # a broken switch that loses the call is caught as well
        assert sim != comparable(run_scenario(real_switch, scenario))
    finally:
        broken.stop()
