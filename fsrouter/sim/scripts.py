"""What the simulated caller does: DTMF at moments, hang-up at a moment or a state."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Press:
    digits: str
    at_s: float = 0.0  # seconds after ``after`` happened
    after: str = "menu"  # "start" (call start) or a step: "menu", "in_queue", "bridged"


@dataclass
class CallerScript:
    presses: list[Press] = field(default_factory=list)
    hangup_at_s: float | None = None  # seconds after call start
    hangup_in: str = ""  # a step: in_menu, in_queue, agent_ringing, bridged
    hangup_delay_s: float = 0.0
