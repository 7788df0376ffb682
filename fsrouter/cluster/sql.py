"""The statements behind leases and claims, on SQLite and PostgreSQL.

Every time is epoch seconds of the database's own clock (``_now``), never a node's: two nodes
whose clocks differ still agree on when a lease ends. Each function is one short statement in
its own transaction (SQLite: ``BEGIN IMMEDIATE``, so the write lock is taken up front and a
concurrent writer waits on the busy timeout instead of failing on a stale snapshot).

The claim (see docs/two-nodes.md for why not row or advisory locks)::

    INSERT INTO agent_claims ... SELECT <values> WHERE <our lease is valid>
    ON CONFLICT (agent) DO UPDATE SET <ours>
    WHERE <the holder's lease has expired, or the holder is gone>

One statement: either it inserted or updated one row (ours now) or it changed nothing (the
agent is held by a live node, or our own lease is over). PostgreSQL serialises two
claimants of the same agent on the unique index / the conflicting row and re-checks the
condition on the row as the winner left it; SQLite has one writer at a time.
"""

from __future__ import annotations

from typing import Any

import peewee

from fsrouter.store.db import database_proxy, session

_PG_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _real(db: Any) -> peewee.Database:
    return db.obj if isinstance(db, peewee.DatabaseProxy) else db


def _now(db: peewee.Database) -> str:
    return _PG_NOW if isinstance(db, peewee.PostgresqlDatabase) else _SQLITE_NOW


def _run(db: Any, sql: str, params: tuple[Any, ...]) -> int:
    """Run one write statement in its own transaction; the number of rows it changed."""
    with session(db, immediate=True) as bound:
        real = _real(bound)
        return int(real.execute_sql(sql.replace("?", real.param), params).rowcount)


