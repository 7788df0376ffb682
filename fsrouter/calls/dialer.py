"""Ringing people for a waiting caller: one ``bgapi originate`` per phone, waves in order.

Each leg is originated with ``'&fifo(<queue> out nowait)'`` and
``fifo_bridge_uuid=<caller>``/``fifo_bridge_uuid_required=true`` (freeswitch-facts.md §3), so
the leg that answers takes exactly this caller from the queue and mod_fifo bridges them. The
called person sees the routing number as caller ID. With press-to-accept, FreeSWITCH's
``group_confirm_key`` makes the answer count only when the person presses the key (a mobile
mailbox picking up does not). A failed wave is followed at once by the next: escalation delays
do not apply on the phone. When the caller leaves, every ringing leg is killed at once.

Contact-center agents (``Ringing.kind == "agent"``: queue distribution) are claimed
(fsrouter/cluster) before their leg is originated: an agent another call holds, here or on
another node, is skipped as busy (no leg, no attempt row; the queue's next pass tries again).
The claim ends with the attempt; an answered leg keeps it until the agent's leg hangs up.
On-call staff of an escalation are not claimed: they are rung on their own mobile or landline,
where a second incident shows as call waiting, and "the next person at once" (product.md)
must not turn a person who is being rung for another incident into a skipped level.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gevent
import gevent.event

from fsrouter.calls.call import Call
from fsrouter.calls.pending import settle
from fsrouter.cluster import Claim
from fsrouter.config.schema import Defaults
from fsrouter.esl import ESLError, Job
from fsrouter.esl.escape import UnsafeText, originate_command
from fsrouter.resilience import journal
from fsrouter.routing.escalation import Attempt, Plan
from fsrouter.store import StoreError, queries, replay

# -ERR causes of an originate, as the attempt results we store.
RESULTS = {
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "rejected",
    "UNALLOCATED_NUMBER": "unreachable",
    "NO_ROUTE_DESTINATION": "unreachable",
    "USER_NOT_REGISTERED": "unreachable",
    "SUBSCRIBER_ABSENT": "unreachable",
    "DESTINATION_OUT_OF_ORDER": "unreachable",
    "ORIGINATOR_CANCEL": "cancelled",
}
# Seconds beyond the ring timeout before a missing BACKGROUND_JOB counts as a failed attempt.
JOB_GRACE = 15.0
# Seconds an answered leg may take to be bridged to the caller before it counts as failed.
BRIDGE_WAIT = 10.0
# Seconds between looks at the caller's bridge while a BACKGROUND_JOB is overdue.
JOB_POLL = 1.0
# Bytes of the caller's display name put on a ringing leg (escape.MAX_VALUE_BYTES is 4096).
DISPLAY_NAME_BYTES = 1024


# An attempt's row as record_attempt takes it: (call uuid, seq, user, phone, started, phone
# type, incident id, leg uuid).
AttemptRow = tuple[str, int, str, str, datetime, str, "int | journal.Ref | None", str]


@dataclass(frozen=True)
class Leg:
    """One ringing phone: the attempt, its leg uuid and its row in the store (None: the
    store refused it; ``row`` is what to write once it takes writes again)."""

    attempt: Attempt
    leg_uuid: str
    row_id: int | None
    row: AttemptRow
    claim: Claim | None = None  # None: no claims (the call's services have none)


@dataclass(frozen=True)
class Dialled:
    """How ringing ended: who took the call (None: nobody), and whether the caller left."""

    accepted: Attempt | None
    caller_left: bool


@dataclass(frozen=True)
class Accept:
    """Press-to-accept: the called person must press ``digit`` within ``timeout`` seconds."""

    digit: str
    timeout: int
    prompt: str


@dataclass(frozen=True)
class Ringing:
    """What every leg of one call shares.

    ``kind`` marks the legs for the agent watcher (``oncall`` legs never teach 2-way VoIP);
    ``caller_id_number`` is what the called phone shows (the routing number for on-call teams,
    the validated customer number for contact-center queues).
    """

    queue: str
    caller_id_number: str
    display_name: str
    defaults: Defaults
    incident_id: int | journal.Ref | None  # a Ref while the incident waits for the store
    accept: Accept | None
    kind: str = "oncall"

    @property
    def accept_timeout(self) -> int:
        return self.accept.timeout if self.accept else 0


def leg_command(call: Call, ringing: Ringing, attempt: Attempt, leg_uuid: str) -> str:
    """The ``originate`` for one attempt; the caller's name travels only through escape."""
    variables = {
        "origination_uuid": leg_uuid,
        "originate_timeout": str(attempt.ring_timeout),
        "ignore_early_media": "true",
        "fifo_bridge_uuid": call.uuid,
        "fifo_bridge_uuid_required": "true",
        "origination_caller_id_number": ringing.caller_id_number,
        "fsr_kind": ringing.kind,
        "fsr_agent": attempt.user_id,
    }
    if ringing.incident_id is not None:
        variables["fsr_incident"] = str(journal.resolved(ringing.incident_id))
    if ringing.accept is not None:
        variables |= {
            "group_confirm_key": ringing.accept.digit,
            "group_confirm_file": ringing.accept.prompt,
            "group_confirm_read_timeout": str(ringing.accept.timeout * 1000),
        }
    # The display name carries caller text; every value goes through the escaping module.
    # SIP phones (contact-center agents) come as dial strings, other phones as E.164 numbers.
    dial = (attempt.phone if attempt.phone_type == "sip"
            else ringing.defaults.dial_string(attempt.phone))
    variables["origination_caller_id_name"] = _displayable(sip_displayable(
        ringing.display_name, dial))
    return originate_command(variables, dial, "fifo", f"{ringing.queue} out nowait")


