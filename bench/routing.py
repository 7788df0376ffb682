"""Routing decision time for a large generated configuration (1,000 users, 100 schedules,
50 numbers).

The configuration is written as YAML and loaded with ``load_config`` like the daemon does.
Each schedule has a weekly rotation of ten people, an evening rotation restricted to
weekday nights with German public holidays off, and an override; schedules are spread over
three time zones. Each of the 50 numbers has three options whose policies escalate over
three levels (two schedules at once, a schedule and a person, a round robin of five people)
with one repeat pass.

A decision is what a call does between the key press and the first ring: find the number
(E.164), the option, its route at this moment and the escalation plan
(``plan_escalation``). Both are timed; moments are spread over a year.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.stats import percentile, rounded

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
USERS, SCHEDULES, NUMBERS, POLICIES = 1000, 100, 50, 50
WARM_UP = 50  # decisions run before timing


def _user(i: int) -> dict[str, Any]:
    return {"name": f"Person {i}", "phones": [
        {"type": "mobile", "number": f"+4915112{i:06d}"},
        {"type": "landline", "number": f"+4930123{i:05d}"}]}


def _schedule(i: int) -> dict[str, Any]:
    team = [f"u{(i * 10 + k) % USERS}" for k in range(10)]
    night = [f"u{(i * 10 + 500 + k) % USERS}" for k in range(4)]
    return {
        "timezone": ZONES[i % len(ZONES)],
        "holidays": "BE",
        "rotations": [
            {"users": team, "start": "2026-01-05T09:00:00",
             "handoff": {"day": "mon", "time": "09:00"}},
            {"users": night, "start": "2026-01-05T18:00:00", "length": "1d",
             "restrictions": [{"days": "mon-fri", "from": "18:00", "to": "08:00"}]},
        ],
        "overrides": [{"user": team[0], "from": "2026-12-24T00:00:00",
                       "to": "2026-12-27T00:00:00"}],
    }


def _policy(i: int) -> dict[str, Any]:
    return {"press_to_accept": False, "repeat": 1, "levels": [
        {"strategy": "all_at_once", "ring_timeout": 20, "targets": [
            {"schedule": f"s{i % SCHEDULES}"}, {"schedule": f"s{(i + 50) % SCHEDULES}"}]},
        {"ring_timeout": 20, "targets": [
            {"schedule": f"s{(i + 1) % SCHEDULES}"}, {"user": f"u{(i * 7) % USERS}"}]},
        {"strategy": "round_robin", "ring_timeout": 20, "targets": [
            {"user": f"u{(i * 13 + k) % USERS}"} for k in range(5)]},
    ]}


def _number(i: int) -> dict[str, Any]:
    return {"number": f"+49304000{2000 + i}", "type": "call_routing", "options": [
        {"digit": k + 1, "label": f"Team {i}-{k + 1}", "policy": f"p{(i * 3 + k) % POLICIES}"}
        for k in range(3)]}


def big_config() -> dict[str, Any]:
    return {
        "switch": {"password_env": "FSR_BENCH_ESL_PASSWORD"},
        "defaults": {"country": "DE"},  # the dialled numbers come in national form
        "users": {f"u{i}": _user(i) for i in range(USERS)},
        "schedules": {f"s{i}": _schedule(i) for i in range(SCHEDULES)},
        "policies": {f"p{i}": _policy(i) for i in range(POLICIES)},
        "numbers": [_number(i) for i in range(NUMBERS)],
    }


def measure_routing(workdir: Path, decisions: int, seed: int = 8) -> dict[str, Any]:
    """Load the generated configuration and time ``decisions`` routing decisions."""
    from fsrouter.config import load_config, normalise_number
    from fsrouter.config.schema import CallRoutingNumber
    from fsrouter.routing.escalation import plan_escalation
    from fsrouter.routing.hours import option_route
    from fsrouter.routing.menu import option_for

    path = workdir / "routing.yaml"
    path.write_text(yaml.safe_dump(big_config(), sort_keys=False), "utf-8")
    began = time.perf_counter()
    config = load_config(path)
    load_s = time.perf_counter() - began
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    plan_us: list[float] = []
    decision_us: list[float] = []
    decision_cpu_us: list[float] = []
    attempts = 0
    for index in range(decisions + WARM_UP):
        # As FreeSWITCH may deliver it: national form, no +.
        dialled = f"0304000{2000 + rng.randrange(NUMBERS)}"
        digit = str(rng.randrange(3) + 1)
        moment = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
        c0, t0 = time.thread_time(), time.perf_counter()
        number = config.number_by_e164(normalise_number(dialled, config.defaults.country))
        assert isinstance(number, CallRoutingNumber)
        option = option_for(number, digit)
        assert option is not None
        route = option_route(option, moment, config.defaults.timezone)
        assert route.policy is not None
        t1 = time.perf_counter()
        plan = plan_escalation(config.policies[route.policy], config.users, config.schedules,
                               moment, round_robin_offset=rng.randrange(10))
        t2, c2 = time.perf_counter(), time.thread_time()
        if index < WARM_UP:  # first lookups fill caches (time zones, holiday calendars)
            continue
        plan_us.append((t2 - t1) * 1e6)
        decision_us.append((t2 - t0) * 1e6)
        decision_cpu_us.append((c2 - c0) * 1e6)
        attempts += len(plan.attempts)
    return {
        "users": len(config.users), "schedules": len(config.schedules),
        "numbers": len(config.numbers), "policies": len(config.policies),
        "decisions": decisions, "config_load_s": rounded(load_s),
        "mean_attempts_per_plan": rounded(attempts / max(decisions, 1), 1),
        "plan_escalation_us": {"median": rounded(percentile(plan_us, 0.5), 1),
                               "p99": rounded(percentile(plan_us, 0.99), 1)},
        "decision_us": {"median": rounded(percentile(decision_us, 0.5), 1),
                        "p99": rounded(percentile(decision_us, 0.99), 1)},
        # CPU time of this thread: what the wall-clock p99 is without other processes'
        # preemption (the machine is shared).
        "decision_cpu_us": {"median": rounded(percentile(decision_cpu_us, 0.5), 1),
                            "p99": rounded(percentile(decision_cpu_us, 0.99), 1)},
    }
