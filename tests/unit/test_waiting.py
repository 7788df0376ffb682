"""The one polling helper of the tests and benchmarks (fsrouter.testing.waiting)."""

from __future__ import annotations

import gevent
import pytest

from fsrouter.testing.waiting import wait_for


def test_returns_the_first_truthy_value_while_other_greenlets_run() -> None:
    seen: list[int] = []

    def count() -> None:
        for n in range(5):
            seen.append(n)
            gevent.sleep(0.005)

    worker = gevent.spawn(count)
    got = wait_for(lambda: len(seen) >= 3 and list(seen), 5, "three items")
    assert got[:3] == [0, 1, 2]
    worker.join()


def test_a_timeout_names_what_was_awaited() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the mail"):
        wait_for(lambda: None, 0.05, "the mail")


def test_quiet_returns_the_last_falsy_value_instead() -> None:
    assert wait_for(lambda: 0, 0.05, quiet=True) == 0
