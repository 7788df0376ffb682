"""A node dies, its callers live on (issue 18 point 3), on ONE real switch shared by two
daemons (``fsrouter run`` processes) and one PostgreSQL.

The switch's dialplan offers every call to daemon A first and daemon B second
(``fsrouter_target=A|B``). Daemon A gets SIGKILL with three callers: one in the menu, one in
a queue while dora's phone rings, one talking to carl. New calls must reach B at once
(dialplan failover), B must take over A's waiting callers within 10 s of A's lease expiring
(the ringing leg killed, dora rung again from B, the same incident), the talking caller stays
up and its incident is resolved when it hangs up, and A, started again, serves a new call
and takes nothing twice. The figures are printed (docs/two-nodes-takeover.md).

And the defect found by the claims work: a second daemon's start-up recovery pass took the
first daemon's live calls as its own (same host, same database): it must leave them alone.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fsrouter.store import queries
from fsrouter.store.db import database_proxy, session
from fsrouter.store.models import Attempt, CallRecord, Incident
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import WATCHED, Watcher
from tests.e2e.daemon import Daemon
from tests.reliability.test_restart_realswitch import Caller, leg_of, restart_config
from tests.store.conftest import empty_postgres

pytestmark = [pytest.mark.realswitch, pytest.mark.multinode]

WAIT_S = 60.0  # any one step, on a loaded 2-core machine
LEASE = {"heartbeat_seconds": 0.5, "lease_seconds": 3.0}
TAKEOVER_LIMIT_S = 10.0  # the requirement: from the dead node's lease expiring


@pytest.fixture
def shared_db(postgres_url: str) -> Iterator[str]:
    from fsrouter.store import open_database, upgrade
    from fsrouter.store.db import close_database

    empty_postgres(postgres_url)
    db = open_database(postgres_url)
    upgrade(db)
    try:
        yield postgres_url
    finally:
        close_database(db)


@pytest.fixture
def watcher(real_switch: Any) -> Iterator[Watcher]:
    watching = Watcher(real_switch.esl_endpoint(), WATCHED)
    try:
        yield watching
    finally:
        watching.close()
        for row in real_switch.channels():
            real_switch.hangup(row["uuid"])
        real_switch.route_to(1)  # nobody: the next test routes its own


def node_config(url: str) -> dict[str, Any]:
    return {**restart_config(), "database": {"url": url}, "cluster": LEASE}


def start(daemon: Daemon, log: str) -> str:
    """Start ``daemon`` (log file ``log``); its node id once its start-up pass is over."""
    daemon.log_path = daemon.workdir / log
    daemon.start(timeout=WAIT_S)
    daemon.wait_logged("recovery.done", timeout=WAIT_S)
    return str(logged(daemon, "lease.started")["node"])


def restart(daemon: Daemon) -> str | None:
    """Start the killed ``daemon`` again on its port, as systemd's Restart= would: a start
    refused because the port is still held is tried again (seen once in 4 runs: the switch
    still held a socket to the killed daemon; ``ss`` shows what)."""
    try:
        return start(daemon, "a2.log")
    except RuntimeError as error:
        if "Address already in use" not in str(error):
            raise
        held = subprocess.run(["ss", "-tanp"], capture_output=True, text=True, check=False)
        print("\n".join(line for line in held.stdout.splitlines()
                        if f":{daemon.port} " in line))
        return None


def route(switch: Any, *daemons: Daemon) -> None:
    """The dialplan offers calls to the daemons in this order (the socket app's failover)."""
    target = "|".join(f"127.0.0.1:{daemon.port}" for daemon in daemons)
    assert switch.api(f"global_setvar fsrouter_target={target}").startswith("+OK")


def logged(daemon: Daemon, event: str, **fields: Any) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((line for line in daemon.log_lines() if line.get("event") == event
                     and all(line.get(k) == v for k, v in fields.items())), None)
    return wait_for(found, WAIT_S, f"{event} {fields} in {daemon.log_path.name}")


def epoch(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def record(uuid: str) -> CallRecord:
    return queries.get_call(uuid)


def incidents_of(uuid: str) -> list[Incident]:
    with session():
        return list(Incident.select().where(Incident.call_uuid == uuid))


def attempts_of(uuid: str) -> list[Attempt]:
    with session():
        return list(Attempt.select().join(CallRecord).where(CallRecord.call_uuid == uuid)
                    .order_by(Attempt.id))


def lease_until(node: str) -> float:
    """When ``node``'s lease ran out (epoch seconds, the database's clock: this host's)."""
    with session():
        cursor = database_proxy.execute_sql(
            "SELECT lease_until FROM cluster_nodes WHERE id = %s", (node,))
        return float(cursor.fetchone()[0])


def executing(watcher: Watcher, uuid: str, app: str, after: float) -> Any:
    return next((e for e in watcher.events if e.name == "CHANNEL_EXECUTE" and e.uuid == uuid
                 and e.get("Application") == app and stamp(e) > after), None)


def stamp(event: Any) -> float:
    return int(event.get("Event-Date-Timestamp") or 0) / 1e6


def test_a_second_daemon_leaves_the_first_ones_live_calls_alone(
        shared_db: str, tmp_path: Path, real_switch: Any, watcher: Watcher) -> None:
    """Before: B's start-up pass took A's waiting caller as its own ("records of this host"
    that B's process does not handle), killed dora's ringing leg and sent the caller away."""
    for name in "ab":
        (tmp_path / name).mkdir()
    a = Daemon(tmp_path / "a", node_config(shared_db), real_switch.esl_endpoint())
    b = Daemon(tmp_path / "b", node_config(shared_db), real_switch.esl_endpoint())
    try:
        node_a = start(a, "a.log")
        route(real_switch, a)
        began = time.time()
        caller = Caller(real_switch, watcher, digit="4")
        ringing = leg_of(watcher, "dora", timeout=WAIT_S, after=began)
        start(b, "b.log")
        done = logged(b, "recovery.done")
        assert (done["checked"], done["adopted"], done["legs_killed"], done["closed"]) == (
            0, [], [], []), done
        assert real_switch.api(f"uuid_exists {ringing}").strip() == "true"
        fresh = record(caller.b)
        assert (fresh.ended_at, fresh.node) == (None, node_a)
        assert [a.result for a in attempts_of(caller.b)] == [None]
    finally:
        a.stop()
        b.stop()


def test_a_killed_node_s_callers_live_on_with_the_other(
        shared_db: str, tmp_path: Path, real_switch: Any, watcher: Watcher) -> None:
    for name in "ab":
        (tmp_path / name).mkdir()
    a = Daemon(tmp_path / "a", node_config(shared_db), real_switch.esl_endpoint())
    b = Daemon(tmp_path / "b", node_config(shared_db), real_switch.esl_endpoint())
    try:
        node_a = start(a, "a.log")
        node_b = start(b, "b.log")
        route(real_switch, a, b)
        began = time.time()
        talking = Caller(real_switch, watcher, digit="3")  # carl answers at once
        carl = leg_of(watcher, "carl", timeout=WAIT_S, after=began)
        wait_for(lambda: [i for i in incidents_of(talking.b) if i.state == "accepted"], WAIT_S,
                 "carl's incident accepted")
        queued = Caller(real_switch, watcher, digit="4")  # dora rings 30 s
        dora = leg_of(watcher, "dora", timeout=WAIT_S, after=began)
        menu = Caller(real_switch, watcher)  # in the menu (15 s to choose)
        for caller in (talking, queued, menu):
            assert record(caller.b).node == node_a
        [incident] = incidents_of(queued.b)

        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        killed = time.time()

        # New calls: the dialplan fails over to B at once.
        placed = time.time()
        new = Caller(real_switch, watcher)
        reached = executing(watcher, new.b, "play_and_get_digits", 0)
        failover = stamp(reached) - placed
        assert record(new.b).node == node_b

        # B takes over A's callers once A's lease is over.
        taken = logged(b, "recovery.taken_over")
        assert sorted(taken["calls"]) == sorted([talking.b, queued.b, menu.b]), taken
        assert taken["nodes"] == [node_a]
        expired = lease_until(node_a)
        wait_for(lambda: len([1 for line in b.log_lines()
                              if line.get("event") == "recovery.adopted"]) >= 2 or None,
                 WAIT_S, "both waiting callers adopted")
        adopted = {line["call_uuid"]: epoch(line) for line in b.log_lines()
                   if line.get("event") == "recovery.adopted"}
        assert set(adopted) == {queued.b, menu.b}, adopted
        takeover = max(adopted.values()) - expired
        # The ringing leg was killed; dora rings again, from B, for the same incident.
        again = leg_of(watcher, "dora", timeout=WAIT_S, after=max(adopted.values()) - 0.5)
        assert again != dora
        watcher.wait("CHANNEL_HANGUP_COMPLETE", WAIT_S, **{"Unique-ID": dora})
        assert [i.id for i in incidents_of(queued.b)] == [incident.id]
        # The menu caller hears the menu again from B.
        wait_for(lambda: executing(watcher, menu.b, "play_and_get_digits",
                                   max(adopted.values())), WAIT_S, "the menu again")
        # The talking caller stayed up; kept by B.
        kept = logged(b, "recovery.kept_bridged", call_uuid=talking.b)
        assert kept["leg_uuid"] == carl, kept
        assert real_switch.api(f"uuid_exists {talking.b}").strip() == "true"
        print(f"\nfailover of a new call to B: {failover:.2f} s (placed to menu); "
              f"A's lease expired {expired - killed:.2f} s after the kill; takeover of the "
              f"waiting callers {takeover:.2f} s after the expiry "
              f"(found {epoch(taken) - expired:.2f} s after it)")
        assert takeover < TAKEOVER_LIMIT_S

        finish_after_takeover(talking, queued, incident.id, dora, again)

        # A comes back: a new node, serves the next call, takes nothing.
        node_a2 = wait_for(lambda: restart(a), WAIT_S, "A started again")
        assert node_a2 != node_a
        done = logged(a, "recovery.done")
        assert (done["adopted"], done["legs_killed"], done["closed"]) == ([], [], []), done
        assert not [line for line in a.log_lines() if line.get("event") == "recovery.taken_over"]
        later = Caller(real_switch, watcher)
        assert record(later.b).node == node_a2
        assert record(menu.b).node == node_b
    finally:
        a.stop()
        b.stop()


def finish_after_takeover(talking: Any, queued: Any, incident_id: int, dora: str,
                          again: str) -> None:
    """After B took A's callers over: the bridged call ends, B closes its record and
    resolves its incident (the same close, a statement later); the queued caller gives up:
    one incident, its attempts the killed leg ``dora`` and B's leg ``again``."""
    talking.hang_up()
    closed = wait_for(lambda: (lambda r: r if r.ended_at else None)(record(talking.b)),
                      WAIT_S, "the talking caller's record closed")
    assert closed.outcome == "bridged"
    wait_for(lambda: [i.state for i in incidents_of(talking.b)] == ["resolved"] or None,
             WAIT_S, "carl's incident resolved")
    queued.hang_up()
    wait_for(lambda: record(queued.b).ended_at, WAIT_S, "the queued caller's record")
    assert [i.id for i in incidents_of(queued.b)] == [incident_id]
    legs = [(x.leg_uuid, x.result) for x in attempts_of(queued.b)]
    assert legs == [(dora, "cancelled"), (again, "cancelled")], legs
