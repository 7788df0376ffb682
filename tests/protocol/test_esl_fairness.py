"""No connection starves the others (issue 22.2): a peer that streams events without pause.

Under gevent a ``recv`` on a socket with data waiting returns at once, so a reader that never
yields runs as long as the peer keeps sending: timers and every other socket wait. The peer
here is another process (tests/protocol/flood_peer.py) on real loopback TCP.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.socket
import pytest

from fsrouter.esl import Connection

ROOT = Path(__file__).resolve().parents[2]
# The flood lasts longer than the timer is watched: a reader that never yields keeps the
# timer from running until the flood is over, then the test fails instead of hanging.
FLOOD_SECONDS = 5.0
WATCH_SECONDS = 3.0


@pytest.fixture
def flood_port() -> Iterator[int]:
    """The port of a flooding peer in another process (killed after the test)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.protocol.flood_peer",
                             str(FLOOD_SECONDS), "serve"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)


def timer_ticks(seconds: float, period: float = 0.01) -> tuple[int, float]:
    """How often a ``period`` timer ran in ``seconds``, and its longest gap."""
    ticks, longest = 0, 0.0
    end = time.monotonic() + seconds
    last = time.monotonic()
    while last < end:
        gevent.sleep(period)
        now = time.monotonic()
        longest = max(longest, now - last)
        last = now
        ticks += 1
    return ticks, longest


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "dispatcher"])
def test_a_flooding_peer_leaves_timers_on_time(flood_port, inline):
    sock = gevent.socket.create_connection(("127.0.0.1", flood_port), timeout=5)
    sock.settimeout(None)
    conn = Connection(sock, name="flood")
    seen = [0]

    def count(_event) -> None:
        seen[0] += 1

    conn.on_event(count, inline=inline)
    timer = gevent.spawn(timer_ticks, WATCH_SECONDS)  # watching from before the flood
    conn.start()
    try:
        ticks, longest = timer.get()
        during = seen[0]
        assert not conn.closed, conn.close_reason
    finally:
        conn.close("test over")
    print(f"\n{'inline' if inline else 'dispatcher'}: {ticks} ticks of 10 ms in "
          f"{WATCH_SECONDS} s (ideal ~300), longest gap {longest * 1000:.0f} ms, "
          f"{during} events read meanwhile")
    # A few thousand events show the flood ran all along (3,520 were read at load 13; a quiet
    # machine reads ten times more): the bound must not depend on the machine's speed.
    assert during > 1_000, "the flood did not get going"
    # Before the fix: a handful of ticks and a gap as long as the flood. The bounds leave
    # room for a loaded 2-core machine (the flooder itself takes one core).
    assert ticks >= 100, (ticks, longest)
    assert longest < 0.5, (ticks, longest)
