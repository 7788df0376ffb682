"""Ringing people for a waiting caller: one ``bgapi originate`` per phone, waves in order.

Each leg is originated with ``'&fifo(<queue> out nowait)'`` and
``fifo_bridge_uuid=<caller>``/``fifo_bridge_uuid_required=true`` (freeswitch-facts.md §3), so
the leg that answers takes exactly this caller from the queue and mod_fifo bridges them. The
called person sees the routing number as caller ID. With press-to-accept, FreeSWITCH's
``group_confirm_key`` makes the answer count only when the person presses the key (a mobile
mailbox picking up does not). A failed wave is followed at once by the next: escalation delays
do not apply on the phone. When the caller leaves, every ringing leg is killed at once.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

import gevent
import gevent.event

from fsrouter.calls.call import Call
from fsrouter.config.schema import Defaults
from fsrouter.esl import ESLError
from fsrouter.esl.escape import originate_command
from fsrouter.routing.escalation import Attempt, Plan
from fsrouter.store import queries

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


@dataclass(frozen=True)
class Leg:
    """One ringing phone: the attempt, its leg uuid and its row in the store."""

    attempt: Attempt
    leg_uuid: str
    row_id: int


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
    incident_id: int | None
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
        variables["fsr_incident"] = str(ringing.incident_id)
    if ringing.accept is not None:
        variables |= {
            "group_confirm_key": ringing.accept.digit,
            "group_confirm_file": ringing.accept.prompt,
            "group_confirm_read_timeout": str(ringing.accept.timeout * 1000),
        }
    # The display name carries caller text; every value goes through the escaping module.
    variables["origination_caller_id_name"] = ringing.display_name
    # SIP phones (contact-center agents) come as dial strings, other phones as E.164 numbers.
    dial = (attempt.phone if attempt.phone_type == "sip"
            else ringing.defaults.dial_string(attempt.phone))
    return originate_command(variables, dial, "fifo", f"{ringing.queue} out nowait")


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

    def _over(self) -> bool:
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
        legs = [self._start(attempt) for attempt in attempts]
        waiters = {gevent.spawn(self._wait, leg): leg for leg in legs}
        winner: Attempt | None = None
        pending = set(waiters)
        while pending and winner is None:
            gevent.wait([*pending, self.call.gone, self.stop], count=1)
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

    def _start(self, attempt: Attempt) -> Leg:
        leg_uuid = str(uuidlib.uuid4())
        now = self.call.services.now()
        row = queries.record_attempt(
            self.call.uuid, self.seq, attempt.user_id, attempt.phone, now,
            phone_type=attempt.phone_type, incident_id=self.ringing.incident_id,
            leg_uuid=leg_uuid)
        self.seq += 1
        self.call.log.info("attempt.ringing", user=attempt.user_id, phone=attempt.phone,
                           level=attempt.level + 1, ring_timeout=attempt.ring_timeout,
                           leg_uuid=leg_uuid)
        return Leg(attempt, leg_uuid, row.id)

    def _wait(self, leg: Leg) -> str:
        command = leg_command(self.call, self.ringing, leg.attempt, leg.leg_uuid)
        try:
            job = self.call.session.bgapi(command)
            reply = job.wait(leg.attempt.ring_timeout + self.ringing.accept_timeout
                             + JOB_GRACE)
        except ESLError as error:
            self.call.log.warning("attempt.no_result", leg_uuid=leg.leg_uuid, error=str(error))
            self._cancel(leg, "failed")
            return "failed"
        result, cause = result_of(reply, self.ringing.accept is not None)
        queries.finish_attempt(leg.row_id, result, cause, self.call.services.now())
        self.call.metrics.attempt_ended(result, cause)
        self.call.log.info("attempt.ended", user=leg.attempt.user_id, result=result,
                           cause=cause)
        if result in ("answered", "accepted") and not self._bridged():
            self.call.log.warning("attempt.not_bridged", leg_uuid=leg.leg_uuid)
            queries.finish_attempt(leg.row_id, "failed", "NOT_BRIDGED", self.call.services.now())
            return "failed"
        return "won" if result in ("answered", "accepted") else result

    def _bridged(self) -> bool:
        """mod_fifo bridges the answering leg to our caller right after ``+OK``."""
        gevent.wait([self.call.bridged, self.call.gone], count=1, timeout=BRIDGE_WAIT)
        return self.call.bridged.is_set()

    def _cancel(self, leg: Leg, result: str) -> None:
        """Stop a leg that may still ring (the switch does not cancel it for us)."""
        self.call.api(f"uuid_kill {leg.leg_uuid} ORIGINATOR_CANCEL", timeout=5.0)
        queries.finish_attempt(leg.row_id, result, "ORIGINATOR_CANCEL",
                               self.call.services.now())