def sip_displayable(name: str, dial: str) -> str:
    """``name`` as a leg to ``dial`` can carry it to the phone.

    mod_sofia writes the caller ID name into the quotes of the From header as it is and
    cannot build the request when the name has a double quote or a backslash that is no
    valid quoted-pair (one at the end, or before a non-ASCII character): the leg fails at
    once with DESTINATION_OUT_OF_ORDER (1.11.1, measured with SIPp phones), so the person is
    never rung. Full-width ones look the same. Loopback legs (no SIP) carry any name.
    """
    if dial.startswith("loopback/"):
        return name
    return name.replace('"', "\uff02").replace("\\", "\uff3c")


def _displayable(name: str) -> str:
    """The caller's name cut to what an originate variable may carry (escape.py refuses
    more): a 10 KB display name must not stop the person from being rung."""
    data = name.encode("utf-8", "surrogatepass")
    if len(data) <= DISPLAY_NAME_BYTES:
        return name
    return data[:DISPLAY_NAME_BYTES].decode("utf-8", "ignore")


def result_of(reply: str, press_to_accept: bool) -> tuple[str, str]:
    """(attempt result, cause) from a BACKGROUND_JOB body."""
    reply = reply.strip()
    if reply.startswith("+OK"):
        return "accepted" if press_to_accept else "answered", "NORMAL_CLEARING"
    cause = reply.removeprefix("-ERR").strip() or "UNKNOWN"
    if cause == "NORMAL_CLEARING" and press_to_accept:
        return "not_accepted", cause  # answered, but nobody pressed the key
    return RESULTS.get(cause, "failed"), cause


