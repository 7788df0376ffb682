"""A node dies, its callers live on (issue 18 point 3) on the issue's own topology: two REAL
switches (a, b), daemon A and daemon B each connected to BOTH (``switches:``), one PostgreSQL,
switch a's dialplan offering its calls to A first and B second, switch b's to B then A; short
lease (heartbeat 0.5 s, lease 3 s).

Daemon A gets SIGKILL while it serves three callers on switch a: one in the menu, one in a
queue while dora's phone rings, one talking to carl; a caller on switch b talks to carl through
daemon B. A new call on switch a must reach B at once (dialplan failover); within 10 s of A's
lease expiring B takes over A's waiting callers on switch a (dora's ringing leg killed, dora
rung again on switch a, the same incident, no second one); the talking caller stays up and its
incident is resolved when it ends; the call on switch b is untouched throughout; A started
again serves a new call on switch a and takes nothing twice. The one-switch version, whose
helpers this test shares: tests/cluster/test_takeover_realswitch.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsrouter.testing.switchpair import SwitchPair
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import Watcher
from tests.cluster.test_takeover_realswitch import (
    LEASE,
    TAKEOVER_LIMIT_S,
    WAIT_S,
    attempts_of,
    epoch,
    executing,
    finish_after_takeover,
    incidents_of,
    lease_until,
    logged,
    record,
    restart,
    stamp,
)
from tests.multinode.conftest import NodeDaemon
from tests.multinode.test_two_switches_realswitch import exists, started
from tests.reliability.test_restart_realswitch import Caller, leg_of, restart_config

pytestmark = [pytest.mark.realswitch, pytest.mark.multinode]


@pytest.fixture
def store(db_url: str) -> Iterator[str]:
    """The test's own connection to the nodes' database (the checks read it)."""
    from fsrouter.store import open_database, upgrade
    from fsrouter.store.db import close_database

    db = open_database(db_url)
    upgrade(db)
    try:
        yield db_url
    finally:
        close_database(db)


@pytest.fixture
def watchers(switch_pair: SwitchPair) -> Iterator[dict[str, Watcher]]:
    """A watcher per switch, open before any call; every channel hung up afterwards."""
    watching = {name: Watcher(switch.esl_endpoint()) for name, switch in switch_pair}
    try:
        yield watching
    finally:
        for watcher in watching.values():
            watcher.close()
        for _, switch in switch_pair:
            for row in switch.channels():
                switch.hangup(row["uuid"])


def node(workdir: Path, pair: SwitchPair, db_url: str) -> tuple[NodeDaemon, str]:
    """A daemon serving both switches, started; with its node id."""
    daemon = NodeDaemon(workdir, pair, db_url, {**restart_config(), "cluster": LEASE})
    started(daemon)
    return daemon, str(logged(daemon, "lease.started")["node"])


def touched(daemon: NodeDaemon, uuid: str) -> list[dict[str, Any]]:
    """``daemon``'s recovery lines naming call ``uuid`` (taken, adopted, kept, closed...)."""
    return [line for line in daemon.log_lines()
            if str(line.get("event")).startswith("recovery.") and uuid in str(line)]


