"""The sender loop both outboxes share, and their retry timing.

A :class:`Worker` is one greenlet that runs a pass over its outbox at start, at once when
kicked (a new row was written), and otherwise when the next row falls due, but at least every
``poll_interval`` seconds (another fsrouter instance on the same database may have written
rows). A pass that fails (the database is down) is logged and tried again after
``error_delay``; the loop itself only ends with :meth:`Worker.stop`.

Retry timing lives in the database (attempts and next try per row), so a restart keeps it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import gevent
import gevent.event
import structlog

log = structlog.get_logger(__name__)

# Never sleep less than this between passes, so a row that stays due cannot spin the loop.
MIN_SLEEP = 0.01


def utc_now() -> datetime:
    return datetime.now(UTC)


def backoff_seconds(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``attempts`` failed tries: ``base * 2**(attempts-1)`` capped at
    ``cap``, then scaled by a random 50-100 % so that many senders do not retry in step."""
    exponent = min(max(attempts, 1) - 1, 40)  # 2**40 times any sane base is past any cap
    return min(cap, base * 2**exponent) * rng.uniform(0.5, 1.0)


class Worker:
    """One sender greenlet; subclasses say what a pass is and when the next row is due."""

    name = "worker"

    def __init__(
        self, now: Callable[[], datetime], poll_interval: float, error_delay: float
    ) -> None:
        self._now = now
        self.poll_interval = poll_interval
        self.error_delay = error_delay
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False

    def run_pass(self) -> int:
        """Send what is due; returns how many were sent."""
        raise NotImplementedError

    def next_due(self) -> datetime | None:
        """When the next pending row falls due (None: nothing pending)."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> None:
        """Start the sender greenlet (a no-op when it runs already)."""
        if self.running:
            return
        self._stopping = False
        self._greenlet = gevent.spawn(self._loop)
        self._greenlet.name = f"fsrouter-{self.name}"

    def kick(self) -> None:
        """Run a pass now (or right after the one in progress)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop; a send in progress gets ``timeout`` seconds to finish. A row whose
        send is cut off keeps its claim until the lease ends, then it is tried again."""
        self._stopping = True
        self._wake.set()
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None:
            return
        greenlet.join(timeout)
        if not greenlet.dead:
            log.warning(f"{self.name}.stop_forced", timeout=timeout)
            greenlet.kill(block=True, timeout=1.0)

    def _loop(self) -> None:
        log.info(f"{self.name}.started")
        while not self._stopping:
            self._wake.clear()  # before the pass: a kick during the pass means one more pass
            delay = self._round()
            if not self._stopping:
                self._wake.wait(delay)
        log.info(f"{self.name}.stopped")

    def _round(self) -> float:
        """One pass; the seconds to sleep before the next."""
        try:
            self.run_pass()
            return self._seconds_until(self.next_due())
        except Exception as exc:  # the database may be down: keep the loop, try again later
            log.error(f"{self.name}.pass_failed", error=str(exc), error_type=type(exc).__name__,
                      retry_in=self.error_delay)
            return self.error_delay

    def _seconds_until(self, due: datetime | None) -> float:
        if due is None:
            return self.poll_interval
        seconds = (due - self._now()).total_seconds()
        return min(max(seconds, MIN_SLEEP), self.poll_interval)
