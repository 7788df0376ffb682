"""One call's outbound socket, seen from the call flow: run an app, know when the caller left.

Every wait has a timeout, and every wait ends early when the caller hangs up or the socket
closes, so a flow never hangs on a call that is gone.

A socket that closes before the switch reported a hang-up means the switch dropped us (a
network fault, a restart) while the call may still be up: ``lost`` is set, ``api()`` goes on
over the inbound event connection (``CallServices.switch_api``) so ringing legs can still be
cancelled, and :meth:`Call.release_lost` ends a caller left waiting in a queue nobody serves.
A command the switch never answers (a reply timeout) means the same: the switch handles a
socket's commands in order, so nothing later would be answered either (:meth:`no_reply`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import gevent
import gevent.event
import structlog

from fsrouter.calls.pending import create, settle
from fsrouter.calls.services import CallServices
from fsrouter.config import normalise_number
from fsrouter.esl import ESLError, ESLTimeout, Event
from fsrouter.logs import bind_call
from fsrouter.recovery import ADOPTED_VARIABLE, LOST
from fsrouter.resilience.journal import Ref
from fsrouter.store import NotFound, queries, replay
from fsrouter.store.models import CallRecord

HANGUP_EVENTS = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")
# Channel variables that identify the agent behind a feature code (fsrouter.calls.features).
IDENTITY_VARIABLES = ("variable_user_name",)
# The fields of the ``connect`` reply the call flows read; the rest (~110 headers, ~15 KB)
# is dropped when the call starts, so a waiting caller does not keep it (bench/README.md).
CHANNEL_FIELDS = ("Unique-ID", "Caller-Destination-Number", "Caller-Caller-ID-Number",
                  "Caller-Caller-ID-Name", f"variable_{ADOPTED_VARIABLE}", *IDENTITY_VARIABLES)
# The outbound server's close reason once our handler is done (fsrouter.esl.outbound).
HANDLER_DONE = "call handler finished"
LOST_CAUSE = "SOCKET_LOST"  # hang-up cause recorded when the socket was lost (not a Q.850 name)
SWITCH_LOST_CAUSE = "SWITCH_LOST"  # ... and the switch too (crashed, killed, unreachable)
SOCKET_LOST = "socket_lost"  # outcome and incident reason: our socket closed, the switch is up
SWITCH_LOST = "switch_lost"  # outcome and incident reason: the call's switch is gone
ADOPTION_LOST = LOST  # outcome and incident reason: an adopted caller gone before our answer


class Call:
    """The caller's leg: its channel data, its apps, its hang-up."""

    def __init__(self, session: Any, services: CallServices) -> None:
        self.session = session
        self.services = services
        self.uuid: str = session.uuid
        self.channel: dict[str, str] = {name: session.channel[name] for name in CHANNEL_FIELDS
                                        if name in session.channel}
        session.channel = self.channel  # the session's full copy would outlive us otherwise
        self.gone = gevent.event.Event()
        self.queued = gevent.event.Event()   # mod_fifo has the caller (FIFO-Action push)
        self.bridged = gevent.event.Event()  # the caller is talking to someone
        self.bridged_to: str | None = None  # the leg mod_fifo bridged us to
        self.lost = gevent.event.Event()  # the socket closed before any hang-up was seen
        self.stuck = False  # ... because the switch stopped answering on it (no_reply)
        self._lost_reason: str | None = None
        self.hangup_cause: str | None = None
        self.number = ""  # the routing number (E.164) once known, for metrics
        self.outcome = "hangup"  # how the call ended, for metrics (the store has it too)
        self.started = time.monotonic()
        # The record an adopted caller left open (see open_record); None for a new call.
        self.resumed: CallRecord | None = None
        self.record_id: int | None = None  # the call record's id once open_record made it
        # When the caller was answered: written with the record's next write (the incident,
        # or the end of the call), not in a transaction of its own (bench/README.md).
        self.answered_at: datetime | None = None
        # The incident the record's last write resolves with it (one transaction): a bridged
        # hotline call's, whose end is the call's end; None: nothing to resolve.
        self.resolve_at_close: tuple[int, str] | None = None
        self.log = bind_call(structlog.get_logger("fsrouter.calls"), call_uuid=self.uuid)
        session.on_event(self._on_event, inline=True)  # it only sets flags: never blocks
        session.on_close(self._socket_closed)

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

    def open_record(self, number: str, route_type: str) -> CallRecord:
        """Create this call's record, or take over the one it left open when fsrouter.recovery
        sent the caller back to us after a restart (``fsr_adopted``: only the event socket
        sets it)."""
        if self.channel.get(f"variable_{ADOPTED_VARIABLE}") == "true":
            try:
                record = queries.get_call(self.uuid)
            except NotFound:
                record = None
            if record is not None and record.ended_at is None:
                self.resumed = record
                self.record_id = record.id
                self.log.info("call.adopted", number=record.number, incident_id=record.incident_id)
                self.run("unset", ADOPTED_VARIABLE)  # a later transfer back here: a new call
                return record
        details = (self.uuid, number, route_type, self.caller_number, self.caller_name,
                   self.services.now())
        node = getattr(self.services.claims, "node", None)  # who handles it (recovery)
        if self.services.config.database.unavailable == "reject":
            # The store refusing it refuses the call, unanswered (calls/__init__).
            record = queries.create_call_record(*details, host=self.services.host, node=node)
        else:  # "yaml": the call goes on; the journal writes its record once the store is back
            made = create(queries.create_call_record, *details, host=self.services.host, node=node,
                          later=replay.create_call_record_once)
            if isinstance(made, Ref):
                self.log.warning("call.record_deferred")
                return CallRecord(call_uuid=self.uuid, number=number, route_type=route_type)
            record = made
        self.record_id = record.id
        return record

    def answer(self) -> bool:
        """Answer the caller; False if they left first. The time is kept for the record."""
        return self.answer_then()[0]

    def answer_then(self, app: str | None = None, arg: str | None = None
                    ) -> tuple[bool, Any | None]:
        """Answer the caller and queue ``app`` behind it in the same write (the switch starts
        it as soon as the answer is done, without a round trip to us in between): (answered,
        ``app``'s run). False if the caller left first."""
        runs = self.start_many([("answer", None)] + ([(app, arg)] if app else []))
        if runs is None or self.finish(runs[0], "answer") is None:
            return False, None
        self.answered_at = self.services.now()
        return True, runs[1] if app else None

    def unanswered(self) -> str:
        """The outcome of a call that ended before our ``answer``: ``hangup_before_answer``,
        except for a caller adopted after a restart, answered long before: that caller was
        lost on the way back to us (a warning; its incident keeps a reason, see
        fsrouter.recovery for how the switch could drop it)."""
        if self.resumed is None:
            return "hangup_before_answer"
        self.log.warning("call.adoption_lost", cause=self.hangup_cause,
                         socket_lost=self.lost.is_set(), incident_id=self.resumed.incident_id)
        if self.resumed.incident_id is not None:
            settle(_note_unless_noted, self.resumed.incident_id, ADOPTION_LOST)
        return ADOPTION_LOST

    def close_record(self, outcome: str) -> None:
        """The record's last write: outcome, cause, end (and answered_at if not yet written);
        kept for later if the store refuses it now (calls.pending)."""
        # A call whose socket was lost ended out of our sight: say so rather than leave the
        # cause empty (a conversation cut by a switch crash keeps its outcome, ``bridged``).
        lost = self.lost_reason() if self.lost.is_set() else None
        cause = self.hangup_cause or {SWITCH_LOST: SWITCH_LOST_CAUSE,
                                      SOCKET_LOST: LOST_CAUSE}.get(lost or "")
        if self.resolve_at_close is not None:
            incident_id, reason = self.resolve_at_close
            settle(queries.close_call_resolving, self.uuid, outcome, cause, self.services.now(),
                   self.answered_at, incident_id, reason)
            return
        settle(queries.close_call, self.uuid, outcome, cause, self.services.now(),
               self.answered_at)

    def _on_event(self, event: Event) -> None:
        if event.uuid == self.uuid and event.name == "CUSTOM":
            action = event.get("FIFO-Action")
            if action == "push":
                self.queued.set()
            elif action == "bridge-caller-start":  # mod_fifo bridged us (we are its B-leg)
                self.bridged_to = event.get("variable_fifo_target") or event.get(
                    "Other-Leg-Unique-ID")
                self.bridged.set()
        if event.name == "CHANNEL_BRIDGE" and event.uuid == self.uuid:
            self.bridged.set()  # the bridge app connected us
        if event.name in HANGUP_EVENTS and event.uuid == self.uuid:
            self.hangup_cause = self.hangup_cause or event.get("Hangup-Cause")
            self.gone.set()

    def lost_reason(self) -> str:
        """Why the socket was lost: ``switch_lost`` when the call's switch no longer answers
        on its event connection either (killed, crashed, unreachable), else ``socket_lost``.
        Asked once (it may wait up to fsrouter.switches.PROBE_TIMEOUT)."""
        if self._lost_reason is None:
            switch = self.services.switch
            gone = switch is not None and not switch.alive()
            self._lost_reason = SWITCH_LOST if gone else SOCKET_LOST
            if gone:
                self.log.warning("call.switch_lost", switch=switch.name)
        return self._lost_reason

    def _socket_closed(self) -> None:
        """The socket closed (run by whichever greenlet closed it)."""
        reason = self.session.close_reason
        if self.hangup_cause is None and reason != HANDLER_DONE:
            self.log.warning("call.socket_lost", reason=reason)
            self.lost.set()  # before gone: a flow woken by gone must see it
        self.gone.set()

    def run(self, app: str, arg: str | None = None, timeout: float | None = None
            ) -> Event | None:
        """Run ``app`` and wait for its completion; None if the caller left first."""
        execution = self.start(app, arg)
        if execution is None:  # the caller had left, or the socket failed: nothing more runs
            self.gone.set()
            return None
        return self.finish(execution, app, timeout)

    def finish(self, execution: Any, app: str, timeout: float | None = None) -> Event | None:
        """Wait for a started application's completion; None if the caller left first."""
        # No greenlet per run: the execution is waited on directly (gevent's wait protocol).
        gevent.wait([execution, self.gone], count=1,
                    timeout=timeout or self.services.step_timeout)
        if not execution.done and self.gone.is_set():
            # The caller left; the app's completion still arrives (or the socket closed).
            gevent.wait([execution], timeout=1.0)
        if execution.event is not None:
            return execution.event
        why = "gone" if self.gone.is_set() else "timed out" if not execution.done else "closed"
        self.log.info("call.app_unfinished", app=app, error=why)
        return None

    def set_vars(self, variables: dict[str, str]) -> None:
        """Set channel variables (see :func:`variable_runs`) and wait until they are set."""
        for app, arg in variable_runs(variables):
            self.run(app, arg)

    def start_many(self, runs: Sequence[tuple[str, str | None]]) -> list[Any] | None:
        """Queue several applications in one write (the switch runs them in order, with no
        round trip to us between them); their runs, or None if the caller left first or the
        socket failed."""
        if self.gone.is_set():
            return None
        try:
            return list(self.session.execute_many(runs))
        except ESLError as error:
            self.log.info("call.app_not_sent", app=runs[0][0], error=str(error))
            self.no_reply(error)
            return None

    def start(self, app: str, arg: str | None = None) -> Any | None:
        """Start ``app`` without waiting for it (``fifo ... in`` runs until we are bridged)."""
        runs = self.start_many([(app, arg)])
        return runs[0] if runs else None

    def bgapi(self, command: str) -> Any:
        """``bgapi`` on this call's socket; a reply that never comes gives the socket up."""
        try:
            return self.session.bgapi(command)
        except ESLError as error:
            self.no_reply(error)
            raise

    def no_reply(self, error: ESLError) -> None:
        """The switch never answered a command on this socket. It handles a socket's commands
        one after another, so it is stuck on it and will answer nothing later (events
        included): give the socket up and end what is left over the event connection."""
        if isinstance(error, ESLTimeout) and not self.session.closed:
            self.log.error("call.switch_not_answering", error=str(error))
            self.stuck = True
            self.lost.set()  # now, not when the socket watcher wakes: the flow must see it
            self.session.close(f"no reply from the switch: {error}")

    def api(self, command: str, timeout: float | None = None) -> str:
        """An API command on this call's socket (``full`` mode), or over the inbound event
        connection once the socket is gone; errors come back as text."""
        timeout = timeout or self.services.step_timeout
        try:
            if not self.session.closed:
                return self.session.api(command, timeout=timeout)
            if self.services.switch_api is not None:
                return self.services.switch_api(command, timeout)
            return "-ERR the call's socket is closed"
        except ESLError as error:
            if not self.session.closed:
                self.no_reply(error)
            return f"-ERR {error}"

    def release_lost(self) -> None:
        """After a lost socket: end the caller if it still waits in a queue nobody serves,
        or if the switch got stuck on the socket (its fallback after ``socket`` may never
        run then), with NORMAL_TEMPORARY_FAILURE so the caller's network can go elsewhere.

        Otherwise the switch goes on by itself: a running prompt, tone or recording ends and
        the dialplan's fallback after ``socket`` runs; a bridged caller keeps talking.
        """
        if self.bridged.is_set():
            return
        status = self.api(f"uuid_getvar {self.uuid} fifo_status", timeout=5.0).strip()
        if status == "TALKING" or (status != "WAITING" and not self.stuck):
            return
        reply = self.api(f"uuid_kill {self.uuid} NORMAL_TEMPORARY_FAILURE", timeout=5.0)
        self.log.warning("call.released", reply=reply.strip()[:80], stuck=self.stuck,
                         fifo_status=status[:20])

    @property
    def metrics(self) -> Any:
        """The daemon's metrics, or a stand-in that ignores everything (tests, tools)."""
        return self.services.metrics or _NO_METRICS

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up the caller (before the socket closes: the dialplan fallback must not run)."""
        if self.gone.is_set():
            return
        self.run("hangup", cause, timeout=5.0)


_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# mod_dptools' multiset splits its argument on a delimiter (a space, or the character after
# a leading "^^") with switch_separate_string, which also reads quotes and backslashes.
_DELIMITERS = " |~!"
_NOT_IN_MULTISET = frozenset("'\"\\\r\n")


def variable_runs(variables: dict[str, str]) -> list[tuple[str, str]]:
    """The applications that set ``variables``: one ``multiset`` when every value can travel
    in it (one application run, command and completion event instead of one per variable;
    each costs the switch and us, bench/README.md), else one ``set`` each."""
    arg = multiset_argument(variables)
    if arg is None:
        return [("set", f"{name}={value}") for name, value in variables.items()]
    return [("multiset", arg)]


def multiset_argument(variables: dict[str, str]) -> str | None:
    """The ``multiset`` argument that sets ``variables`` exactly, or None when a value holds
    a quote, a backslash or a newline, or every delimiter (then ``set`` them one by one)."""
    if not variables or len(variables) > 64:
        return None
    if not all(_VARIABLE_NAME.fullmatch(name) for name in variables):
        return None
    values = "".join(variables.values())
    if _NOT_IN_MULTISET.intersection(values):
        return None
    for delimiter in _DELIMITERS:
        if delimiter not in values:
            prefix = "" if delimiter == " " else f"^^{delimiter}"
            return prefix + delimiter.join(f"{k}={v}" for k, v in variables.items())
    return None


def _note_unless_noted(incident_id: int, reason: str) -> None:
    """The incident's reason, unless the call flow before the restart had given one."""
    incident = queries.get_incident(incident_id)
    if not incident.outcome_reason:
        queries.note_incident(incident_id, reason)


class _Ignore:
    """Accepts any metrics call and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


_NO_METRICS = _Ignore()
