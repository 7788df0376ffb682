"""The 200-round test, smaller, on two real FreeSWITCH processes: two daemons, one PostgreSQL.

Each switch runs the shipped test dialplan with its own ports; the agent's phone is a scripted
phone both switches reach (``loopback/<number>/agents``). Agent legs are timed by the switches
themselves (``Event-Date-Timestamp`` of each leg's CHANNEL_CREATE and CHANNEL_HANGUP_COMPLETE,
both switches on this host's clock), so "never two legs to the agent at once" is checked on
what the switches did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from fsrouter.cluster import sql
from fsrouter.testing.phones import phone_number
from fsrouter.testing.realswitch import RealSwitch, SwitchError, find_freeswitch
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import Watcher
from tests.cluster.test_two_nodes_sim import (
    AGENT_NUMBER,
    _agent_free,
    _outcomes,
    config,
    shared_db,
)
from tests.e2e.daemon import Daemon

__all__ = ["shared_db"]

pytestmark = [pytest.mark.realswitch, pytest.mark.multinode, pytest.mark.serial]

ROUNDS = int(os.environ.get("FSR_CLAIM_ROUNDS_REAL", "10"))


@pytest.fixture
def two_switches(tmp_path: Path) -> Iterator[dict[str, RealSwitch]]:
    freeswitch = find_freeswitch()
    if freeswitch is None:
        if os.environ.get("CI"):
            pytest.fail("real FreeSWITCH required when CI is set")
        pytest.skip("no FreeSWITCH found")
    switches = {name: RealSwitch(tmp_path / f"fs-{name}", freeswitch) for name in "ab"}
    try:
        jobs = [gevent.spawn(switch.start, 60.0) for switch in switches.values()]
        gevent.joinall(jobs)
        for job in jobs:
            if job.exception is not None:
                raise job.exception
        yield switches
    except (SwitchError, OSError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"two FreeSWITCH processes did not start: {error}")
    finally:
        for switch in switches.values():
            switch.stop(grace=0)


def agent_legs(watchers: dict[str, Watcher]) -> dict[str, list[float]]:
    """"<switch>/<uuid>" -> [created, ended] (seconds, the switches' own timestamps) of the
    legs fsrouter originated to alice (the loopback a-leg)."""
    legs: dict[str, list[float]] = {}
    for name, watcher in watchers.items():
        ended = {e.uuid: int(e.get("Event-Date-Timestamp") or 0) / 1e6
                 for e in watcher.events if e.name == "CHANNEL_HANGUP_COMPLETE"}
        for event in watcher.events:
            if (event.name == "CHANNEL_CREATE" and event.get("variable_fsr_agent") == "alice"
                    and event.get("variable_loopback_leg") == "A"):
                created = int(event.get("Event-Date-Timestamp") or 0) / 1e6
                legs[f"{name}/{event.uuid}"] = [created, ended.get(event.uuid, float("inf"))]
    return legs


def overlaps(legs: dict[str, list[float]]) -> list[tuple[str, str]]:
    ordered = sorted(legs.items(), key=lambda item: item[1][0])
    return [(first, second) for (first, (_, end)), (second, (start, _))
            in zip(ordered, ordered[1:], strict=False) if start < end]


def test_two_real_switches_never_ring_the_agent_twice(
        shared_db: str, tmp_path: Path, two_switches: dict[str, RealSwitch]) -> None:
    phone = f"loopback/{phone_number('hangup', 1000, 1)}/agents"  # answers, talks 1 s
    daemons: dict[str, Daemon] = {}
    watchers = {name: Watcher(switch.esl_endpoint()) for name, switch in two_switches.items()}
    pairs: list[tuple[str, str]] = []
    began = time.monotonic()
    try:
        for name, switch in two_switches.items():
            (tmp_path / name).mkdir()
            daemons[name] = Daemon(tmp_path / name, config(shared_db, phone),
                                   switch.esl_endpoint())
            daemons[name].start()
            switch.route_to(daemons[name].port)
        for daemon in daemons.values():
            daemon.wait_logged("agents.resynced", timeout=30)
            daemon.wait_logged("recovery.done", timeout=30)
        a, b = two_switches["a"], two_switches["b"]
        for number in range(ROUNDS):
            wait_for(_agent_free, 30, f"alice free before round {number}")
            callers = (a.place_call(AGENT_NUMBER, f"+49151100{number:05d}"),
                       b.place_call(AGENT_NUMBER, f"+49151200{number:05d}"))
            a.wait_hangup(callers[0], timeout=60)
            b.wait_hangup(callers[1], timeout=60)
            # The daemon's call is the loopback b-leg (the public side running ``socket``).
            pairs.append(tuple(watchers[name].wait(  # type: ignore[arg-type]
                "CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
                for name, caller in zip("ab", callers, strict=True)))
        legs = wait_for(lambda: (lambda found: found if all(
            end != float("inf") for _, end in found.values()) else None)(
                agent_legs(watchers)), 30, "every agent leg ended")
        every = [uuid for pair in pairs for uuid in pair]
        outcomes = wait_for(lambda: (lambda o: o if len(o) == len(every) else None)(
            _outcomes(every)), 60, "every call record closed")
    finally:
        for watcher in watchers.values():
            watcher.close()
        for daemon in daemons.values():
            daemon.stop()
    per_round = [sorted(outcomes[x] for x in pair) for pair in pairs]
    one_each = sum(1 for got in per_round if got == ["bridged", "busy_tone"])
    found = overlaps(legs)
    print(f"\n{ROUNDS} rounds on two real switches in {time.monotonic() - began:.1f} s: "
          f"{len(legs)} agent legs, double rings {len(found)}, rounds with one talking and "
          f"one busy tone {one_each}")
    assert found == [], found[:5]
    assert len(legs) == ROUNDS
    assert all(got.count("bridged") <= 1 for got in per_round)
    assert one_each == ROUNDS, [got for got in per_round if got != ["bridged", "busy_tone"]]
    assert sql.holder_of("alice") is None
