"""Slots cannot be held hostage (issue 22.4) on the real FreeSWITCH: while 500 sockets from
127.0.0.100 (allowed by a wide ``listener.allow``, not the switch's 127.0.0.1) connect, never
answer and reconnect when closed (tests/reliability/slot_holder.py, another process), every
call the switch hands to the daemon is served, and the attackers cost a few log lines."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.reliability.conftest import UNASSIGNED_NUMBER, full_config, wait_for
from tests.reliability.test_slots_sim import ONE_PEER, SOCKETS, about_attackers

ROOT = Path(__file__).resolve().parents[2]
REAL_CALLS = 10
ATTACK_SECONDS = 150.0  # outlasts the calls even on the old code (110 s)


def test_real_switch_calls_are_served_while_sockets_hold_slots(switch_daemon, real_switch,
                                                                  tmp_path):
    run = switch_daemon(full_config(tmp_path, listener={"allow": ["127.0.0.0/8"],
                                                        "max_calls": 60}))
    server = run.daemon.server
    started = time.monotonic()
    attack = subprocess.Popen([sys.executable, "-m", "tests.reliability.slot_holder",
                               "127.0.0.1", str(server.port), str(SOCKETS), ONE_PEER[0],
                               str(ATTACK_SECONDS)], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: server.refused > 0, 10, "the attackers at the limits")
        for _ in range(REAL_CALLS):
            real_switch.wait_hangup(real_switch.place_call(UNASSIGNED_NUMBER), timeout=30)
        def recorded() -> list[dict]:
            return run.rows("SELECT call_uuid FROM call_records WHERE outcome = 'unassigned'")

        wait_for(lambda: len(recorded()) >= REAL_CALLS, 20, "every call recorded", quiet=True)
        served = recorded()
        attacking = attack.poll() is None
        lines = about_attackers(run.logs, ONE_PEER)
        elapsed = time.monotonic() - started
    finally:
        attack.kill()
        attack.wait(10)
    print(f"\nreal switch, {SOCKETS} sockets from {ONE_PEER[0]}: {len(served)}/{REAL_CALLS} "
          f"calls served, {len(lines)} log lines about the attackers in {elapsed:.1f} s, "
          f"{server.refused} refused")
    assert len(served) == REAL_CALLS  # before the fix: 8/10, 72,542 lines in 110 s
    assert attacking, "the attack ended before the real calls were done"
    assert len(lines) <= 2 + elapsed / 10, [e.get("event") for e in lines][:20]
