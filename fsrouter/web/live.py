"""What the Now page shows: who each hotline option rings at this moment and the next change,
the calls in progress and callers waiting per queue, and the agents (logged in, busy).

On call comes from the same functions as ``fsrouter oncall`` (the configuration with the
run-time overrides, :mod:`fsrouter.routing.coverage`). Calls come from the daemons' call
records (:mod:`fsrouter.store.live`): the console never talks to the switch.

A hotline caller waits in its option's queue from the incident (``open``) until someone
accepts; an inbound-queue caller waits from the answer until an agent is bridged. The queue
of an inbound-queue call is its number's queue as assigned now (the record does not keep it).
The database must be bound for :func:`now_data`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fsrouter.calls.call_routing import queue_name
from fsrouter.commands import EXIT_USAGE
from fsrouter.commands.agents import agents
from fsrouter.commands.common import Failure, iso
from fsrouter.commands.oncall import applied, who
from fsrouter.config import Config
from fsrouter.config.schema import CallRoutingNumber, Option, QueueNumber
from fsrouter.routing.coverage import State, next_change, schedules_used
from fsrouter.store import overrides, queries
from fsrouter.store.live import LiveCall, live_calls

# How far ahead the next change is looked for (beyond it: "no change in 8 days").
HORIZON = timedelta(days=8)


@dataclass
class QueueNow:
    name: str
    waiting: list[dict[str, Any]] = field(default_factory=list)
    talking: list[dict[str, Any]] = field(default_factory=list)


def now_data(config: Config, now: datetime) -> dict[str, Any]:
    """Everything the Now page shows, as JSON-ready values (times ISO in the default zone)."""
    zone = config.defaults.timezone
    return {"at": iso(now, zone), "timezone": zone,
            "hotlines": hotlines_now(config, now),
            **calls_now(config, now),
            "agents": agents(config)}


def hotlines_now(config: Config, now: datetime) -> list[dict[str, Any]]:
    """Per hotline option: who it rings now, and the next change (when, to whom)."""
    return _CACHE.hotlines(config, now)


@dataclass
class _Entry:
    until: datetime  # the answer holds until then (the option's next change)
    overrides: tuple[Any, ...]  # the run-time overrides of its schedules it was made with
    data: dict[str, Any]


class HotlineCache:
    """The on-call part of the Now page, kept until each option's next change.

    Working out who an option rings costs about a millisecond per change point on a large
    configuration (1,000 users, 240 options: seconds for all of them), while the page is
    asked every few seconds. An answer holds until the option's next change, as long as the
    configuration object is the same (the console re-reads the YAML into a new one) and the
    run-time overrides of the schedules it uses are the same (read on every request, one
    small query): then only the options whose time has come are worked out again. Options
    that route alike (same policy, hours and out-of-hours action: several numbers behind
    one team) are worked out once.
    """

    def __init__(self) -> None:
        self._config: Config | None = None
        self._entries: dict[Hashable, _Entry] = {}
        self._schedules: dict[Hashable, tuple[str, ...]] = {}

    def hotlines(self, config: Config, now: datetime) -> list[dict[str, Any]]:
        # The query first: it may let another request run (gevent, PostgreSQL); from here
        # on nothing yields, so no other request resets the entries under this one.
        rows = overrides.list_overrides(ending_after=now, starting_before=now + HORIZON)
        if config is not self._config:
            self._config, self._entries, self._schedules = config, {}, {}
        by_schedule: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_schedule.setdefault(row.schedule, []).append(
                (row.id, row.user_id, row.starts_at, row.ends_at, row.reason))
        with_db: Config | None = None
        result = []
        for number in config.numbers:
            if not isinstance(number, CallRoutingNumber):
                continue
            for option in sorted(number.options, key=lambda option: option.digit):
                key = _route_key(number, option)
                used = self._schedules.get(key)
                if used is None:
                    used = self._schedules[key] = tuple(sorted(schedules_used(config, option)))
                mine = tuple(item for schedule in used for item in by_schedule.get(schedule, ()))
                entry = self._entries.get(key)
                if entry is None or now >= entry.until or entry.overrides != mine:
                    with_db = with_db or applied(config, rows)
                    entry = self._entries[key] = _work_out(with_db, option, now, mine)
                result.append({"number": number.number, "name": number.name,
                               "digit": option.digit, "label": option.label,
                               "policy": option.policy, **entry.data})
        return result


def _route_key(number: CallRoutingNumber, option: Option) -> Hashable:
    """What decides an option's on-call state (see routing.hours.option_route): options
    with the same key are rung alike."""
    key = (option.policy, option.hours, option.out_of_hours)
    try:
        hash(key)
    except TypeError:  # not expected (the configuration is frozen): one entry per option
        return (number.number, option.digit)
    return key


def _work_out(config: Config, option: Option, now: datetime, mine: tuple[Any, ...]) -> _Entry:
    zone = config.defaults.timezone
    try:
        state, change, following = next_change(config, option, now, HORIZON)
    except ValueError as error:  # a rotation that hands over every few seconds
        raise Failure(EXIT_USAGE, str(error)) from None
    data = {"now": _state(state),
            "next": None if change is None or following is None
            else {"from": iso(change, zone), **_state(following)}}
    # Without a change in sight, look again in an hour (the horizon moves on).
    return _Entry(change or now + timedelta(hours=1), mine, data)


def _state(state: State) -> dict[str, Any]:
    return {"who": who(state), "gap": state.gap, "out_of_hours": state.out_of_hours,
            "first_level": list(state.first_level), "later": list(state.later),
            "problems": list(state.problems)}


_CACHE = HotlineCache()


def calls_now(config: Config, now: datetime) -> dict[str, Any]:
    """The calls in progress: per queue (waiting, talking) and the others."""
    zone = config.defaults.timezone
    queue_of_number = _inbound_queues(config)
    queues: dict[str, QueueNow] = {name: QueueNow(name) for name in _queue_names(config)}
    other: list[dict[str, Any]] = []
    calls = live_calls()
    for call in calls:
        queue, waiting = _place(call, config, queue_of_number)
        item = _call_item(call, now, zone, waiting, queue)
        if queue is None:
            other.append(item)
        else:
            bucket = queues.setdefault(queue, QueueNow(queue))
            (bucket.waiting if waiting else bucket.talking).append(item)
    return {"calls": len(calls),
            "waiting": sum(len(q.waiting) for q in queues.values()),
            "queues": [{"name": q.name, "waiting": q.waiting, "talking": q.talking}
                       for q in sorted(queues.values(), key=lambda q: q.name)],
            "other_calls": other}


def _queue_names(config: Config) -> list[str]:
    """Every queue a caller can wait in: the contact-center queues and the hotline options'."""
    names = dict.fromkeys(config.queues)
    for entry in config.numbers:
        if isinstance(entry, CallRoutingNumber):
            names.update(dict.fromkeys(queue_name(entry, option) for option in entry.options))
    return list(names)


