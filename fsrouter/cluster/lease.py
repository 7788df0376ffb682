"""This daemon's lease: its row in ``cluster_nodes``, renewed every ``heartbeat_s`` seconds.

The lease runs ``lease_s`` seconds past the last renewal (database clock). Other nodes treat
the claims of a node whose lease has run out as free, so a SIGKILLed daemon's agents are
claimable ``lease_s`` seconds after its last heartbeat at the latest. The other way round, a
node that cannot renew (database unreachable, process stalled) must stop claiming before the
others may take its agents: :meth:`Lease.valid` is false from ``lease_s`` seconds after the
last renewal that *started* (monotonic clock), which is never later than the database's own
expiry of that renewal; the claim statement checks the lease in the database as well.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable

import gevent
import structlog

from fsrouter.cluster import sql
from fsrouter.store import StoreError

log = structlog.get_logger(__name__)

# Rows of nodes whose lease ended this long ago are removed at start (killed daemons).
FORGET_AFTER_S = 86400.0


def node_id(host: str | None = None, pid: int | None = None) -> str:
    """A name for this process that no other process, here or elsewhere, ever had."""
    host = (host or socket.gethostname())[:80]
    return f"{host}/{pid or os.getpid()}/{uuid.uuid4().hex[:12]}"


class Lease:
    """Register the node, renew its lease in a greenlet, and retire it at a clean stop."""

    def __init__(self, node: str, host: str, heartbeat_s: float, lease_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < heartbeat_s < lease_s:
            raise ValueError("the heartbeat must be shorter than the lease")
        self.node = node
        self.host = host
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self._clock = clock
        self._good_until = float("-inf")
        self._loop: gevent.Greenlet | None = None
        self.renewed: list[Callable[[], None]] = []  # run after every renewal (retries)

    def start(self, only_node: bool = False) -> None:
        """Register (StoreError if the database refuses: the daemon does not start) and
        start the heartbeat. ``only_node``: no other daemon can use this database (SQLite),
        so the nodes found there are earlier, dead processes: their claims go at once
        instead of when their leases run out (a restarted daemon rings its agents again)."""
        began = self._clock()
        sql.register_node(self.node, self.host, os.getpid(), self.lease_s)
        self._good_until = began + self.lease_s
        try:
            if only_node:
                sql.forget_other_nodes(self.node)
            sql.forget_dead_nodes(FORGET_AFTER_S)
        except StoreError as error:
            log.warning("lease.cleanup_failed", error=str(error))
        self._loop = gevent.spawn(self._beat)
        log.info("lease.started", node=self.node, heartbeat_s=self.heartbeat_s,
                 lease_s=self.lease_s)

    def valid(self) -> bool:
        """Whether this node may claim now (its lease surely has not run out)."""
        return self._clock() < self._good_until

    def renew(self) -> bool:
        """One heartbeat; False (and the lease left to run out) if the database refused."""
        began = self._clock()
        try:
            if not sql.renew_lease(self.node, self.lease_s):
                # Our row was removed (an operator, or a long outage): register again.
                log.warning("lease.row_missing", node=self.node)
                sql.register_node(self.node, self.host, os.getpid(), self.lease_s)
        except StoreError as error:
            left = round(self._good_until - self._clock(), 1)
            log.warning("lease.renew_failed", node=self.node, error=str(error),
                        seconds_left=left)
            return False
        if not self.valid():
            log.warning("lease.regained", node=self.node)
        self._good_until = began + self.lease_s
        for callback in self.renewed:
            callback()
        return True

    def _beat(self) -> None:
        while True:
            gevent.sleep(self.heartbeat_s)
            try:
                self.renew()
            except Exception:  # never let the heartbeat die
                log.exception("lease.heartbeat_failed", node=self.node)

    def stop(self) -> None:
        """Stop the heartbeat and retire the node (its claims free at once); a store that is
        down then only costs the wait for the lease to run out."""
        if self._loop is not None:
            self._loop.kill()
            self._loop = None
        self._good_until = float("-inf")
        try:
            sql.retire_node(self.node)
        except StoreError as error:
            log.warning("lease.retire_failed", node=self.node, error=str(error))
            return
        log.info("lease.retired", node=self.node)
