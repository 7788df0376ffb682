"""Calls driven purely over the simulator's inbound port (SimSwitch, the RealSwitch driver)
into a tiny OutboundServer app: route_to, loopback callers, DTMF, uuid_kill, phones."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from fsrouter.esl import Event, OutboundServer, OutboundSession
from fsrouter.sim.driver import SimSwitch
from fsrouter.sim.loopback import SIT

MENU = "1 1 1 5000 # silence_stream://20000 silence_stream://250 fsr_choice ^[1-3]$"
HOSTILE = "O'Brien, Jörg ${system(touch /tmp/x)}"


class MenuApp:
    """Answer, play a menu, report the choice; then what ``after`` says."""

    def __init__(self, after: str = "hangup") -> None:
        self.after = after
        self.channel: dict[str, str] = {}
        self.menu_running = gevent.event.Event()
        self.choice: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.hangup_cause: gevent.event.AsyncResult = gevent.event.AsyncResult()

    def __call__(self, session: OutboundSession) -> None:
        self.channel = dict(session.channel)
        if self.after == "leave":
            return  # the daemon closes the socket without touching the call
        session.execute("answer").wait(5)
        run = session.execute("play_and_get_digits", MENU)
        self._wait_for(session, "CHANNEL_EXECUTE", "play_and_get_digits")
        self.menu_running.set()
        done = run.wait(10)
        self.choice.set(done.get("variable_fsr_choice"))
        if done.get("Answer-State") == "hangup" or self.after == "park":
            self.hangup_cause.set(self._wait_for(session, "CHANNEL_HANGUP_COMPLETE"))
            return
        session.execute("hangup", "NORMAL_CLEARING")
        self.hangup_cause.set(self._wait_for(session, "CHANNEL_HANGUP_COMPLETE"))

    @staticmethod
    def _wait_for(session: OutboundSession, name: str, app: str = "") -> str:
        while True:
            event = session.next_event(10)
            if event.name == name and (not app or event.get("Application") == app):
                return event.get("Hangup-Cause") or event.get("Application") or ""


def serve(app: MenuApp) -> OutboundServer:
    server = OutboundServer("127.0.0.1", 0, app, 50)
    server.start()
    return server


def test_caller_reaches_app_and_dtmf_arrives(switch: SimSwitch) -> None:
    app = MenuApp()
    server = serve(app)
    switch.route_to(server.port)
    caller = switch.place_call("+493012345678", "+4915112345678", HOSTILE)
    assert switch.call_result(caller, 5) == f"+OK {caller}"
    assert app.menu_running.wait(5)
    switch.send_dtmf(caller, "2")
    assert app.choice.get(timeout=5) == "2"
    assert app.channel["Caller-Caller-ID-Name"] == HOSTILE  # byte-exact, inert
    assert app.channel["variable_other_loopback_leg_uuid"] == caller
    assert app.channel["variable_loopback_leg"] == "B"
    assert app.channel["Channel-Name"] == "loopback/+493012345678-b"
    assert switch.wait_hangup(caller, 5).get("Hangup-Cause") == "NORMAL_CLEARING"
    assert app.hangup_cause.get(timeout=5) == "NORMAL_CLEARING"
    assert switch.channels() == []
    assert server.stop(timeout=10), "a call session never ended"


@pytest.mark.parametrize("cause", ["NORMAL_CLEARING", "USER_BUSY"])
def test_uuid_kill_hangs_up_both_legs_with_its_cause(switch: SimSwitch, cause: str) -> None:
    app = MenuApp()
    server = serve(app)
    switch.route_to(server.port)
    caller = switch.place_call("+493012345678")
    assert app.menu_running.wait(5)
    assert len(switch.channels()) == 2
    assert switch.hangup(caller, cause) == "+OK\n"
    assert switch.wait_hangup(caller, 5).get("Hangup-Cause") == cause
    assert app.hangup_cause.get(timeout=5) == cause  # the b-leg, as on 1.11.1
    assert app.choice.get(timeout=1) is None
    assert switch.hangup(caller) == "-ERR No such channel!\n"
    assert server.stop(timeout=10), "a call session never ended"


def test_unreachable_daemon_plays_sit_and_fails_temporarily(switch: SimSwitch) -> None:
    caller = switch.place_call("+493012345678")  # no route_to: 127.0.0.1:1
    assert switch.call_result(caller, 5) == f"+OK {caller}"  # early media, as on 1.11.1
    assert switch.wait_hangup(caller, 5).get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    record = next(iter(switch.sim.records.values()))
    assert record.prompts == [SIT]
    assert [run.name for run in record.apps] == ["set", "pre_answer", "playback", "hangup"]


def test_daemon_leaving_the_call_gives_sit_fallback(switch: SimSwitch) -> None:
    app = MenuApp(after="leave")
    server = serve(app)
    switch.route_to(server.port)
    caller = switch.place_call("+493012345678")
    assert switch.wait_hangup(caller, 5).get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    assert app.channel["Unique-ID"] != caller
    assert server.stop(timeout=10), "a call session never ended"


# destination, result prefix, hang-up cause of the a-leg, sim ms to the result. Measured on
# 1.11.1 with timeout_s=2: 546, 1933, 42, 43, 243, 43 ms; windows allow 20 ms real overhead.
PHONES = [
    ("answer-500-{id}", "+OK", None, (500, 900)),
    ("noanswer-{id}", "-ERR NO_ANSWER", "NO_ANSWER", (1900, 2400)),
    ("busy-{id}", "-ERR USER_BUSY", "USER_BUSY", (0, 400)),
    ("gone-{id}", "-ERR UNALLOCATED_NUMBER", "UNALLOCATED_NUMBER", (0, 400)),
    ("press-5-200-{id}", "+OK", None, (200, 600)),
    ("hangup-300-{id}", "+OK", "NORMAL_CLEARING", (0, 400)),
]


@pytest.mark.parametrize(("dest", "result", "cause", "window"), PHONES)
def test_scripted_phone(switch: SimSwitch, dest: str, result: str, cause: str | None,
                        window: tuple[int, int]) -> None:
    began = switch.sim.clock.now()
    call = switch.phone(dest.format(id=switch.fresh_id()), timeout_s=2)
    got = call.result(5)
    took_ms = (switch.sim.clock.now() - began) * 1000
    assert got.startswith(result)
    assert window[0] <= took_ms <= window[1], took_ms
    if cause is not None:
        assert switch.wait_hangup(call.uuid, 5).get("Hangup-Cause") == cause
    if dest.startswith("press"):
        assert switch.wait_event(call.uuid, "DTMF", 5).get("DTMF-Digit") == "5"
    if result == "+OK" and cause is None:
        assert switch.hangup(call.uuid) == "+OK\n"
        assert switch.wait_hangup(call.uuid, 5).get("Hangup-Cause") == "NORMAL_CLEARING"


def test_phone_talk_ms_hangs_up_after_talking(switch: SimSwitch) -> None:
    call = switch.phone(f"answer-100-{switch.fresh_id()}", variables={"talk_ms": "400"})
    assert call.result(5).startswith("+OK")
    answered = switch.wait_event(call.uuid, "CHANNEL_ANSWER", 5)
    hangup = switch.wait_hangup(call.uuid, 5)
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"
    # Simulated time between the two events, as the switch stamped them: how fast this
    # test reads its socket on a loaded machine does not count.
    talked_ms = (_stamp(hangup) - _stamp(answered)) / 1000
    assert 300 <= talked_ms <= 3000, talked_ms  # late timers on a busy machine: upper bound loose


def _stamp(event: Event) -> int:
    return int(event.get("Event-Date-Timestamp") or 0)
