"""Contact-center inbound routes (product.md §2): agent, queue, custom, unassigned.

The route comes from :func:`fsrouter.routing.destinations.choose_destination`, fed with the
run-time assignment (database), the 2-way VoIP mapping (for numbers marked ``two_way``) and
the agents' presence, all read when the call arrives, so a change applies to the next call.

- agent: ``bridge`` to the agent's phone with ringback; no answer -> the number's
  ``when_busy`` (busy tone by default). Busy or logged out -> busy tone / voicemail.
- queue: the caller waits in the queue's mod_fifo queue while the queue's free agents are
  rung by its strategy, pass after pass, until someone answers or the maximum wait ends
  (then the queue's fallback).
- custom: ``bridge`` to the dial string, or ``transfer`` to a dialplan extension.

Caller text never reaches an argument: the agent's phone shows the caller through
``bridge`` (the switch copies the caller ID) or through the escaping module (queues).
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime
from typing import Any

import gevent
import structlog

from fsrouter.calls import call_routing
from fsrouter.calls.call import Call
from fsrouter.calls.dialer import RESULTS, Ringing, sip_displayable
from fsrouter.calls.endings import busy_tone, fallback, not_in_service
from fsrouter.calls.media import playable
from fsrouter.calls.pending import settle
from fsrouter.calls.queueing import enter_queue, ring_until_left, wait_left_queue
from fsrouter.calls.voicemail import leave_voicemail
from fsrouter.config.schema import AgentNumber, Fallback
from fsrouter.esl.escape import UnsafeText, bridge_target, caller_number
from fsrouter.prompts.catalog import queue_announcement
from fsrouter.resilience import journal
from fsrouter.routing.destinations import (
    BusyTone,
    Custom,
    Destination,
    Hangup,
    NumberEntry,
    RingAgent,
    RoutingMenu,
    ToQueue,
    ToVoicemail,
    Unassigned,
    choose_destination,
)
from fsrouter.routing.distribution import AgentInfo, queue_plan
from fsrouter.store import StoreError, queries, replay

DEFAULT_RING_TIMEOUT = 20
# Seconds between looks at the queue's agents when none is free.
log = structlog.get_logger("fsrouter.calls")
IDLE_POLL = 2.0
# Seconds between passes over the queue's agents (a phone that rejects at once must not
# make us ring it in a tight loop).
PASS_PAUSE = 1.0


def run(call: Call, number: str, entry: NumberEntry | None) -> None:
    """Route a call to ``number`` (E.164, or "" when the destination was not a number)."""
    destination = decide(call, number, entry)
    call.log.info("route.chosen", kind=type(destination).__name__, notes=destination.notes)
    if isinstance(destination, RoutingMenu):
        call_routing.run(call, destination.number)
        return
    if isinstance(destination, Unassigned):
        reason = "number not served" if entry is None else "number is unassigned"
        not_in_service(call, number, destination.behaviour, reason)
        return
    call.open_record(number, _route_type(destination))
    outcome = "failed"
    try:
        outcome = serve(call, number, entry, destination)
    finally:
        if call.lost.is_set() and outcome != "bridged":
            outcome = call.lost_reason()
        call.outcome = outcome
        call.close_record(outcome)
        call.log.info("call.ended", outcome=outcome)


def decide(call: Call, number: str, entry: NumberEntry | None) -> Destination:
    """The destination, from the configuration and what the database says right now."""
    config = call.services.config
    try:
        if journal.busy():  # writes wait for the store: it is away (do not wait on it)
            raise StoreError("the store is catching up on waiting writes")
        assignment = queries.get_assignment(number) if number else None
        two_way = _two_way_agent(call, entry)
        candidates = {getattr(entry, "agent", None), two_way,
                      assignment.target if assignment is not None else None}
        rows = queries.presence_of(uid for uid in candidates if uid in config.users)
        presence = {uid: (row.state == "logged_in", row.busy) for uid, row in rows.items()}
    except StoreError as error:
        # The database is unavailable: route by the YAML alone, everybody counted as free.
        call.log.error("route.store_unavailable", error=str(error))
        assignment, two_way = None, None
        presence = {uid: (True, False) for uid in config.users}
    return choose_destination(entry, assignment, two_way, presence, users=config.users,
                              queues=config.queues.keys())


def _two_way_agent(call: Call, entry: NumberEntry | None) -> str | None:
    if not getattr(entry, "two_way", False):
        return None
    mapping = queries.lookup_two_way(call.caller_e164, call.services.now())
    return mapping.user_id if mapping is not None else None


def _route_type(destination: Destination) -> str:
    if isinstance(destination, ToQueue):
        return "queue"
    if isinstance(destination, Custom):
        return "custom"
    return "agent"


def serve(call: Call, number: str, entry: NumberEntry | None, dest: Destination) -> str:
    if isinstance(dest, RingAgent):
        timeout = entry.ring_timeout if isinstance(entry, AgentNumber) else DEFAULT_RING_TIMEOUT
        outcome = ring_agent(call, dest, timeout)
        if outcome not in ("no_answer", "claimed_elsewhere"):
            return outcome
        # Claimed by another call (here or on another node): busy, as a busy agent.
        return unavailable(call, dest.when_unanswered, dest.user_id)
    if isinstance(dest, BusyTone):
        return busy_tone(call)
    if isinstance(dest, ToVoicemail):
        outcome = leave_voicemail(call, dest.user_id)
        call.hangup()
        return outcome
    if isinstance(dest, Hangup):
        call.hangup("USER_BUSY")
        return "hangup"
    if isinstance(dest, ToQueue):
        return serve_queue(call, number, dest.queue)
    assert isinstance(dest, Custom)
    return custom(call, dest)


def unavailable(call: Call, action: str, user_id: str) -> str:
    """What a caller gets when the agent did not answer."""
    if action == "voicemail":
        user = call.services.config.users.get(user_id)
        if user is not None and user.voicemail.enabled:
            outcome = leave_voicemail(call, user_id)
            call.hangup()
            return outcome
    if action == "hangup":
        call.hangup("NO_ANSWER")
        return "no_answer"
    return busy_tone(call)


def ring_agent(call: Call, dest: RingAgent, ring_timeout: int) -> str:
    """``bridge`` to the agent; ``bridged`` when they talked, ``no_answer`` otherwise,
    ``claimed_elsewhere`` when another call holds the agent (fsrouter/cluster). The claim
    ends with the attempt, or with the agent's leg once it was bridged."""
    leg_uuid = str(uuidlib.uuid4())
    claims = call.services.claims
    claim = None
    if claims is not None:
        claim = claims.claim(dest.user_id, call.uuid, leg_uuid)
        if claim is None:
            call.log.info("agent.claimed_elsewhere", user=dest.user_id)
            return "claimed_elsewhere"
    outcome = "failed"
    try:
        outcome = _bridge_agent(call, dest, ring_timeout, leg_uuid)
        return outcome
    finally:
        if claims is not None and (outcome == "bridged" or call.bridged.is_set()):
            claims.release_when_ended(claim, call.gone.is_set, lambda leg: _leg_exists(call, leg))
        elif claims is not None:
            claims.release(claim)  # the leg is over (or cancelled in _bridge_agent)


