"""The on-call hotline, as the product page describes it.

1. The caller hears the menu generated from the configuration and presses a key.
   Hanging up here leaves a call record and **no incident**.
2. The choice creates an incident; the caller waits in a mod_fifo queue with hold music.
3. The option's escalation policy, resolved at the moment of the call, is rung wave after wave,
   at once after each failure; the called person sees the routing number.
4. Whoever answers (and presses the key, with press-to-accept) is bridged by mod_fifo: the
   incident is accepted; it is resolved when the call ends.
5. Nobody: the caller leaves the queue to the option's fallback (voicemail, a message, or a
   goodbye); the incident is closed as unanswered. The caller hanging up while phones ring
   kills the ringing legs at once and closes the incident as abandoned.
"""

from __future__ import annotations

import re

import gevent

from fsrouter.calls.call import Call
from fsrouter.calls.dialer import Dialer, Dialled, Ringing
from fsrouter.calls.media import concatenated, menu_argument, menu_prompts, playable
from fsrouter.config import Config
from fsrouter.config.schema import CallRoutingNumber, Fallback, Option, Policy
from fsrouter.esl import ESLError, ESLTimeout
from fsrouter.routing.escalation import Plan, plan_escalation
from fsrouter.routing.hours import option_route
from fsrouter.routing.menu import MenuPlan, Prompt, build_menu, menu_outcome
from fsrouter.store import queries

MENU_VARIABLE = "fsr_choice"
DEFAULT_HOLD_MUSIC = "local_stream://moh"
# Sent into the caller's own leg to take it out of the queue for the fallback; also lets a
# caller leave the queue by pressing it.
QUEUE_EXIT_KEY = "#"
QUEUE_LEFT = ("ABORTED", "TIMEOUT")


def queue_name(number: CallRoutingNumber, option: Option) -> str:
    """The option's queue, or one of its own (``fsr_<number digits>_<digit>``)."""
    return option.queue or f"fsr_{re.sub(r'[^0-9]', '', number.number)}_{option.digit}"


def run(call: Call, number: CallRoutingNumber) -> None:
    """The whole hotline call; returns when the caller is gone (every row final)."""
    config = call.services.config
    now = call.services.now
    queries.create_call_record(call.uuid, number.number, "call_routing", call.caller_number,
                               call.caller_name, now(), host=call.services.host)
    outcome = "hangup"
    try:
        if call.run("answer") is None:
            outcome = "hangup_before_answer"
            return
        queries.mark_answered(call.uuid, now())
        option = choose_option(call, number, config)
        if option is None:
            outcome = "hangup_in_menu" if call.gone.is_set() else "no_choice"
            call.hangup()
            return
        outcome = serve_option(call, number, option, config)
    finally:
        queries.finish_call(call.uuid, outcome, call.hangup_cause, now())
        call.log.info("call.ended", outcome=outcome)


def choose_option(call: Call, number: CallRoutingNumber, config: Config) -> Option | None:
    """Play the menu until a valid key, the caller leaving, or the tries running out."""
    plan = build_menu(number, config.defaults.language)
    if plan.skip:
        return number.options[0]
    for tries_used in range(1, plan.tries + 1):
        digit = _play_menu(call, plan, config, first_play=tries_used == 1)
        if call.gone.is_set():
            return None
        outcome = menu_outcome(number, digit, tries_used)
        call.log.info("menu.answered", action=outcome.action, reason=outcome.reason)
        if outcome.action == "choose":
            return outcome.option
        if outcome.action == "goodbye":
            _play(call, plan.goodbye, config)
            return None
        if outcome.invalid:
            _play(call, plan.invalid, config)
    return None


def _play_menu(call: Call, plan: MenuPlan, config: Config, first_play: bool) -> str | None:
    prompt_file = concatenated(menu_prompts(plan, first_play), config.tts)
    done = call.run("play_and_get_digits", menu_argument(plan, prompt_file, MENU_VARIABLE),
                    timeout=plan.timeout_s + 120)
    if done is None:
        return None
    # Only our regex-checked variable is read: a key outside the menu never sets it.
    return done.get(f"variable_{MENU_VARIABLE}") or done.get(f"variable_{MENU_VARIABLE}_invalid")


def _play(call: Call, prompt: Prompt, config: Config) -> None:
    call.run("playback", playable(prompt, config.tts))


def serve_option(call: Call, number: CallRoutingNumber, option: Option, config: Config) -> str:
    """Incident, queue, escalation, and the end of the call; returns the call's outcome."""
    now = call.services.now
    incident = queries.create_incident(number.number, str(option.digit), option.label,
                                       call.caller_number, call.caller_name, call.uuid, now())
    queries.link_call(call.uuid, incident_id=incident.id)
    call.log = call.log.bind(incident_id=incident.id)
    call.log.info("incident.created", option=option.digit, label=option.label)
    route = option_route(option, now(), config.defaults.timezone)
    if route.policy is None:  # out of hours, and the option says where callers go then
        call.log.info("option.out_of_hours", action=str(option.out_of_hours))
        queries.note_incident(incident.id, "out_of_hours")
        _fallback(call, route.fallback, config)
        return "out_of_hours"
    queue = queue_name(number, option)
    waiting = _enter_queue(call, option, queue, config)
    policy = config.policies[route.policy]
    # Round robin starts with the next person each time (this incident counts, hence - 1).
    turn = queries.incident_count(number.number, str(option.digit)) - 1
    plan = plan_escalation(policy, config.users, config.schedules, now(),
                           round_robin_offset=turn)
    for gap in plan.gaps:
        call.log.warning("escalation.gap", gap=gap)
    ringing = Ringing(queue=queue, routing_number=number.number,
                      display_name=_display_name(option, call), policy=policy,
                      defaults=config.defaults, incident_id=incident.id,
                      accept_prompt=_accept_prompt(option, policy, config))
    dialled = _ring_until_left(call, plan, ringing, waiting)
    return _finish(call, incident.id, option, dialled, waiting, config)