class Dialer:
    """Rings the waves of a plan for one waiting caller."""

    def __init__(self, call: Call, ringing: Ringing) -> None:
        self.call = call
        self.ringing = ringing
        self.seq = 0
        # Set when the caller left the queue without hanging up (exit key, maximum wait).
        self.stop = gevent.event.Event()
        self._watched: Any = None
        self._on_ready: Callable[[], None] | None = None

    def watch(self, waitable: Any, on_ready: Callable[[], None]) -> None:
        """While ringing, also wait for ``waitable`` (the caller's ``fifo`` run) and call
        ``on_ready()`` once it is ready; it may set :attr:`stop`. This is how the dialer
        learns that the caller left the queue without a greenlet waiting for that."""
        self._watched, self._on_ready = waitable, on_ready

    def _watching(self) -> list[Any]:
        return [] if self._watched is None else [self._watched]

    def _check_watched(self) -> None:
        if self._watched is not None and self._watched.done:
            on_ready, self._watched, self._on_ready = self._on_ready, None, None
            if on_ready is not None:
                on_ready()

    def _over(self) -> bool:
        self._check_watched()
        return self.call.gone.is_set() or self.stop.is_set()

    def ring(self, plan: Plan) -> Dialled:
        for wave in plan.waves:
            if self._over():
                return Dialled(None, caller_left=self.call.gone.is_set())
            winner = self._ring_wave(wave.attempts)
            if winner is not None:
                return Dialled(winner, caller_left=False)
        return Dialled(None, caller_left=self.call.gone.is_set())

    def _ring_wave(self, attempts: tuple[Attempt, ...]) -> Attempt | None:
        started = [self._start(attempt) for attempt in attempts]
        legs = [leg for leg in started if leg is not None]
        waiters = {gevent.spawn(self._wait, leg): leg for leg in legs}
        winner: Attempt | None = None
        pending = set(waiters)
        while pending and winner is None:
            gevent.wait([*pending, self.call.gone, self.stop, *self._watching()], count=1)
            if self._over():
                # A leg that was just answered may be finishing its bridge check: let it.
                gevent.joinall(list(pending), timeout=0.5)
            for greenlet in [g for g in pending if g.ready()]:
                pending.discard(greenlet)
                if greenlet.value == "won":
                    winner = waiters[greenlet].attempt
            if self._over():
                break
        for greenlet in pending:  # the caller left, or someone else took the call
            greenlet.kill()  # first: its own late result must not overwrite "cancelled"
            self._cancel(waiters[greenlet], "cancelled")
        return winner

    def _start(self, attempt: Attempt) -> Leg | None:
        """The attempt's leg, or None when the person is claimed by another call (busy)."""
        leg_uuid = str(uuidlib.uuid4())
        claims = self.call.services.claims if self.ringing.kind == "agent" else None
        claim = None
        if claims is not None:
            claim = claims.claim(attempt.user_id, self.call.uuid, leg_uuid)
            if claim is None:
                self.call.log.info("attempt.claimed_elsewhere", user=attempt.user_id)
                return None
        row = (self.call.uuid, self.seq, attempt.user_id, attempt.phone,
               self.call.services.now(), attempt.phone_type,
               journal.resolved(self.ringing.incident_id), leg_uuid)
        row_id: int | None = None
        if journal.busy() or journal.has_refs(self.ringing.incident_id):
            # Writes wait for the store (this call's record or incident among them): the
            # row is written with its result, after them.
            self.call.log.info("attempt.row_deferred", leg_uuid=leg_uuid, error="journal")
        else:
            try:
                row_id = _create_attempt(*row, call_id=self.call.record_id)
            except StoreError as error:
                # The person is rung all the same; the row is written with its result later.
                self.call.log.warning("attempt.row_deferred", leg_uuid=leg_uuid,
                                      error=str(error))
        self.seq += 1
        self.call.log.info("attempt.ringing", user=attempt.user_id, phone=attempt.phone,
                           level=attempt.level + 1, ring_timeout=attempt.ring_timeout,
                           leg_uuid=leg_uuid)
        return Leg(attempt, leg_uuid, row_id, row, claim)

    def _finish(self, leg: Leg, result: str, cause: str) -> None:
        now = self.call.services.now()
        if leg.row_id is not None:
            settle(queries.end_attempt, leg.row_id, result, cause, now)
        else:
            settle(replay.record_finished_attempt_once, *leg.row, result, cause, now)

    def _wait(self, leg: Leg) -> str:
        """Ring one leg; its claim ends with it (see :meth:`_end_claim`)."""
        outcome = "failed"
        try:
            outcome = self._ring_leg(leg)
        except gevent.GreenletExit:
            outcome = "killed"  # _cancel kills the leg, then releases
            raise
        finally:
            self._end_claim(leg, outcome)
        return outcome

    def _end_claim(self, leg: Leg, outcome: str) -> None:
        """A leg that got through (or answered without a bridge: it may still be up) keeps
        its person claimed until the leg hangs up; any other leg is over: release now."""
        claims = self.call.services.claims
        if claims is None or leg.claim is None or outcome == "killed":
            return
        if outcome in ("won", "not_bridged"):
            claims.release_when_ended(leg.claim, self.call.gone.is_set, self._leg_exists)
        else:
            claims.release(leg.claim)

    def _leg_exists(self, leg_uuid: str) -> bool:
        return self.call.api(f"uuid_exists {leg_uuid}", 5.0).strip() == "true"

    def _ring_leg(self, leg: Leg) -> str:
        try:
            command = leg_command(self.call, self.ringing, leg.attempt, leg.leg_uuid)
        except UnsafeText as error:  # never from caller text (cut or escaped above)
            self.call.log.error("attempt.unsafe_command", leg_uuid=leg.leg_uuid, error=str(error))
            self._finish(leg, "failed", "UNSAFE_TEXT")
            return "failed"
        try:
            job = self.call.bgapi(command)
            reply = self._job_result(job, leg, leg.attempt.ring_timeout
                                     + self.ringing.accept_timeout + JOB_GRACE)
        except ESLError as error:
            self.call.log.warning("attempt.no_result", leg_uuid=leg.leg_uuid, error=str(error))
            self._cancel(leg, "failed")
            return "failed"
        result, cause = result_of(reply, self.ringing.accept is not None)
        self._finish(leg, result, cause)
        self.call.metrics.attempt_ended(result, cause)
        self.call.log.info("attempt.ended", user=leg.attempt.user_id, result=result,
                           cause=cause)
        if result in ("answered", "accepted") and not self._bridged():
            self.call.log.warning("attempt.not_bridged", leg_uuid=leg.leg_uuid)
            self._finish(leg, "failed", "NOT_BRIDGED")
            return "not_bridged"
        return "won" if result in ("answered", "accepted") else result

    def _job_result(self, job: Job, leg: Leg, timeout: float) -> str:
        """The BACKGROUND_JOB body; if it never comes but mod_fifo bridged this very leg to
        the caller, the leg was answered (a lost job must not cut the conversation).

        Until the caller is bridged this sleeps on the job and the bridge together (a
        waiting caller's ringing leg costs no CPU: 5,000 of them polling once a second
        cost 10% of a core); once bridged it looks again every JOB_POLL seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not self.call.bridged.is_set():
                gevent.wait([job, self.call.bridged], count=1, timeout=left)
            if self.call.bridged.is_set() and not job.done:
                gevent.wait([job], timeout=min(JOB_POLL, left))
            if job.done:
                return job.wait(0)  # the body, or the error that ended the connection
            if self.call.bridged_to == leg.leg_uuid:
                self.call.log.warning("attempt.job_lost_but_bridged", leg_uuid=leg.leg_uuid)
                return f"+OK {leg.leg_uuid}"
            if time.monotonic() >= deadline:
                return job.wait(0)  # ESLTimeout

    def _bridged(self) -> bool:
        """mod_fifo bridges the answering leg to our caller right after ``+OK``."""
        gevent.wait([self.call.bridged, self.call.gone], count=1, timeout=BRIDGE_WAIT)
        return self.call.bridged.is_set()

    def _cancel(self, leg: Leg, result: str) -> None:
        """Stop a leg that may still ring (the switch does not cancel it for us)."""
        try:
            self.call.api(f"uuid_kill {leg.leg_uuid} ORIGINATOR_CANCEL", timeout=5.0)
        finally:
            # After the kill: another node may ring the person the moment this is released.
            claims = self.call.services.claims
            if claims is not None and leg.claim is not None:
                claims.release(leg.claim)
        self._finish(leg, result, "ORIGINATOR_CANCEL")



def _create_attempt(call_uuid: str, seq: int, user_id: str, phone: str, started: datetime,
                    phone_type: str, incident_id: int | None, leg_uuid: str,
                    call_id: int | None = None) -> int:
    row = queries.record_attempt(call_uuid, seq, user_id, phone, started,
                                 phone_type=phone_type, incident_id=incident_id,
                                 leg_uuid=leg_uuid, call_id=call_id)
    return int(row.id)
