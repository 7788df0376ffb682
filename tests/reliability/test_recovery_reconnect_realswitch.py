"""Reconnect discipline on the real switch (issue 12.3), with ``fsrouter run`` as a process.

A switch of its own (it is killed and started again). While it is down (15 s here,
``FSROUTER_DOWN_S`` for longer), the daemon tries to reconnect at most once a second, with
backoff (1 s, 2 s, then 4 s apart) and jitter, and its descriptors and RSS stay flat.
1,000 junk connections to its outbound port (closed at once, half-open, garbage) leave
descriptors and memory where they were (after warm-up rounds: Python keeps its high-water
mark) and do not disturb a live call. When the switch is
back, its event connection is back and a call is routed within 5 s. Then the switch hangs
(SIGSTOP) with the daemon connected: the keepalive notices within 5 s.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid as uuidlib
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import pytest

from fsrouter.testing.realswitch import RealSwitch, find_freeswitch
from tests.e2e.daemon import Daemon as ProcessDaemon
from tests.reliability.conftest import QUEUE_NUMBER, full_config, sip, wait_for

# Run alone, after the parallel part (see the Makefile): 1,000 junk connections; reconnect timings.
pytestmark = pytest.mark.serial

DOWN_S = float(os.environ.get("FSROUTER_DOWN_S", "15"))


@pytest.fixture
def own_switch(tmp_path: Path) -> Any:
    """A switch this test may kill and restart (the session's one is shared)."""
    if find_freeswitch() is None:
        if os.environ.get("CI"):
            pytest.fail("real FreeSWITCH required when CI is set")
        pytest.skip("no FreeSWITCH found")
    switch = RealSwitch(tmp_path / "fs")
    switch.start()
    try:
        yield switch
    finally:
        switch.stop(grace=0)


def figures(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "rss_kb": rss}


def attempts(daemon: ProcessDaemon, after: str) -> list[float]:
    """Times (epoch seconds) of the failed reconnect attempts logged after ``after``."""
    return [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
            for e in daemon.log_lines()
            if e.get("event") == "esl.inbound.connect_failed" and e["timestamp"] > after]


def junk(port: int, count: int) -> None:
    """``count`` connections that are not FreeSWITCH: a third close at once, a third send
    garbage, a third stay half-open (connected, silent) until the end."""
    held: list[gevent.socket.socket] = []
    for index in range(count):
        try:
            sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            continue
        kind = index % 3
        if kind == 0:
            sock.close()
        elif kind == 1:
            try:
                sock.sendall(b"\x00\xffGET / HTTP/1.0\r\n\r\n" + os.urandom(64))
            except OSError:
                pass
            sock.close()
        else:
            held.append(sock)
        if index % 50 == 0:
            gevent.sleep(0)
    gevent.sleep(1.0)
    for sock in held:
        sock.close()


def live_call(switch: RealSwitch, daemon: ProcessDaemon, during: Any = None) -> None:
    """A call to the queue, bridged to bob; ``during()`` runs while it is up; then it ends."""
    done = len(daemon.rows("SELECT id FROM call_records"))
    caller = switch.place_call(QUEUE_NUMBER, "+4915112345678", "Live Call",
                               uuid=str(uuidlib.uuid4()))
    wait_for(lambda: len(daemon.rows("SELECT id FROM call_records WHERE bridged_to_user "
                                     "IS NOT NULL")) > done, 15, "the live call bridged")
    if during is not None:
        during()
    assert switch.api(f"uuid_exists {caller}").strip() == "true"  # not disturbed
    switch.hangup(caller)
    wait_for(lambda: not daemon.rows("SELECT id FROM call_records WHERE ended_at IS NULL"),
             15, "the live call's record final")


def test_reconnect_discipline_junk_and_recovery(own_switch, tmp_path):
    switch = own_switch
    config = full_config(tmp_path, queue_phone=sip("answer", 100, 90))
    daemon = ProcessDaemon(tmp_path, config, switch.esl_endpoint())
    try:
        daemon.start()
        pid = daemon.process.pid  # type: ignore[union-attr]
        wait_for(lambda: any(e.get("event") == "esl.inbound.connected"
                             for e in daemon.log_lines()), 10, "the event connection")
        switch.route_to(daemon.port)
        with daemon.store() as queries:
            queries.set_presence("bob", datetime.now().astimezone(), state="logged_in")
        # Warm-up: one call and one round of junk, so what Python keeps after its first use
        # of everything is in the baseline (its allocator does not hand memory back).
        # (Measured: RSS plateaus after about three rounds of 1,000 junk connections.)
        live_call(switch, daemon)
        junk(daemon.port, 1000)
        gevent.sleep(1.0)
        first = figures(pid)
        junk(daemon.port, 1000)
        junk(daemon.port, 1000)

        # A live call while 1,000 junk connections arrive, twice: the call is not disturbed,
        # and the last round adds nothing (a leak would add the same again).
        live_call(switch, daemon, during=lambda: junk(daemon.port, 1000))
        gevent.sleep(1.0)
        base = figures(pid)
        live_call(switch, daemon, during=lambda: junk(daemon.port, 1000))
        gevent.sleep(1.0)
        after_junk = figures(pid)
        assert [r["outcome"] for r in daemon.rows("SELECT outcome FROM call_records")] == [
            "bridged"] * 3

        # The switch goes away.
        marker = datetime.utcnow().isoformat()
        switch.kill()
        down_at = time.monotonic()
        samples = []
        while time.monotonic() - down_at < DOWN_S:
            gevent.sleep(1.0)
            samples.append(figures(pid))
        tries = attempts(daemon, marker)
        gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]

        # And comes back: the event connection and calls within 5 s.
        switch.start()
        back_at = time.monotonic()
        switch.route_to(daemon.port)
        call = switch.place_call(QUEUE_NUMBER, "+4915112345678", "After Restart",
                                 uuid=str(uuidlib.uuid4()))
        wait_for(lambda: len(daemon.rows("SELECT id FROM call_records WHERE bridged_to_user "
                                         "IS NOT NULL")) == 4, 10, "a call routed again")
        routed = time.monotonic() - back_at
        wait_for(lambda: sum(1 for e in daemon.log_lines()
                             if e.get("event") == "esl.inbound.connected") == 2, 10,
                 "the event connection back")
        reconnected = time.monotonic() - back_at
        switch.hangup(call)

        # The switch hangs: the keepalive notices, then the daemon reconnects after SIGCONT.
        hung_marker = datetime.utcnow().isoformat()
        os.killpg(switch.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            wait_for(lambda: any(e.get("event") == "esl.inbound.stalled" and
                                 e["timestamp"] > hung_marker for e in daemon.log_lines()),
                     8, "the keepalive noticing the hung switch")
            noticed_hang = time.monotonic() - stopped_at
        finally:
            os.killpg(switch.pid, signal.SIGCONT)
        wait_for(lambda: sum(1 for e in daemon.log_lines()
                             if e.get("event") == "esl.inbound.connected") == 3, 15,
                 "connected again after the hang")
    finally:
        code = daemon.stop()
    report = {"attempts": len(tries), "gaps_s": [round(g, 2) for g in gaps],
              "fds": [first["fds"], base["fds"], after_junk["fds"], samples[0]["fds"],
                      samples[-1]["fds"]],
              "rss_kb": [first["rss_kb"], base["rss_kb"], after_junk["rss_kb"],
                         samples[0]["rss_kb"], samples[-1]["rss_kb"]],
              "routed_after_restart_s": round(routed, 2),
              "event_connection_back_s": round(reconnected, 2),
              "hang_noticed_s": round(noticed_hang, 2)}
    print("\nreconnect:", json.dumps(report))
    assert code == 0
    # At most one attempt a second, backing off (1, 2, then 4 s apart), with jitter.
    assert len(tries) >= 3 and all(gap >= 0.95 for gap in gaps), report
    assert max(gaps) <= 4.5 and max(gaps) >= 3.5, report
    assert len({round(g, 2) for g in gaps if g < 3.9}) >= min(2, len(gaps)), report
    # Flat: descriptors exactly, memory within 5 % (or 2 MB).
    assert after_junk["fds"] <= base["fds"] + 1, report
    assert samples[-1]["fds"] <= samples[0]["fds"], report
    assert after_junk["rss_kb"] - base["rss_kb"] <= max(2048, base["rss_kb"] * 0.05), report
    assert samples[-1]["rss_kb"] - samples[0]["rss_kb"] <= max(2048,
                                                               samples[0]["rss_kb"] * 0.05)
    assert routed <= 5.0 and reconnected <= 5.0, report
    assert noticed_hang <= 5.5, report
