"""bench/events.py: the counting proxy's frame cutting, and on the real switch what a call's
outbound socket receives (only the events the daemon reads) through the proxy."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from bench import events, realswitch
from bench.stats import median_of, spread_of
from fsrouter.testing.realswitch import find_freeswitch


def _event(name: str, extra: str = "") -> bytes:
    body = f"Event-Name: {name}\nUnique-ID: 0f3b\n{extra}\n".encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body


def test_frames_are_cut_and_named_whatever_the_chunking() -> None:
    stream = (b"Content-Type: command/reply\nReply-Text: +OK\n\n"
              + _event("CHANNEL_EXECUTE_COMPLETE")
              + _event("CUSTOM", "Event-Subclass: fifo%3A%3Ainfo\nFIFO-Action: push\n")
              + _event("CHANNEL_EXECUTE_COMPLETE"))
    for size in (1, 7, len(stream)):
        tally = events.Tally()
        cutter = events.FrameCutter(tally)
        for start in range(0, len(stream), size):
            cutter.feed(stream[start:start + size])
        assert dict(tally.frames) == {"command/reply": 1, "CHANNEL_EXECUTE_COMPLETE": 2,
                                      "CUSTOM fifo::info push": 1}
        assert sum(tally.bytes.values()) == len(stream)


def test_commands_are_named_by_verb_and_app() -> None:
    tally = events.Tally()
    events.CommandCutter(tally).feed(
        b"myevents\n\nsendmsg\ncall-command: execute\nexecute-app-name: answer\n\n"
        b"bgapi originate {x=1}loopback/1 &park()\n\n")
    assert dict(tally.frames) == {"myevents": 1, "sendmsg answer": 1, "bgapi originate": 1}


def test_runs_combine_to_median_and_spread() -> None:
    runs = [{"a": {"x": 3, "s": "p"}, "load": [1.0, 2.0], "steps": [1]},
            {"a": {"x": 1, "s": "q"}, "load": [3.0, 2.0], "steps": [1, 2]},
            {"a": {"x": 2, "s": "p"}, "load": [2.0, 2.0], "steps": [1]}]
    assert median_of(runs) == {"a": {"x": 2, "s": "p / q"}, "load": [2.0, 2.0], "steps": None}
    assert spread_of(runs) == {"a": {"x": [1, 3]}}


@pytest.mark.realswitch
def test_a_calls_socket_gets_only_the_events_the_daemon_reads() -> None:
    if find_freeswitch() is None:
        if os.environ.get("CI"):
            pytest.fail("real FreeSWITCH required when CI is set", pytrace=False)
        pytest.skip("no FreeSWITCH found (set FSROUTER_FREESWITCH)")
    settings = replace(realswitch.QUICK, apps=("fsrouter",), warm_calls=1, talk_ms=200)
    result = events.count_events(settings, calls=3, rate=3.0, profile=False,
                                 say=lambda text: None)
    assert result["step"]["completed"] == 3
    outbound = result["connections"]["outbound"]
    assert outbound["connections"] == 3
    names = {row["name"] for row in outbound["from_switch"]["by_name"]}
    read = {"CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
            "BACKGROUND_JOB", "CUSTOM fifo::info push", "CUSTOM fifo::info bridge-caller-start"}
    assert read <= names  # what the call flow waits for still arrives
    unread = {name for name in names - read if not name.startswith("CUSTOM fifo::info ")}
    # CHANNEL_PARK: the socket app parks the channel while the daemon sets up, so it can be
    # queued between myevents and nixevent (4 calls in 10 before the start went in one write,
    # 4 in 100 since).
    assert unread <= {"command/reply", "text/disconnect-notice", "CHANNEL_BRIDGE",
                      "CHANNEL_PARK"}, unread
    inbound = result["connections"]["inbound"]
    assert inbound["connections"] >= 1
    assert {"CHANNEL_CREATE", "CHANNEL_HANGUP_COMPLETE"} <= {
        row["name"] for row in inbound["from_switch"]["by_name"]}
