"""The contact-center steps on the simulator, as measured on FreeSWITCH 1.11.1: ``bridge``
failures and ``continue_on_fail``, a bridged agent and ``hangup_after_bridge``, mod_fifo's
exit key and maximum wait, ``uuid_broadcast`` and ``uuid_recv_dtmf`` (reply texts included).

tests/e2e/test_differential.py runs the same steps on the real switch and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import pytest

from fsrouter.esl import OutboundServer, OutboundSession
from fsrouter.sim.bridge import continues_after_failure
from fsrouter.sim.channel import Channel, Core, Profile
from fsrouter.sim.clock import Clock
from fsrouter.sim.driver import SimSwitch
from fsrouter.testing.watcher import Watcher

HOLD = "tone_stream://%(1000,0,350);loops=-1"
VOICE = "tone_stream://%(900,100,350);loops=-1"
Steps = Callable[[OutboundSession, dict[str, Any]], None]


def run_call(switch: SimSwitch, steps: Steps, caller_name: str = "Müller, Jörg"
             ) -> tuple[str, dict[str, Any]]:
    """Place a call whose outbound socket runs ``steps``; (caller a-leg uuid, what they saw)."""
    seen: dict[str, Any] = {}
    done = gevent.event.Event()

    def handler(session: OutboundSession) -> None:
        try:
            steps(session, seen)
        finally:
            done.set()

    server = OutboundServer("127.0.0.1", 0, handler, 10)
    server.start()
    try:
        switch.route_to(server.port)
        caller = switch.place_call("+493012345678", "+4915112345678", caller_name)
        assert done.wait(10), "the call script did not finish"
        switch.wait_hangup(caller, 5)
    finally:
        server.stop(timeout=1)
    return caller, seen


def bridge_to(phone: str, *settings: str) -> Steps:
    def steps(session: OutboundSession, seen: dict[str, Any]) -> None:
        for setting in settings:
            session.execute("set", setting).wait(5)
        seen["done"] = session.execute(
            "bridge", f"{{originate_timeout=1}}loopback/{phone}/agents").wait(10)
        seen["alive"] = session.api(f"uuid_exists {session.uuid}")
        if seen["alive"] == "true":
            session.execute("hangup", "NORMAL_CLEARING").wait(5)

    return steps


@pytest.mark.parametrize(("phone", "settings", "cause", "dialstatus", "stays"), [
    ("noanswer", (), "NO_ANSWER", "NOANSWER", True),
    ("busy", (), "USER_BUSY", "BUSY", False),
    ("busy", ("continue_on_fail=true",), "USER_BUSY", "BUSY", True),
    ("gone", ("continue_on_fail=USER_BUSY,NO_ANSWER",), "UNALLOCATED_NUMBER",
     "UNALLOCATED_NUMBER", False),
    ("gone", ("continue_on_fail=1",), "UNALLOCATED_NUMBER", "UNALLOCATED_NUMBER", True),
])
def test_a_failed_bridge_keeps_or_hangs_up_the_caller(switch: SimSwitch, phone: str,
                                                      settings: tuple[str, ...], cause: str,
                                                      dialstatus: str, stays: bool) -> None:
    _, seen = run_call(switch, bridge_to(f"{phone}-{switch.fresh_id()}", *settings))
    done = seen["done"]
    assert done.get("variable_originate_disposition") == cause
    assert done.get("variable_DIALSTATUS") == dialstatus
    assert done.get("variable_originate_failed_cause") == cause
    assert done.get("variable_last_bridge_hangup_cause") == cause
    assert (done.get("variable_originate_causes") or "").endswith(f";{cause}")
    # Hung up by switch_channel_handle_cause before the bridge completes, with the cause.
    assert done.get("Hangup-Cause") == (None if stays else cause)
    assert seen["alive"] == ("true" if stays else "false")


def test_an_answered_bridge_ends_with_the_agent_only_with_hangup_after_bridge(
        switch: SimSwitch) -> None:
    for hangup_after_bridge, stays in (("true", False), ("false", True)):
        phone = f"hangup-300-{switch.fresh_id()}"
        _, seen = run_call(switch, bridge_to(phone, f"hangup_after_bridge={hangup_after_bridge}"))
        done = seen["done"]
        assert done.get("variable_originate_disposition") == "SUCCESS"
        assert done.get("variable_DIALSTATUS") == "SUCCESS"
        assert done.get("variable_bridge_hangup_cause") == "NORMAL_CLEARING"
        assert done.get("variable_last_bridge_to") == done.get("variable_bridge_uuid")
        assert seen["alive"] == ("true" if stays else "false")


def test_the_bridged_leg_shows_the_callers_id_and_names_its_originator(
        switch: SimSwitch) -> None:
    phone = f"hangup-100-{switch.fresh_id()}"
    run_call(switch, bridge_to(phone), caller_name="O'Brien & Söhne")
    legs = [c for c in switch.sim.channels.values() if c.name.startswith(f"loopback/{phone}")]
    assert len(legs) == 2
    for leg in legs:
        assert leg.profile.caller_id_name == "O'Brien & Söhne"
        assert leg.profile.caller_id_number == "+4915112345678"
        # As on 1.11.1: inherited, not copied into origination_* variables.
        assert leg.get_var("origination_caller_id_name") == ""
    a_leg = next(leg for leg in legs if leg.name.endswith("-a"))
    assert a_leg.other_type == "originator"
    assert a_leg.get_var("originating_leg_uuid") == a_leg.other.uuid  # type: ignore[union-attr]


def test_effective_caller_id_is_what_the_bridged_leg_shows(switch: SimSwitch) -> None:
    phone = f"hangup-100-{switch.fresh_id()}"
    run_call(switch, bridge_to(phone, "effective_caller_id_number=+493040003000",
                               "effective_caller_id_name=Sales"))
    leg = next(c for c in switch.sim.channels.values() if c.name == f"loopback/{phone}-b")
    assert (leg.profile.caller_id_name, leg.profile.caller_id_number) == (
        "Sales", "+493040003000")


def channel(**variables: str) -> Channel:
    profile = Profile("inbound", "n", "1", "d", "public", "loopback/d-b", "u")
    return Channel(Core(Clock()), profile, list(variables.items()))


@pytest.mark.parametrize(("variables", "cause", "expected"), [
    ({}, "NO_ANSWER", True),
    ({}, "NO_USER_RESPONSE", True),
    ({}, "ORIGINATOR_CANCEL", True),
    ({}, "USER_BUSY", False),
    ({"continue_on_fail": "true"}, "USER_BUSY", True),
    ({"continue_on_fail": "false"}, "NO_ANSWER", False),  # set: no free NO_ANSWER any more
    ({"continue_on_fail": "user_busy,19"}, "NO_ANSWER", True),  # Q.850 19
    ({"continue_on_fail": "user_busy,19"}, "CALL_REJECTED", False),
    ({"failure_causes": "USER_BUSY"}, "NO_ANSWER", True),  # not a failure cause
    ({"failure_causes": "USER_BUSY"}, "USER_BUSY", False),
    ({"continue_on_fail": "true"}, "ATTENDED_TRANSFER", False),
])
def test_handle_cause_follows_switch_channel(variables: dict[str, str], cause: str,
                                             expected: bool) -> None:
    assert continues_after_failure(channel(**variables), cause) is expected


def queue(max_wait: int, exit_by: str = "", other_key: bool = False) -> Steps:
    def steps(session: OutboundSession, seen: dict[str, Any]) -> None:
        session.execute("answer").wait(5)
        session.execute("set", "fifo_caller_exit_key=#").wait(5)
        seen["set"] = session.execute("set", f"fifo_orbit_exten=_continue_:{max_wait}").wait(5)
        waiting = session.execute("fifo", f"q{session.uuid[:8]} in undef {HOLD}")
        gevent.sleep(0.1)
        if other_key:
            session.api(f"uuid_recv_dtmf {session.uuid} 5")
        if exit_by == "app":
            seen["reply"] = session.api(f"uuid_recv_dtmf {session.uuid} #")
        seen["done"] = waiting.wait(10)
        session.execute("hangup", "NORMAL_CLEARING").wait(5)

    return steps


def test_the_queue_exit_key_from_the_caller_or_the_app(switch: SimSwitch) -> None:
    _, seen = run_call(switch, queue(60, exit_by="app", other_key=True))
    assert seen["reply"].startswith("+OK ") and seen["reply"].endswith(" received DTMF #.\n")
    assert seen["done"].get("variable_fifo_status") == "ABORTED"
    assert seen["done"].get("variable_fifo_caller_exit_key") == "#"

    def press(session: OutboundSession, seen: dict[str, Any]) -> None:
        caller = session.channel["variable_other_loopback_leg_uuid"]
        gevent.spawn_later(0.2, switch.send_dtmf, caller, "#")  # the caller presses #
        queue(60)(session, seen)

    _, seen = run_call(switch, press)
    assert seen["done"].get("variable_fifo_status") == "ABORTED"


def test_the_maximum_wait_gives_the_caller_back(switch: SimSwitch) -> None:
    _, seen = run_call(switch, queue(2))
    done = seen["done"]
    assert done.get("variable_fifo_status") == "TIMEOUT"
    # Switch time between the events: mod_fifo counts whole epoch seconds, so at least
    # max_wait - 1; far less than the 60 s default (slack for a loaded machine at speed 20).
    waited = (_stamp(done) - _stamp(seen["set"])) / 1e6
    assert 1.0 <= waited <= 20.0


def _stamp(event: Any) -> int:
    return int(event.get("Event-Date-Timestamp") or 0)


def test_uuid_broadcast_plays_inside_what_the_channel_runs(switch: SimSwitch) -> None:
    def record(session: OutboundSession, seen: dict[str, Any]) -> None:
        session.execute("answer").wait(5)
        caller = session.channel["variable_other_loopback_leg_uuid"]
        recording = session.execute("record", f"{switch.workdir}/x.wav 30")
        gevent.sleep(0.05)
        seen["reply"] = switch.api(f"uuid_broadcast {caller} {VOICE} aleg")
        seen["bad"] = switch.api("uuid_broadcast 00000000-0000-0000-0000-000000000000 x aleg")
        seen["usage"] = switch.api(f"uuid_broadcast {caller}")
        gevent.sleep(0.1)
        switch.hangup(caller)
        seen["done"] = recording.wait(5)

    watcher = Watcher(switch.esl_endpoint(), events=["CHANNEL_EXECUTE_COMPLETE"])
    try:
        caller, seen = run_call(switch, record)
        watcher.wait("CHANNEL_EXECUTE_COMPLETE", Application="park", **{"Unique-ID": caller})
    finally:
        watcher.close()
    assert seen["reply"] == "+OK Message sent\n"
    assert seen["bad"] == "-ERR invalid uuid\n"
    assert seen["usage"] == "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
    done = [(e.get("Application"), e.get("Application-Response")) for e in watcher.events
            if e.uuid == caller]
    # As on 1.11.1: the playback runs inside park, ends first, and park reports its response.
    assert done == [("playback", "PLAYBACK ERROR"), ("park", "PLAYBACK ERROR")]
