"""One call's outbound socket, seen from the call flow: run an app, know when the caller left.

Every wait has a timeout, and every wait ends early when the caller hangs up or the socket
closes, so a flow never hangs on a call that is gone.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import gevent.event
import structlog

from fsrouter.calls.services import CallServices
from fsrouter.config import normalise_number
from fsrouter.esl import ESLError, Event
from fsrouter.logs import bind_call

HANGUP_EVENTS = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")


class Call:
    """The caller's leg: its channel data, its apps, its hang-up."""

    def __init__(self, session: Any, services: CallServices) -> None:
        self.session = session
        self.services = services
        self.uuid: str = session.uuid
        self.channel: dict[str, str] = session.channel
        self.gone = gevent.event.Event()
        self.queued = gevent.event.Event()   # mod_fifo has the caller (FIFO-Action push)
        self.bridged = gevent.event.Event()  # the caller is talking to someone
        self.hangup_cause: str | None = None
        self.number = ""  # the routing number (E.164) once known, for metrics
        self.outcome = "hangup"  # how the call ended, for metrics (the store has it too)
        self.started = time.monotonic()
        self.log = bind_call(structlog.get_logger("fsrouter.calls"), call_uuid=self.uuid)
        session.on_event(self._on_event)
        gevent.spawn(self._watch_socket)

    @property
    def destination(self) -> str:
        return self.channel.get("Caller-Destination-Number", "")

    @property
    def caller_number(self) -> str:
        return self.channel.get("Caller-Caller-ID-Number", "")

    @property
    def caller_name(self) -> str:
        return self.channel.get("Caller-Caller-ID-Name", "")

    @property
    def caller_e164(self) -> str:
        """The caller's number in E.164, or "" (caller-controlled: anything may arrive)."""
        try:
            return normalise_number(self.caller_number, self.services.config.defaults.country)
        except ValueError:
            return ""

    def _on_event(self, event: Event) -> None:
        if event.uuid == self.uuid and event.name == "CUSTOM":
            action = event.get("FIFO-Action")
            if action == "push":
                self.queued.set()
            elif action == "bridge-caller-start":  # mod_fifo bridged us (we are its B-leg)
                self.bridged.set()
        if event.name == "CHANNEL_BRIDGE" and event.uuid == self.uuid:
            self.bridged.set()  # the bridge app connected us
        if event.name in HANGUP_EVENTS and event.uuid == self.uuid:
            self.hangup_cause = self.hangup_cause or event.get("Hangup-Cause")
            self.gone.set()

    def _watch_socket(self) -> None:
        self.session.wait_closed(None)
        self.gone.set()

    def run(self, app: str, arg: str | None = None, timeout: float | None = None
            ) -> Event | None:
        """Run ``app`` and wait for its completion; None if the caller left first."""
        if self.gone.is_set():
            return None
        try:
            execution = self.session.execute(app, arg)
        except ESLError as error:
            self.log.info("call.app_not_sent", app=app, error=str(error))
            self.gone.set()
            return None
        waiter = gevent.spawn(execution.wait, timeout or self.services.step_timeout)
        gevent.wait([waiter, self.gone], count=1)
        if not waiter.ready():
            # The caller left; the app's completion still arrives (or the socket closed).
            waiter.join(timeout=1.0)
        if waiter.successful():
            return waiter.value
        self.log.info("call.app_unfinished", app=app, error=str(waiter.exception or "gone"))
        return None

    def start(self, app: str, arg: str | None = None) -> Any | None:
        """Start ``app`` without waiting for it (``fifo ... in`` runs until we are bridged)."""
        if self.gone.is_set():
            return None
        try:
            return self.session.execute(app, arg)
        except ESLError as error:
            self.log.info("call.app_not_sent", app=app, error=str(error))
            return None

    def api(self, command: str, timeout: float | None = None) -> str:
        """An API command on this call's socket (``full`` mode); errors come back as text."""
        try:
            return self.session.api(command, timeout=timeout or self.services.step_timeout)
        except ESLError as error:
            return f"-ERR {error}"

    @property
    def metrics(self) -> Any:
        """The daemon's metrics, or a stand-in that ignores everything (tests, tools)."""
        return self.services.metrics or _NO_METRICS

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up the caller (before the socket closes: the dialplan fallback must not run)."""
        if self.gone.is_set():
            return
        self.run("hangup", cause, timeout=5.0)


class _Ignore:
    """Accepts any metrics call and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


_NO_METRICS = _Ignore()
