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
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from fsrouter.calls.call import Call
from fsrouter.calls.dialer import Accept, Dialled, Ringing
from fsrouter.calls.endings import fallback
from fsrouter.calls.media import concatenated, menu_argument, menu_prompts, playable
from fsrouter.calls.pending import create, settle
from fsrouter.calls.queueing import (
    DEFAULT_HOLD_MUSIC,
    enter_queue,
    leave_queue,
    ring_until_left,
)
from fsrouter.config import Config
from fsrouter.config.schema import CallRoutingNumber, Fallback, Option, Policy, Schedule
from fsrouter.prompts.catalog import accept_prompt, out_of_hours_prompt, queue_announcement
from fsrouter.resilience.journal import Ref
from fsrouter.routing.escalation import plan_escalation
from fsrouter.routing.hours import option_route
from fsrouter.routing.menu import MenuPlan, Prompt, build_menu, menu_outcome
from fsrouter.routing.schedules import RuntimeOverride, runtime_override, with_runtime_overrides
from fsrouter.store import StoreError, overrides, queries, replay
from fsrouter.store.models import Incident, OncallOverride

MENU_VARIABLE = "fsr_choice"


def queue_name(number: CallRoutingNumber, option: Option) -> str:
    """The option's queue, or one of its own (``fsr_<number digits>_<digit>``)."""
    return option.queue or f"fsr_{re.sub(r'[^0-9]', '', number.number)}_{option.digit}"


def run(call: Call, number: CallRoutingNumber) -> None:
    """The whole hotline call; returns when the caller is gone (every row final)."""
    config = call.services.config
    # The record before the answer: if the store refuses it, the caller is refused unanswered
    # (NORMAL_TEMPORARY_FAILURE, a 503 their network can route elsewhere; calls/__init__).
    call.open_record(number.number, "call_routing")
    outcome = "hangup"
    try:
        incident, option = resumed_option(call, number)
        plan = None if option else build_menu(number, config.defaults.language)
        first = None if plan is None or plan.skip else _menu_run(plan, config, first_play=True)
        # The menu goes with the answer, in one write: it starts as soon as the answer is done
        # (one round trip, and up to a media frame, sooner than after the answer's completion).
        answered, menu = call.answer_then(*first) if first else (call.answer(), None)
        if not answered:
            outcome = call.unanswered()
            return
        option = option or choose_option(call, number, config, plan, menu)
        if option is None:
            outcome = "hangup_in_menu" if call.gone.is_set() else "no_choice"
            call.hangup()
            return
        outcome = serve_option(call, number, option, config, incident)
    finally:
        if call.lost.is_set() and outcome != "bridged":
            outcome = call.lost_reason()
        call.outcome = outcome
        call.close_record(outcome)
        call.log.info("call.ended", outcome=outcome)


def resumed_option(call: Call, number: CallRoutingNumber) -> tuple[Incident | None, Option | None]:
    """An adopted caller who had chosen an option goes back to it with the same incident."""
    record = call.resumed
    if record is None or record.incident_id is None:
        return None, None
    incident = queries.get_incident(record.incident_id)
    option = next((o for o in number.options if str(o.digit) == incident.option_digit), None)
    if incident.state not in ("open", "accepted") or option is None:
        return None, None
    return incident, option


def choose_option(call: Call, number: CallRoutingNumber, config: Config,
                  plan: MenuPlan | None = None, started: Any | None = None) -> Option | None:
    """Play the menu until a valid key, the caller leaving, or the tries running out
    (``started``: the first play's run, already queued with the answer)."""
    plan = plan or build_menu(number, config.defaults.language)
    if plan.skip:
        return number.options[0]
    for tries_used in range(1, plan.tries + 1):
        digit = _play_menu(call, plan, config, first_play=tries_used == 1,
                           started=started if tries_used == 1 else None)
        if call.gone.is_set():
            return None
        outcome = menu_outcome(number, digit, tries_used)
        call.log.info("menu.answered", action=outcome.action, reason=outcome.reason)
        if outcome.action == "choose":
            call.metrics.menu_choice(number.number, str(digit))
            return outcome.option
        if outcome.action == "goodbye":
            _play(call, plan.goodbye, config)
            return None
        if outcome.invalid:
            _play(call, plan.invalid, config)
    return None


