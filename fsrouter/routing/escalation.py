"""The order in which people are called for an escalation policy at a given moment.

Escalation delays do not apply on the phone: when an attempt fails, the next one starts at once.
A plan is a list of *waves*; the phones of one wave ring together (one phone for ``in_order``
and ``round_robin``, every person's phone for ``all_at_once``), and the next wave starts as soon
as every leg of the current one has failed.

Rules beyond the docstrings below:
- Within one pass a person is called at the first level that targets them only (calling them
  again seconds after they did not answer only delays the caller); ``repeat`` passes call
  everybody again.
- Only mobile and landline phones are called (never sip); people without one, schedules with
  nobody on call, and ids the configuration does not know are reported in ``Plan.gaps``
  (pass 0 only) instead of failing the call.
- ``Attempt.level`` and ``Attempt.pass_no`` are 0-based; gap messages name levels 1-based.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from fsrouter.config.schema import Level, Phone, Policy, Schedule, User
from fsrouter.routing.schedules import on_call


@dataclass(frozen=True)
class Attempt:
    """One phone to ring: whom, on which number, for how long."""

    user_id: str
    user_name: str
    phone: str
    phone_type: str
    ring_timeout: int
    level: int
    pass_no: int


@dataclass(frozen=True)
class Wave:
    """Phones rung together; the wave fails when all of them have failed."""

    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class Plan:
    """The whole escalation for one call, plus who could not be resolved (for the log)."""

    waves: tuple[Wave, ...]
    gaps: tuple[str, ...]

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return tuple(attempt for wave in self.waves for attempt in wave.attempts)


def level_users(level: Level, schedules: Mapping[str, Schedule], moment: datetime
                ) -> tuple[list[str], list[str]]:
    """The users a level targets at ``moment`` (in order, no repeats), and the empty schedules."""
    users: list[str] = []
    gaps: list[str] = []
    for target in level.targets:
        if target.user is not None:
            user_id: str | None = target.user
        elif target.schedule not in schedules:
            user_id = None
            gaps.append(f"schedule {target.schedule}: unknown schedule")
        else:
            assert target.schedule is not None
            user_id = on_call(schedules[target.schedule], moment)
            if user_id is None:
                gaps.append(f"schedule {target.schedule}: nobody on call")
        if user_id is not None and user_id not in users:
            users.append(user_id)
    return users, gaps


def _rotate(items: list[str], offset: int) -> list[str]:
    if not items:
        return items
    cut = offset % len(items)
    return items[cut:] + items[:cut]


def _phone_attempt(user_id: str, user: User, phone: Phone, level: Level, index: int,
                   pass_no: int) -> Attempt:
    # Only mobile and landline phones are called: both carry an E.164 number.
    assert phone.number is not None
    return Attempt(user_id=user_id, user_name=user.name, phone=phone.number,
                   phone_type=phone.type, ring_timeout=level.ring_timeout, level=index,
                   pass_no=pass_no)


def _level_waves(level: Level, index: int, pass_no: int, user_ids: list[str],
                 users: Mapping[str, User]) -> list[Wave]:
    phones = [(uid, users[uid], users[uid].callable_phones) for uid in user_ids]
    if level.strategy == "all_at_once":
        # Everybody's first phone at once, then everybody's second phone, and so on.
        depth = max((len(p) for _, _, p in phones), default=0)
        waves = []
        for n in range(depth):
            wave = tuple(_phone_attempt(uid, user, p[n], level, index, pass_no)
                         for uid, user, p in phones if n < len(p))
            waves.append(Wave(wave))
        return waves
    return [Wave((_phone_attempt(uid, user, phone, level, index, pass_no),))
            for uid, user, user_phones in phones for phone in user_phones]


def plan_escalation(policy: Policy, users: Mapping[str, User],
                    schedules: Mapping[str, Schedule], moment: datetime,
                    round_robin_offset: int = 0) -> Plan:
    """Resolve ``policy`` at ``moment`` into the ordered waves of phones to ring.

    ``round_robin_offset`` (e.g. the number of earlier calls for this policy, kept by the caller)
    picks who goes first on ``round_robin`` levels.
    """
    waves: list[Wave] = []
    gaps: list[str] = []
    for pass_no in range(policy.repeat + 1):
        called: set[str] = set()
        for index, level in enumerate(policy.levels):
            user_ids, level_gaps = level_users(level, schedules, moment)
            level_gaps += _uncallable(user_ids, users)
            if pass_no == 0:
                gaps.extend(f"level {index + 1}: {gap}" for gap in level_gaps)
            if level.strategy == "round_robin":
                user_ids = _rotate(user_ids, round_robin_offset)
            user_ids = [uid for uid in user_ids if uid in users and uid not in called]
            called.update(user_ids)
            waves.extend(_level_waves(level, index, pass_no, user_ids, users))
    return Plan(waves=tuple(waves), gaps=tuple(gaps))


def _uncallable(user_ids: list[str], users: Mapping[str, User]) -> list[str]:
    """Why some of ``user_ids`` cannot be called (unknown id, no mobile or landline)."""
    problems = []
    for user_id in user_ids:
        if user_id not in users:
            problems.append(f"{user_id}: unknown user")
        elif not users[user_id].callable_phones:
            problems.append(f"{user_id} has no mobile or landline phone")
    return problems
