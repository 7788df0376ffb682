"""SQLite serves one node: a second daemon on the same file refuses to start (issue 18, 7).

Before the guard, a second ``fsrouter run`` on the same SQLite file started silently and its
start-up recovery closed the first daemon's live call record as lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from fsrouter.sim import Simulator
from fsrouter.store import owner
from tests.e2e.daemon import Daemon, free_port

PASSWORD = "owner-test-secret-4711"


def test_a_second_claim_on_one_file_is_refused_and_names_the_holder(tmp_path):
    database = str(tmp_path / "fsrouter.db")
    first = owner.claim(database)
    assert first is not None
    with pytest.raises(owner.DatabaseInUse) as refused:
        owner.claim(database)
    assert f"process {os.getpid()}" in str(refused.value)
    assert "PostgreSQL" in str(refused.value)
    first.release()
    again = owner.claim(database)  # released: the next daemon may start
    assert again is not None
    again.release()


def test_an_in_memory_database_needs_no_lock():
    assert owner.claim(":memory:") is None


@pytest.fixture
def sim():
    simulator = Simulator(speed=1.0, password=PASSWORD)
    port = simulator.start_inbound()
    yield ("127.0.0.1", port, PASSWORD)
    simulator.stop_inbound()


def _run(daemon: Daemon, port: int) -> subprocess.CompletedProcess[str]:
    """A second ``fsrouter run`` on ``daemon``'s configuration but its own listener port."""
    config = daemon.config_path.read_text("utf-8").replace(
        f"port: {daemon.port}\n", f"port: {port}\n", 1)
    path = daemon.workdir / "second.yaml"
    path.write_text(config, "utf-8")
    return subprocess.run([sys.executable, "-m", "fsrouter", "--log-format", "json", "run",
                           "-c", str(path)], env=daemon.env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start(tmp_path, sim):
    first = Daemon(tmp_path, {"metrics": {"enabled": False}, "numbers": []}, sim)
    first.start()
    try:
        calls_before = first.rows("SELECT * FROM call_records")
        second = _run(first, free_port())
        assert second.returncode == 3, second.stdout + second.stderr
        output = second.stdout + second.stderr
        assert "in use by another fsrouter daemon" in output
        assert f"process {first.process.pid}" in output
        assert first.process.poll() is None  # the first one keeps running
        assert first.rows("SELECT * FROM call_records") == calls_before
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        # The kernel dropped the dead daemon's lock: a replacement starts at once.
        replacement = Daemon(tmp_path, {"metrics": {"enabled": False}, "numbers": []}, sim)
        replacement.start()
        assert replacement.stop() == 0
    finally:
        first.stop()
