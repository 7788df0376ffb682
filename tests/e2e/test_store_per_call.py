"""What one whole hotline call leaves in the store, and how many transactions it takes.

``fsrouter run`` as a process on the simulator, its SQLite connections traced
(bench/storecount.py): a caller presses 1, the first phone is busy, the second answers and
hangs up 1.5 s later. Every column of every row is checked, so a change that saves store work
(merging writes of one moment into one transaction, leaner statements) cannot change what
the call leaves behind; the transactions that wrote the call's rows are counted.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import gevent
import pytest

from bench.storecount import trace_lines, traced_env, transactions
from fsrouter.testing.phones import phone_number
from tests.e2e.daemon import Daemon
from tests.e2e.test_call_routing import ROUTING, call_in, hotline_config

CALL_TABLES = ('"call_records"', '"incidents"', '"attempts"', '"agent_presence"')


@pytest.fixture
def traced_daemon(tmp_path, sim_switch):
    phones = {"anna": phone_number("busy", 0, 1), "bernd": phone_number("hangup", 1500, 2)}
    daemon = Daemon(tmp_path, hotline_config(phones), sim_switch.esl_endpoint())
    trace = traced_env(tmp_path, daemon.env)
    daemon.start()
    sim_switch.route_to(daemon.port)
    yield daemon, trace
    deadline = time.monotonic() + 5
    while sim_switch.channels() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    assert sim_switch.channels() == []
    assert daemon.stop() == 0, daemon.log()[-3000:]


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_a_bridged_hotline_call_rows_and_transactions(traced_daemon, sim_switch):
    from fsrouter.testing.watcher import Watcher

    daemon, trace = traced_daemon
    daemon.wait_logged("agents.resynced")
    watcher = Watcher(sim_switch.esl_endpoint())
    try:
        start = len(trace_lines(trace))
        _, b_leg = call_in(sim_switch, watcher, digit="1", caller_name="Erika Mustermann")
        watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=40, **{"Unique-ID": b_leg})
    finally:
        watcher.client.close()
    [call] = daemon.wait_for("SELECT * FROM call_records WHERE ended_at IS NOT NULL")
    daemon.wait_for("SELECT * FROM agent_presence WHERE user_id = 'bernd' AND NOT busy "
                    "AND busy_call_uuid IS NULL")
    [incident] = daemon.rows("SELECT * FROM incidents")
    attempts = daemon.rows("SELECT * FROM attempts ORDER BY seq")

    started, answered, ended = (when(call[k]) for k in ("started_at", "answered_at", "ended_at"))
    assert started <= answered <= ended
    assert {k: v for k, v in call.items() if not k.endswith("_at")} == {
        "id": 1, "call_uuid": b_leg, "number": ROUTING, "route_type": "call_routing",
        "caller_number": "+4915112345678", "caller_name": "Erika Mustermann",
        "incident_id": incident["id"], "bridged_to_user": "bernd", "outcome": "bridged",
        "hangup_cause": "NORMAL_CLEARING", "host": call["host"], "node": call["node"]}
    assert call["host"] and call["node"]
    created, accepted, resolved = (when(incident[k])
                                   for k in ("created_at", "accepted_at", "resolved_at"))
    assert answered <= created <= accepted <= resolved <= ended
    assert ended - resolved < timedelta(seconds=5)  # both at the end of the call
    assert {k: v for k, v in incident.items() if not k.endswith("_at")} == {
        "id": incident["id"], "number": ROUTING, "option_digit": "1",
        "option_label": "Datenbank", "caller_number": "+4915112345678",
        "caller_name": "Erika Mustermann", "call_uuid": b_leg, "state": "resolved",
        "accepted_by": "bernd", "outcome_reason": "call ended"}
    assert [(a["seq"], a["user_id"], a["phone"], a["phone_type"], a["call_id"],
             a["incident_id"], a["result"], a["cause"], a["job_uuid"]) for a in attempts] == [
        (0, "anna", phone_number("busy", 0, 1), "mobile", call["id"], incident["id"],
         "busy", "USER_BUSY", None),
        (1, "bernd", phone_number("hangup", 1500, 2), "mobile", call["id"], incident["id"],
         "answered", "NORMAL_CLEARING", None)]
    for attempt in attempts:
        assert attempt["leg_uuid"]
        assert created <= when(attempt["started_at"]) <= when(attempt["ended_at"]) <= ended
    presence = daemon.rows("SELECT user_id, state, busy, busy_call_uuid FROM agent_presence "
                           "ORDER BY user_id")
    assert presence == [{"user_id": "anna", "state": "logged_out", "busy": 0,
                         "busy_call_uuid": None},
                        {"user_id": "bernd", "state": "logged_out", "busy": 0,
                         "busy_call_uuid": None}]

    # The call's writes: its record, the incident (linking the record), one row and one
    # result per attempt, the acceptance (naming who the call went to), the end of the call
    # with the incident resolved, and the agent watcher's busy and free for each rung phone.
    writes = [t for t in transactions(trace_lines(trace, start))
              if any(table in text for text in t for table in CALL_TABLES
                     if not text.startswith("SELECT"))]
    assert len(writes) == 12, "\n".join(" | ".join(t) for t in writes)