def _leg_exists(call: Call, leg_uuid: str) -> bool:
    return call.api(f"uuid_exists {leg_uuid}", 5.0).strip() == "true"


def _bridge_agent(call: Call, dest: RingAgent, ring_timeout: int, leg_uuid: str) -> str:
    config = call.services.config
    attempt = (call.uuid, 0, dest.user_id, dest.dial_string, call.services.now(), "sip", None,
               leg_uuid)
    row_id = _start_attempt(call, attempt)
    # continue_on_fail: without it a busy or rejecting phone hangs up the caller too
    # (switch_channel_handle_cause); fsrouter decides what the caller hears instead.
    call.set_vars({"ringback": config.tone("ringback"), "hangup_after_bridge": "true",
                   "continue_on_fail": "true"})
    target = bridge_target({"origination_uuid": leg_uuid,
                            "originate_timeout": str(ring_timeout),
                            "fsr_agent": dest.user_id, "fsr_kind": "agent",
                            **_sip_safe_name(call, dest.dial_string)}, dest.dial_string)
    call.log.info("agent.ringing", user=dest.user_id, leg_uuid=leg_uuid)
    done = call.run("bridge", target, timeout=ring_timeout + call.services.step_timeout)
    if call.bridged.is_set():
        if row_id is not None:  # one transaction: the attempt's result, who the call went to
            settle(queries.end_attempt_bridged, call.uuid, dest.user_id, row_id, "answered",
                   "NORMAL_CLEARING", call.services.now())
        else:
            _end_attempt(attempt, row_id, "answered", "NORMAL_CLEARING", call.services.now())
            settle(queries.link_call, call.uuid, bridged_to_user=dest.user_id)
        call.gone.wait()  # hangup_after_bridge: the call ends with the conversation
        return "bridged"
    cause = _bridge_cause(done, call)
    result = RESULTS.get(cause, "failed")
    _end_attempt(attempt, row_id, result, cause, call.services.now())
    call.log.info("agent.not_answered", user=dest.user_id, result=result, cause=cause)
    if call.gone.is_set():
        _cancel_leg(call, leg_uuid)
        return "abandoned"
    return "no_answer"


def _start_attempt(call: Call, attempt: tuple[Any, ...]) -> int | None:
    """The attempt's row now, or None: written with its result once the store takes writes
    (the agent is rung all the same)."""
    if journal.busy():
        return None
    try:
        return queries.record_attempt(*attempt[:5], phone_type=attempt[5], leg_uuid=attempt[7],
                                      call_id=call.record_id).id
    except StoreError as error:
        call.log.warning("attempt.row_deferred", leg_uuid=attempt[7], error=str(error))
        return None


def _end_attempt(attempt: tuple[Any, ...], row_id: int | None, result: str, cause: str,
                 now: datetime) -> None:
    if row_id is not None:
        settle(queries.end_attempt, row_id, result, cause, now)
    else:
        settle(replay.record_finished_attempt_once, *attempt, result, cause, now)