def _query(db: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with session(db) as bound:
        real = _real(bound)
        return list(real.execute_sql(sql.replace("?", real.param), params).fetchall())


def register_node(node: str, host: str, pid: int, lease_s: float,
                  db: Any = database_proxy) -> None:
    """Insert (or take back) this node's row with a fresh lease."""
    now = _now(_real(db))
    _run(db, "INSERT INTO cluster_nodes (id, host, pid, started_at, heartbeat_at, lease_until)"
         f" VALUES (?, ?, ?, {now}, {now}, {now} + ?)"
         " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
         " lease_until = excluded.lease_until", (node, host[:255], pid, lease_s))


def renew_lease(node: str, lease_s: float, db: Any = database_proxy) -> bool:
    """Push this node's lease ``lease_s`` seconds past now; False if its row is gone."""
    now = _now(_real(db))
    changed = _run(db, f"UPDATE cluster_nodes SET heartbeat_at = {now},"
                   f" lease_until = {now} + ? WHERE id = ?", (lease_s, node))
    return changed == 1


def retire_node(node: str, db: Any = database_proxy) -> None:
    """At a clean stop: drop this node's claims and end its lease now."""
    with session(db, immediate=True) as bound:
        real = _real(bound)
        real.execute_sql(f"DELETE FROM agent_claims WHERE node = {real.param}", (node,))
        real.execute_sql(f"DELETE FROM cluster_nodes WHERE id = {real.param}", (node,))


def forget_dead_nodes(older_than_s: float, db: Any = database_proxy) -> int:
    """Remove rows of nodes whose lease ended more than ``older_than_s`` seconds ago (killed
    daemons), and claims that belonged to no live node; the number of nodes removed."""
    now = _now(_real(db))
    with session(db, immediate=True) as bound:
        real = _real(bound)
        p = real.param
        gone = real.execute_sql(f"DELETE FROM cluster_nodes WHERE lease_until < {now} - {p}",
                                (older_than_s,)).rowcount
        real.execute_sql("DELETE FROM agent_claims WHERE NOT EXISTS (SELECT 1 FROM"
                         " cluster_nodes n WHERE n.id = agent_claims.node)", ())
    return int(gone)


def forget_other_nodes(node: str, db: Any = database_proxy) -> int:
    """Remove every node but ``node`` and their claims: only for a database that one daemon
    alone may use (SQLite, held by the daemon lock), where any other node is a dead process
    whose claims would otherwise block its agents until its lease ran out."""
    with session(db, immediate=True) as bound:
        real = _real(bound)
        p = real.param
        real.execute_sql(f"DELETE FROM agent_claims WHERE node <> {p}", (node,))
        return int(real.execute_sql(f"DELETE FROM cluster_nodes WHERE id <> {p}",
                                    (node,)).rowcount)


def try_claim(agent: str, node: str, call_uuid: str, leg_uuid: str,
              db: Any = database_proxy) -> bool:
    """Claim ``agent`` for ``node``'s leg ``leg_uuid``: True if it is ours now."""
    now = _now(_real(db))
    changed = _run(
        db,
        "INSERT INTO agent_claims (agent, node, call_uuid, leg_uuid, claimed_at)"
        f" SELECT ?, ?, ?, ?, {now} WHERE EXISTS (SELECT 1 FROM cluster_nodes mine"
        f" WHERE mine.id = ? AND mine.lease_until > {now})"
        " ON CONFLICT (agent) DO UPDATE SET node = excluded.node,"
        " call_uuid = excluded.call_uuid, leg_uuid = excluded.leg_uuid,"
        " claimed_at = excluded.claimed_at"
        " WHERE NOT EXISTS (SELECT 1 FROM cluster_nodes holder"
        f" WHERE holder.id = agent_claims.node AND holder.lease_until > {now})",
        (agent, node, call_uuid, leg_uuid, node))
    return changed == 1


def release_claim(agent: str, node: str, leg_uuid: str, db: Any = database_proxy) -> bool:
    """Drop ``node``'s claim on ``agent`` for ``leg_uuid`` (never a claim another node took
    over after our lease ended); True if there was one."""
    changed = _run(db, "DELETE FROM agent_claims WHERE agent = ? AND node = ? AND leg_uuid = ?",
                   (agent, node, leg_uuid))
    return changed == 1


def holder_of(agent: str, db: Any = database_proxy) -> tuple[str, str] | None:
    """(node, leg uuid) of the live claim on ``agent``, or None if the agent is free."""
    now = _now(_real(db))
    rows = _query(db, "SELECT c.node, c.leg_uuid FROM agent_claims c JOIN cluster_nodes n"
                  f" ON n.id = c.node WHERE c.agent = ? AND n.lease_until > {now}", (agent,))
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def claims_of(node: str, db: Any = database_proxy) -> list[tuple[str, str]]:
    """(agent, leg uuid) of every claim ``node`` holds in the database."""
    rows = _query(db, "SELECT agent, leg_uuid FROM agent_claims WHERE node = ?", (node,))
    return [(str(agent), str(leg)) for agent, leg in rows]


# An open call record is orphaned when the node handling it has no valid lease: its row
# expired (SIGKILL, a stall) or is gone (a clean stop, or an earlier process on SQLite).
_ORPHANED = ("call_records.ended_at IS NULL AND call_records.node IS NOT NULL"
             " AND call_records.node <> ? AND NOT EXISTS (SELECT 1 FROM cluster_nodes n"
             " WHERE n.id = call_records.node AND n.lease_until > {now})")


def orphaned_calls(node: str, db: Any = database_proxy) -> int:
    """How many open call records belong to nodes whose lease is over (one cheap look per
    heartbeat: ``call_records.ended_at`` is indexed)."""
    now = _now(_real(db))
    rows = _query(db, "SELECT COUNT(*) FROM call_records WHERE " + _ORPHANED.format(now=now),
                  (node,))
    return int(rows[0][0]) if rows else 0


def take_over_calls(node: str, db: Any = database_proxy) -> list[tuple[str, str]]:
    """Make ``node`` the handler of every orphaned open call record, if ``node``'s own lease
    is valid; (call uuid, previous node) of each record taken.

    One conditional UPDATE: a record changes hands once. Two live nodes running it at once
    serialise on the row; PostgreSQL re-checks the WHERE on the row as the winner left it
    (its node, the winner, has a valid lease), so the second changes nothing; SQLite has one
    writer at a time. A node that died and comes back has a new node id: it finds its old
    records taken, or takes them itself, once, like any other node."""
    now = _now(_real(db))
    where = _ORPHANED.format(now=now)
    with session(db, immediate=True) as bound:
        real = _real(bound)
        # The previous handlers, for the log (same transaction; a row another node takes
        # meanwhile is simply not returned by the UPDATE).
        before = dict(_select(real, f"SELECT call_uuid, node FROM call_records WHERE {where}",
                              (node,)))
        rows = _select(real, f"UPDATE call_records SET node = ? WHERE {where}"
                       " AND EXISTS (SELECT 1 FROM cluster_nodes mine"
                       f" WHERE mine.id = ? AND mine.lease_until > {now}) RETURNING call_uuid",
                       (node, node, node))
    return [(str(uuid), str(before.get(uuid, "?"))) for (uuid,) in rows]


def _select(real: peewee.Database, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return list(real.execute_sql(sql.replace("?", real.param), params).fetchall())
