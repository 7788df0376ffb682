"""What happened on the switch for one call, comparable with the real-switch runner's record."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class AppRun:
    name: str
    arg: str  # expanded, as the application received it
    raw_arg: str = ""
    injection: bool = False  # a ${system(...)} / ${api(...)}-style expansion happened


@dataclass
class AgentLeg:
    dial: str
    caller_id_number: str
    caller_id_name: str
    result: str  # "+OK <uuid>" or "-ERR <CAUSE>"
    uuid: str = ""
    hangup_cause: str = ""


@dataclass
class SwitchRecord:
    """Plain record per inbound call; ``normalised()`` drops UUIDs and timestamps."""

    caller_uuid: str
    number: str
    caller_number: str
    caller_name: str
    apps: list[AppRun] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    agent_legs: list[AgentLeg] = field(default_factory=list)
    bridged_to: list[str] = field(default_factory=list)
    hangup_causes: dict[str, str] = field(default_factory=dict)
    voicemails: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def injections(self) -> list[AppRun]:
        return [run for run in self.apps if run.injection]

    def normalised(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("caller_uuid", "started_at", "ended_at", "voicemails"):
            data.pop(key)
        names = {self.caller_uuid: "caller"}
        for index, leg in enumerate(self.agent_legs):
            names.setdefault(leg.uuid, f"agent{index}")
        data["hangup_causes"] = {names.get(k, "leg"): v for k, v in self.hangup_causes.items()}
        data["bridged_to"] = [names.get(u, "leg") for u in self.bridged_to]
        return _scrub(data)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _UUID.sub("<uuid>", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k != "uuid"}
    return value
