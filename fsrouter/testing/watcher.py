"""An event connection that remembers everything a switch publishes (tests and the demo)."""

from __future__ import annotations

import time
from typing import Any

import gevent

from fsrouter.esl import Event, InboundClient

WATCHED = ["CHANNEL_CREATE", "CHANNEL_EXECUTE", "CHANNEL_BRIDGE", "CHANNEL_HANGUP_COMPLETE",
           "BACKGROUND_JOB", "DTMF"]


class Watcher:
    """Every event of the switch, from its own event socket; wait for one by its headers."""

    def __init__(self, endpoint: tuple[str, int, str], events: list[str] | None = None) -> None:
        host, port, password = endpoint
        self.events: list[Event] = []
        self.client = InboundClient(host, port, password, events=events or WATCHED)
        self.client.connect()
        self.client.on_event(self.events.append)

    def close(self) -> None:
        self.client.close()

    def first(self, name: str, **headers: str) -> Event | None:
        """The first ``name`` event whose headers have these values (``Unique_ID`` style keys
        may be passed as a dict: ``**{"Unique-ID": x}``)."""
        for event in self.events:
            if event.name == name and all(event.get(k) == v for k, v in headers.items()):
                return event
        return None

    def wait(self, name: str, timeout: float = 20.0, **headers: Any) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.first(name, **headers)
            if event is not None:
                return event
            gevent.sleep(0.05)
        raise TimeoutError(f"no {name} {headers} within {timeout} s")

    def legs_to(self, number: str) -> list[Event]:
        """The phone side (loopback b-leg) of every call to ``number``."""
        return [e for e in self.events if e.name == "CHANNEL_CREATE"
                and (e.get("Channel-Name") or "").startswith(f"loopback/{number}-b")]
