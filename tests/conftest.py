"""Shared pytest set-up for the whole suite."""

import os

import gevent

import tests.hypothesis_profiles  # noqa: F401  (loads the ci or explore profile first)

pytest_plugins = ["fsrouter.testing.pytest_plugin"]

_KEEP_HUB_AWAKE = []


def pytest_configure(config: object) -> None:
    """In a pytest-xdist worker, keep a timer in gevent's hub for the whole session.

    Tests import fsrouter.cli, which monkey-patches threading. From then on the worker's main
    thread waits for its next test on a gevent lock that only xdist's I/O thread releases;
    when nothing else is pending in the hub, gevent ends that wait at once with LoopExit
    ("This operation would block forever") and the worker dies with an INTERNALERROR, losing
    its remaining tests (1 run in 4 under load). An active timer keeps the loop running, so
    the wait lasts until the I/O thread's release wakes it.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        timer = gevent.get_hub().loop.timer(1.0, 1.0)
        timer.start(lambda: None)
        _KEEP_HUB_AWAKE.append(timer)
