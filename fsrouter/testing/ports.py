"""RTP port ranges for test switches that no other test switch on this machine uses.

A real switch binds an RTP port of its range for each call. Ranges picked at random from
20000-60000 overlapped the kernel's ephemeral range (32768-60999 here), where any program's
port-0 UDP socket may sit, and each other: a SIP call then got ``488 INCOMPATIBLE_DESTINATION``
("RTP Bind Error! 127.0.0.1:54136", seen while two suites ran at once). Now a switch claims a
slot of ports below the ephemeral range, held by an ``flock`` on a file per slot, so test
switches in every process on the machine (xdist workers, other runs) get disjoint ranges; the
kernel drops the lock when the process dies.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

FIRST_PORT = 10000
SLOT_SIZE = 1000
LOCK_DIR = Path(tempfile.gettempdir()) / f"fsrouter-test-rtp-{os.getuid()}"


def ephemeral_low() -> int:
    """Where the kernel's own port picks start (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class RtpSlot:
    """A claimed range ``start``-``end``; :meth:`release` (or the process ending) frees it."""

    def __init__(self, start: int, handle: IO[str]) -> None:
        self.start = start
        self.end = start + SLOT_SIZE - 1
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _try(start: int) -> RtpSlot | None:
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    handle = open(LOCK_DIR / f"{start}.lock", "a", encoding="ascii")  # noqa: SIM115 - held
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return RtpSlot(start, handle)


def claim(start: int | None = None) -> RtpSlot | None:
    """The slot at ``start`` (a switch started again on its old ports), else the first free
    one; None when every slot is taken (the caller falls back to a random range)."""
    if start is not None:
        return _try(start)
    for slot_start in range(FIRST_PORT, ephemeral_low() - SLOT_SIZE + 1, SLOT_SIZE):
        slot = _try(slot_start)
        if slot is not None:
            return slot
    return None
