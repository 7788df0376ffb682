"""``fsrouter simulate``: what a call to a number would do, as a dry run (no switch, no writes).

It runs the daemon's own pure decisions: :func:`choose_destination` for the route, and for an
on-call hotline :func:`build_menu`/:func:`menu_outcome` (the keys the caller presses, one per
menu play), :func:`option_route` (business hours) and :func:`plan_escalation` (the waves of
phones, repeat passes, gaps), and shows the fallback.

The database: by default **config only** (nothing is opened): no run-time assignment and no
2-way mapping apply, agents count as logged in and free (as the daemon does when its database
is down), round robin starts with the first person. ``--with-db`` (the configured database) or
``--database URL`` reads assignments, presence, 2-way mappings, the run-time on-call overrides
and the incident count that picks the round robin turn; it never writes and never creates a
missing SQLite file.
``--logged-in``/``--logged-out``/``--busy NAME`` set an agent's presence for the run.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fsrouter.calls.call_routing import as_runtime, queue_name
from fsrouter.commands import EXIT_OK
from fsrouter.commands.common import (
    agent_problem,
    clock_text,
    days_text,
    emit,
    emit_json,
    fail_if,
    iso,
    load,
    local_text,
    parse_moment,
    parse_number,
    shown,
    store,
    utc_now,
)
from fsrouter.config import Config
from fsrouter.config.schema import AgentNumber, CallRoutingNumber, Option, Policy, Schedule
from fsrouter.routing.destinations import (
    BusyTone,
    Custom,
    Destination,
    Hangup,
    RingAgent,
    RoutingMenu,
    ToQueue,
    ToVoicemail,
    Unassigned,
    choose_destination,
)
from fsrouter.routing.escalation import plan_escalation
from fsrouter.routing.holidays import holiday_name
from fsrouter.routing.hours import closed_for, in_hours, option_route
from fsrouter.routing.menu import Prompt, build_menu, menu_outcome
from fsrouter.routing.schedules import (
    Origin,
    RuntimeOverride,
    on_call_origin,
    with_runtime_overrides,
)
from fsrouter.store import overrides, queries

# One character per menu play: a key the caller presses, or ``_`` for no key (timeout).
_KEYS = re.compile(r"[0-9*#A-D_]{0,20}")
DEFAULT_HOLD_MUSIC = "local_stream://moh"  # as fsrouter.calls.queueing
DEFAULT_RING_TIMEOUT = 20  # as fsrouter.calls.inbound


@dataclass
class Facts:
    """What the database would tell the daemon (or the config-only assumptions)."""

    source: str
    assignment: Any = None
    presence: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    two_way_agent: str | None = None
    count_incidents: bool = False  # round robin turn from the database's incident count
    overrides: list[RuntimeOverride] = field(default_factory=list)  # run-time, in force
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    number, caller_e164, keys, at = _inputs(args, config)
    def report_with(facts: Facts) -> dict[str, Any]:
        _apply_presence_flags(facts, args)
        return simulate(config, number, args.caller, caller_e164, keys, at, facts)

    if args.with_db or args.database:
        with store(config, args.database, must_exist=True) as db:
            # Inside the block: the menu reads the incident count for the round robin turn.
            label = getattr(db, "label", "database")
            report = report_with(read_facts(config, number, caller_e164, at, label))
    else:
        report = report_with(config_only_facts(config))
    if args.json:
        emit_json(report)
    else:
        emit(render(report))
    return EXIT_OK


def _inputs(args: argparse.Namespace, config: Config) -> tuple[str, str | None, str, datetime]:
    errors = []
    try:
        number = parse_number(args.number, config)
    except ValueError as error:
        number = ""
        errors.append(f"--number {shown(args.number, 40)!r}: {error}")
    keys = args.digits or ""
    if not _KEYS.fullmatch(keys):
        errors.append(f"--digits {shown(keys, 40)!r}: one key per menu play (0-9 * # A-D), "
                      "_ for no key, at most 20")
    try:
        at = parse_moment(args.at, config.defaults.timezone) if args.at else utc_now()
    except ValueError as error:
        at = utc_now()
        errors.append(f"--at: {error}")
    for name in [*args.logged_in, *args.logged_out, *args.busy]:
        problem = agent_problem(name, config)
        if problem:
            errors.append(problem)
    fail_if(errors, lambda n: f"{n} problem(s)")
    try:
        caller_e164: str | None = parse_number(args.caller, config)
    except ValueError:
        caller_e164 = None  # the caller is hostile: an unusable number just matches nothing
    return number, caller_e164, keys, at


def config_only_facts(config: Config) -> Facts:
    presence = {uid: (True, False) for uid in config.users}
    return Facts("config only", presence=presence, notes=[
        "config only: no run-time assignments or 2-way mappings; agents count as logged in "
        "and free; round robin starts with the first person (--with-db reads the database)"])


def read_facts(config: Config, number: str, caller_e164: str | None, at: datetime,
               label: str) -> Facts:
    """Everything the daemon would read when the call arrives; reads only."""
    entry = config.number_by_e164(number)
    facts = Facts(label, assignment=queries.get_assignment(number), count_incidents=True,
                  overrides=as_runtime(overrides.active_at(at)))
    for user_id in config.users:
        row = queries.get_presence(user_id)
        facts.presence[user_id] = (row.state == "logged_in", row.busy) if row else (False, False)
    if getattr(entry, "two_way", False) and caller_e164:
        mapping = queries.lookup_two_way(caller_e164, at)
        facts.two_way_agent = mapping.user_id if mapping is not None else None
    return facts


def _apply_presence_flags(facts: Facts, args: argparse.Namespace) -> None:
    for name in args.logged_in:
        facts.presence[name] = (True, False)
    for name in args.logged_out:
        facts.presence[name] = (False, False)
    for name in args.busy:
        facts.presence[name] = (True, True)


# ---------------------------------------------------------------- the dry run


def simulate(config: Config, number: str, caller: str, caller_e164: str | None, keys: str,
             at: datetime, facts: Facts) -> dict[str, Any]:
    """The whole report as plain data (``--json`` prints it as is)."""
    zone = config.defaults.timezone
    entry = config.number_by_e164(number)
    destination = choose_destination(entry, facts.assignment, facts.two_way_agent,
                                     facts.presence, users=config.users,
                                     queues=config.queues.keys())
    report: dict[str, Any] = {
        "number": number, "name": entry.name if entry is not None else None,
        "configured_type": entry.type if entry is not None else None,
        "caller": shown(caller, 40), "caller_e164": caller_e164,
        "at": iso(at, zone), "timezone": zone, "database": facts.source,
        "notes": list(facts.notes),
        "destination": describe(destination, config, entry, facts.presence),
    }
    if isinstance(destination, RoutingMenu):
        report["menu"] = menu(config, destination.number, keys, at, facts)
    return report


def describe(destination: Destination, config: Config, entry: Any,
             presence: dict[str, tuple[bool, bool]]) -> dict[str, Any]:
    """A destination as data: its kind, what it does, and the notes saying why."""
    notes = list(destination.notes)
    if isinstance(destination, RingAgent):
        timeout = (getattr(entry, "ring_timeout", DEFAULT_RING_TIMEOUT)
                   if isinstance(entry, AgentNumber) else DEFAULT_RING_TIMEOUT)
        return {"kind": "ring_agent", "agent": destination.user_id,
                "dial_string": destination.dial_string, "ring_timeout": timeout,
                "when_unanswered": destination.when_unanswered, "notes": notes}
    if isinstance(destination, ToQueue):
        return {"kind": "queue", "queue": destination.queue,
                **_queue(config, destination.queue, presence), "notes": notes}
    if isinstance(destination, RoutingMenu):
        return {"kind": "menu", "notes": notes}
    if isinstance(destination, Custom):
        return {"kind": "custom", "dial_string": destination.dial_string,
                "extension": destination.extension, "context": destination.context,
                "notes": notes}
    if isinstance(destination, Unassigned):
        return {"kind": "unassigned", "behaviour": destination.behaviour, "notes": notes}
    if isinstance(destination, ToVoicemail):
        return {"kind": "voicemail", "agent": destination.user_id,
                "greeting": destination.greeting, "email": destination.email, "notes": notes}
    if isinstance(destination, BusyTone):
        return {"kind": "busy_tone", "agent": destination.user_id, "notes": notes}
    assert isinstance(destination, Hangup)
    return {"kind": "hangup", "agent": destination.user_id, "notes": notes}


def _queue(config: Config, name: str, presence: dict[str, tuple[bool, bool]]
           ) -> dict[str, Any]:
    queue = config.queues.get(name)
    if queue is None:
        return {}
    return {"strategy": queue.strategy, "max_wait": queue.max_wait,
            "hold_music": queue.hold_music, "fallback": str(queue.fallback),
            "agents": {agent: _state(presence.get(agent, (False, False)))
                       for agent in queue.agents}}


def _state(logged_in_busy: tuple[bool, bool]) -> str:
    logged_in, busy = logged_in_busy
    if not logged_in:
        return "logged out"
    return "busy" if busy else "free"


def menu(config: Config, number: CallRoutingNumber, keys: str, at: datetime,
         facts: Facts) -> dict[str, Any]:
    """What the caller hears, which key does what, and the chosen option's escalation."""
    plan = build_menu(number, config.defaults.language)
    result: dict[str, Any] = {
        "greeting": _prompt(plan.greeting),
        "options": [{"digit": o.digit, "label": o.label, "prompt": _prompt(p)}
                    for o, p in zip(_by_digit(number.options), plan.items, strict=True)],
        "skipped": plan.skip, "timeout_s": plan.timeout_s, "tries": plan.tries,
        "on_no_key": number.menu.on_no_key, "plays": [], "chosen": None,
    }
    option = number.options[0] if plan.skip else _press(number, keys, result["plays"])
    if option is not None:
        result["chosen"] = {"digit": option.digit, "label": option.label}
        result["option"] = option_report(config, number, option, at, facts)
    return result


