"""On-call coverage of the hotline options: who would be rung, from when to when, and the gaps.

For every option of every ``call_routing`` number, the time from ``start`` to ``end`` is cut
into segments during which nothing changes: the option's business hours, and who is on call in
the schedules its policies use. Segments are found from the change points of those schedules
and windows (:func:`fsrouter.routing.schedules.change_points`), never by stepping minute by
minute, then neighbours that look the same are merged: one segment per change.

A **gap** is a segment in which the option's policy has nobody at all to ring (no phone in any
level). Out of hours with a ``voicemail``/``message`` action is not a gap: callers get what the
operator chose. Out of hours with ``policy:<id>`` is covered by that policy.

Pure: the configuration and the moments are passed in; no clock, no database.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fsrouter.config.schema import CallRoutingNumber, Config, Option, Policy
from fsrouter.routing.escalation import level_users, plan_escalation
from fsrouter.routing.hours import option_route
from fsrouter.routing.schedules import Origin, change_points, on_call_origin, window_edges


@dataclass(frozen=True)
class State:
    """What an option does during a segment."""

    policy: str | None  # the policy rung; None: out of hours, straight to ``action``
    out_of_hours: bool
    action: str | None  # the out-of-hours action when it applies
    first_level: tuple[str, ...]  # who the policy's first level targets
    later: tuple[str, ...]  # further people the escalation rings (later levels)
    callable: int  # how many people the escalation can ring at all
    problems: tuple[str, ...]  # why someone cannot be rung (empty schedule, no phone)
    # Per schedule the policy uses: who it names and why (rotation, YAML or run-time override).
    origins: tuple[tuple[str, Origin], ...] = ()

    @property
    def gap(self) -> bool:
        return self.policy is not None and self.callable == 0


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime
    state: State


@dataclass(frozen=True)
class OptionCoverage:
    number: str
    name: str | None
    digit: int
    label: str
    policy: str
    segments: tuple[Segment, ...]

    @property
    def gaps(self) -> tuple[Segment, ...]:
        return tuple(segment for segment in self.segments if segment.state.gap)


def coverage(config: Config, start: datetime, end: datetime,
             numbers: Collection[str] | None = None) -> list[OptionCoverage]:
    """Coverage of every option of every call-routing number (only ``numbers``, E.164, when
    given), in configuration order."""
    return [option_coverage(config, number, option, start, end)
            for number in config.numbers if isinstance(number, CallRoutingNumber)
            and (numbers is None or number.number in numbers)
            for option in sorted(number.options, key=lambda option: option.digit)]


def option_coverage(config: Config, number: CallRoutingNumber, option: Option,
                    start: datetime, end: datetime) -> OptionCoverage:
    """The segments of one option from ``start`` to ``end`` (aware datetimes)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise ValueError("end must be after start")
    bounds = [start, *_option_points(config, option, start, end), end]
    segments = [Segment(low, high, option_state(config, option, low))
                for low, high in zip(bounds, bounds[1:], strict=False)]
    return OptionCoverage(number.number, number.name, option.digit, option.label,
                          option.policy, tuple(_merge(segments)))


def next_change(config: Config, option: Option, moment: datetime, horizon: timedelta
                ) -> tuple[State, datetime | None, State | None]:
    """What the option does at ``moment``, and when that next changes (and to what) within
    ``horizon``; (state, None, None) when it does not. Cheaper than :func:`option_coverage`
    over the horizon: change points are looked at in order, first within a day, and only
    until the state differs (the Now page asks this for every option)."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    moment = moment.astimezone(UTC)
    current = option_state(config, option, moment)
    end = moment + horizon
    low = moment
    for high in (min(moment + timedelta(days=1), end), end):
        for point in _option_points(config, option, low, high):
            state = option_state(config, option, point)
            if state != current:
                return current, point, state
        # Points are strictly inside (low, high): start the next window just before ``high``
        # so a change exactly at ``high`` is not missed.
        low = high - timedelta(microseconds=1)
        if high >= end:
            break
    return current, None, None


def _option_points(config: Config, option: Option, start: datetime, end: datetime
                   ) -> list[datetime]:
    """Every instant in (start, end) at which the option's state may change."""
    points: set[datetime] = set()
    for schedule_id in schedules_used(config, option):
        points.update(change_points(config.schedules[schedule_id], start, end))
    if option.hours is not None:
        zone = option.hours.timezone or config.defaults.timezone
        points |= window_edges(option.hours.windows, zone, start, end,
                               midnights=option.hours.holidays is not None)
    return sorted(points)


def schedules_used(config: Config, option: Option) -> set[str]:
    policies = [option.policy]
    if option.out_of_hours is not None and option.out_of_hours.kind == "policy":
        policies.append(option.out_of_hours.target)
    return {target.schedule
            for policy_id in policies if policy_id in config.policies
            for level in config.policies[policy_id].levels
            for target in level.targets
            if target.schedule is not None and target.schedule in config.schedules}


def option_state(config: Config, option: Option, moment: datetime) -> State:
    """What the option does at ``moment``: its policy (and who that rings) or its action."""
    route = option_route(option, moment, config.defaults.timezone)
    action = str(option.out_of_hours) if route.out_of_hours else None
    if route.policy is None:
        return State(None, True, action, (), (), 0, ())
    policy = config.policies.get(route.policy)
    if policy is None:
        return State(route.policy, route.out_of_hours, action, (), (), 0,
                     (f"policy {route.policy}: unknown policy",))
    return _policy_state(config, policy, route.policy, route.out_of_hours, action, moment)


def _policy_state(config: Config, policy: Policy, policy_id: str, out_of_hours: bool,
                  action: str | None, moment: datetime) -> State:
    plan = plan_escalation(policy, config.users, config.schedules, moment)
    first, _ = level_users(policy.levels[0], config.schedules, moment)
    rung = _unique(attempt.user_id for attempt in plan.attempts)
    later = tuple(user for user in rung if user not in first)
    origins = tuple((schedule_id, on_call_origin(config.schedules[schedule_id], moment))
                    for schedule_id in _policy_schedules(config, policy))
    return State(policy_id, out_of_hours, action, tuple(first), later, len(rung), plan.gaps,
                 origins)


def _policy_schedules(config: Config, policy: Policy) -> list[str]:
    """The schedules a policy's levels name, in order, once each."""
    return list(dict.fromkeys(target.schedule for level in policy.levels
                              for target in level.targets
                              if target.schedule is not None
                              and target.schedule in config.schedules))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbours with the same state: one segment per change."""
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].state == segment.state:
            merged[-1] = Segment(merged[-1].start, segment.end, segment.state)
        else:
            merged.append(segment)
    return merged
