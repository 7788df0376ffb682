"""Agent claims: no agent is rung by two calls at once, across daemons and switches.

Wiring in the call flows (fsrouter/calls/dialer.py, inbound.py)::

    claim = claims.claim(user_id, call.uuid, leg_uuid)   # before the originate / bridge
    if claim is None: ...                                  # busy: exactly as a busy agent
    ...
    claims.release(claim)                                  # the leg did not get through
    claims.release_when_ended(claim, call_gone, exists)    # answered: when the agent's leg ends

A claim that fails (held by a live node, our lease over, the database unreachable) counts as
busy: the safe side for "never two legs to one agent". A release the database refuses is
tried again after each lease renewal; until then the claim simply blocks that agent on every
node, and it never outlives this node's lease.

Single node (SQLite: a second daemon on the file is refused): no other node can ring the
agent, so when the database refuses the claim (full disk, locked) or the lease could not be
renewed, the claim is taken in this process alone and the call goes on, as every other call
step does when the store is down. The process-local table is checked first in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import structlog

from fsrouter.cluster import sql
from fsrouter.cluster.lease import Lease
from fsrouter.store import StoreError

log = structlog.get_logger(__name__)

# Seconds between looks at an answered leg when its hang-up event has not come: the event
# connection may have been down when it ended. Only after the caller's call is gone, so it
# costs one ``uuid_exists`` a second only for a call whose agent leg outlives it.
LEG_POLL_S = 1.0
MAX_UNRELEASED = 10_000  # releases kept for retry; beyond, the lease's end frees them
# Every this many lease renewals, this node's claims in the store are compared with the ones
# it holds, and any other (a release lost beyond MAX_UNRELEASED, a bug) is dropped.
RECONCILE_EVERY = 15


@dataclass
class Claim:
    agent: str
    call_uuid: str
    leg_uuid: str
    released: bool = False


class Claims:
    """This node's claims: take, hold while the agent's leg lives, release."""

    def __init__(self, lease: Lease, single_node: bool = False,
                 local_when_down: bool = False) -> None:
        self.lease = lease
        self.single_node = single_node
        # With the database away, claim in this process only: always for one node (SQLite),
        # and with several when the operator chose `database.unavailable: yaml` (calls are
        # served from the YAML then; another node could ring the same agent meanwhile).
        self.local_when_down = single_node or local_when_down
        self._local: dict[str, str] = {}  # agent -> leg uuid, every claim this process holds
        self._ended: dict[str, gevent.event.Event] = {}  # leg uuid -> its hang-up seen
        self._unreleased: list[Claim] = []
        self._recheck = gevent.event.Event()  # set by recheck(): look at the switch now
        self._holding: set[gevent.Greenlet] = set()  # release_when_ended's greenlets
        self._renewals = 0
        lease.renewed.append(self._after_renewal)

    @property
    def node(self) -> str:
        return self.lease.node

    def claim(self, agent: str, call_uuid: str, leg_uuid: str) -> Claim | None:
        """The agent for this leg, or None: treat the agent as busy."""
        if agent in self._local:
            log.info("claim.taken", agent=agent, call=call_uuid, by="this node")
            return None
        # Held here before the statement runs (it yields): a second call of this node waits
        # for nothing, and the reconciliation never drops a claim being taken.
        self._local[agent] = leg_uuid
        self._ended[leg_uuid] = gevent.event.Event()
        if not self._claim_in_store(agent, call_uuid, leg_uuid):
            del self._local[agent]
            del self._ended[leg_uuid]
            return None
        log.debug("claim.won", agent=agent, call=call_uuid, leg=leg_uuid)
        return Claim(agent, call_uuid, leg_uuid)

    def _claim_in_store(self, agent: str, call_uuid: str, leg_uuid: str) -> bool:
        # The lease ran out while the database was away: try to win it back now rather
        # than at the next heartbeat, so the first call after an outage is not turned away.
        if not self.lease.valid() and not self.lease.renew():
            log.warning("claim.no_lease", agent=agent, call=call_uuid,
                        local_only=self.local_when_down)
            return self.local_when_down
        try:
            won = sql.try_claim(agent, self.node, call_uuid, leg_uuid)
        except StoreError as error:
            log.warning("claim.store_failed", agent=agent, call=call_uuid, error=str(error),
                        local_only=self.local_when_down)
            return self.local_when_down
        if not won:
            log.info("claim.taken", agent=agent, call=call_uuid)
        return won

    def release(self, claim: Claim | None) -> None:
        """Give the agent back (idempotent; never raises)."""
        if claim is None or claim.released:
            return
        claim.released = True
        if self._ended.pop(claim.leg_uuid, None) is None:
            return  # after close(): retiring the node released it
        if self._local.get(claim.agent) == claim.leg_uuid:
            del self._local[claim.agent]
        self._delete(claim)

    def _delete(self, claim: Claim) -> None:
        try:
            sql.release_claim(claim.agent, self.node, claim.leg_uuid)
        except StoreError as error:
            log.warning("claim.release_failed", agent=claim.agent, error=str(error))
            if len(self._unreleased) < MAX_UNRELEASED:
                self._unreleased.append(claim)
            return
        log.debug("claim.released", agent=claim.agent, leg=claim.leg_uuid)

    def release_when_ended(self, claim: Claim | None, call_gone: Callable[[], bool],
                           leg_exists: Callable[[str], bool]) -> gevent.Greenlet | None:
        """Keep an answered leg's claim until the agent's leg has hung up (its
        CHANNEL_HANGUP_COMPLETE, see :meth:`handle`), so the agent stays busy for every node
        while talking. Should that event be missed, once the caller's call is gone the leg
        is looked up on the switch every LEG_POLL_S seconds."""
        if claim is None or claim.released:
            return None
        ended = self._ended.get(claim.leg_uuid) or gevent.event.Event()

        def hold() -> None:
            self._holding.add(gevent.getcurrent())
            try:
                while not ended.is_set():
                    gevent.wait([ended, self._recheck], count=1, timeout=LEG_POLL_S)
                    missed = not ended.is_set() and call_gone()
                    if missed and not _exists(leg_exists, claim.leg_uuid):
                        break
            finally:
                self._holding.discard(gevent.getcurrent())
                self.release(claim)

        return gevent.spawn(hold)

    def close(self) -> None:
        """At shutdown, before the lease is retired (which drops every claim of this node
        in one statement): stop holding answered legs' claims, without a release each."""
        for claim_holder in list(self._holding):
            claim_holder.kill(block=False)
        self._holding.clear()
        self._unreleased.clear()
        self._ended.clear()
        self._local.clear()

    def recheck(self) -> None:
        """The event connection (re)connected: hang-ups may have been missed meanwhile, so
        every answered leg whose call is gone is looked up on the switch now."""
        recheck, self._recheck = self._recheck, gevent.event.Event()
        recheck.set()

    def handle(self, event: object) -> None:
        """An event from the switch's event connection: the hang-up of a claimed leg."""
        if getattr(event, "name", None) != "CHANNEL_HANGUP_COMPLETE":
            return
        ended = self._ended.get(getattr(event, "uuid", None) or "")
        if ended is not None:
            ended.set()

    def held(self) -> int:
        """Claims this node holds right now (for health and tests)."""
        return len(self._ended)

    def _after_renewal(self) -> None:
        waiting, self._unreleased = self._unreleased, []
        for claim in waiting:
            self._delete(claim)
        self._renewals += 1
        if self._renewals % RECONCILE_EVERY == 0:
            self.reconcile()

    def reconcile(self) -> int:
        """Drop this node's claims in the store that it does not hold; how many."""
        try:
            stray = [(agent, leg) for agent, leg in sql.claims_of(self.node)
                     if leg not in self._ended]
            for agent, leg in stray:
                sql.release_claim(agent, self.node, leg)
        except StoreError as error:
            log.warning("claim.reconcile_failed", error=str(error))
            return 0
        for agent, leg in stray:
            log.warning("claim.stray_released", agent=agent, leg=leg)
        return len(stray)


def _exists(leg_exists: Callable[[str], bool], leg_uuid: str) -> bool:
    try:
        return leg_exists(leg_uuid)
    except Exception:  # the switch cannot be asked: the call is gone, so is its leg
        return False