def _by_digit(options: Iterable[Option]) -> list[Option]:
    return sorted(options, key=lambda option: option.digit)


def _prompt(prompt: Prompt | None) -> dict[str, str] | None:
    return None if prompt is None else {"kind": prompt.kind, "value": prompt.value}


def _press(number: CallRoutingNumber, keys: str, plays: list[dict[str, Any]]) -> Option | None:
    """The caller's keys, one per menu play, as the daemon's menu loop reads them."""
    for tries_used in range(1, number.menu.tries + 1):
        index = tries_used - 1
        key = keys[index] if index < len(keys) and keys[index] != "_" else None
        outcome = menu_outcome(number, key, tries_used)
        plays.append({"play": tries_used, "key": key, "action": outcome.action,
                      "invalid": outcome.invalid, "reason": outcome.reason})
        if outcome.action == "choose":
            return outcome.option
        if outcome.action == "goodbye":
            return None
    return None


def option_report(config: Config, number: CallRoutingNumber, option: Option, at: datetime,
                  facts: Facts) -> dict[str, Any]:
    route = option_route(option, at, config.defaults.timezone)
    report: dict[str, Any] = {
        "hours": _hours(config, option, at), "out_of_hours": route.out_of_hours,
        "policy": route.policy, "fallback": str(route.fallback), **_waiting(config, number,
                                                                             option),
    }
    if route.policy is None:
        report["plan"] = None
        return report
    policy = config.policies[route.policy]
    # This call would be the option's next incident: the daemon's turn is the count before it.
    offset = (queries.incident_count(number.number, str(option.digit))
              if facts.count_incidents else 0)
    schedules = with_runtime_overrides(config.schedules, facts.overrides, config.users)
    report["plan"] = plan_report(config, policy, at, offset, schedules)
    report["on_call"] = [_origin(schedule_id, on_call_origin(schedules[schedule_id], at))
                         for schedule_id in _schedules_of(config, policy)]
    return report


