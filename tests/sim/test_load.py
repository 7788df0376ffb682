"""2,000 concurrent callers, placed over the inbound port, parked in one fifo.

The daemon side is a minimal raw-socket app (connect, answer, fifo in; no event
subscription) so that the figures measure the simulator, not an ESL client's parsing.
"""

from __future__ import annotations

import os
import time
import uuid

import gevent
import gevent.server
import pytest
from gevent import socket

from fsrouter.esl import InboundClient
from fsrouter.sim import Simulator
from fsrouter.testing.waiting import wait_for

# Run alone, after the parallel part (see the Makefile): thousands of simulated callers.
pytestmark = pytest.mark.serial

CALLS = int(os.environ.get("FSR_SIM_LOAD_CALLS", "2000"))
SCRIPT = (b"connect\n\n"
          b"sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n"
          b"sendmsg\ncall-command: execute\nexecute-app-name: fifo\n"
          b"execute-app-arg: fsr_load in undef silence_stream://1000\n\n")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RawApp:
    """Per call: send the script, then read until the switch closes the socket."""

    def __init__(self) -> None:
        self.connected = 0
        self.closed = 0
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self.handle, backlog=4096)
        self.server.start()

    def handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        self.connected += 1
        sock.sendall(SCRIPT)
        while sock.recv(65536):
            pass
        self.closed += 1


def test_two_thousand_callers_wait_in_a_fifo() -> None:
    began, rss0 = time.monotonic(), rss_mb()
    sim = Simulator(speed=100)
    port = sim.start_inbound()
    app = RawApp()
    client = InboundClient("127.0.0.1", port, sim.password, events=["BACKGROUND_JOB"])
    client.connect()
    assert client.api(f"global_setvar fsrouter_target=127.0.0.1:{app.server.server_port}") \
        == "+OK"
    callers = [str(uuid.uuid4()) for _ in range(CALLS)]
    # originate_timeout: the default 60 s is only 0.6 s real at speed 100, under load.
    sends = [gevent.spawn(client.bgapi, f"originate {{origination_uuid={u},originate_timeout="
                          f"3600,origination_caller_id_number=+4915100{i:05d}}}"
                          "loopback/+493012345678/public &park()")
             for i, u in enumerate(callers)]
    gevent.joinall(sends, raise_error=True)
    full = f"fsr_load:0:{CALLS}:0:0:0\n"
    assert wait_for(lambda: client.api("fifo count fsr_load") == full, 40, quiet=True), \
        client.api("fifo count fsr_load")
    placed = time.monotonic() - began
    assert {send.value.wait(10).strip() for send in sends} == {f"+OK {u}" for u in callers}
    assert len(client.api("show channels as json")) > CALLS * 100
    rss = rss_mb()
    print(f"\n{CALLS} callers queued in {placed:.1f} s; RSS {rss:.0f} MB (+{rss - rss0:.0f})")
    kills = [gevent.spawn(client.api, f"uuid_kill {u}") for u in callers]
    gevent.joinall(kills, raise_error=True)
    assert {k.value for k in kills} == {"+OK\n"}
    assert wait_for(lambda: app.closed == CALLS, 30, quiet=True), f"{app.closed} of {CALLS} ended"
    assert client.api("fifo count fsr_load") == "fsr_load:0:0:0:0:0\n"
    assert sum(1 for c in sim.channels.values() if c.alive) == 0
    print(f"all {CALLS} ended after {time.monotonic() - began:.1f} s")
    client.close()
    app.server.stop()
    sim.stop_inbound()
