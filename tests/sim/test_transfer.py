"""``uuid_setvar`` and ``uuid_transfer`` on the simulator, as measured on FreeSWITCH 1.11.1.

tests/e2e/test_differential.py (``adopt_caller_in_menu``/``_queue``) runs the crash-recovery
use (the daemon's socket dead, then setvar + transfer) on both switches and compares; these
cover the rest: a daemon still connected, a transfer nowhere, the transfer limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import gevent.event
import pytest

from fsrouter.esl import OutboundServer, OutboundSession
from fsrouter.sim.driver import SimSwitch
from fsrouter.testing.watcher import Watcher

NUMBER = "+493012345678"
MENU = ("1 1 1 60000 # tone_stream://%(300,200,440);loops=2 silence_stream://250 "
        "fsr_choice ^[1-4]$ 60000")


class App:
    """The outbound socket: the first connection answers and waits in a long menu; a later
    one (after a transfer) notes its channel data and hangs up."""

    def __init__(self) -> None:
        self.sessions: list[OutboundSession] = []
        self.first_events: list[tuple[str, str]] = []
        self.in_menu = gevent.event.Event()
        self.back = gevent.event.Event()

    def __call__(self, session: OutboundSession) -> None:
        self.sessions.append(session)
        if len(self.sessions) > 1:
            self.back.set()
            session.execute("hangup", "NORMAL_CLEARING").wait(5)
            return
        session.on_event(lambda e: self.first_events.append(
            (e.name, e.get("Application") or "")))
        session.execute("answer").wait(5)
        session.execute("play_and_get_digits", MENU)
        self.in_menu.set()
        session.wait_closed(10)


@pytest.fixture
def call(switch: SimSwitch) -> Iterator[tuple[str, App, Watcher]]:
    """A caller (the daemon-side leg's uuid) in the app's menu, the app and a watcher."""
    app = App()
    server = OutboundServer("127.0.0.1", 0, app, 10, linger_seconds=1)
    server.start()
    watcher = Watcher(switch.esl_endpoint())
    try:
        switch.route_to(server.port)
        switch.place_call(NUMBER, "+4915112345678", "Erika")
        assert app.in_menu.wait(5)
        watcher.wait("CHANNEL_EXECUTE", Application="play_and_get_digits")
        yield app.sessions[0].uuid, app, watcher
    finally:
        for row in switch.channels():
            switch.hangup(row["uuid"])
        watcher.close()
        server.stop(timeout=1)
        server.close_all()


def test_setvar_sets_and_unsets(switch: SimSwitch, call: tuple[str, App, Watcher]) -> None:
    caller, _, _ = call
    assert switch.api(f"uuid_setvar {caller} fsr_adopted true") == "+OK\n"
    assert switch.api(f"uuid_getvar {caller} fsr_adopted") == "true"
    assert switch.api(f"uuid_setvar {caller} fsr_note two words") == "+OK\n"
    assert switch.api(f"uuid_getvar {caller} fsr_note") == "two words"
    assert switch.api(f"uuid_setvar {caller} fsr_adopted") == "+OK\n"  # no value: unset
    assert switch.api(f"uuid_getvar {caller} fsr_adopted") == "_undef_"


def test_a_connected_daemon_keeps_getting_the_channels_events(
        switch: SimSwitch, call: tuple[str, App, Watcher]) -> None:
    caller, app, watcher = call
    assert switch.api(f"uuid_transfer {caller} {NUMBER} XML public") == "+OK\n"
    assert app.back.wait(5), "the transferred call never came back to the socket"
    switch.wait_hangup(caller, 5)
    gevent.sleep(0.2)
    # Measured on 1.11.1: the first socket sees the menu end, the socket app end, the new
    # trip through the dialplan and the hang-up the second socket asked for.
    after = app.first_events[app.first_events.index(
        ("CHANNEL_EXECUTE_COMPLETE", "play_and_get_digits")):]
    assert after == [
        ("CHANNEL_EXECUTE_COMPLETE", "play_and_get_digits"), ("CHANNEL_UNPARK", ""),
        ("CHANNEL_EXECUTE_COMPLETE", "socket"), ("CHANNEL_STATE", ""), ("CHANNEL_STATE", ""),
        ("CHANNEL_EXECUTE", "set"), ("CHANNEL_EXECUTE_COMPLETE", "set"),
        ("CHANNEL_EXECUTE", "socket"), ("CHANNEL_PARK", ""), ("CHANNEL_EXECUTE", "hangup"),
        ("CHANNEL_HANGUP", ""), ("CHANNEL_EXECUTE_COMPLETE", "hangup"), ("CHANNEL_UNPARK", ""),
        ("CHANNEL_EXECUTE_COMPLETE", "socket"), ("CHANNEL_STATE", ""), ("CHANNEL_STATE", ""),
        ("CHANNEL_HANGUP_COMPLETE", "")]
    second = app.sessions[1].channel
    assert (second["Caller-Profile-Index"], second["Caller-RDNIS"]) == ("2", NUMBER)
    assert watcher.first("CHANNEL_EXECUTE", Application="playback") is None  # no fallback


def test_a_transfer_to_a_context_without_extensions_ends_the_call(
        switch: SimSwitch, call: tuple[str, App, Watcher]) -> None:
    caller, app, _ = call
    assert switch.api(f"uuid_transfer {caller} 1234 XML nowhere") == "+OK\n"
    assert switch.wait_hangup(caller, 5).get("Hangup-Cause") == "NO_ROUTE_DESTINATION"
    assert len(app.sessions) == 1


def test_the_transfer_limit_ends_the_call(switch: SimSwitch,
                                          call: tuple[str, App, Watcher]) -> None:
    caller, app, _ = call
    assert switch.api(f"uuid_setvar {caller} max_forwards 1") == "+OK\n"
    assert switch.api(f"uuid_transfer {caller} {NUMBER} XML public") == "-ERR\n"
    assert switch.wait_hangup(caller, 5).get("Hangup-Cause") == "EXCHANGE_ROUTING_ERROR"
    assert len(app.sessions) == 1
