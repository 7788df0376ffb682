"""Waiting for a condition in tests and benchmarks, the one way they all do it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import gevent

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 15.0, what: str = "", *,
             quiet: bool = False, every: float = 0.02) -> T:
    """The first truthy value of ``probe()``, asked every ``every`` s; the gevent hub runs the
    other greenlets (the daemon's, the simulator's) in between. After ``timeout`` s an
    AssertionError naming ``what``, or with ``quiet`` the last (falsy) value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            if quiet:
                return value
            raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}")
        gevent.sleep(every)
