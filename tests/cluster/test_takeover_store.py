"""The takeover statement on both engines (SQLite file, real PostgreSQL): open records of
nodes without a valid lease change hands once, nothing else does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import peewee

from fsrouter.cluster import sql
from fsrouter.store import queries

REPO = Path(__file__).resolve().parents[2]
RACE = Path(__file__).with_name("takeover_race.py")


def _record(uuid: str, node: str | None) -> None:
    queries.create_call_record(uuid, "+493040007000", "call_routing", None, None,
                               datetime.now(UTC), host="host", node=node)


def test_open_records_of_dead_and_gone_nodes_are_taken_once(db: peewee.Database) -> None:
    sql.register_node("alive", "host", 1, 60.0)
    sql.register_node("b", "host", 2, 60.0)
    sql.register_node("c", "host", 3, 60.0)
    sql.register_node("dead", "host", 4, -1.0)  # its lease ended a second ago
    for uuid, node in [("live-call", "alive"), ("dead-1", "dead"), ("dead-2", "dead"),
                       ("dead-ended", "dead"), ("gone-1", "gone"), ("legacy", None),
                       ("own", "b")]:
        _record(uuid, node)
    queries.finish_call("dead-ended", "bridged", None, datetime.now(UTC))
    assert sql.orphaned_calls("b") == 3
    taken = sql.take_over_calls("b")
    assert sorted(taken) == [("dead-1", "dead"), ("dead-2", "dead"), ("gone-1", "gone")]
    assert sql.take_over_calls("c") == []  # already b's, and b is alive
    assert sql.orphaned_calls("c") == 0
    nodes = {uuid: queries.get_call(uuid).node for uuid in
             ("live-call", "dead-1", "dead-ended", "gone-1", "legacy", "own")}
    assert nodes == {"live-call": "alive", "dead-1": "b", "dead-ended": "dead",
                     "gone-1": "b", "legacy": None, "own": "b"}


def test_a_taker_whose_own_lease_ended_takes_nothing(db: peewee.Database) -> None:
    sql.register_node("late", "host", 1, -1.0)
    _record("gone-1", "gone")
    assert sql.take_over_calls("late") == []
    assert queries.get_call("gone-1").node == "gone"
    # ... and when it is the one that died, a live node takes its records.
    _record("late-1", "late")
    sql.register_node("b", "host", 2, 60.0)
    assert sorted(uuid for uuid, _ in sql.take_over_calls("b")) == ["gone-1", "late-1"]


def test_many_live_nodes_take_a_dead_node_s_calls_at_once_each_once(
        db: peewee.Database, db_url: str) -> None:
    """3 processes x 6 greenlets (18 live nodes) run the takeover at the same instant over
    60 open records of a dead node: every record is taken, by exactly one node."""
    sql.register_node("dead", "host", 4, -1.0)
    calls = [f"call-{n}" for n in range(60)]
    for uuid in calls:
        _record(uuid, "dead")
    start_at = time.time() + 8.0  # every process started and registered by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [subprocess.Popen([sys.executable, str(RACE), db_url, str(start_at), "6",
                                f"p{p}"], env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE) for p in range(3)]
    taken: list[str] = []
    takers: dict[str, str] = {}
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err[-3000:]
        for node, uuids in json.loads(out).items():
            taken.extend(uuids)
            takers.update(dict.fromkeys(uuids, node))
    assert sorted(taken) == sorted(calls)  # each once
    assert {uuid: queries.get_call(uuid).node for uuid in calls} == takers
