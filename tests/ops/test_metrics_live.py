"""Issue 19, point 6: the figures an operator watches, read over HTTP from a running daemon:
callers waiting per queue, agents per state, on-call gaps, build info and the last reload.

The daemon runs in this process against the built-in simulator (a real outbound socket, a
real event socket, a real SQLite file); agents are logged in with the ``fsrouter`` CLI as a
separate process, the reload is a real SIGHUP-equivalent ``Daemon.reload()`` after the file on
disk changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsrouter import __version__
from fsrouter.sim import CallerScript
from fsrouter.testing.waiting import wait_for
from tests.ops.test_metrics import fetch, samples
from tests.reliability.conftest import (  # noqa: F401 (capture_logs: a fixture)
    QUEUE_NUMBER,
    SimDaemon,
    capture_logs,
    full_config,
)

GAPPY_HOTLINE = "+493040009999"


def config(tmp_path: Path) -> dict[str, Any]:
    data = full_config(tmp_path, metrics={"enabled": True, "bind": "127.0.0.1"})
    # A second hotline whose only schedule has nobody in it: a gap at every moment.
    data["schedules"] = {"empty": {"rotations": []}}
    data["policies"]["nobody"] = {"levels": [{"targets": [{"schedule": "empty"}]}]}
    data["numbers"].append({"number": GAPPY_HOTLINE, "type": "call_routing",
                            "options": [{"digit": 1, "label": "Night", "policy": "nobody"}]})
    return data


@pytest.fixture
def running(tmp_path, capture_logs):  # noqa: F811 (the imported fixture)
    runner = SimDaemon(tmp_path, config(tmp_path), speed=10.0, logs=capture_logs).start()
    yield runner
    runner.stop()


def scrape(runner: SimDaemon) -> dict[tuple[str, frozenset], float]:
    port = runner.daemon.parts["metrics_server"].port
    status, _, body = fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return samples(body)


def get(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def fsrouter_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fsrouter", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ})


def test_callers_waiting_per_queue(running):
    found = scrape(running)
    assert get(found, "fsrouter_queue_callers", queue="sales") in (None, 0.0)
    # Bob, the queue's only agent, is logged out: the caller waits with hold music.
    record = running.call(QUEUE_NUMBER, script=CallerScript())
    wait_for(lambda: get(scrape(running), "fsrouter_queue_callers", queue="sales") == 1, 20,
             "the caller counted as waiting in sales")
    running.sim.hangup(running.caller(record))
    running.wait_ended(record)
    wait_for(lambda: get(scrape(running), "fsrouter_queue_callers", queue="sales") == 0, 20,
             "the caller no longer counted")


def test_agents_per_state_follow_the_database(running, tmp_path):
    found = scrape(running)
    assert [get(found, "fsrouter_agents", state=s) for s in ("free", "busy", "logged_out")] \
        == [0, 0, 3]  # alice, bob, vera: never logged in
    done = fsrouter_cli("agents", "login", "alice", "bob", "-c", tmp_path / "config.yaml",
                        "--database", f"sqlite:///{running.db_path}")
    assert done.returncode == 0, done.stderr
    found = scrape(running)
    assert [get(found, "fsrouter_agents", state=s) for s in ("free", "busy", "logged_out")] \
        == [2, 0, 1]


def test_oncall_gaps_per_option(running):
    found = scrape(running)
    assert get(found, "fsrouter_oncall_gap", number=GAPPY_HOTLINE, digit="1") == 1
    assert get(found, "fsrouter_oncall_gap", number="+493040009000", digit="1") == 0


def test_build_info_and_the_last_reload(running, tmp_path):
    found = scrape(running)
    info = [labels for (name, labels) in found if name == "fsrouter_build_info"]
    assert len(info) == 1 and dict(info[0])["version"] == __version__
    assert get(found, "fsrouter_config_last_reload_success") == 1
    loaded_at = get(found, "fsrouter_config_last_reload_timestamp_seconds")
    assert loaded_at and loaded_at > 1.7e9

    path = tmp_path / "config.yaml"
    good = path.read_text(encoding="utf-8")
    path.write_text(good + "listener: {port: 0}\n", encoding="utf-8")  # invalid: refused
    assert running.daemon.reload() is False
    found = scrape(running)
    assert get(found, "fsrouter_config_last_reload_success") == 0
    assert get(found, "fsrouter_config_last_reload_timestamp_seconds") >= loaded_at

    path.write_text(good, encoding="utf-8")
    assert running.daemon.reload() is True
    assert get(scrape(running), "fsrouter_config_last_reload_success") == 1


def test_a_caller_who_is_answered_no_longer_counts_as_waiting(running, tmp_path):
    done = fsrouter_cli("agents", "login", "bob", "-c", tmp_path / "config.yaml",
                        "--database", f"sqlite:///{running.db_path}")
    assert done.returncode == 0, done.stderr
    record = running.call(QUEUE_NUMBER, script=CallerScript())
    running.wait_rows("SELECT * FROM call_records WHERE call_uuid = ? AND bridged_to_user = "
                      "'bob'", record.caller_uuid, timeout=20)
    assert running.caller(record).alive  # still talking to Bob
    wait_for(lambda: get(scrape(running), "fsrouter_queue_callers", queue="sales") == 0, 10,
             "the answered caller not counted as waiting")


def test_every_configured_queue_shows_zero_before_its_first_caller(running):
    assert get(scrape(running), "fsrouter_queue_callers", queue="sales") == 0
