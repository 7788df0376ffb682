"""Closing writes that must not be lost when the store briefly refuses them.

A call that is already under way ends its rows (the attempt's result, the call's outcome,
the incident's reason) with short idempotent updates. If the database is full, read-only or
locked past its busy timeout at that moment, raising would kill the flow mid-call (a ringing
leg never cancelled, a greenlet dying with an unhandled error) and leave the rows open for
ever. Instead :func:`settle` keeps such a write and tries it again every few seconds until
the store takes it, so the rows are final once the store is back::

    settle(queries.finish_call, call.uuid, outcome, cause, now())

Rows that could never be created (the store refused the call record itself) are not
deferred: that call is refused at once (``NORMAL_TEMPORARY_FAILURE``), see calls/__init__.
The queue is bounded; a write dropped beyond it is logged with everything it would have set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import structlog

from fsrouter.store import StoreError

log = structlog.get_logger(__name__)

RETRY_S = 2.0  # seconds between tries while writes are waiting
MAX_PENDING = 10_000

_pending: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
_worker: list[gevent.Greenlet] = []


def settle(write: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``write(*args, **kwargs)`` now, or again later if the store refuses it (then None)."""
    if not _pending:
        try:
            return write(*args, **kwargs)
        except StoreError as error:
            log.warning("store.write_deferred", write=write.__name__, error=str(error)[:200])
    _keep(write, args, kwargs)
    return None


def waiting() -> int:
    """How many writes are waiting for the store."""
    return len(_pending)


def calls() -> set[str]:
    """The calls whose record still has a write waiting (the call writes take the call's
    uuid first): reconciliation must leave them to these writes."""
    return {args[0] for _, args, _ in _pending if args and isinstance(args[0], str)}


def _keep(write: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(_pending) >= MAX_PENDING:
        lost, lost_args, lost_kwargs = _pending.popleft()
        log.error("store.write_dropped", write=lost.__name__,
                  args=repr((lost_args, lost_kwargs))[:500])
    _pending.append((write, args, kwargs))
    if not _worker or _worker[0].dead:
        _worker[:] = [gevent.spawn(_retry_loop)]


def _retry_loop() -> None:
    """Write the waiting rows in order; on the first refusal wait and start again."""
    while _pending:
        gevent.sleep(RETRY_S)
        while _pending:
            write, args, kwargs = _pending[0]
            try:
                write(*args, **kwargs)
            except StoreError as error:
                log.info("store.still_refusing", waiting=len(_pending), error=str(error)[:200])
                break
            except Exception:
                log.exception("store.write_failed", write=write.__name__)
            _pending.popleft()
        else:
            log.info("store.writes_caught_up")