def _hours(config: Config, option: Option, at: datetime) -> dict[str, Any] | None:
    if option.hours is None:
        return None
    windows = [f"{days_text(w.days)} {clock_text(w.from_)}-{clock_text(w.to)}"
               for w in option.hours.windows]
    return {"windows": windows, "timezone": option.hours.timezone or config.defaults.timezone,
            "holidays": option.hours.holidays and option.hours.holidays.label,
            "closed": closed_for(option.hours, at, config.defaults.timezone),
            "in_hours": in_hours(option.hours, at, config.defaults.timezone),
            "out_of_hours_action": str(option.out_of_hours)}


def _waiting(config: Config, number: CallRoutingNumber, option: Option) -> dict[str, Any]:
    """Where the caller waits while phones ring (as the daemon's call-routing flow)."""
    settings = config.queues.get(option.queue or "")
    return {"queue": queue_name(number, option),
            "hold_music": option.hold_music or (settings.hold_music if settings
                                                else DEFAULT_HOLD_MUSIC),
            "max_wait": option.max_wait or (settings.max_wait if settings else 600)}


def _schedules_of(config: Config, policy: Policy) -> list[str]:
    return list(dict.fromkeys(target.schedule for level in policy.levels
                              for target in level.targets
                              if target.schedule is not None
                              and target.schedule in config.schedules))