def _inbound_queues(config: Config) -> dict[str, str]:
    """number -> queue for the numbers that go to a queue now (configuration, then the
    run-time assignments)."""
    result = {entry.number: entry.queue for entry in config.numbers
              if isinstance(entry, QueueNumber)}
    for row in queries.list_assignments():
        if row.route_type == "queue" and row.target:
            result[row.number] = row.target
        else:
            result.pop(row.number, None)
    return result


def _place(call: LiveCall, config: Config, queue_of_number: dict[str, str]
           ) -> tuple[str | None, bool]:
    """The queue a call is in (None: not a queue call, or not in a queue yet) and whether
    its caller is still waiting."""
    if call.route_type == "call_routing":
        entry = config.number_by_e164(call.number)
        if call.option_digit is None or not isinstance(entry, CallRoutingNumber) \
                or call.incident_reason == "out_of_hours":
            return None, False  # in the menu, or out of hours (not queued)
        option = next((o for o in entry.options if str(o.digit) == call.option_digit), None)
        if option is None:
            return None, False
        return queue_name(entry, option), call.incident_state == "open"
    if call.route_type == "queue" and call.number in queue_of_number:
        return queue_of_number[call.number], call.bridged_to_user is None
    return None, False


def _call_item(call: LiveCall, now: datetime, zone: str, waiting: bool, queue: str | None
               ) -> dict[str, Any]:
    since = call.answered_at or call.started_at
    return {"call": call.call_uuid, "state": _call_state(call, waiting, queue),
            "number": call.number, "route_type": call.route_type,
            "caller": call.caller_number or "", "caller_name": call.caller_name or "",
            "option": call.option_digit, "incident": call.incident_id,
            "with": None if waiting else (call.accepted_by or call.bridged_to_user),
            "started": iso(call.started_at, zone),
            "seconds": max(0, int((now - since).total_seconds())), "host": call.host}


def _call_state(call: LiveCall, waiting: bool, queue: str | None) -> str:
    """waiting, talking, in_menu, out_of_hours or in_progress (anything else)."""
    if queue is not None:
        return "waiting" if waiting else "talking"
    if call.route_type == "call_routing":
        if call.option_digit is None:
            return "in_menu"
        if call.incident_reason == "out_of_hours":
            return "out_of_hours"
    return "talking" if call.bridged_to_user else "in_progress"