def _display_name(option: Option, call: Call) -> str:
    """What the called person's phone shows next to the routing number."""
    who = call.caller_name or call.caller_number or "unknown"
    return f"{option.label}: {who}"


def _accept_prompt(option: Option, policy: Policy, config: Config) -> str:
    if policy.accept_prompt is not None:
        return policy.accept_prompt
    digit = policy.accept_digit
    text = {"de": f"Anruf für {option.label}. Zum Annehmen drücken Sie die {digit}.",
            "en": f"Call for {option.label}. Press {digit} to accept."}
    sentence = text.get(config.defaults.language[:2], text["en"])
    return playable(Prompt("tts", sentence), config.tts)


def _enter_queue(call: Call, option: Option, queue: str, config: Config) -> object:
    """``fifo <queue> in`` with hold music; returns the running app (it ends when we leave)."""
    settings = config.queues.get(option.queue or "")
    music = option.hold_music or (settings.hold_music if settings else DEFAULT_HOLD_MUSIC)
    max_wait = option.max_wait or (settings.max_wait if settings else 600)
    call.run("set", f"fifo_caller_exit_key={QUEUE_EXIT_KEY}")
    # _continue_: when the wait is over, fifo returns to us instead of transferring the call.
    call.run("set", f"fifo_orbit_exten=_continue_:{max_wait}")
    waiting = call.start("fifo", f"{queue} in undef {music}")
    # Ring only once the caller is in the queue: a phone that answers at once would otherwise
    # find nobody to take (fifo_bridge_uuid_required) and the call would never be bridged.
    gevent.wait([call.queued, call.gone], count=1, timeout=call.services.step_timeout)
    return waiting


def _ring_until_left(call: Call, plan: Plan, ringing: Ringing, waiting: object) -> Dialled:
    """Ring, but stop at once if the caller leaves the queue (exit key, maximum wait)."""
    dialer = Dialer(call, ringing)
    ringer = gevent.spawn(dialer.ring, plan)
    left = gevent.spawn(_wait_left_queue, waiting)
    gevent.wait([ringer, left], count=1)
    if not ringer.ready() and left.ready() and left.value:
        call.log.info("queue.left", status=left.value)
        dialer.stop.set()  # the dialer kills what still rings and finishes its rows
    dialled = ringer.get()
    left.kill()
    return dialled


def _wait_left_queue(waiting: object, timeout: float | None = None) -> str | None:
    """``ABORTED``/``TIMEOUT`` once the caller left the queue, ``GONE`` if the call ended;
    None when the fifo app ended otherwise (bridged) or ``timeout`` passed first.

    Without a timeout the wait ends at the latest when the socket closes (every waiter is
    released then)."""
    if waiting is None:
        return "GONE"
    try:
        done = waiting.wait(timeout)  # type: ignore[attr-defined]
    except ESLTimeout:
        return None
    except ESLError:  # the socket closed: the caller is gone
        return "GONE"
    status = done.get("variable_fifo_status")
    return status if status in QUEUE_LEFT else None


def _finish(call: Call, incident_id: int, option: Option, dialled: Dialled, waiting: object,
            config: Config) -> str:
    now = call.services.now
    if dialled.accepted is not None:
        who = dialled.accepted.user_id
        queries.accept_incident(incident_id, who, now())
        queries.link_call(call.uuid, bridged_to_user=who)
        call.log.info("incident.accepted", user=who)
        call.gone.wait()
        queries.resolve_incident(incident_id, now(), "resolved", "call ended")
        return "bridged"
    if dialled.caller_left or call.gone.is_set():
        if option.resolve_abandoned:
            queries.resolve_incident(incident_id, now(), "abandoned", "caller_abandoned")
        else:
            queries.note_incident(incident_id, "caller_abandoned")
        return "abandoned_in_queue"
    queries.note_incident(incident_id, "nobody_answered")  # stays open for follow-up
    _leave_queue(call, waiting)
    _fallback(call, option.fallback, config)
    return "no_answer_fallback"


def _leave_queue(call: Call, waiting: object) -> None:
    """Take the caller out of the queue (as if they pressed the exit key) for the fallback."""
    call.api(f"uuid_recv_dtmf {call.uuid} {QUEUE_EXIT_KEY}")
    _wait_left_queue(waiting, timeout=5)


def _fallback(call: Call, fallback: Fallback, config: Config) -> None:
    if fallback.kind == "voicemail" and fallback.target:
        call.run("voicemail", f"default {config.defaults.voicemail_domain} {fallback.target}",
                 timeout=600)
    elif fallback.kind == "message" and fallback.target:
        call.run("playback", fallback.target)
    else:
        call.run("playback", config.tone("busy").replace("loops=-1", "loops=3"))
    call.hangup()