def _origin(schedule_id: str, origin: Origin) -> dict[str, Any]:
    return {"schedule": schedule_id, "user": origin.user, "source": origin.source,
            "override_id": origin.override_id, "reason": origin.reason}


def plan_report(config: Config, policy: Policy, at: datetime, offset: int,
                schedules: Mapping[str, Schedule] | None = None) -> dict[str, Any]:
    schedules = config.schedules if schedules is None else schedules
    plan = plan_escalation(policy, config.users, schedules, at,
                           round_robin_offset=offset)
    waves = []
    for index, wave in enumerate(plan.waves, start=1):
        first = wave.attempts[0]
        waves.append({
            "wave": index, "pass": first.pass_no + 1, "level": first.level + 1,
            "strategy": policy.levels[first.level].strategy,
            "attempts": [{"user": a.user_id, "name": a.user_name, "phone": a.phone,
                          "phone_type": a.phone_type, "ring_timeout": a.ring_timeout}
                         for a in wave.attempts]})
    return {"levels": len(policy.levels), "repeat": policy.repeat,
            "press_to_accept": policy.press_to_accept, "accept_digit": policy.accept_digit,
            "round_robin_offset": offset, "waves": waves, "gaps": list(plan.gaps),
            "days_off": _days_off(config, policy, at)}


def _days_off(config: Config, policy: Policy, at: datetime) -> list[str]:
    """The policy's schedules that have a holiday or closure day at ``at`` (their restricted
    rotations are off), named: ``support: Christmas Day (AT-9)``."""
    names = []
    for schedule_id in dict.fromkeys(t.schedule for level in policy.levels
                                     for t in level.targets if t.schedule):
        schedule = config.schedules.get(schedule_id)
        if schedule is not None and schedule.holidays is not None:
            local = at.astimezone(ZoneInfo(schedule.timezone)).date()
            name = holiday_name(schedule.holidays, local)
            if name:
                names.append(f"{schedule_id}: {name}")
    return names


# ---------------------------------------------------------------- text


def render(report: dict[str, Any]) -> list[str]:
    name = f" ({shown(report['name'], 40)})" if report["name"] else ""
    kind = report["configured_type"] or "not in the configuration"
    lines = [f"number    {report['number']}{name}, {kind}",
             f"caller    {report['caller']}"
             + (f" = {report['caller_e164']}" if report["caller_e164"] else " (not a number)"),
             f"at        {_at_text(report['at'], report['timezone'])}",
             f"database  {shown(report['database'], 80)}"]
    lines += [f"  note: {note}" for note in report["notes"]]
    destination = report["destination"]
    if destination["kind"] == "menu":
        lines += _menu_lines(report["menu"])
    else:
        lines.append(f"route     {_destination_text(destination)}")
    lines += [f"  why: {shown(note, 100)}" for note in destination["notes"]]
    return lines


def _at_text(text: str, zone: str) -> str:
    moment = datetime.fromisoformat(text)
    return f"{local_text(moment, zone)} ({moment:%a}, {zone})"


def _destination_text(d: dict[str, Any]) -> str:
    kind = d["kind"]
    if kind == "ring_agent":
        return (f"ring agent {d['agent']} on {d['dial_string']} for {d['ring_timeout']} s; "
                f"unanswered: {d['when_unanswered']}")
    if kind == "queue":
        agents = ", ".join(f"{a} ({state})" for a, state in d.get("agents", {}).items())
        return (f"queue {d['queue']} ({d.get('strategy', '?')}, max wait "
                f"{d.get('max_wait', '?')} s, then {d.get('fallback', '?')}; agents: "
                f"{agents or 'none'})")
    if kind == "custom":
        if d["dial_string"]:
            return f"custom: bridge to {d['dial_string']}"
        return f"custom: transfer to extension {d['extension']} in context {d['context']}"
    if kind == "unassigned":
        return ("not in service: 404 before answer" if d["behaviour"] == "404"
                else "not in service: SIT tone, then hang-up")
    if kind == "voicemail":
        mail = f", message mailed to {d['email']}" if d["email"] else ""
        greeting = d["greeting"] or "the standard greeting"
        return f"voicemail of {d['agent']} (greeting: {greeting}{mail})"
    if kind == "busy_tone":
        return "busy tone, then hang-up"
    return "hang-up"


