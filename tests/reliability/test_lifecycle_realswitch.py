"""Reload and drain of ``fsrouter run`` with calls in progress, on the REAL switch (issue 6.5,
issue 12 point 6).

- SIGHUP with a good configuration: the next call takes the new route, the call in progress
  ends with the configuration it started with (its fallback tone is the old one). SIGHUP with
  a broken configuration: ``config.reload_rejected`` names the problem, the old configuration
  stays and calls are still served.
- SIGTERM with calls in progress: the listener closes at once (a new caller gets the
  dialplan's fallback tone, never silence), the calls finish, and the process exits 0 when the
  last one ends; with ``listener.drain_seconds`` passed it exits 0 anyway, and the caller it
  left waiting is adopted by the next start.
"""

from __future__ import annotations

import signal
import time
import uuid as uuidlib
from typing import Any

import gevent
import pytest
import yaml

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon

HOTLINE = "+493040008000"
CALLER = "+4915112345678"
HOLD = "tone_stream://%(1000,0,350);loops=-1"
SIT = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"
OLD_BUSY = "tone_stream://%(300,300,425);loops=-1"
NEW_BUSY = "tone_stream://%(300,300,620);loops=-1"


def one_option(person: str, phone: str, ring_timeout: int = 5, **extra: Any) -> dict[str, Any]:
    """A hotline whose single option (no menu) rings ``person`` on ``phone``."""
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "users": {person: {"name": person.title(),
                           "phones": [{"type": "mobile", "number": phone}]}},
        "policies": {"team": {"levels": [{"targets": [{"user": person}],
                                          "ring_timeout": ring_timeout}],
                              "press_to_accept": False}},
        "numbers": [{"number": HOTLINE, "type": "call_routing",
                     "options": [{"digit": 1, "label": "Team", "policy": "team",
                                  "hold_music": HOLD}]}],
        **extra,
    }


def rewrite(daemon: Daemon, config: dict[str, Any] | str) -> None:
    """Replace the configuration file (keeping the sections the harness set)."""
    if isinstance(config, str):
        daemon.config_path.write_text(config, "utf-8")
        return
    current = yaml.safe_load(daemon.config_path.read_text("utf-8"))
    kept = {key: current[key] for key in ("listener", "switch", "database", "metrics")}
    merged = {**config, **kept, "listener": {**kept["listener"], **config.get("listener", {})}}
    daemon.config_path.write_text(yaml.safe_dump(merged, allow_unicode=True), "utf-8")


def wait_logged(daemon: Daemon, event: str, count: int = 1, timeout: float = 10.0
                ) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in daemon.log_lines() if line.get("event") == event]
        if len(lines) >= count:
            return lines
        gevent.sleep(0.05)
    raise AssertionError(f"no {event} (x{count}) in the log:\n{daemon.log()[-3000:]}")


def call(switch: Any, watcher: Watcher) -> str:
    """Place a call to the hotline; the uuid of the leg the daemon drives."""
    caller = str(uuidlib.uuid4())
    switch.place_call(HOTLINE, CALLER, "Erika Mustermann", uuid=caller)
    return watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid


def played(watcher: Watcher, leg: str) -> list[str]:
    return [e.get("Application-Data") or "" for e in watcher.events
            if e.name == "CHANNEL_EXECUTE" and e.uuid == leg
            and e.get("Application") == "playback"]


def assert_fallback_tone(watcher: Watcher, leg: str) -> None:
    """The dialplan's answer when no daemon takes the call: SIT, then 503."""
    ended = watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=10, **{"Unique-ID": leg})
    assert ended.get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    assert played(watcher, leg) == [SIT]  # never silence


def record(daemon: Daemon, leg: str, watcher: Watcher, timeout: float = 30.0
           ) -> dict[str, Any]:
    """The call's record once it is closed (and the switch's events of it are in)."""
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=timeout, **{"Unique-ID": leg})
    return daemon.wait_for("SELECT * FROM call_records WHERE call_uuid = ? AND ended_at "
                           "IS NOT NULL", leg, timeout=timeout)[0]


def attempts(daemon: Daemon, leg: str) -> list[tuple[str, str]]:
    return [(r["user_id"], r["result"]) for r in daemon.rows(
        "SELECT a.user_id, a.result FROM attempts a JOIN call_records c ON c.id = a.call_id "
        "WHERE c.call_uuid = ? ORDER BY a.id", leg)]


@pytest.fixture
def lifecycle(tmp_path, real_switch):
    watcher = Watcher(real_switch.esl_endpoint())
    daemons: list[Daemon] = []

    def start(config: dict[str, Any]) -> Daemon:
        daemon = Daemon(tmp_path, {k: v for k, v in config.items() if k != "listener"},
                        real_switch.esl_endpoint())
        rewrite(daemon, config)  # the listener settings next to the harness's port
        daemon.start()
        real_switch.route_to(daemon.port)
        daemons.append(daemon)
        return daemon

    yield start, real_switch, watcher
    watcher.close()
    for row in real_switch.channels():
        real_switch.hangup(row["uuid"])
    for daemon in daemons:
        daemon.stop()


