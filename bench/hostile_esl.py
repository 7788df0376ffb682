"""Two figures of issue 22 measured against whatever fsrouter.esl is checked out.

``python -m bench.hostile_esl`` prints:

- **pre-connect flood**: the outbound listener (``OutboundServer``, in a process of its own)
  gets a call whose "switch" sends events before it answers ``connect``; RSS of the listener
  process before, its peak (VmHWM) during the flood, and whether the connection was ended.
- **stall during the resync**: an ``InboundClient`` as the daemon runs it (keepalive 1.5 s,
  3 s to answer) whose ``on_reconnect`` lists the channels (10 s to answer, as the agent
  watcher's resync); the switch never answers that command. Seconds from that command to the
  connection being declared dead.

Everything runs on loopback TCP with real sockets; nothing is mocked.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gevent
import gevent.socket

ROOT = Path(__file__).resolve().parents[1]
CALLER_UUID = "19a44db4-d9a9-4c97-bc57-1027a1ffaea8"

LISTENER = """
import gevent
from fsrouter.esl import OutboundServer
server = OutboundServer("127.0.0.1", 0, lambda session: None, setup_timeout=600)
server.start()
print("PORT", server.port, flush=True)
while True:  # until the parent terminates us
    gevent.sleep(3600)
"""


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


@dataclass
class FloodResult:
    events_sent: int  # over all connections
    event_bytes: int
    rss_before_mb: float
    peak_rss_mb: float
    closed: bool  # every flooding connection was ended by the listener
    connections: int = 1

    def line(self) -> str:
        return (f"pre-connect flood, {self.connections} connection(s): {self.events_sent} "
                f"events x {self.event_bytes // 1024} KB sent; listener RSS "
                f"{self.rss_before_mb:.0f} MB before, peak {self.peak_rss_mb:.0f} MB "
                f"(+{self.peak_rss_mb - self.rss_before_mb:.0f}); "
                f"{'ended' if self.closed else 'NOT all ended'}")


def flood_event(index: int, size: int) -> bytes:
    from fsrouter.esl.protocol import encode_frame

    return encode_frame({"Content-Type": "text/event-plain"},
                        f"Event-Name: CUSTOM\nUnique-ID: {CALLER_UUID}\nSeq: {index}\n"
                        f"Content-Length: {size}\n\n" + "x" * size)


def flood_before_connect(events: int, size: int, connections: int = 1) -> FloodResult:
    """Start the listener process, call it ``connections`` times at once, and flood
    ``events`` events of ``size`` bytes on each before the connect reply; the listener's RSS
    before and at its peak."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE,
                             cwd=ROOT, env=env, text=True)
    try:
        assert child.stdout is not None
        line = ""
        while not line.startswith("PORT "):  # after the listener's own log lines
            line = child.stdout.readline()
            if not line:
                raise RuntimeError("the listener process ended before listening")
        port = int(line.split()[1])
        before = rss_kb(child.pid) / 1024
        floods = [gevent.spawn(_flood_one, port, events, size) for _ in range(connections)]
        gevent.joinall(floods, raise_error=True)
        results = [flood.value for flood in floods]
        return FloodResult(sum(sent for sent, _ in results), size, before,
                           rss_kb(child.pid, "VmHWM") / 1024,
                           all(closed for _, closed in results), connections)
    finally:
        child.terminate()
        child.wait(timeout=30)


def _flood_one(port: int, events: int, size: int) -> tuple[int, bool]:
    """One call: events before the connect reply; (events sent, ended by the listener)."""
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(30)
    assert sock.recv(65536).startswith(b"connect")
    frame = flood_event(0, size)
    sent = 0
    try:
        for index in range(events):
            sock.sendall(frame if index else flood_event(index, size))
            sent += 1
    except OSError:
        pass  # the listener ended the connection
    closed = _closed(sock, timeout=30)
    sock.close()
    return sent, closed


def _closed(sock: gevent.socket.socket, timeout: float) -> bool:
    """True when the peer closed the socket within ``timeout`` (what it sent is dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def stall_during_resync(command_timeout: float = 10.0) -> float:
    """Seconds from the held-back resync command to the connection being closed."""
    from fsrouter.esl import InboundClient
    from tests.protocol.esl_peer import FakeInboundSwitch, answer_basic

    held: list[float] = []

    def handle(peer, command) -> None:  # type: ignore[no-untyped-def]
        if command.line == "api show channels as json":
            held.append(time.monotonic())  # never answered
        else:
            answer_basic(peer, command)

    switch = FakeInboundSwitch(handle=handle)
    client = InboundClient("127.0.0.1", switch.port, "s3cret", events=["CHANNEL_CREATE"],
                           on_reconnect=lambda c: c.api("show channels as json",
                                                        timeout=command_timeout),
                           keepalive_s=1.5, keepalive_timeout=3.0)
    client.start()
    try:
        with gevent.Timeout(10):
            while not held:
                gevent.sleep(0.01)
        conn = client.conn
        assert conn is not None
        conn.wait_closed(command_timeout + 10)
        return time.monotonic() - held[0]
    finally:
        client.close()
        switch.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--event-kb", type=int, default=30)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--command-timeout", type=float, default=10.0,
                        help="the resync command's own timeout (the watcher's API_TIMEOUT)")
    args = parser.parse_args(argv)
    print(flood_before_connect(args.events, args.event_kb * 1024, args.connections).line())
    noticed = stall_during_resync(args.command_timeout)
    print(f"stall during resync (its command times out after {args.command_timeout:g} s): "
          f"noticed after {noticed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
