"""What a call needs from the rest of the daemon, passed in explicitly (no globals).

The daemon builds one :class:`CallServices`; tests build their own with a fixed clock.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fsrouter.config import Config


def utc_now() -> datetime:
    return datetime.now(UTC)


def ignore(event: str, data: dict[str, Any]) -> None:
    """The default ``notify``: nobody listens (tests, the simulator)."""


@dataclass
class CallServices:
    """The configuration in force, the clock, and who we are (for multi-host records)."""

    config_source: Callable[[], Config]
    now: Callable[[], datetime] = utc_now
    host: str = field(default_factory=socket.gethostname)
    # Seconds the calls wait at most for one step of the switch (answer, a prompt, a job).
    step_timeout: float = 30.0
    # Business events (incident.created/accepted/resolved, voicemail.left) for webhooks, the
    # mailer and metrics; must not block or raise.
    notify: Callable[[str, dict[str, Any]], None] = ignore
    # fsrouter.metrics.Metrics when the daemon runs with metrics (None: nobody counts).
    metrics: Any = None
    # ``api(command, timeout)`` over the inbound event connection (the daemon's
    # InboundClient.api): how a call whose socket the switch dropped still cancels its legs.
    switch_api: Callable[[str, float], str] | None = None
    # fsrouter.cluster.Claims: agents are claimed before they are rung (None: no claims,
    # tests that build their own services).
    claims: Any = None
    # The call's switch (fsrouter.switches.SwitchLink) when the daemon knows it: a lost socket
    # is told apart from a lost switch with it (``switch_lost``).
    switch: Any = None

    @property
    def config(self) -> Config:
        """The configuration at this moment (a reload replaces it for new calls only)."""
        return self.config_source()