def _menu_lines(menu_report: dict[str, Any]) -> list[str]:
    lines = ["menu"]
    if menu_report["greeting"]:
        lines.append(f"  greeting  {_prompt_text(menu_report['greeting'])}")
    for option in menu_report["options"]:
        lines.append(f"  {option['digit']}  {shown(option['label'], 40)}: "
                     f"{_prompt_text(option['prompt'])}")
    lines.append(f"  (waits {menu_report['timeout_s']} s for a key, plays at most "
                 f"{menu_report['tries']} times; no key: {menu_report['on_no_key']})")
    if menu_report["skipped"]:
        lines.append("  one option and skip_menu_if_single: the menu is not played")
    for play in menu_report["plays"]:
        key = f"key {play['key']}" if play["key"] is not None else "no key"
        lines.append(f"  play {play['play']}: {key} -> {play['action']} ({play['reason']})")
    chosen = menu_report["chosen"]
    if chosen is None:
        lines.append("result    no option chosen: goodbye, no incident")
        return lines
    lines.append(f"option    {chosen['digit']} {shown(chosen['label'], 40)}")
    return lines + _option_lines(menu_report["option"])


def _prompt_text(prompt: dict[str, str]) -> str:
    if prompt["kind"] == "file":
        return f"file {shown(prompt['value'], 80)}"
    return f"tts \"{shown(prompt['value'], 100)}\""


def _option_lines(option: dict[str, Any]) -> list[str]:
    lines = []
    hours = option["hours"]
    if hours is None:
        lines.append("hours     none configured: always the option's policy")
    else:
        state = "in hours" if hours["in_hours"] else "OUT OF HOURS"
        if hours["closed"]:
            state += f", closed: {hours['closed']}"
        holidays = f", holidays {hours['holidays']}" if hours["holidays"] else ""
        lines.append(f"hours     {state} ({'; '.join(hours['windows'])} {hours['timezone']}"
                     f"{holidays}; out of hours: {hours['out_of_hours_action']})")
    lines.append(f"queue     {option['queue']} (hold music {shown(option['hold_music'], 60)}, "
                 f"max wait {option['max_wait']} s)")
    plan = option["plan"]
    if plan is None:
        lines.append("policy    none: nobody is rung")
    else:
        lines.append(f"policy    {option['policy']} ({plan['levels']} level(s), repeat "
                     f"{plan['repeat']}, press to accept: "
                     f"{plan['accept_digit'] if plan['press_to_accept'] else 'no'})")
        lines += [f"on call   {shown(o['schedule'], 30)}: {o['user'] or 'nobody'} ("
                  + o["source"] + (f" #{o['override_id']}" if o["override_id"] else "")
                  + (f", {shown(o['reason'], 40)}" if o["reason"] else "") + ")"
                  for o in option.get("on_call", [])]
        lines += _wave_lines(plan)
    lines.append(f"fallback  {shown(option['fallback'], 80)}")
    return lines


def _wave_lines(plan: dict[str, Any]) -> list[str]:
    lines = [] if plan["waves"] else ["  NOBODY to ring"]
    for wave in plan["waves"]:
        head = (f"  wave {wave['wave']:>2}  pass {wave['pass']} level {wave['level']} "
                f"{wave['strategy']}:")
        people = "; ".join(f"{a['user']} ({shown(a['name'], 30)}) {a['phone_type']} "
                           f"{a['phone']} {a['ring_timeout']} s" for a in wave["attempts"])
        lines.append(f"{head} {people}")
    lines += [f"  gap: {shown(gap, 100)}" for gap in plan["gaps"]]
    lines += [f"  day off in schedule {shown(day, 100)} (restricted rotations are off)"
              for day in plan["days_off"]]
    return lines

