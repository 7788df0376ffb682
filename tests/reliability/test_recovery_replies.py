"""Replies that never come (issue 12.4), on the simulator: a call's socket takes a
``sendmsg``, ``api`` or ``bgapi`` and never answers it, nor anything after it (the switch
handles a socket's commands one after another: a listener stuck on one answers nothing
more, events included).

Every wait has a timeout. The daemon then gives the socket up and ends what is left over
its event connection: a caller not talking to anyone is hung up with NORMAL_TEMPORARY_FAILURE
(503: the caller's network can try elsewhere; nothing else can be played without the
socket), ringing legs are cancelled, a conversation already bridged goes on. The rows end
final with a reason (``socket_lost``), and the number of live greenlets returns to where it
was (plivo#92 leaked ~300 KB per call when such a wait hung; greenswitch's ``send()`` has no
timeout at all).
"""

from __future__ import annotations

import gc
import time

import gevent
import greenlet

from fsrouter.sim import CallerScript, Faults, Press
from fsrouter.testing.phones import phone_number
from tests.reliability.conftest import HOTLINE, QUEUE_NUMBER, SimDaemon, full_config, wait_for

STEP_TIMEOUT = 3.0  # the daemon's per-step wait (default 30 s), short for the test
SEND_TIMEOUT = 10.0  # Connection.send's own limit for a command's reply


def live_greenlets() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet)
               and not obj.dead)


def settle_back(baseline: int, timeout: float = 10.0) -> int:
    """Wait until the live greenlets are back at (or below) ``baseline``; the count then."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        count = live_greenlets()
        if count <= baseline or time.monotonic() > deadline:
            return count
        gevent.sleep(0.1)


def warmed_up(run: SimDaemon) -> int:
    """One ordinary call first (every long-lived greenlet exists), then the baseline."""
    run.login("bob")
    record = run.call(QUEUE_NUMBER)
    run.wait_ended(record)
    run.check_nothing_left()
    return settle_back(0, timeout=1.0)


def start(sim_daemon, tmp_path, people: dict[str, str], withhold: tuple[str, ...],
          strategy: str = "in_order") -> tuple[SimDaemon, int]:
    config = full_config(tmp_path, people)
    config["policies"]["ops"]["levels"][0]["strategy"] = strategy
    faults = Faults()
    run = sim_daemon(config, speed=10.0, faults=faults)
    run.daemon.services.step_timeout = STEP_TIMEOUT
    baseline = warmed_up(run)
    faults.withhold_replies = withhold  # from now on the switch hangs on these
    return run, baseline


def test_a_sendmsg_that_is_never_answered(sim_daemon, tmp_path):
    run, baseline = start(sim_daemon, tmp_path, {"olga": phone_number("answer", 100, 60)},
                          ("sendmsg",))
    began = time.monotonic()
    record = run.call(HOTLINE, script=CallerScript(presses=[Press("1", 0.3, "menu")]))
    call = run.wait_ended(record, timeout=SEND_TIMEOUT + 10)
    took = time.monotonic() - began
    assert "withheld:sendmsg" in run.sim.faults.fired
    assert SEND_TIMEOUT - 1 <= took <= SEND_TIMEOUT + 5, took  # one bounded wait, then out
    # The daemon gave up on the socket and ended the caller over the event connection.
    assert run.caller(record).hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert call["outcome"] == "socket_lost"
    assert "call.switch_not_answering" in run.log_events()
    run.check_nothing_left()
    assert settle_back(baseline) <= baseline


def test_an_api_command_that_is_never_answered(sim_daemon, tmp_path):
    """All at once: olga answers, otto rings on; cancelling otto (``api uuid_kill``) hangs.
    The wait ends after its 5 s, the conversation is unharmed, otto's leg ends by its own
    ring timeout, and the rows are final."""
    people = {"olga": phone_number("answer", 200, 61), "otto": phone_number("noanswer", 0, 62)}
    run, baseline = start(sim_daemon, tmp_path, people, ("api",), strategy="all_at_once")
    record = run.call(HOTLINE, script=CallerScript(presses=[Press("1", 0.3, "menu")],
                                                   hangup_in="bridged", hangup_delay_s=20))
    wait_for(lambda: "withheld:api" in run.sim.faults.fired, 10, "the uuid_kill sent")
    call = run.wait_ended(record, timeout=30)
    assert call["outcome"] == "bridged" and call["bridged_to_user"] == "olga"
    results = {r["user_id"]: r["result"] for r in run.rows("SELECT * FROM attempts "
                                                            "WHERE incident_id IS NOT NULL")}
    assert results == {"olga": "answered", "otto": "cancelled"}
    run.check_nothing_left(timeout=10)  # otto's leg ended by its ring timeout (5 s)
    assert settle_back(baseline) <= baseline


def test_a_bgapi_that_is_never_answered(sim_daemon, tmp_path):
    """The originate is never acknowledged: after the send timeout the attempt fails, the
    caller waiting in the queue is released (503), the incident keeps its reason."""
    people = {"olga": phone_number("answer", 100, 63), "otto": phone_number("answer", 100, 64)}
    run, baseline = start(sim_daemon, tmp_path, people, ("bgapi",))
    began = time.monotonic()
    record = run.call(HOTLINE, script=CallerScript(presses=[Press("1", 0.3, "menu")]))
    call = run.wait_ended(record, timeout=SEND_TIMEOUT + 15)
    assert time.monotonic() - began <= SEND_TIMEOUT + 8
    assert run.caller(record).hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert call["outcome"] == "socket_lost"
    attempts = run.rows("SELECT user_id, result FROM attempts WHERE incident_id IS NOT NULL "
                        "ORDER BY seq")
    assert attempts == [{"user_id": "olga", "result": "failed"}]
    assert record.agent_legs == []  # nothing was ever dialled
    [incident] = run.rows("SELECT outcome_reason FROM incidents")
    assert incident["outcome_reason"] == "socket_lost"
    run.check_nothing_left()
    assert settle_back(baseline) <= baseline
