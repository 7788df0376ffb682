"""Crash reconciliation on the simulator (issue 6.5; issue 7 point 1, the SIGKILL case).

- Rows a dead process left behind: the database is prepared as a daemon killed long ago would
  have left it (records, attempts and incidents open for channels the switch no longer has),
  then the daemon starts in this process: its first pass closes every one of this host's rows
  with an explicit outcome and leaves another host's rows alone.
- The daemon killed mid-call and restarted: ``fsrouter run`` as a process against the
  simulator (which lives in this test's gevent hub), the same steps and assertions as on the
  real switch (``kill_and_restart`` in test_restart_realswitch.py): callers in the menu, in
  the queue while a phone rings and talking; SIGKILL; while it is down a waiting caller hangs
  up, a ringing phone answers, one rings out and a new call gets the dialplan's fallback;
  after the restart, within 5 s, the database agrees with the switch's live channels, waiting
  callers are adopted (``uuid_setvar`` + ``uuid_transfer``, fsrouter/sim/transfer.py) and
  routed again, every row ends with the right outcome and no leg rings on. The contact-center
  case (an agent's ``bridge`` kept, a queue caller adopted) runs the same way.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from fsrouter.store import open_database, queries, upgrade
from tests.reliability.conftest import CALLER, HOTLINE, full_config, wait_for
from tests.reliability.test_restart_realswitch import (
    contact_center_restart,
    kill_and_restart,
    outage_on,
)

# Run alone, after the parallel part (see the Makefile): recovery within 5 s of a restart, timed.
pytestmark = pytest.mark.serial

PHONE = "+4915192000099"


def crashed_long_ago(url: str) -> dict[str, int]:
    """The rows of a process that died: returns the incident ids by name."""
    db = open_database(url)
    upgrade(db)
    host, then = socket.gethostname(), datetime.now(UTC) - timedelta(minutes=5)
    try:
        def call(uuid: str, host: str = host) -> None:
            queries.create_call_record(uuid, HOTLINE, "call_routing", CALLER, "Erika", then,
                                       host=host)

        def incident(uuid: str) -> int:
            return queries.create_incident(HOTLINE, "1", "Datenbank", CALLER, "Erika", uuid,
                                           then).id

        call("waited-1")  # waiting in the queue while olga's phone rang
        waited = incident("waited-1")
        queries.record_attempt("waited-1", 0, "olga", PHONE, then, incident_id=waited,
                               leg_uuid="leg-of-waited-1")
        call("talked-1")  # talking to olga (the flow had accepted the incident)
        talked = incident("talked-1")
        queries.accept_incident(talked, "olga", then)
        queries.link_call("talked-1", bridged_to_user="olga")
        call("menu-1")  # in the menu: no incident yet
        call("ended-1")  # the record was closed, the incident not (died in between)
        between = incident("ended-1")
        queries.accept_incident(between, "olga", then)
        queries.finish_call("ended-1", "bridged", "NORMAL_CLEARING", then)
        call("elsewhere-1", host="another-host")  # a shared database: not ours to judge
        return {"waited": waited, "talked": talked, "between": between}
    finally:
        db.close()


def test_rows_left_open_by_a_dead_process_are_closed_with_a_reason(sim_daemon, tmp_path):
    incidents = crashed_long_ago(f"sqlite:///{tmp_path / 'fsrouter.db'}")
    run = sim_daemon(full_config(tmp_path), speed=1.0)
    [done] = wait_for(lambda: [e for e in run.logs if e.get("event") == "recovery.done"], 5,
                      "the first reconciliation")
    assert sorted(done["closed"]) == ["menu-1", "talked-1", "waited-1"]
    assert done["adopted"] == [] and done["legs_killed"] == []

    calls = {r["call_uuid"]: (r["outcome"], r["hangup_cause"]) for r in run.rows(
        "SELECT * FROM call_records")}
    assert calls == {
        "waited-1": ("lost_in_restart", None),  # how it ended cannot be known
        "talked-1": ("bridged", None),
        "menu-1": ("lost_in_restart", None),
        "ended-1": ("bridged", "NORMAL_CLEARING"),
        "elsewhere-1": (None, None),
    }
    state = {r["id"]: (r["state"], r["outcome_reason"]) for r in run.rows(
        "SELECT * FROM incidents")}
    assert state == {
        incidents["waited"]: ("open", "lost_in_restart"),  # left open for follow-up
        incidents["talked"]: ("resolved", "call ended"),
        incidents["between"]: ("resolved", "call ended"),
    }
    [attempt] = run.rows("SELECT * FROM attempts")
    assert (attempt["result"], attempt["cause"]) == ("failed", "LOST_IN_RESTART")
    assert attempt["ended_at"] is not None

    # A later pass (every reconnect runs one) finds nothing more to do.
    report = run.daemon.parts["recovery"].reconcile(run.daemon.parts["switch"])
    assert report is not None and report.checked == 0 and report.closed == []


@pytest.fixture
def sim_outage(tmp_path, sim_switch):
    with outage_on(sim_switch, tmp_path) as parts:
        yield parts


def test_killed_mid_call_then_restarted(sim_outage, tmp_path):
    began = time.monotonic()
    kill_and_restart(*sim_outage, tmp_path)
    print(f"kill and restart on the simulator: {time.monotonic() - began:.1f} s wall time")


def test_contact_center_calls_survive_a_restart(sim_switch, tmp_path):
    contact_center_restart(sim_switch, tmp_path)
