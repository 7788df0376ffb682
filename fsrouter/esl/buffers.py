"""What ESL connections may hold in memory, counted in bytes: per connection and all together.

Counting events was not enough: the events a peer sends before the ``connect`` reply queue
for ``next_event`` (nobody reads them yet), 10,000 of them whatever their size; one peer took
the daemon from 80 to 378 MB RSS, and 4 MB bodies would make it ~40 GB (issue 22.3). Now
every connection has a :class:`BufferAccount` that charges the bytes its frame parser holds
back and the events waiting in its queues, against its own cap and the process-wide
:class:`ByteBudget` all connections share. A charge over either cap raises
:class:`BufferOverflow` (a ``ProtocolError``) in the reader, which ends that connection with
a logged reason; the process and the other connections carry on.

The caps: a call's socket carries ~30 events of ~3 KB (bench/README.md) and one body of at
most ``MAX_BODY_BYTES`` (4 MB) at a time, so 16 MB leaves it ample room. The daemon's one
event connection sees every channel's events; its dispatch queue holds back the reader at
10,000 events (~40 MB at ~4 KB each, counted below) before its byte cap (64 MB) is reached.
All connections together: 256 MB.

Example::

    account = BufferAccount(16 * MB)
    queue = EventQueue(10_000, account)
    queue.put_nowait(event)   # BufferOverflow when the connection (or everyone) holds too much
    account.close()           # the connection ended: its bytes go back to the shared budget
"""

from __future__ import annotations

from typing import Any

import gevent.queue

from fsrouter.esl.protocol import Event, ProtocolError

MB = 1024 * 1024
MAX_CONNECTION_BYTES = 16 * MB
MAX_EVENT_CONNECTION_BYTES = 64 * MB
MAX_TOTAL_BYTES = 256 * MB


class BufferOverflow(ProtocolError):
    """A connection (or all of them together) would hold more bytes than allowed."""


class ByteBudget:
    """Bytes every connection of the process together may hold (one shared instance)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used = max(0, self.used - size)


SHARED = ByteBudget(MAX_TOTAL_BYTES)


class BufferAccount:
    """The bytes one connection holds; charged against its cap and the shared budget.

    After :meth:`close` (the connection ended) charges and releases are no-ops: the events
    left in its queues are freed with the connection, and the budget has them back already.
    """

    def __init__(
        self, limit: int = MAX_CONNECTION_BYTES, budget: ByteBudget | None = None
    ) -> None:
        self.limit = limit
        self.budget = budget if budget is not None else SHARED
        self.used = 0
        self.closed = False

    def charge(self, size: int, what: str) -> None:
        if self.closed or size <= 0:
            return
        if self.used + size > self.limit:
            raise BufferOverflow(f"{what}: this connection would hold {self.used + size} "
                                 f"bytes, over its cap of {self.limit}")
        if not self.budget.take(size):
            raise BufferOverflow(f"{what}: all connections together would hold "
                                 f"{self.budget.used + size} bytes, over the cap of "
                                 f"{self.budget.limit}")
        self.used += size

    def release(self, size: int) -> None:
        if self.closed or size <= 0:
            return
        size = min(size, self.used)
        self.used -= size
        self.budget.give(size)

    def close(self) -> None:
        if not self.closed:
            self.budget.give(self.used)
            self.used = 0
            self.closed = True


def _size(item: Any) -> int:
    return item.size if isinstance(item, Event) else 0


class EventQueue:
    """A gevent queue of events (``None`` marks the end) bounded in items and in bytes.

    Same calls as the ``gevent.queue.Queue`` it wraps (and its ``Full``/``Empty``); a put
    that would take the connection over its byte cap raises :class:`BufferOverflow`.
    """

    def __init__(self, maxsize: int, account: BufferAccount) -> None:
        self._queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=maxsize)
        self._account = account

    def put(self, item: Event | None, block: bool = True, timeout: float | None = None) -> None:
        size = _size(item)
        self._account.charge(size, "queued events")
        try:
            self._queue.put(item, block, timeout)
        except BaseException:
            self._account.release(size)
            raise

    def put_nowait(self, item: Event | None) -> None:
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Event | None:
        item = self._queue.get(block, timeout)
        self._account.release(_size(item))
        return item

    def get_nowait(self) -> Event | None:
        return self.get(block=False)

    def peek(self) -> Event | None:
        return self._queue.peek()

    def empty(self) -> bool:
        return self._queue.empty()

    def clear(self) -> int:
        """Drop every queued event (not the end marker); how many were dropped."""
        dropped = 0
        while not self._queue.empty():
            if self.get_nowait() is not None:
                dropped += 1
        return dropped

    def full(self) -> bool:
        return self._queue.full()

    def qsize(self) -> int:
        return self._queue.qsize()
