"""The lease on both engines: heartbeats keep it, a node that cannot renew stops claiming
(PostgreSQL: busy; SQLite, one node: the claim is this process's alone), and it comes back.

Renewals are made to fail for real: another connection holds a lock on the nodes table
(SQLite: an exclusive transaction; PostgreSQL: LOCK TABLE) and this process's store gives up
quickly (SQLite busy timeout, PostgreSQL lock_timeout).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import peewee
import pytest

from fsrouter.cluster import Claims, Lease, sql
from fsrouter.store import open_database, upgrade
from fsrouter.store.db import close_database, parse_url
from fsrouter.testing.waiting import wait_for


@pytest.fixture
def quick_db(db_url: str) -> Iterator[peewee.Database]:
    """The store bound, upgraded, giving up on a held lock within 0.2 s."""
    url = db_url if db_url.startswith("sqlite") else f"{db_url}?options=-c%20lock_timeout%3D200"
    db = open_database(url, busy_timeout_ms=200)
    upgrade(db)
    try:
        yield db
    finally:
        close_database(db)


@contextmanager
def nodes_locked(db_url: str) -> Iterator[None]:
    """Another connection holds the nodes table: no renewal (and no claim) gets through."""
    if db_url.startswith("sqlite"):
        other: Any = sqlite3.connect(parse_url(db_url).path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
    else:
        import psycopg2

        other = psycopg2.connect(db_url)
        other.cursor().execute("LOCK TABLE cluster_nodes IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        other.rollback() if not db_url.startswith("sqlite") else other.execute("ROLLBACK")
        other.close()


def test_heartbeats_keep_the_lease_and_a_stop_retires_it(quick_db: peewee.Database) -> None:
    lease = Lease("n1", "host", heartbeat_s=0.1, lease_s=0.5)
    lease.start()
    try:
        claims = Claims(lease)
        gevent.sleep(1.0)  # twice the lease: only the heartbeats keep it
        assert lease.valid()
        claim = claims.claim("eva", "call", "leg")
        assert claim is not None and sql.holder_of("eva") == ("n1", "leg")
    finally:
        lease.stop()
    assert not lease.valid()
    assert sql.holder_of("eva") is None


@pytest.mark.parametrize("single_node", [False, True])
def test_a_node_that_cannot_renew_stops_claiming(quick_db: peewee.Database, db_url: str,
                                                  single_node: bool) -> None:
    lease = Lease("n1", "host", heartbeat_s=0.1, lease_s=0.6)
    lease.start()
    try:
        claims = Claims(lease, single_node=single_node)
        with nodes_locked(db_url):
            wait_for(lambda: not lease.valid(), 5, "the lease run out locally")
            claim = claims.claim("eva", "call", "leg")
            if single_node:  # SQLite: nobody else can ring her; the call goes on
                assert claim is not None
                assert claims.claim("eva", "call-2", "leg-2") is None  # still one at a time
                claims.release(claim)
            else:  # PostgreSQL: fail safe, busy
                assert claim is None
        wait_for(lease.valid, 5, "the lease renewed once the database answers")
        claim = claims.claim("eva", "call", "leg-3")
        assert claim is not None and sql.holder_of("eva") == ("n1", "leg-3")
        claims.release(claim)
        assert sql.holder_of("eva") is None
    finally:
        lease.stop()


def test_a_release_the_store_refuses_is_retried_after_a_renewal(
        quick_db: peewee.Database, db_url: str) -> None:
    lease = Lease("n1", "host", heartbeat_s=0.1, lease_s=2.0)
    lease.start()
    try:
        claims = Claims(lease)
        claim = claims.claim("eva", "call", "leg")
        assert claim is not None
        with _claims_locked(db_url):
            claims.release(claim)
        assert sql.holder_of("eva") == ("n1", "leg")  # refused: still held
        wait_for(lambda: sql.holder_of("eva") is None, 5, "the release retried")
    finally:
        lease.stop()


@contextmanager
def _claims_locked(db_url: str) -> Iterator[None]:
    if db_url.startswith("sqlite"):
        with nodes_locked(db_url):  # one lock for the whole SQLite file
            yield
        return
    import psycopg2

    other = psycopg2.connect(db_url)
    other.cursor().execute("LOCK TABLE agent_claims IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        other.rollback()
        other.close()


@pytest.mark.parametrize("only_node", [False, True])
def test_a_restart_on_a_single_node_database_frees_the_dead_process_claims(
        quick_db: peewee.Database, only_node: bool) -> None:
    """SQLite (one daemon at a time): the killed predecessor's claims go at the start, not
    when its lease runs out; on a shared database another node's claims stay."""
    sql.register_node("before", "host", 1, 60.0)
    assert sql.try_claim("eva", "before", "call", "leg")
    lease = Lease("after", "host", heartbeat_s=0.5, lease_s=2.0)
    lease.start(only_node=only_node)
    try:
        assert (sql.holder_of("eva") is None) is only_node
        assert Claims(lease).claim("eva", "call-2", "leg-2") is not None or not only_node
    finally:
        lease.stop()


def test_reconcile_drops_claims_this_node_does_not_hold(quick_db: peewee.Database) -> None:
    lease = Lease("n1", "host", heartbeat_s=0.5, lease_s=2.0)
    lease.start()
    try:
        claims = Claims(lease)
        held = claims.claim("eva", "call", "leg")
        assert held is not None
        assert sql.try_claim("tom", "n1", "lost-call", "lost-leg")  # e.g. a lost release
        assert claims.reconcile() == 1
        assert sql.claims_of("n1") == [("eva", "leg")]
        assert claims.reconcile() == 0
    finally:
        lease.stop()
