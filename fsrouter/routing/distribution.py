"""Which agents of a contact-center queue ring, in which order (pure).

Only agents who are logged in and not busy are rung. Strategies:

- ``longest_idle``: one at a time, the agent idle longest first (idle since the last change of
  their presence: the end of their last call or their login; never seen counts as longest);
- ``round_robin``: one at a time, starting with the next agent on each call (``turn``);
- ``ring_all``: everybody at once; the first to answer takes the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fsrouter.config.schema import Queue, User
from fsrouter.routing.destinations import agent_dial_string
from fsrouter.routing.escalation import Attempt, Plan, Wave

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AgentInfo:
    """An agent's presence as the store knows it."""

    logged_in: bool
    busy: bool
    idle_since: datetime | None = None


def available_agents(queue: Queue, presence: Mapping[str, AgentInfo],
                     users: Mapping[str, User]) -> list[str]:
    """The queue's agents who can take a call now, in configuration order."""
    ready = []
    for user_id in queue.agents:
        info = presence.get(user_id)
        user = users.get(user_id)
        if info is None or user is None or not info.logged_in or info.busy:
            continue
        if agent_dial_string(user) is not None:
            ready.append(user_id)
    return ready


def queue_plan(queue: Queue, presence: Mapping[str, AgentInfo], users: Mapping[str, User],
               turn: int = 0) -> Plan:
    """The waves to ring for one pass over the queue's available agents."""
    agents = available_agents(queue, presence, users)
    if queue.strategy == "longest_idle":
        agents.sort(key=lambda uid: presence[uid].idle_since or _NEVER)
    elif queue.strategy == "round_robin" and agents:
        cut = turn % len(agents)
        agents = agents[cut:] + agents[:cut]
    attempts = [_attempt(uid, users[uid], queue) for uid in agents]
    if queue.strategy == "ring_all":
        waves: Sequence[Wave] = [Wave(tuple(attempts))] if attempts else []
    else:
        waves = [Wave((attempt,)) for attempt in attempts]
    return Plan(waves=tuple(waves), gaps=() if agents else ("no agent available",))


def _attempt(user_id: str, user: User, queue: Queue) -> Attempt:
    dial = agent_dial_string(user)
    assert dial is not None  # available_agents checked it
    return Attempt(user_id=user_id, user_name=user.name, phone=dial, phone_type="sip",
                   ring_timeout=queue.ring_timeout, level=0, pass_no=0)
