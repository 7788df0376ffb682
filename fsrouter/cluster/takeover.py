"""Takeover: the callers of a node that died live on with another node.

Every heartbeat (:attr:`fsrouter.cluster.Lease.renewed`) a live node looks for open call
records of nodes whose lease is over; when it finds any, it asks for a recovery pass
(fsrouter/recovery.py), which first takes those records over with one conditional update
(one taker per record, :func:`fsrouter.cluster.sql.take_over_calls`) and then treats them as
after a restart of its own: waiting callers are adopted (their orphaned ringing legs killed,
the caller sent through the dialplan again, same incident), bridged calls are kept and closed
when they end. Design and figures: docs/two-nodes.md.
"""

from __future__ import annotations

from collections.abc import Callable

import gevent
import structlog

from fsrouter.cluster import sql
from fsrouter.store import StoreError

log = structlog.get_logger(__name__)


class Takeover:
    """The heartbeat's look for a dead node's calls; ``schedule`` starts a recovery pass (or
    returns None when it cannot now: the switch connection is down, its reconnect runs one)."""

    def __init__(self, node: str, schedule: Callable[[], gevent.Greenlet | None]) -> None:
        self.node = node
        self.schedule = schedule
        self._pending: gevent.Greenlet | None = None

    def check(self) -> None:
        """After a renewal: a pass if another node's lease is over with calls open. Never
        raises (it runs in the heartbeat)."""
        if self._pending is not None and not self._pending.dead:
            return  # that pass takes them (or the next heartbeat asks again)
        try:
            orphaned = sql.orphaned_calls(self.node)
        except StoreError as error:
            log.warning("takeover.look_failed", error=str(error))
            return
        if orphaned:
            log.info("takeover.found", calls=orphaned, node=self.node)
            self._pending = self.schedule()
