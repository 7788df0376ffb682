"""Each webhook try and each SMTP session has one deadline for the whole of it, below the
row's lease: receivers that drip their answer one byte at a time (each byte well within any
per-read timeout) on real loopback sockets, the sender in a process monkey-patched by gevent
as the daemon is. A slow webhook receiver does not delay a healthy one queued with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from fsrouter.notify import mail, webhooks

REPO = Path(__file__).resolve().parents[2]
DRIP_INTERVAL = 0.2  # seconds between two bytes
DRIP_FOR = 10.0  # the dripping receiver gives up after this (the old code waited for it)
DEADLINE = 2  # seconds, the configured total per try
MARGIN = 4.0  # for a loaded 2-core machine; still well below DRIP_FOR


def run(scenario: str, tmp_path: Path) -> dict:
    cmd = [sys.executable, "-m", "tests.notify.dripping", scenario, f"sqlite:///{tmp_path}/d.db",
           str(DRIP_INTERVAL), str(DRIP_FOR), str(DEADLINE)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dripping_webhook_receiver_is_cut_off_and_does_not_delay_a_healthy_one(tmp_path):
    result = run("webhook", tmp_path)
    # The healthy receiver got its delivery while the slow try was still dripping.
    assert result["healthy"] == {"state": "delivered", "attempts": 1}, result
    assert result["healthy_arrived_s"] is not None
    assert result["healthy_arrived_s"] < DEADLINE, result
    # The slow try ended at its deadline, closed its socket, and is a failed try to retry.
    assert DEADLINE - 0.1 <= result["pass_s"] < DEADLINE + MARGIN, result
    assert result["slow_closed_s"] is not None and result["slow_closed_s"] < DEADLINE + MARGIN
    assert result["slow"]["state"] == "pending" and result["slow"]["attempts"] == 1, result
    assert result["slow"]["error"] == f"no complete response within {DEADLINE} s", result
    assert result["slow"]["next_in_s"] > 0, result
    assert result["delivered"] == 1


def test_dripping_smtp_server_is_cut_off_at_the_deadline(tmp_path):
    result = run("smtp", tmp_path)
    assert DEADLINE - 0.1 <= result["session_s"] < DEADLINE + MARGIN, result
    assert result["closed_s"] is not None and result["closed_s"] < DEADLINE + MARGIN, result
    assert result["sent"] == 0
    row = result["row"]
    assert (row["attempts"], row["retry"], row["emailed"]) == (1, True, False), result
    assert f"did not finish the session within {DEADLINE} s" in row["error"], result


def test_webhook_lease_outlasts_the_deadline():
    for timeout in (1, 5, 60):  # the configured range
        assert webhooks.attempt_lease(timeout) >= timedelta(seconds=timeout + 30)


def test_smtp_deadline_must_end_before_the_lease():
    with pytest.raises(ValueError, match="before the lease"):
        mail.Mailer(lambda: None, deadline=600, lease=timedelta(minutes=10))
    assert mail.Mailer(lambda: None, deadline=60, lease=timedelta(seconds=90)).deadline == 60