def test_reload_applies_to_the_next_call_and_a_broken_file_changes_nothing(lifecycle):
    start, switch, watcher = lifecycle
    anna, bob = phone_number("noanswer", 0, 81), phone_number("hangup", 1000, 82)
    daemon = start(one_option("anna", anna, ring_timeout=8, tones={"busy": OLD_BUSY}))
    in_progress = call(switch, watcher)
    wait_logged(daemon, "attempt.ringing")

    # The route now rings bob, and the busy tone is another one.
    rewrite(daemon, one_option("bob", bob, tones={"busy": NEW_BUSY}))
    daemon.process.send_signal(signal.SIGHUP)
    wait_logged(daemon, "config.reloaded")
    after_reload = call(switch, watcher)
    assert record(daemon, after_reload, watcher)["outcome"] == "bridged"
    assert attempts(daemon, after_reload) == [("bob", "answered")]

    # A broken file (anna's call still rings): rejected with where and why; the
    # configuration in force stays.
    broken = daemon.config_path.read_text("utf-8").replace("ring_timeout: 5",
                                                           "ring_timeout: 999")
    rewrite(daemon, broken)
    daemon.process.send_signal(signal.SIGHUP)
    [rejected] = wait_logged(daemon, "config.reload_rejected")
    assert "ring_timeout" in rejected["problem"] and "config.yaml:" in rejected["problem"]
    assert watcher.first("CHANNEL_HANGUP_COMPLETE", **{"Unique-ID": in_progress}) is None
    served = call(switch, watcher)
    assert record(daemon, served, watcher)["outcome"] == "bridged"
    assert attempts(daemon, served) == [("bob", "answered")]

    # The call that was ringing anna finishes with its own configuration: anna rings out and
    # the old busy tone plays.
    finished = record(daemon, in_progress, watcher)
    assert finished["outcome"] == "no_answer_fallback"
    assert attempts(daemon, in_progress) == [("anna", "no_answer")]
    assert played(watcher, in_progress) == [OLD_BUSY.replace("loops=-1", "loops=3")]
    events = [line.get("event") for line in daemon.log_lines()]
    assert events.count("config.reloaded") == 1
    assert "config.reload_needs_restart" not in events
    assert daemon.stop() == 0


def test_sigterm_lets_running_calls_finish_and_refuses_new_ones(lifecycle):
    start, switch, watcher = lifecycle
    calls = 50  # issue 12 point 6
    # The phone answers at once and talks until the caller hangs up.
    daemon = start(one_option("anna", phone_number("answer", 0, 83),
                              listener={"drain_seconds": 20}))
    legs = [call(switch, watcher) for _ in range(calls)]
    for leg in legs:
        watcher.wait("CHANNEL_BRIDGE", timeout=15, **{"Bridge-B-Unique-ID": leg})
    stopped_at = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    [draining] = wait_logged(daemon, "daemon.draining")
    assert draining["calls"] == calls
    assert_fallback_tone(watcher, call(switch, watcher))
    assert daemon.process.poll() is None  # still serving the calls in progress
    for leg in legs:  # the conversations end one after another
        switch.hangup(leg)
        gevent.sleep(0.02)
    last_hangup = time.monotonic()
    assert daemon.process.wait(timeout=10) == 0
    exit_s = time.monotonic() - stopped_at
    print(f"\n{calls} calls drained; exit {exit_s:.2f} s after SIGTERM, "
          f"{time.monotonic() - last_hangup:.2f} s after the last hang-up")
    assert time.monotonic() - last_hangup < 3  # at once, not at the 20 s limit
    [drained] = wait_logged(daemon, "daemon.drained")
    rows = daemon.rows("SELECT * FROM call_records")
    assert sorted(r["call_uuid"] for r in rows) == sorted(legs)  # the newcomer never reached us
    assert {r["outcome"] for r in rows} == {"bridged"}
    states = {r["state"] for r in daemon.rows("SELECT state FROM incidents")}
    assert states == {"resolved"}
    assert drained["seconds"] <= exit_s


def test_the_drain_limit_ends_the_process_and_the_next_start_adopts_the_caller(
        lifecycle, tmp_path):
    start, switch, watcher = lifecycle
    daemon = start(one_option("anna", phone_number("noanswer", 0, 84), ring_timeout=30,
                              listener={"drain_seconds": 2}))
    waiting = call(switch, watcher)
    first_leg = daemon.wait_for("SELECT leg_uuid FROM attempts")[0]["leg_uuid"]
    stopped_at = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=10) == 0
    exit_s = time.monotonic() - stopped_at
    print(f"\nexit {exit_s:.2f} s after SIGTERM with a 2 s drain limit")
    assert 2 <= exit_s < 5
    [timeout] = wait_logged(daemon, "daemon.drain_timeout")
    assert timeout["calls_left"] == 1
    # The caller is still up on the switch (in the queue); the next start takes it back.
    daemon.log_path = tmp_path / "daemon-restarted.log"
    daemon.start()
    [done] = wait_logged(daemon, "recovery.done")
    assert done["adopted"] == [waiting] and done["legs_killed"] == [first_leg]
    wait_logged(daemon, "attempt.ringing")  # rung again by the new process
    switch.hangup(waiting)
    row = record(daemon, waiting, watcher)
    assert row["outcome"] == "abandoned_in_queue"
    results = [(r["result"], r["cause"]) for r in daemon.rows(
        "SELECT result, cause FROM attempts ORDER BY id")]
    assert results == [("cancelled", "ORIGINATOR_CANCEL"), ("cancelled", "ORIGINATOR_CANCEL")]
    assert daemon.stop() == 0
