"""Where an inbound call goes (product.md §2): agent, queue, menu, custom, tone or voicemail.

The order of the rules:

1. The route: a run-time ``assignment`` (from the database) beats the YAML ``numbers`` entry;
   a number known to neither is *not assigned* (SIT tone). An assignment that cannot be used
   (unknown agent or queue, unsafe custom target) is ignored, noted, and the YAML applies.
   Assignment targets: agent -> user id, queue -> queue name, custom -> a dial string with a
   ``/`` (``user/1000``) or an extension in context ``default``, unassigned -> none. An agent
   number re-assigned to another agent keeps its ``when_busy``/``when_logged_out``.
2. 2-way VoIP: if the route is an **agent** or **queue** route and the caller was last called
   by an agent (``two_way_agent``), the call goes to that agent instead: the customer calls
   back the person who called them. Menus (on-call hotlines), custom destinations and
   unassigned numbers ignore the mapping: there the operator's routing is deliberate.
3. An agent route looks at the agent's presence (unknown = logged out): logged in and free ->
   ring the agent; logged in and busy -> the number's ``when_busy`` (busy tone by default);
   logged out -> ``when_logged_out`` (voicemail by default, with the agent's greeting and email
   address; an agent whose voicemail is disabled gets the busy tone instead).
   When a free agent does not answer, the call layer applies ``RingAgent.when_unanswered``.

Everything is decided from values passed in: no database, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, Protocol

from fsrouter.config.schema import (
    AgentNumber,
    CallRoutingNumber,
    CustomNumber,
    QueueNumber,
    UnassignedNumber,
    User,
)

NumberEntry = CallRoutingNumber | AgentNumber | QueueNumber | UnassignedNumber | CustomNumber
Action = Literal["busy_tone", "voicemail", "hangup"]
# Same whitelists as the config's dial strings and words: a target reaches the switch.
_DIAL = re.compile(r"[A-Za-z0-9@._:+-]{1,255}/[A-Za-z0-9@._:+/-]{1,255}")
_EXTENSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QUEUE = re.compile(r"[a-z0-9_]{1,64}")


class AgentState(NamedTuple):
    logged_in: bool
    busy: bool


LOGGED_OUT = AgentState(logged_in=False, busy=False)


class RouteAssignment(Protocol):
    """A run-time assignment (``fsrouter.store`` rows and ``Assignment`` both fit)."""

    route_type: str
    target: str | None


@dataclass(frozen=True)
class Destination:
    """Base of every destination; ``notes`` say why (for logs and ``fsrouter simulate``)."""

    notes: tuple[str, ...]


@dataclass(frozen=True)
class RingAgent(Destination):
    user_id: str
    dial_string: str
    when_unanswered: Action


@dataclass(frozen=True)
class ToQueue(Destination):
    queue: str


@dataclass(frozen=True)
class RoutingMenu(Destination):
    number: CallRoutingNumber


@dataclass(frozen=True)
class Unassigned(Destination):
    behaviour: Literal["sit", "404"]


@dataclass(frozen=True)
class Custom(Destination):
    dial_string: str | None
    extension: str | None
    context: str


@dataclass(frozen=True)
class BusyTone(Destination):
    user_id: str | None


@dataclass(frozen=True)
class ToVoicemail(Destination):
    user_id: str
    greeting: str | None
    email: str | None


@dataclass(frozen=True)
class Hangup(Destination):
    user_id: str | None


@dataclass(frozen=True)
class _Route:
    """The route before presence: a kind, a target and the agent-number settings."""

    kind: str
    target: str | None = None
    when_busy: Action = "busy_tone"
    when_logged_out: Action = "voicemail"
    entry: NumberEntry | None = None


def choose_destination(
    config_entry: NumberEntry | None,
    assignment: RouteAssignment | None,
    two_way_agent: str | None,
    presence: Mapping[str, tuple[bool, bool]],
    *,
    users: Mapping[str, User],
    queues: Collection[str],
) -> Destination:
    """Where a call to a number goes; see the module docstring for the rules.

    ``presence`` maps user id -> (logged_in, busy); ``users`` and ``queues`` are the
    configuration's (to check targets and find the agent's phone, greeting and email).
    """
    notes: list[str] = []
    route = _from_entry(config_entry)
    assigned = _from_assignment(assignment, users, queues, notes)
    if assigned is not None:
        # The number's own busy/logged-out settings still apply to a re-assigned agent.
        route = replace(assigned, when_busy=route.when_busy,
                        when_logged_out=route.when_logged_out)
    if route.kind in ("agent", "queue") and two_way_agent is not None:
        if two_way_agent in users:
            notes.append(f"2-way: caller was last called by {two_way_agent}")
            route = _Route("agent", two_way_agent, route.when_busy, route.when_logged_out)
        else:
            notes.append(f"2-way agent {two_way_agent!r} is not a configured user: ignored")
    return _resolve(route, users, presence, notes)


def _from_entry(entry: NumberEntry | None) -> _Route:
    if isinstance(entry, AgentNumber):
        return _Route("agent", entry.agent, entry.when_busy, entry.when_logged_out, entry)
    if isinstance(entry, QueueNumber):
        return _Route("queue", entry.queue, entry=entry)
    if entry is None:
        return _Route("unassigned", "sit")
    if isinstance(entry, UnassignedNumber):
        return _Route("unassigned", entry.behaviour, entry=entry)
    return _Route(entry.type, entry=entry)


def _from_assignment(assignment: RouteAssignment | None, users: Mapping[str, User],
                     queues: Collection[str], notes: list[str]) -> _Route | None:
    if assignment is None:
        return None
    kind, target = assignment.route_type, assignment.target
    problem = assignment_problem(kind, target, users, queues)
    if problem:
        notes.append(f"assignment ignored: {problem}")
        return None
    notes.append(f"assignment: {kind} {target or ''}".rstrip())
    return _Route(kind, target)


def assignment_problem(kind: str, target: str | None, users: Mapping[str, User],
                       queues: Collection[str]) -> str | None:
    """Why a run-time assignment cannot be used (the CLI checks with it before writing)."""
    if kind == "unassigned":
        return None
    if not isinstance(target, str) or not target:
        return f"route type {kind!r} needs a target"
    if kind == "agent":
        return None if target in users else f"unknown agent {target[:40]!r}"
    if kind == "queue":
        known = _QUEUE.fullmatch(target) and target in queues
        return None if known else f"unknown queue {target[:40]!r}"
    if kind == "custom":
        safe = _DIAL.fullmatch(target) or _EXTENSION.fullmatch(target)
        return None if safe else f"unsafe custom target {target[:40]!r}"
    return f"unknown route type {kind[:20]!r}"


def _resolve(route: _Route, users: Mapping[str, User],
             presence: Mapping[str, tuple[bool, bool]], notes: list[str]) -> Destination:
    done = tuple(notes)
    if route.kind == "agent":
        assert route.target is not None
        return _agent(route, route.target, users, presence, notes)
    if route.kind == "queue":
        assert route.target is not None
        return ToQueue(done, route.target)
    if route.kind == "call_routing":
        assert isinstance(route.entry, CallRoutingNumber)
        return RoutingMenu(done, route.entry)
    if route.kind == "custom":
        return _custom(route, done)
    return Unassigned(done, "404" if route.target == "404" else "sit")


def _custom(route: _Route, notes: tuple[str, ...]) -> Custom:
    if isinstance(route.entry, CustomNumber):
        entry = route.entry
        return Custom(notes, entry.dial_string, entry.extension, entry.context)
    target = route.target or ""
    if "/" in target:
        return Custom(notes, target, None, "default")
    return Custom(notes, None, target, "default")


def agent_dial_string(user: User) -> str | None:
    """How to ring an agent: the first SIP phone, else ``user/<extension>``."""
    for phone in user.phones:
        if phone.type == "sip" and phone.dial_string:
            return phone.dial_string
    return f"user/{user.extension}" if user.extension else None


def _agent(route: _Route, user_id: str, users: Mapping[str, User],
           presence: Mapping[str, tuple[bool, bool]], notes: list[str]) -> Destination:
    user = users.get(user_id)
    if user is None:
        notes.append(f"agent {user_id!r} is not a configured user")
        return BusyTone(tuple(notes), user_id)
    logged_in, busy = presence.get(user_id, LOGGED_OUT)
    dial = agent_dial_string(user)
    if logged_in and not busy and dial is not None:
        notes.append(f"{user_id} is logged in and free")
        return RingAgent(tuple(notes), user_id, dial, route.when_busy)
    if logged_in and busy:
        notes.append(f"{user_id} is busy")
        return _unavailable(route.when_busy, user_id, user, notes)
    if logged_in:
        notes.append(f"{user_id} has no SIP phone or extension to ring")
    else:
        notes.append(f"{user_id} is logged out")
    return _unavailable(route.when_logged_out, user_id, user, notes)


def _unavailable(action: Action, user_id: str, user: User, notes: list[str]) -> Destination:
    if action == "voicemail":
        if user.voicemail.enabled:
            return ToVoicemail(tuple(notes), user_id, user.voicemail.greeting, user.email)
        notes.append(f"{user_id} has voicemail disabled: busy tone")
        return BusyTone(tuple(notes), user_id)
    if action == "hangup":
        return Hangup(tuple(notes), user_id)
    return BusyTone(tuple(notes), user_id)
