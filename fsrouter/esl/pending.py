"""What a command leaves waiting: the errors, a background job, an application run.

A :class:`Job` is completed by the ``BACKGROUND_JOB`` event carrying the ``Job-UUID`` we
chose; an :class:`Execution` by the ``CHANNEL_EXECUTE_COMPLETE`` carrying the
``Application-UUID`` (the ``Event-UUID`` we chose). Both follow gevent's wait protocol
(``rawlink``), so ``gevent.wait`` works on them, and both fail with the connection's error
when it ends first. Split from :mod:`fsrouter.esl.connection`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from fsrouter.esl.protocol import Event


class ESLError(Exception):
    """Base class of the errors this package raises."""


class ESLTimeout(ESLError):
    """A wait ran out of time; the connection itself may still be fine."""


class ConnectionClosed(ESLError):
    """The connection ended before the awaited reply, job result or completion arrived."""


class CommandError(ESLError):
    """The switch answered a command with ``-ERR ...``."""


def _wait(result: gevent.event.AsyncResult, timeout: float | None, what: str) -> Any:
    """Wait for an AsyncResult, turning gevent's timeout into ESLTimeout."""
    result.wait(timeout)  # returns the value, which is None for a failure: ask ready()
    if not result.ready():
        raise ESLTimeout(f"no {what} within {timeout} s")
    if result.successful():
        return result.value
    # A new exception, not the stored one: raising that would tie it (traceback -> the
    # waiter's frame -> its result -> it) into a cycle that keeps the whole connection, and
    # every event it queued, alive until the cyclic GC runs (issue 22.3: 395 MB of closed
    # connections' events measured after a flood).
    error = result.exception
    try:
        fresh = type(error)(*error.args)
    except Exception:  # a type that cannot be made again from its args
        fresh = ConnectionClosed(str(error))
    raise fresh from None


class _Pending:
    """A reply still to come (a job's result, an app's completion); waitable with
    ``gevent.wait([pending, other], count=1)`` without a greenlet waiting on it."""

    def __init__(self) -> None:
        self._result: gevent.event.AsyncResult = gevent.event.AsyncResult()

    @property
    def done(self) -> bool:
        """The reply came, or the connection ended (``wait`` then raises)."""
        return self._result.ready()

    # gevent's wait protocol.
    def rawlink(self, callback: Callable[[Any], Any]) -> None:
        self._result.rawlink(callback)

    def unlink(self, callback: Callable[[Any], Any]) -> None:
        self._result.unlink(callback)

    def _fail(self, error: Exception) -> None:
        if not self._result.ready():
            self._result.set_exception(error)


class Job(_Pending):
    """One ``bgapi`` command; ``wait()`` returns its BACKGROUND_JOB body, e.g. ``+OK <uuid>``."""

    def __init__(self, job_uuid: str, command: str) -> None:
        super().__init__()
        self.job_uuid = job_uuid
        self.command = command
        self.event: Event | None = None

    def wait(self, timeout: float | None) -> str:
        """The body exactly as the switch sent it (``-ERR NO_ANSWER\\n``)."""
        event: Event = _wait(self._result, timeout, f"BACKGROUND_JOB for {self.job_uuid}")
        return event.body

    def _complete(self, event: Event) -> None:
        self.event = event
        self._result.set(event)


class Execution(_Pending):
    """One ``sendmsg execute``; ``wait()`` returns its CHANNEL_EXECUTE_COMPLETE event."""

    def __init__(self, app_uuid: str, app: str) -> None:
        super().__init__()
        self.app_uuid = app_uuid
        self.app = app

    def wait(self, timeout: float | None) -> Event:
        return _wait(self._result, timeout, f"completion of {self.app} ({self.app_uuid})")

    @property
    def event(self) -> Event | None:
        """The completion once it came; None while running or when the connection ended."""
        if self._result.ready() and self._result.successful():
            return self._result.value
        return None

    def _complete(self, event: Event) -> None:
        self._result.set(event)