def test_a_killed_node_s_callers_on_switch_a_live_on_with_the_other_node(
        switch_pair: SwitchPair, store: str, tmp_path: Path,
        watchers: dict[str, Watcher]) -> None:
    pair, wa, wb = switch_pair, watchers["a"], watchers["b"]
    a, node_a = node(tmp_path / "a", pair, store)
    b, node_b = node(tmp_path / "b", pair, store)
    try:
        pair.route_failover({"a": a.port, "b": b.port})
        began = time.time()
        # Switch b: a caller talking to carl through daemon B (must never be touched).
        other = Caller(pair["b"], wb, digit="3")
        carl_b = leg_of(wb, "carl", timeout=WAIT_S, after=began)
        wait_for(lambda: [i for i in incidents_of(other.b) if i.state == "accepted"], WAIT_S,
                 "switch b's incident accepted")
        other_attempts = [(x.leg_uuid, x.result) for x in attempts_of(other.b)]
        # Switch a: talking to carl, queued while dora rings (30 s), in the menu (15 s).
        talking = Caller(pair["a"], wa, digit="3")
        carl = leg_of(wa, "carl", timeout=WAIT_S, after=began)
        wait_for(lambda: [i for i in incidents_of(talking.b) if i.state == "accepted"], WAIT_S,
                 "carl's incident accepted")
        queued = Caller(pair["a"], wa, digit="4")
        dora = leg_of(wa, "dora", timeout=WAIT_S, after=began)
        menu = Caller(pair["a"], wa)
        for caller in (talking, queued, menu):
            assert record(caller.b).node == node_a
        assert record(other.b).node == node_b
        [incident] = incidents_of(queued.b)

        a.kill()
        killed = time.time()

        # A new call on switch a: the dialplan fails over to B at once.
        placed = time.time()
        new = Caller(pair["a"], wa)
        failover = stamp(executing(wa, new.b, "play_and_get_digits", 0)) - placed
        assert record(new.b).node == node_b

        # B takes over A's callers on switch a once A's lease is over.
        taken = logged(b, "recovery.taken_over")
        assert sorted(taken["calls"]) == sorted([talking.b, queued.b, menu.b]), taken
        assert taken["nodes"] == [node_a]
        expired = lease_until(node_a)
        wait_for(lambda: len(b.events_named("recovery.adopted")) >= 2 or None, WAIT_S,
                 "both waiting callers adopted")
        adopted = {line["call_uuid"]: epoch(line) for line in b.events_named("recovery.adopted")}
        assert set(adopted) == {queued.b, menu.b}, adopted
        takeover = max(adopted.values()) - expired
        # The ringing leg was killed; dora rings again on switch a, for the same incident.
        again = leg_of(wa, "dora", timeout=WAIT_S, after=max(adopted.values()) - 0.5)
        assert again != dora
        wa.wait("CHANNEL_HANGUP_COMPLETE", WAIT_S, **{"Unique-ID": dora})
        assert exists(pair, "a", again) and not exists(pair, "b", again)
        assert [i.id for i in incidents_of(queued.b)] == [incident.id]
        # The menu caller hears the menu again, on switch a, from B.
        wait_for(lambda: executing(wa, menu.b, "play_and_get_digits", max(adopted.values())),
                 WAIT_S, "the menu again")
        # The talking caller stayed up; kept by B.
        kept = logged(b, "recovery.kept_bridged", call_uuid=talking.b)
        assert kept["leg_uuid"] == carl, kept
        assert exists(pair, "a", talking.b)
        print(f"\nfailover of a new call on switch a to B: {failover:.2f} s (placed to menu); "
              f"A's lease expired {expired - killed:.2f} s after the kill; takeover of the "
              f"waiting callers {takeover:.2f} s after the expiry "
              f"(found {epoch(taken) - expired:.2f} s after it)")
        assert takeover < TAKEOVER_LIMIT_S

        finish_after_takeover(talking, queued, incident.id, dora, again)

        # A comes back: a new node; its passes (one per switch) take nothing; it serves the
        # next call on switch a.
        node_a2 = wait_for(lambda: restart(a), WAIT_S, "A started again")
        assert node_a2 != node_a
        a.wait_logged_with("recovery.done", timeout=WAIT_S, count=2)
        for done in a.events_named("recovery.done"):
            assert (done["adopted"], done["legs_killed"], done["closed"]) == ([], [], []), done
        assert not a.events_named("recovery.taken_over")
        later = Caller(pair["a"], wa)
        assert record(later.b).node == node_a2
        assert record(menu.b).node == node_b

        # Switch b's call was untouched throughout: still up, B's, same leg, no recovery.
        assert exists(pair, "b", other.b) and exists(pair, "b", carl_b)
        fresh = record(other.b)
        assert (fresh.ended_at, fresh.node) == (None, node_b)
        assert [(x.leg_uuid, x.result) for x in attempts_of(other.b)] == other_attempts
        assert not touched(b, other.b) and not touched(a, other.b)
        other.hang_up()
        ended = wait_for(lambda: (lambda r: r if r.ended_at else None)(record(other.b)),
                         WAIT_S, "switch b's record closed")
        assert ended.outcome == "bridged"
        wait_for(lambda: [i.state for i in incidents_of(other.b)] == ["resolved"] or None,
                 WAIT_S, "switch b's incident resolved")
    finally:
        a.stop()
        b.stop()
