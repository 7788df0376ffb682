"""Every way an agent attempt ends releases the agent's claim, and only once the agent's leg
is gone: the daemon in this process against the simulator, with a real SQLite file.

``released`` records, for every release the store carries out, whether the leg was still up
on the switch at that moment (it must never be: another node could ring the agent then).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fsrouter.cluster import sql
from fsrouter.resilience import journal
from fsrouter.sim import CallerScript, Press
from fsrouter.store import open_database
from fsrouter.store.db import close_database
from fsrouter.testing.waiting import wait_for
from tests.reliability.conftest import (
    AGENT_NUMBER,
    HOTLINE,
    QUEUE_NUMBER,
    SimDaemon,
    full_config,
    phone_number,
    sip,
)

MENU_KEY = [Press("1", 0.3, "menu")]


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool]]:
    """(agent, leg uuid, leg still up) of every release; the sim is set by ``watch``."""
    seen: list[tuple[str, str, bool]] = []
    original = sql.release_claim
    sims: list[Any] = []

    def release(agent: str, node: str, leg_uuid: str, db: Any = None) -> bool:
        sim = sims[0] if sims else None
        chan = sim.channels.get(leg_uuid) if sim is not None else None
        seen.append((agent, leg_uuid, chan is not None and chan.alive))
        return original(agent, node, leg_uuid) if db is None else original(agent, node,
                                                                           leg_uuid, db)

    monkeypatch.setattr(sql, "release_claim", release)
    seen_watch: Callable[[Any], None] = sims.append
    monkeypatch.setattr(SimDaemon, "watched", seen_watch, raising=False)
    return seen


def start(sim_daemon: Callable[..., SimDaemon], tmp_path: Any, **config: Any) -> SimDaemon:
    run = sim_daemon(full_config(tmp_path, **config))
    run.watched(run.sim)  # type: ignore[attr-defined]
    run.login("alice", "bob")
    return run


def claims(run: SimDaemon) -> list[dict[str, Any]]:
    return run.rows("SELECT agent, leg_uuid FROM agent_claims")


def held_while(run: SimDaemon, released: list[tuple[str, str, bool]], agent: str) -> str:
    """The leg uuid of ``agent``'s claim: seen in the store while the call is under way, or
    already released (a phone that rejects at once)."""

    def seen() -> str:
        rows = [r["leg_uuid"] for r in claims(run) if r["agent"] == agent]
        return rows[0] if rows else next((leg for who, leg, _ in released if who == agent), "")

    return wait_for(seen, 10, f"{agent} claimed")


def settled(run: SimDaemon, released: list[tuple[str, str, bool]], agent: str,
            leg: str) -> None:
    """The claim is gone from the store, released once, after the leg had ended."""
    wait_for(lambda: not claims(run), 10, "the claim released")
    mine = [r for r in released if r[1] == leg]
    assert mine and mine[0] == (agent, leg, False), released
    run.check_nothing_left()


def test_agent_route_answered_then_ended(sim_daemon, tmp_path, released):
    run = start(sim_daemon, tmp_path, agent_phone=sip("hangup", 5000, 60))
    call = run.call(AGENT_NUMBER)
    leg = held_while(run, released, "alice")
    wait_for(lambda: call.bridged_to, 10, "bridged")
    assert claims(run)  # held while talking
    assert run.wait_ended(call)["outcome"] == "bridged"
    settled(run, released, "alice", leg)


@pytest.mark.parametrize(("behaviour", "result"), [("noanswer", "no_answer"),
                                                    ("busy", "busy")])
def test_agent_route_not_answered_or_rejected(sim_daemon, tmp_path, released, behaviour,
                                              result):
    run = start(sim_daemon, tmp_path, agent_phone=sip(behaviour, 0, 61))
    call = run.call(AGENT_NUMBER)
    leg = held_while(run, released, "alice")
    run.wait_ended(call)
    assert [r["result"] for r in run.rows("SELECT result FROM attempts")] == [result]
    settled(run, released, "alice", leg)


def test_agent_route_caller_hangs_up_while_the_agent_rings(sim_daemon, tmp_path, released):
    run = start(sim_daemon, tmp_path, agent_phone=sip("noanswer", 0, 62))
    call = run.call(AGENT_NUMBER, script=CallerScript(hangup_in="agent_ringing",
                                                      hangup_delay_s=0.5))
    leg = held_while(run, released, "alice")
    assert run.wait_ended(call)["outcome"] == "abandoned"
    settled(run, released, "alice", leg)


def test_queue_answered_then_ended(sim_daemon, tmp_path, released):
    run = start(sim_daemon, tmp_path, queue_phone=sip("hangup", 5000, 63))
    call = run.call(QUEUE_NUMBER)
    leg = held_while(run, released, "bob")
    wait_for(lambda: call.bridged_to, 10, "bridged")
    assert claims(run)
    assert run.wait_ended(call)["outcome"] == "bridged"
    settled(run, released, "bob", leg)


def test_queue_caller_hangs_up_while_the_agent_rings(sim_daemon, tmp_path, released):
    run = start(sim_daemon, tmp_path, queue_phone=sip("noanswer", 0, 64))
    call = run.call(QUEUE_NUMBER, script=CallerScript(hangup_in="agent_ringing",
                                                      hangup_delay_s=0.5))
    leg = held_while(run, released, "bob")
    assert run.wait_ended(call)["outcome"] == "abandoned_in_queue"
    settled(run, released, "bob", leg)


def test_on_call_staff_are_not_claimed(sim_daemon, tmp_path, released):
    """Escalation legs ring people's own mobiles: not claimed (see calls/dialer.py)."""
    people = {"olga": phone_number("noanswer", 0, 65), "otto": phone_number("hangup", 3000, 66)}
    run = start(sim_daemon, tmp_path, hotline_users=people, ring_timeout=5)
    call = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY))
    assert run.wait_ended(call)["outcome"] == "bridged"
    assert len(call.agent_legs) == 2
    assert released == [] and claims(run) == []
    run.check_nothing_left()