def _menu_run(plan: MenuPlan, config: Config, first_play: bool) -> tuple[str, str]:
    prompt_file = concatenated(menu_prompts(plan, first_play), config)
    return "play_and_get_digits", menu_argument(plan, prompt_file, MENU_VARIABLE)


def _play_menu(call: Call, plan: MenuPlan, config: Config, first_play: bool,
               started: Any | None = None) -> str | None:
    timeout = plan.timeout_s + 120
    if started is not None:
        done = call.finish(started, "play_and_get_digits", timeout)
    else:
        done = call.run(*_menu_run(plan, config, first_play), timeout=timeout)
    if done is None:
        return None
    # Only our regex-checked variable is read: a key outside the menu never sets it.
    return done.get(f"variable_{MENU_VARIABLE}") or done.get(f"variable_{MENU_VARIABLE}_invalid")


def _play(call: Call, prompt: Prompt, config: Config) -> None:
    call.run("playback", playable(prompt, config))


def serve_option(call: Call, number: CallRoutingNumber, option: Option, config: Config,
                 incident: Incident | None = None) -> str:
    """Incident (a new one, or the one an adopted caller comes back with), queue, escalation,
    and the end of the call; returns the call's outcome."""
    now = call.services.now
    if incident is None:
        # One transaction: the incident, and the call record linked to it (and answered).
        # While the store is away the journal writes it later: its id is then a Ref.
        created = create(queries.create_incident, number.number, str(option.digit),
                         option.label, call.caller_number, call.caller_name, call.uuid,
                         now(), answered_at=call.answered_at, later=replay.create_incident_once)
        incident_id = created if isinstance(created, Ref) else created.id
        call.log = call.log.bind(incident_id=incident_id)
        call.log.info("incident.created", option=option.digit, label=option.label)
        call.services.notify("incident.created",
                             _incident_data(incident_id, number, option, call))
    else:
        incident_id = incident.id
        call.log = call.log.bind(incident_id=incident_id)
        call.log.info("incident.resumed", option=option.digit, label=option.label)
    route = option_route(option, now(), config.defaults.timezone)
    if route.policy is None:  # out of hours, and the option says where callers go then
        call.log.info("option.out_of_hours", action=str(option.out_of_hours))
        settle(queries.note_incident, incident_id, "out_of_hours")
        fallback(call, _out_of_hours(route.fallback, number, option, config), incident_id)
        return "out_of_hours"
    queue = queue_name(number, option)
    waiting = _enter_queue(call, option, queue, config)
    policy = config.policies[route.policy]
    # Round robin starts with the next person each time (this incident counts, hence - 1);
    # the count is a query, so only made for a policy that has a round robin level.
    turn = (_incident_count(call, number, option) - 1
            if any(level.strategy == "round_robin" for level in policy.levels) else 0)
    moment = now()
    plan = plan_escalation(policy, config.users, schedules_at(call, config, policy, moment),
                           moment, round_robin_offset=turn)
    for gap in plan.gaps:
        call.log.warning("escalation.gap", gap=gap)
    accept = (Accept(policy.accept_digit, policy.accept_timeout,
                     playable(accept_prompt(config, number, option, policy), config))
              if policy.press_to_accept else None)
    ringing = Ringing(queue=queue, caller_id_number=number.number,
                      display_name=_display_name(option, call), defaults=config.defaults,
                      incident_id=incident_id, accept=accept, kind="oncall")
    dialled = ring_until_left(call, plan, ringing, waiting)
    return _finish(call, incident_id, option, dialled, waiting, config)


def _incident_count(call: Call, number: CallRoutingNumber, option: Option) -> int:
    """How many incidents the option has had (round robin's turn); while the store is away,
    1: the turn starts with the first person rather than the call failing."""
    try:
        return queries.incident_count(number.number, str(option.digit))
    except StoreError as error:
        call.log.warning("round_robin.count_unavailable", error=str(error)[:200])
        return 1


def as_runtime(rows: Iterable[OncallOverride]) -> list[RuntimeOverride]:
    """Stored run-time overrides as the schedule resolution takes them."""
    return [runtime_override(row.id, row.schedule, row.user_id, row.starts_at, row.ends_at,
                             row.reason) for row in rows]


