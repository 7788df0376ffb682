"""SIGTERM drain with 50 calls in progress (issue 12 point 6), on the simulator.

``fsrouter run`` is a real process; the simulator runs in this test's gevent hub, so every
wait here yields to it (``gevent.sleep``), never ``time.sleep``. The same test with 50 calls
runs on the real switch in test_lifecycle_realswitch.py.
"""

from __future__ import annotations

import signal
import time

import pytest

from fsrouter.testing.phones import phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.reliability.conftest import wait_for
from tests.reliability.test_lifecycle_realswitch import (
    assert_fallback_tone,
    call,
    one_option,
    rewrite,
    wait_logged,
)

# Run alone, after the parallel part (see the Makefile): 50 calls at once.
pytestmark = pytest.mark.serial

CALLS = 50


def test_sigterm_drains_50_calls(sim_switch, tmp_path):
    config = one_option("anna", phone_number("answer", 0, 91))
    daemon = Daemon(tmp_path, config, sim_switch.esl_endpoint())
    rewrite(daemon, {**config, "listener": {"drain_seconds": 30}})
    watcher = Watcher(sim_switch.esl_endpoint())
    try:
        daemon.start()
        sim_switch.route_to(daemon.port)
        legs = [call(sim_switch, watcher) for _ in range(CALLS)]
        bridged = lambda: {e.get("Bridge-B-Unique-ID") for e in watcher.events  # noqa: E731
                           if e.name == "CHANNEL_BRIDGE"}
        wait_for(lambda: set(legs) <= bridged(), 30, "every call bridged")

        stopped_at = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        [draining] = wait_logged(daemon, "daemon.draining")
        assert draining["calls"] == CALLS
        assert_fallback_tone(watcher, call(sim_switch, watcher))  # never silence
        assert daemon.process.poll() is None
        for leg in legs:
            sim_switch.hangup(leg)
        last_hangup = time.monotonic()
        code = wait_for(lambda: daemon.process.poll() is not None, 10, "the exit")
        assert code and daemon.process.returncode == 0
        print(f"\n{CALLS} calls drained; exit {time.monotonic() - stopped_at:.2f} s after "
              f"SIGTERM, {time.monotonic() - last_hangup:.2f} s after the last hang-up")
        assert time.monotonic() - last_hangup < 5  # at the count of zero, not the 30 s limit
        wait_logged(daemon, "daemon.drained")
        rows = daemon.rows("SELECT call_uuid, outcome FROM call_records")
        assert sorted(r["call_uuid"] for r in rows) == sorted(legs)
        assert {r["outcome"] for r in rows} == {"bridged"}
        assert {r["state"] for r in daemon.rows("SELECT state FROM incidents")} == {"resolved"}
    finally:
        watcher.close()
        for row in sim_switch.channels():
            sim_switch.hangup(row["uuid"])
        daemon.stop()