def test_daemon_shutdown_frees_the_claims_of_calls_left_running(tmp_path, released,
                                                                capture_logs):
    run = SimDaemon(tmp_path, full_config(tmp_path, agent_phone=sip("answer", 20, 67)),
                    logs=capture_logs).start()
    try:
        run.watched(run.sim)  # type: ignore[attr-defined]
        run.login("alice")
        call = run.call(AGENT_NUMBER)
        held_while(run, released, "alice")
        wait_for(lambda: call.bridged_to, 10, "bridged")
        assert len(run.rows("SELECT id FROM cluster_nodes")) == 1
        run.daemon.request_stop("test")
        run.daemon.shutdown(drain_seconds=0.2)  # the call stays on the switch
        assert claims(run) == []
        assert run.rows("SELECT id FROM cluster_nodes") == []
        assert "claim.release_failed" not in run.log_events()
    finally:
        # The call left running ends now: give its closing writes a store to land in.
        db = open_database(f"sqlite:///{run.db_path}")
        for chan in list(run.sim.channels.values()):
            run.sim.hangup(chan)
        wait_for(lambda: run.rows("SELECT id FROM call_records WHERE ended_at IS NOT NULL")
                 and not journal.waiting() and all(w.dead for w in journal._worker), 15,
                 "the left call's rows written")
        close_database(db)
        run.sim.stop_inbound()


def test_an_exception_in_the_attempt_releases_the_claim(sim_daemon, tmp_path, released,
                                                        monkeypatch):
    run = start(sim_daemon, tmp_path, agent_phone=sip("answer", 20, 68))

    def broken(*args: Any, **kwargs: Any) -> Any:
        # Not a StoreError: the store's refusals are deferred to the journal now
        # (fsrouter/resilience), and the agent is rung all the same.
        raise RuntimeError("planted: the attempt cannot start")

    monkeypatch.setattr("fsrouter.calls.inbound._start_attempt", broken)
    call = run.call(AGENT_NUMBER)
    wait_for(lambda: released, 10, "a release")
    assert released[0][0] == "alice" and not released[0][2]
    assert claims(run) == []
    run.sim.hangup(run.caller(call))
    wait_for(lambda: not run.live_channels(), 10, "the caller gone")


def test_an_agent_claimed_by_another_node_is_busy(sim_daemon, tmp_path, released):
    """Agent route: the number's when_busy (busy tone), no leg; queue: the caller waits
    and gets the agent once the other node lets go."""
    run = start(sim_daemon, tmp_path, queue_phone=sip("hangup", 3000, 69))
    sql.register_node("other-node", "elsewhere", 1, 60.0)
    assert sql.try_claim("alice", "other-node", "c1", "l1")
    assert sql.try_claim("bob", "other-node", "c2", "l2")
    busy = run.call(AGENT_NUMBER)
    assert run.wait_ended(busy)["outcome"] == "busy_tone"
    assert busy.agent_legs == [] and busy.bridged_to == []
    assert "agent.claimed_elsewhere" in run.log_events()
    waiting = run.call(QUEUE_NUMBER)
    wait_for(lambda: run.log_events().count("attempt.claimed_elsewhere") >= 2, 15,
             "two passes over bob, claimed elsewhere")
    assert waiting.agent_legs == []
    assert sql.release_claim("bob", "other-node", "l2")
    assert run.wait_ended(waiting, timeout=30)["outcome"] == "bridged"
    assert len(waiting.agent_legs) == 1