def schedules_at(call: Call, config: Config, policy: Policy, moment: datetime
                 ) -> Mapping[str, Schedule]:
    """The schedules with the run-time overrides in force at ``moment`` (read now, so the
    next call sees an override the CLI has just added); the YAML's alone when the policy
    names no schedule or the store cannot say (the call goes on)."""
    if not any(target.schedule for level in policy.levels for target in level.targets):
        return config.schedules
    try:
        rows = overrides.active_at(moment)
    except StoreError as error:
        call.log.warning("oncall.overrides_unavailable", error=str(error))
        return config.schedules
    return with_runtime_overrides(config.schedules, as_runtime(rows), config.users)


def _display_name(option: Option, call: Call) -> str:
    """What the called person's phone shows next to the routing number.

    No colon after the label: mod_sofia drops everything up to the last ``:`` or ``/`` of
    the caller ID name of a SIP leg (switch_sanitize_number, measured on 1.11.1), so a SIP
    phone showed "Label: Name" as " Name".
    """
    who = call.caller_name or call.caller_number or "unknown"
    return f"{option.label} - {who}"


def _out_of_hours(spec: Fallback, number: CallRoutingNumber, option: Option,
                  config: Config) -> Fallback:
    """``out_of_hours: message`` without a file says the option's rendered sentence."""
    if spec.kind != "message" or spec.target:
        return spec
    return Fallback(kind="message",
                    target=playable(out_of_hours_prompt(config, number, option), config))


def _enter_queue(call: Call, option: Option, queue: str, config: Config) -> object:
    settings = config.queues.get(option.queue or "")
    music = option.hold_music or (settings.hold_music if settings else DEFAULT_HOLD_MUSIC)
    max_wait = option.max_wait or (settings.max_wait if settings else 600)
    announcement = queue_announcement(config, option.queue or "")
    return enter_queue(call, queue, music, max_wait,
                       playable(announcement, config) if announcement else None)


def _finish(call: Call, incident_id: int | Ref, option: Option, dialled: Dialled, waiting: object,
            config: Config) -> str:
    now = call.services.now
    if dialled.accepted is not None:
        who = dialled.accepted.user_id
        settle(queries.accept_incident, incident_id, who, now(), call_uuid=call.uuid)
        call.log.info("incident.accepted", user=who)
        call.services.notify("incident.accepted", {"incident_id": incident_id, "user": who,
                                                   "phone": dialled.accepted.phone})
        call.gone.wait()
        if isinstance(incident_id, Ref):  # its own entry: a create that failed spares the close
            settle(queries.resolve_incident, incident_id, now(), "resolved", "call ended")
        else:  # resolved by the record's last write, in its transaction (Call.close_record)
            call.resolve_at_close = (incident_id, "call ended")
        call.services.notify("incident.resolved", {"incident_id": incident_id,
                                                   "resolution": "resolved"})
        return "bridged"
    if call.lost.is_set():  # the switch dropped our socket: we do not know how it ended
        reason = call.lost_reason()  # switch_lost when the switch itself is gone
        settle(queries.note_incident, incident_id, reason)
        return reason
    if dialled.caller_left or call.gone.is_set():
        if option.resolve_abandoned:
            settle(queries.resolve_incident, incident_id, now(), "abandoned", "caller_abandoned")
            call.services.notify("incident.resolved", {"incident_id": incident_id,
                                                       "resolution": "abandoned"})
        else:
            settle(queries.note_incident, incident_id, "caller_abandoned")
        return "abandoned_in_queue"
    settle(queries.note_incident, incident_id, "nobody_answered")  # stays open for follow-up
    leave_queue(call, waiting)
    fallback(call, option.fallback, incident_id)
    return "no_answer_fallback"


def _incident_data(incident_id: int | Ref, number: CallRoutingNumber, option: Option,
                   call: Call) -> dict[str, object]:
    return {"incident_id": incident_id, "number": number.number, "option": option.digit,
            "label": option.label, "caller_number": queries.clean_caller_text(
                call.caller_number), "caller_name": queries.clean_caller_text(call.caller_name)}
