"""The claim statement and the lease rows on both engines (SQLite file, real PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gevent
import peewee

from fsrouter.cluster import sql

REPO = Path(__file__).resolve().parents[2]
RACE = Path(__file__).with_name("claim_race.py")


def _register(*names: str, lease_s: float = 60.0) -> None:
    for number, name in enumerate(names):
        sql.register_node(name, "host", 1000 + number, lease_s)


def test_a_free_agent_is_claimed_once_and_free_again_after_release(db: peewee.Database) -> None:
    _register("a", "b")
    assert sql.try_claim("eva", "a", "call-1", "leg-1")
    assert not sql.try_claim("eva", "b", "call-2", "leg-2")
    assert not sql.try_claim("eva", "a", "call-3", "leg-3")  # the holder itself: busy too
    assert sql.holder_of("eva") == ("a", "leg-1")
    assert sql.try_claim("tom", "b", "call-2", "leg-4")  # another agent is free
    assert sql.release_claim("eva", "a", "leg-1")
    assert sql.holder_of("eva") is None
    assert sql.try_claim("eva", "b", "call-2", "leg-2")
    assert sql.holder_of("eva") == ("b", "leg-2")


def test_claims_of_a_node_whose_lease_ended_are_free(db: peewee.Database) -> None:
    _register("alive")
    _register("dead", lease_s=-1.0)  # its lease ended a second ago
    db.execute_sql("INSERT INTO agent_claims (agent, node, call_uuid, leg_uuid, claimed_at)"
                   " VALUES ('eva', 'dead', 'c', 'l', 0)")
    assert sql.holder_of("eva") is None
    assert sql.try_claim("eva", "alive", "call-1", "leg-1")
    assert sql.holder_of("eva") == ("alive", "leg-1")
    # The dead node's late release must not drop the claim the live node took over.
    assert not sql.release_claim("eva", "dead", "l")
    assert sql.holder_of("eva") == ("alive", "leg-1")


def test_a_claim_of_a_node_that_is_gone_is_free(db: peewee.Database) -> None:
    _register("a", "b")
    assert sql.try_claim("eva", "a", "c", "l")
    db.execute_sql("DELETE FROM cluster_nodes WHERE id = 'a'")
    assert sql.try_claim("eva", "b", "c2", "l2")


def test_a_node_whose_own_lease_ended_cannot_claim(db: peewee.Database) -> None:
    _register("late", lease_s=-1.0)
    assert not sql.try_claim("eva", "late", "c", "l")
    assert not sql.try_claim("eva", "nobody", "c", "l")  # never registered
    assert sql.holder_of("eva") is None
    assert sql.renew_lease("late", 30.0)
    assert sql.try_claim("eva", "late", "c", "l")


def test_the_lease_ends_on_the_database_clock(db: peewee.Database) -> None:
    _register("short", lease_s=0.4)
    _register("other")
    assert sql.try_claim("eva", "short", "c", "l")
    assert not sql.try_claim("eva", "other", "c2", "l2")
    deadline = time.monotonic() + 10
    while not sql.try_claim("eva", "other", "c2", "l2"):
        assert time.monotonic() < deadline
        gevent.sleep(0.05)
    assert sql.holder_of("eva") == ("other", "l2")


def test_renew_reports_a_missing_row_and_retire_frees_the_claims(db: peewee.Database) -> None:
    assert not sql.renew_lease("ghost", 10.0)
    _register("a", "b")
    assert sql.try_claim("eva", "a", "c", "l")
    assert sql.claims_of("a") == [("eva", "l")]
    sql.retire_node("a")
    assert sql.claims_of("a") == []
    assert sql.try_claim("eva", "b", "c", "l2")


def test_forget_dead_nodes_drops_old_rows_and_their_claims(db: peewee.Database) -> None:
    _register("old", lease_s=-100.0)
    _register("new")
    db.execute_sql("INSERT INTO agent_claims (agent, node, call_uuid, leg_uuid, claimed_at)"
                   " VALUES ('eva', 'old', 'c', 'l', 0)")
    assert sql.forget_dead_nodes(50.0) == 1
    assert sql.claims_of("old") == []
    assert sql.forget_dead_nodes(50.0) == 0


def test_many_nodes_in_many_processes_race_for_the_same_agents(db: peewee.Database,
                                                               db_url: str) -> None:
    """3 processes x 8 greenlets (24 nodes) claim the same agent at the same instant, 40
    rounds; and an agent held by a dead node, taken over by all at once: one winner each."""
    rounds, processes, nodes = 40, 3, 8
    _register("dead", lease_s=-1.0)
    for r in range(rounds):
        db.execute_sql("INSERT INTO agent_claims (agent, node, call_uuid, leg_uuid, claimed_at)"
                       f" VALUES ('dead-{r}', 'dead', 'c', 'l', 0)")
    start_at = time.time() + 8.0  # every process started and registered by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [subprocess.Popen([sys.executable, str(RACE), db_url, str(start_at), str(rounds),
                                str(nodes), f"p{p}", "0.08"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for p in range(processes)]
    wins: dict[str, list[str]] = {}
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err[-3000:]
        for agent, names in json.loads(out).items():
            wins.setdefault(agent, []).extend(names)
    expected = {f"agent-{r}" for r in range(rounds)} | {f"dead-{r}" for r in range(rounds)}
    assert set(wins) == expected
    doubled = {agent: names for agent, names in wins.items() if len(names) != 1}
    assert doubled == {}
    for agent, (name,) in wins.items():
        assert sql.holder_of(agent) is not None and sql.holder_of(agent)[0] == name
