"""Crash reconciliation: make the database agree with the switch after a restart or reconnect.

A daemon that was killed (or lost its event connection) leaves call records, dial attempts and
incidents open for calls it no longer drives, while the switch carries on without it: the app
running on a caller's channel finishes (a menu prompt, hold music in mod_fifo, a bridge), a
ringing leg rings until its ``originate_timeout``, and a leg answered while we were away is
still bridged to its caller by mod_fifo (``fifo_bridge_uuid``). Measured on 1.11.1: a caller
in the menu gets the dialplan's fallback (SIT, NORMAL_TEMPORARY_FAILURE) once the prompt
ends; a caller in a queue keeps hearing hold music until the queue's maximum wait.

:meth:`Recovery.reconcile` runs on start and after every reconnect of the inbound event
connection, after a short random delay (100-1000 ms; Kazoo waits 100-1500 ms before its
``uuid_exists``) so that several instances and the switch's own bookkeeping settle first, and
once the listener takes calls. A pass that fails (store or switch briefly away) is tried again
every 5 s for a minute; while bridged calls are kept, a pass runs every 30 s as well.

A pass first takes over the open call records of cluster nodes whose lease is over (a
conditional update, one taker per record: fsrouter.cluster.sql.take_over_calls; the heartbeat
asks for a pass as soon as there are any, docs/two-nodes.md), then looks at every
open call record of this node (records from before nodes existed: of this host) that no call
greenlet of this process is handling, asks the switch about the caller and each open
attempt's leg (``uuid_dump``, which answers for live channels only) and then:

- **caller bridged** (to a leg answered while we were away, or before): the call is kept. The
  leg's attempt becomes ``answered``/``accepted``, the incident is accepted by that person, and
  the call is watched: its CHANNEL_HANGUP_COMPLETE closes the record as ``bridged`` and
  resolves the incident (every later pass does the same if the event was missed).
- **caller still up, not bridged** (menu, queue, fallback tone): the caller is **adopted**:
  ``uuid_setvar <uuid> fsr_adopted true`` and ``uuid_transfer <uuid> <number> XML <context>``
  send the channel through the dialplan again, whose ``socket`` brings it back to this daemon
  with the same uuid. The call flow sees ``fsr_adopted`` (:meth:`fsrouter.calls.call.Call.
  open_record`), takes over the open record and, for a hotline caller who had chosen an option,
  goes straight back to that option's queue with the same incident. We chose adoption over
  hanging up: a caller who waited in a queue keeps their place in the incident instead of
  being cut off by a restart that is no fault of theirs, and the switch re-entering its own
  dialplan is the one path that already handles everything (menu, queue, fallback). The price:
  what the caller was in the middle of starts again (the menu from the top, a voicemail
  message not yet stored is recorded anew). When the daemon is stopping (no listener) callers
  are left alone: the next start adopts them. A transfer the switch refuses ends the caller
  with NORMAL_TEMPORARY_FAILURE rather than leaving them with nobody serving them.

  The transfer waits until every ``originate`` the dead daemon sent on the caller's old
  socket has ended (its BACKGROUND_JOB; 5 s at most) and then a moment more. The switch's
  listener thread of that old socket lives on after we die, waiting for those ``bgapi``
  threads (``switch_thread_rwlock_wrlock``), and when it finally ends it clears CF_CONTROLLED
  on the caller's channel (mod_event_socket.c ``listener_run``, 1.11.1). If that happens after
  the new ``socket`` app has parked the caller, it ends the new park loop: the app returns,
  the dialplan's fallback plays SIT and hangs up, and our new socket sees the hang-up before
  its ``answer``. Every leg of the pass is killed first, so those threads end at once, and
  the pass waits once for all of them before it sends any caller back.
- **caller gone**: the record is closed as ``bridged`` when it was bridged (the conversation
  ended while we were away; the incident is resolved), otherwise as ``lost_in_restart`` with
  no hang-up cause (none can be known: the switch keeps nothing about ended channels); its
  incident keeps a reason (``lost_in_restart`` unless the call flow had noted one).
- **legs**: a leg that still rings (or was answered but not bridged) belongs to a flow that no
  longer exists: it is killed at once (``uuid_kill``, attempt ``cancelled``), or as
  ``no_answer`` when it rings beyond its own ``originate_timeout``. A leg that is gone closes
  its attempt as ``failed`` with cause ``LOST_IN_RESTART``.

Finally every open incident of this node whose call has ended gets a reason (``resolved`` if
someone had accepted it). Records of other live nodes (a shared PostgreSQL, on this host or
another) are never touched.

Several switches (``switches:``): the daemon passes :class:`fsrouter.switches.AnySwitch`,
which asks each switch for a channel; a record whose caller no reachable switch has while
another switch is away is left for that switch's reconnect (``undecided`` in the report):
it may still be up there.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import structlog

from fsrouter.cluster import sql as cluster_sql
from fsrouter.esl import ESLError, Event
from fsrouter.store import StoreError, queries
from fsrouter.store.errors import NotFound
from fsrouter.store.models import Attempt, CallRecord
from fsrouter.switches import Undecided

log = structlog.get_logger(__name__)

LOST = "lost_in_restart"  # call outcome and incident reason: the end happened unseen
LOST_CAUSE = "LOST_IN_RESTART"  # attempt cause: its leg ended unseen
ADOPTED_VARIABLE = "fsr_adopted"
JITTER = (0.1, 1.0)  # seconds before a pass (Kazoo waits 100-1500 ms before uuid_exists)
# Seconds before a failed pass (store or switch briefly unavailable) is tried again.
RETRY_S = 5.0
RETRIES = 12
API_TIMEOUT = 5.0
# Seconds beyond its own originate_timeout before a ringing leg counts as stuck.
RING_GRACE = 2.0
# A caller just sent back is not sent again by a pass this soon (its socket is on the way).
ADOPT_QUIET = 10.0
# Seconds between checks that the bridged calls we keep are still up (missed hang-ups).
WATCH_EVERY = 30.0
# Seconds a caller's transfer waits at most for the originates of its killed legs to end.
ORIGINATE_END_WAIT = 5.0
# Seconds after the last of them: the old socket's listener thread, woken by the end of the
# last job thread, clears CF_CONTROLLED within microseconds; this covers a loaded machine
# descheduling it (adoption is not in a hurry).
LISTENER_SETTLE = 0.25
_ORIGINATION_UUID = re.compile(r"origination_uuid=([A-Za-z0-9-]{1,64})")
_UUID = re.compile(r"[A-Za-z0-9-]{1,64}")
_DESTINATION = re.compile(r"\+?[0-9*#]{1,32}")
_WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_GONE_STATES = ("CS_HANGUP", "CS_REPORTING", "CS_DESTROY")


class ApiClient(Protocol):
    """What reconciliation needs of the switch connection (``InboundClient``)."""

    def api(self, cmd: str, timeout: float | None = ...) -> str: ...


def _ignore(event: str, data: dict[str, Any]) -> None:
    """The default ``notify``: nobody listens."""


@dataclass(frozen=True)
class Channel:
    """A live channel as ``uuid_dump <uuid> json`` shows it."""

    uuid: str
    data: dict[str, str]

    def get(self, key: str) -> str:
        return self.data.get(key) or ""

    @property
    def partner(self) -> str:
        """The leg this channel is bridged to (may be stale: check it points back)."""
        return self.get("Other-Leg-Unique-ID") or self.get("variable_signal_bond")

    @property
    def overdue(self) -> bool:
        """Still ringing beyond its own ``originate_timeout`` (plus a grace)."""
        if self.get("Answer-State") == "answered":
            return False
        try:
            created = int(self.get("Caller-Channel-Created-Time")) / 1e6
            timeout = int(self.get("variable_originate_timeout"))
        except ValueError:
            return False
        return time.time() > created + timeout + RING_GRACE


@dataclass
class Report:
    """What one pass did (logged as ``recovery.done``; the tests read it from the log)."""

    checked: int = 0
    adopted: list[str] = field(default_factory=list)
    kept_bridged: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    legs_killed: list[str] = field(default_factory=list)
    attempts_closed: int = 0
    incidents: list[int] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)  # on a switch that cannot be asked
    seconds: float = 0.0


def look(switch: ApiClient, uuid: str | None) -> Channel | None:
    """The live channel ``uuid``, or None when the switch has no such channel (or it is
    hanging up). Raises ESLError when the switch cannot be asked."""
    if not uuid or not _UUID.fullmatch(uuid):
        return None
    reply = switch.api(f"uuid_dump {uuid} json", timeout=API_TIMEOUT)
    if reply.lstrip().startswith("-ERR"):
        return None
    try:
        data = json.loads(reply)
    except ValueError as error:
        raise ESLError(f"uuid_dump {uuid}: unexpected reply {reply[:80]!r}") from error
    if not isinstance(data, dict) or data.get("Channel-State") in _GONE_STATES:
        return None
    return Channel(uuid, {str(k): str(v) for k, v in data.items() if v is not None})


@dataclass
class Adoption:
    """A caller to send back once ``originates`` (its killed legs' jobs) have ended."""

    record: CallRecord
    caller: Channel
    originates: list[gevent.event.Event]


def _originating(leg: Channel) -> bool:
    """Whether the originate that made ``leg`` is still running: it returns when the leg is
    answered, unless a confirmation key (press-to-accept) is still awaited."""
    return (leg.get("Answer-State") != "answered"
            or bool(leg.get("variable_group_confirm_key")))


class Recovery:
    """Reconciles this host's open records with the switch; see the module docstring."""

    # What :meth:`handle` needs on the inbound event connection besides the agent watcher's
    # (CHANNEL_HANGUP_COMPLETE): the end of the dead daemon's originates.
    EVENTS = ("BACKGROUND_JOB",)

    def __init__(
        self,
        host: str,
        now: Callable[[], datetime],
        live_calls: Callable[[], set[str]],
        can_adopt: Callable[[], bool],
        notify: Callable[[str, dict[str, Any]], None] = _ignore,
        jitter: tuple[float, float] = JITTER,
        node: str | None = None,
    ) -> None:
        self.host = host
        self.node = node  # this daemon's cluster node (None: no cluster, records by host)
        self.now = now
        self.live_calls = live_calls
        self.can_adopt = can_adopt
        self.notify = notify
        self.jitter = jitter
        self.watched: set[str] = set()  # bridged callers we kept: closed on their hang-up
        self._sent: dict[str, float] = {}  # caller uuid -> when we sent it back
        # Killed legs whose originate (sent by the dead daemon) has not ended yet.
        self._originates: dict[str, gevent.event.Event] = {}
        self._lock = gevent.lock.Semaphore()
        self._greenlets: set[gevent.Greenlet] = set()
        self._watcher: gevent.Greenlet | None = None

    # -- scheduling ------------------------------------------------------------------------

    def schedule(self, switch: ApiClient, ready: gevent.event.Event | None = None
                 ) -> gevent.Greenlet:
        """A pass after the jittered delay (and once ``ready`` is set: the listener is up)."""
        greenlet = gevent.spawn(self._later, switch, ready)
        self._greenlets.add(greenlet)
        greenlet.link(self._greenlets.discard)
        return greenlet

    def _later(self, switch: ApiClient, ready: gevent.event.Event | None) -> None:
        gevent.sleep(random.uniform(*self.jitter))
        if ready is not None:
            ready.wait()
        # Again while it fails and the connection is up (a lost connection schedules its own
        # pass when it comes back), for a minute at most.
        for _ in range(RETRIES):
            if self.reconcile(switch) is not None or not getattr(switch, "connected", False):
                break
            gevent.sleep(RETRY_S)
        if self.watched and (self._watcher is None or self._watcher.dead):
            self._watcher = gevent.spawn(self._watch, switch)

    def stop(self) -> None:
        """Stop pending passes and the watch (the daemon is closing the store)."""
        greenlets = list(self._greenlets)
        if self._watcher is not None:
            greenlets.append(self._watcher)
        gevent.killall(greenlets, timeout=5)

    def _watch(self, switch: ApiClient) -> None:
        """Now and then: are the bridged calls we keep still up? (A hang-up event can be lost
        with the connection; then the next reconnect's pass would close it anyway.)"""
        while self.watched:
            gevent.sleep(WATCH_EVERY)
            self.reconcile(switch)

    # -- events ----------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Inbound events: the hang-up of a bridged call we kept closes it; the end of an
        originate whose leg we killed lets its caller be sent back. Never raises."""
        if event.name == "BACKGROUND_JOB":
            found = _ORIGINATION_UUID.search(event.get("Job-Command-Arg"))
            ended = self._originates.get(found.group(1)) if found else None
            if ended is not None:
                ended.set()
            return
        uuid = event.uuid or ""
        if event.name != "CHANNEL_HANGUP_COMPLETE" or uuid not in self.watched:
            return
        # No lock: a pass may be waiting on this connection's replies; closing twice is
        # harmless (the first outcome stands).
        try:
            record = queries.get_call(uuid)
            if record.ended_at is None:
                self._close(record, event.get("Hangup-Cause"), Report())
            self.watched.discard(uuid)
        except StoreError as error:
            log.warning("recovery.hangup_not_recorded", call_uuid=uuid, error=str(error))

    # -- one pass --------------------------------------------------------------------------

    def reconcile(self, switch: ApiClient) -> Report | None:
        """One pass over the open records; None when the switch or the store failed (the
        next reconnect tries again). Never raises."""
        began = time.monotonic()
        report = Report()
        try:
            with self._lock:
                self._pass(switch, report)
        except (ESLError, StoreError) as error:
            log.warning("recovery.incomplete", error=str(error), checked=report.checked)
            return None
        except Exception:
            log.exception("recovery.failed")
            return None
        report.seconds = round(time.monotonic() - began, 3)
        log.info("recovery.done", checked=report.checked, adopted=report.adopted,
                 kept_bridged=report.kept_bridged, closed=report.closed,
                 legs_killed=report.legs_killed, attempts_closed=report.attempts_closed,
                 incidents=report.incidents, undecided=report.undecided,
                 seconds=report.seconds)
        return report

    def _mine(self, record: CallRecord) -> bool:
        """Whether this node handles ``record`` (one from before migration 6: by host)."""
        if self.node is not None and record.node is not None:
            return record.node == self.node
        return record.host == self.host

    def _take_over(self) -> None:
        """Open records of nodes whose lease is over become ours (see the module docstring)."""
        if self.node is None:
            return
        taken = cluster_sql.take_over_calls(self.node)
        if taken:
            log.info("recovery.taken_over", calls=[uuid for uuid, _ in taken],
                     nodes=sorted({node for _, node in taken}))

    def _pass(self, switch: ApiClient, report: Report) -> None:
        self._take_over()
        records = [r for r in queries.open_calls() if self._mine(r)]
        live = self.live_calls()  # read after the records: a record can only get a session
        quiet = time.monotonic() - ADOPT_QUIET
        self._sent = {uuid: at for uuid, at in self._sent.items() if at > quiet}
        adoptions: list[Adoption] = []
        try:
            for record in records:
                if record.call_uuid in live or record.call_uuid in self._sent:
                    continue
                fresh = queries.get_call(record.call_uuid)  # its flow may have ended meanwhile
                if fresh.ended_at is None:
                    report.checked += 1
                    try:
                        self._reconcile_call(switch, fresh, report, adoptions)
                    except Undecided as error:  # its switch is away: that switch's return
                        report.undecided.append(record.call_uuid)  # schedules a pass
                        log.info("recovery.undecided", call_uuid=record.call_uuid,
                                 error=str(error)[:200])
            # Every caller's legs are killed above; their originates end together.
            self._await_originates([ended for a in adoptions for ended in a.originates])
            for adoption in adoptions:
                self._adopt(switch, adoption.record, adoption.caller, report)
        finally:
            self._originates = {}
        self._sweep_incidents(live, report)

    def _reconcile_call(self, switch: ApiClient, record: CallRecord, report: Report,
                        adoptions: list[Adoption]) -> None:
        """Settle the call's attempts and close or keep it; a caller to adopt is added to
        ``adoptions`` (sent back once the legs' originates have ended)."""
        caller = look(switch, record.call_uuid)
        attempts = [a for a in queries.attempts_for_call(record.call_uuid) if a.ended_at is None]
        legs = {a.id: look(switch, a.leg_uuid) for a in attempts}
        partner = self._partner(switch, caller, legs)
        winner = next((a for a in attempts if partner and a.leg_uuid == partner.uuid), None)
        for attempt in attempts:
            self._settle(switch, attempt, legs[attempt.id], attempt is winner, report)
        if caller is None:
            self._close(record, None, report)
        elif partner is not None:
            self._keep_bridged(switch, record, winner, partner, report)
        elif self.can_adopt():
            mine = [self._originates[leg.uuid] for leg in legs.values()
                    if leg is not None and leg.uuid in self._originates]
            adoptions.append(Adoption(record, caller, mine))
        else:
            log.info("recovery.adopt_later", call_uuid=record.call_uuid)

    def _await_originates(self, originates: list[gevent.event.Event]) -> None:
        """Until the originates of the adopted callers' killed legs have ended, before any
        of them is sent back (see the module docstring: the old socket's listener thread
        must be gone)."""
        if not originates:
            return
        began = time.monotonic()
        gevent.wait(originates, timeout=ORIGINATE_END_WAIT)
        pending = [leg for leg, ended in self._originates.items()
                   if ended in originates and not ended.is_set()]
        if pending:  # the job ended before we listened, or its event was lost: go on
            log.warning("recovery.originate_not_ended", legs=pending[:20], count=len(pending))
        gevent.sleep(LISTENER_SETTLE)
        log.info("recovery.originates_ended", legs=len(originates),
                 seconds=round(time.monotonic() - began, 3))

    def _partner(self, switch: ApiClient, caller: Channel | None,
                 legs: dict[int, Channel | None]) -> Channel | None:
        """The live leg the caller is bridged to (both must point at each other), or None."""
        if caller is None or not caller.partner:
            return None
        known = {leg.uuid: leg for leg in legs.values() if leg is not None}
        other = known.get(caller.partner) or look(switch, caller.partner)
        if other is None or other.partner != caller.uuid:
            return None
        return other

    def _settle(self, switch: ApiClient, attempt: Attempt, leg: Channel | None, won: bool,
                report: Report) -> None:
        now = self.now()
        report.attempts_closed += 1
        if leg is None:
            queries.finish_attempt(attempt.id, "failed", LOST_CAUSE, now)
            return
        if won:
            confirmed = bool(leg.get("variable_group_confirm_key"))
            result = "accepted" if confirmed else "answered"
            queries.finish_attempt(attempt.id, result, "NORMAL_CLEARING", now)
            return
        # Nobody waits for this leg any more: its flow died with the old process.
        cause = "NO_ANSWER" if leg.overdue else "ORIGINATOR_CANCEL"
        if _originating(leg):  # listened for before the kill: its end may come first
            self._originates[leg.uuid] = gevent.event.Event()
        switch.api(f"uuid_kill {leg.uuid} {cause}", timeout=API_TIMEOUT)
        report.legs_killed.append(leg.uuid)
        result = "no_answer" if cause == "NO_ANSWER" else "cancelled"
        queries.finish_attempt(attempt.id, result, cause, now)
        log.info("recovery.leg_killed", leg_uuid=leg.uuid, user=attempt.user_id, result=result)

    def _keep_bridged(self, switch: ApiClient, record: CallRecord, winner: Attempt | None,
                      partner: Channel, report: Report) -> None:
        user = winner.user_id if winner is not None else record.bridged_to_user
        if user and record.bridged_to_user != user:
            queries.link_call(record.call_uuid, bridged_to_user=user)
        if user and record.incident_id is not None:
            if queries.accept_incident(record.incident_id, user, self.now()):
                self.notify("incident.accepted", {"incident_id": record.incident_id,
                                                  "user": user, "recovered": True})
        self.watched.add(record.call_uuid)
        report.kept_bridged.append(record.call_uuid)
        log.info("recovery.kept_bridged", call_uuid=record.call_uuid, leg_uuid=partner.uuid,
                 user=user)
        # The hang-up may have come before we started watching: look once more.
        if look(switch, record.call_uuid) is None:
            self._close(queries.get_call(record.call_uuid), None, report)

    def _adopt(self, switch: ApiClient, record: CallRecord, caller: Channel,
               report: Report) -> None:
        """Send a waiting caller through the dialplan again: it comes back to our socket."""
        uuid = record.call_uuid
        dialled = caller.get("Caller-Destination-Number")
        number = dialled if _DESTINATION.fullmatch(dialled) else record.number
        context = caller.get("Caller-Context")
        context = context if _WORD.fullmatch(context) else "public"
        dialplan = caller.get("Caller-Dialplan")
        dialplan = dialplan if _WORD.fullmatch(dialplan) else "XML"
        switch.api(f"uuid_setvar {uuid} {ADOPTED_VARIABLE} true", timeout=API_TIMEOUT)
        reply = switch.api(f"uuid_transfer {uuid} {number} {dialplan} {context}",
                           timeout=API_TIMEOUT)
        if reply.lstrip().startswith("+OK"):
            self._sent[uuid] = time.monotonic()
            report.adopted.append(uuid)
            log.info("recovery.adopted", call_uuid=uuid, number=number, context=context)
            return
        log.warning("recovery.adopt_failed", call_uuid=uuid, reply=reply.strip()[:80])
        if look(switch, uuid) is not None:  # up, but we cannot route it: end it plainly
            switch.api(f"uuid_kill {uuid} NORMAL_TEMPORARY_FAILURE", timeout=API_TIMEOUT)
        self._close(record, None, report)

    def _close(self, record: CallRecord, cause: str | None, report: Report) -> None:
        """The caller is gone: close the record and give its incident an outcome."""
        bridged = record.call_uuid in self.watched or bool(record.bridged_to_user)
        outcome = "bridged" if bridged else LOST
        queries.finish_call(record.call_uuid, outcome, cause, self.now())
        self.watched.discard(record.call_uuid)
        report.closed.append(record.call_uuid)
        log.info("recovery.closed", call_uuid=record.call_uuid, outcome=outcome, cause=cause)
        if record.incident_id is not None:
            self._end_incident(record.incident_id, bridged, report)

    def _end_incident(self, incident_id: int, bridged: bool, report: Report) -> None:
        try:
            incident = queries.get_incident(incident_id)
        except NotFound:
            return
        if incident.state == "accepted" or (bridged and incident.state == "open"):
            if queries.resolve_incident(incident_id, self.now(), "resolved", "call ended"):
                self.notify("incident.resolved", {"incident_id": incident_id,
                                                  "resolution": "resolved", "recovered": True})
                report.incidents.append(incident_id)
        elif incident.state == "open" and not incident.outcome_reason:
            queries.note_incident(incident_id, LOST)
            report.incidents.append(incident_id)

    def _sweep_incidents(self, live: set[str], report: Report) -> None:
        """Open incidents whose call ended without giving them an outcome (a crash between
        the record and the incident)."""
        for incident in queries.open_incidents():
            if incident.outcome_reason or not incident.call_uuid or incident.call_uuid in live:
                continue
            try:
                record = queries.get_call(incident.call_uuid)
            except NotFound:
                continue
            if not self._mine(record) or record.ended_at is None:
                continue
            if incident.id not in report.incidents:
                self._end_incident(incident.id, record.outcome == "bridged", report)
