"""The command line as an operator uses it: real processes, real files, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
PASSWORD = "s3cret-Esl-pw"


def fsrouter(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    full_env = {**os.environ, "FSROUTER_ESL_PASSWORD": PASSWORD, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "fsrouter", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, **kwargs,
    )


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = fsrouter(*args, env=env)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_for(tmp_path: Path, port: int) -> Path:
    """The example configuration with a free listener port and a database in tmp_path."""
    text = EXAMPLE.read_text(encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(
        text.replace("port: 8084", f"port: {port}").replace(
            "port: 9464", f"port: {free_port()}").replace(
            "sqlite:////var/lib/fsrouter/fsrouter.db", f"sqlite:///{tmp_path}/fsrouter.db"
        ),
        encoding="utf-8",
    )
    assert f"port: {port}" in path.read_text(), "example no longer sets listener.port: 8084"
    return path


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("run", "check-config", "db", "version"):
        assert command in result.stdout


def test_version():
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.startswith("fsrouter ")


def test_check_config_example_ok():
    result = run("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_reports_every_error_with_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "switch:\n  password_env: FSROUTER_ESL_PASSWORD\n"
        "numbers:\n  - number: '+49301234567'\n    type: unassigned\n    behavior: sit\n"
        "listener:\n  port: 99999\n",
        encoding="utf-8",
    )
    result = run("check-config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert any("numbers[0].behavior" in line for line in lines)
    assert any("listener.port" in line for line in lines)


def test_check_config_checks_every_switch_of_the_list(tmp_path):
    """``switches:`` (issue 18.1): each entry's password is resolved, with its own line."""
    path = tmp_path / "two.yaml"
    path.write_text("switches:\n"
                    "  - {name: a, port: 8021, password_env: FSROUTER_ESL_PASSWORD}\n"
                    "  - {name: b, port: 8022, password_env: FSROUTER_ESL_PASSWORD_B}\n",
                    encoding="utf-8")
    result = run("check-config", str(path), env={"FSROUTER_ESL_PASSWORD_B": ""})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"{path}:3:27: switches[1].password_env: environment "
                                     "variable FSROUTER_ESL_PASSWORD_B is not set or empty")
    result = run("check-config", str(path), env={"FSROUTER_ESL_PASSWORD_B": "another-one"})
    assert result.returncode == 0, result.stderr


def test_check_config_missing_file(tmp_path):
    result = run("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_db_upgrade_is_idempotent(tmp_path):
    config = config_for(tmp_path, free_port())
    first = run("db", "upgrade", "-c", str(config))
    assert first.returncode == 0, first.stderr
    assert "applied migrations" in first.stdout
    second = run("db", "upgrade", "-c", str(config))
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert (tmp_path / "fsrouter.db").stat().st_mode & 0o077 == 0


def test_run_binds_logs_json_and_stops_on_sigterm(tmp_path):
    port = free_port()
    config = config_for(tmp_path, port)
    proc = fsrouter("run", "-c", str(config))
    try:
        ready = _wait_for_line(proc, "daemon.ready")
        assert ready["listen"] == f"127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the listener accepts
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "daemon.stopping" in events and "daemon.stopped" in events
    assert PASSWORD not in err + out


def test_sigterm_while_the_daemon_starts_is_a_clean_stop(tmp_path):
    """A SIGTERM that arrives during the start (here: as soon as the store is migrated) is
    kept and acted on once the start is done: exit 0 with the usual stop, not killed by
    signal 15 (before, a SIGTERM right after ``daemon.ready`` could still kill it)."""
    config = config_for(tmp_path, free_port())
    proc = fsrouter("run", "-c", str(config))
    try:
        _wait_for_line(proc, "store.migrated")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "daemon.ready" in events and "daemon.stopped" in events


def test_run_exit_code_when_port_taken(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        config = config_for(tmp_path, holder.getsockname()[1])
        result = run("run", "-c", str(config))
    assert result.returncode == 4, result.stderr
    assert "listener.bind_failed" in result.stderr


def test_run_exit_code_when_database_unusable(tmp_path):
    config = config_for(tmp_path, free_port())
    result = run("run", "-c", str(config), "--database", "sqlite:////proc/no/such/dir/x.db")
    assert result.returncode == 3, result.stderr
    assert "store.unavailable" in result.stderr


def _wait_for_line(proc: subprocess.Popen, event: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                pytest.fail(f"fsrouter exited with {proc.returncode} before {event}")
            continue
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                return record
    pytest.fail(f"no {event} within {timeout} s")


def test_demo_runs_and_exits_zero():
    result = run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7/7 calls ended as expected" in result.stdout
    assert "resolved, accepted by carla" in result.stdout