def _sip_safe_name(call: Call, dial_string: str) -> dict[str, str]:
    """The bridged leg copies the caller's ID, but a SIP leg cannot carry every name (see
    :func:`fsrouter.calls.dialer.sip_displayable`): such a caller would only ever hear the
    busy tone. The phone then shows the caller's number as the name (``bridge`` takes no
    caller text in its arguments)."""
    name = call.caller_name
    if sip_displayable(name, dial_string) == name:
        return {}
    return {"origination_caller_id_name": _shown_number(call, call.number or "unknown")}


def _bridge_cause(done: object, call: Call) -> str:
    get = getattr(done, "get", None)
    if get is None:
        return "ORIGINATOR_CANCEL" if call.gone.is_set() else "UNKNOWN"
    return (get("variable_originate_disposition") or get("variable_DIALSTATUS")
            or "UNKNOWN").upper()


def _cancel_leg(call: Call, leg_uuid: str) -> None:
    # The switch cancels a bridge's leg when the caller hangs up; this covers a lost socket.
    call.api(f"uuid_kill {leg_uuid} ORIGINATOR_CANCEL", timeout=5.0)


def custom(call: Call, dest: Custom) -> str:
    if dest.dial_string is not None:
        call.set_vars({"hangup_after_bridge": "true", "continue_on_fail": "true"})
        safe_name = _sip_safe_name(call, dest.dial_string)
        call.run("bridge", bridge_target({"fsr_kind": "custom", **safe_name}, dest.dial_string),
                 timeout=call.services.step_timeout + 120)
        if call.bridged.is_set():
            call.gone.wait()
            return "bridged"
        return busy_tone(call)
    assert dest.extension is not None
    call.run("transfer", f"{dest.extension} XML {dest.context}")
    return "transferred"


def serve_queue(call: Call, number: str, queue: str) -> str:
    """Hold the caller in the queue and ring its free agents until one answers."""
    config = call.services.config
    settings = config.queues[queue]
    if not call.answer():
        return call.unanswered()
    # Written now, not with the record's next write: a queue call may last an hour. An
    # adopted caller keeps the time it was first answered.
    if call.resumed is None and call.answered_at is not None:
        settle(queries.mark_answered, call.uuid, call.answered_at)
    announcement = queue_announcement(config, queue)
    waiting = enter_queue(call, queue, settings.hold_music, settings.max_wait,
                          playable(announcement, config) if announcement else None)
    ringing = Ringing(queue=queue, caller_id_number=_shown_number(call, number),
                      display_name=call.caller_name or call.caller_number or number,
                      defaults=config.defaults, incident_id=None, accept=None, kind="agent")
    turn = _call_count(call, number)
    while not call.gone.is_set():
        plan = queue_plan(settings, _agent_info(settings.agents), config.users, turn)
        if not plan.waves:
            left = wait_left_queue(waiting, timeout=IDLE_POLL)
            if left is not None:
                return _queue_left(call, left, settings.fallback)
            continue
        dialled = ring_until_left(call, plan, ringing, waiting)
        if dialled.accepted is not None:
            settle(queries.link_call, call.uuid, bridged_to_user=dialled.accepted.user_id)
            call.gone.wait()
            return "bridged"
        if dialled.caller_left:
            break
        if waiting is None or waiting.done:  # maximum wait over, or the exit key
            return _queue_left(call, wait_left_queue(waiting, 1.0) or "TIMEOUT",
                               settings.fallback)
        turn += 1
        gevent.sleep(PASS_PAUSE)
    return "abandoned_in_queue"


def _queue_left(call: Call, status: str, spec: Fallback) -> str:
    if status == "GONE" or call.gone.is_set():
        return "abandoned_in_queue"
    got = fallback(call, spec)
    call.log.info("queue.left", status=status, fallback=got)
    return "queue_timeout" if status == "TIMEOUT" else "queue_exit"


def _call_count(call: Call, number: str) -> int:
    """How many calls the number has had (round robin's turn); 0 while the store is away."""
    try:
        return queries.call_count(number)
    except StoreError as error:
        call.log.warning("round_robin.count_unavailable", error=str(error)[:200])
        return 0


# The agents' presence as last read: what a waiting caller's queue goes by while the store is
# away (the caller waits on, and is rung as the agents were, instead of being cut off).
_last_presence: dict[str, AgentInfo] = {}


def _agent_info(agents: tuple[str, ...]) -> dict[str, AgentInfo]:
    try:
        rows = queries.presence_of(agents)
    except StoreError as error:
        log.warning("queue.presence_unavailable", error=str(error)[:200])
        return {uid: _last_presence[uid] for uid in agents if uid in _last_presence}
    info = {uid: AgentInfo(row.state == "logged_in", row.busy, row.updated_at)
            for uid, row in rows.items()}
    for uid in agents:
        if uid in info:
            _last_presence[uid] = info[uid]
        else:
            _last_presence.pop(uid, None)
    return info


def _shown_number(call: Call, number: str) -> str:
    """The customer's number for the agent's display, or our number if it is not a number."""
    try:
        return caller_number(call.caller_number)
    except UnsafeText:
        return number

