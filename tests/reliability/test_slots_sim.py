"""Slots cannot be held hostage (issue 22.4): the daemon against the simulator while 500
sockets from other loopback addresses (allowed by a wide ``listener.allow``, but not the
switch's 127.0.0.1) connect, never answer and reconnect when closed
(tests/reliability/slot_holder.py, another process). Every real call from the switch must
be served, and what is logged about the attackers stays a few lines.

The configuration sets only keys that existed before the fix (``allow``, ``max_calls``): the
defaults are what protect the daemon.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import pytest

from tests.reliability.conftest import UNASSIGNED_NUMBER, full_config, wait_for

ROOT = Path(__file__).resolve().parents[2]
SOCKETS = 500
ATTACK_SECONDS = 25.0
REAL_CALLS = 15
CALL_GAP = 0.3
ONE_PEER = ["127.0.0.100"]
MANY_PEERS = [f"127.0.0.{i}" for i in range(100, 150)]  # more than max_calls / per-peer limit


def about_attackers(logs: list[dict[str, Any]], sources: list[str]) -> list[dict[str, Any]]:
    """The log entries that name an attacking address anywhere."""
    return [entry for entry in logs
            if any(src in str(value) for value in entry.values() for src in sources)]


@pytest.mark.parametrize("sources", [ONE_PEER, MANY_PEERS], ids=["one-peer", "50-peers"])
def test_real_calls_are_served_while_sockets_hold_slots(sim_daemon, tmp_path, sources):
    config = full_config(tmp_path, listener={"allow": ["127.0.0.0/8"], "max_calls": 60})
    run = sim_daemon(config, speed=10.0)
    started = time.monotonic()
    attack = subprocess.Popen([sys.executable, "-m", "tests.reliability.slot_holder",
                               "127.0.0.1", str(run.port), str(SOCKETS), ",".join(sources),
                               str(ATTACK_SECONDS)], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        # The attack is on once the daemon turns connections away (slots full or limits).
        wait_for(lambda: run.daemon.server.refused > 0, 10, "the attackers at the limits")
        records = []
        for _ in range(REAL_CALLS):  # a few at a time: fewer than the reserve
            records.append(run.call(UNASSIGNED_NUMBER))
            gevent.sleep(CALL_GAP)
        for record in records:
            assert run.caller(record).hungup.wait(30), "a real caller was left on the line"
        attacking = attack.poll() is None
        served = [r.caller_uuid for r in records
                  if run.rows("SELECT 1 FROM call_records WHERE call_uuid = ?", r.caller_uuid)]
        lines = about_attackers(run.logs, sources)
        elapsed = time.monotonic() - started
    finally:
        attack.kill()
        attack.wait(10)
    print(f"\n{len(sources)} attacking address(es), {SOCKETS} sockets: "
          f"{len(served)}/{REAL_CALLS} real calls served, "
          f"{len(lines)} log lines about the attackers in {elapsed:.1f} s, "
          f"{run.daemon.server.refused} refused")
    assert attacking, "the attack ended before the real calls were done"
    assert len(served) == REAL_CALLS, f"{len(served)}/{REAL_CALLS} real calls served"
    # The first refusal at once, then one summary per 10 s (issue: 2,691 lines in 30 s).
    assert len(lines) <= 2 + elapsed / 10, [e.get("event") for e in lines][:20]
