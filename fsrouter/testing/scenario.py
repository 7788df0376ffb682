"""One scenario language, two switches.

A :class:`Scenario` describes a call once: who calls, which keys they press and when, when they
hang up, how each phone behaves. :func:`run_scenario` plays it on any switch that is driven
over the Event Socket (the real FreeSWITCH through :class:`~fsrouter.testing.realswitch.
RealSwitch`, the simulator through :class:`~fsrouter.testing.simswitch.SimSwitch`) against a
fixed *calibration app* on the outbound socket, and returns a
:class:`~fsrouter.sim.record.SwitchRecord` built only from the events the switch published on an
inbound event connection. Equal records (apart from UUIDs and timestamps) on both switches mean
the simulator behaves like the real switch for that flow.

The calibration app is deliberately small and fixed: it issues the same command sequence as the
recorded traces (``../shared/esl-traces``) so that the comparison is about the switch, not the
app.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import structlog

from fsrouter.esl import ESLError, Event, InboundClient
from fsrouter.esl.outbound import OutboundServer, OutboundSession
from fsrouter.sim.record import AgentLeg, AppRun, SwitchRecord

log = structlog.get_logger(__name__)

ROUTING_NUMBER = "+493040001000"
MENU_FILE = "tone_stream://%(300,200,440);loops=2"
INVALID_FILE = "tone_stream://%(200,0,300)"
BUSY_TONE = "tone_stream://%(480,480,425);loops=2"
HOLD_MUSIC = "tone_stream://%(1000,0,350);loops=-1"
ACCEPT_FILE = "tone_stream://%(200,0,800)"
RINGBACK = "%(2000,4000,440,480)"
# What a caller "says" into a recording (uuid_broadcast onto the caller's own leg).
VOICE = "tone_stream://%(900,100,350);loops=-1"
QUEUE_EXIT_KEY = "#"
RECORDED_EVENTS = [
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_BRIDGE", "CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB", "DTMF", "CUSTOM",
    "fifo::info", "vm::maintenance",
]
# The caller's "menu" stage starts with the first app that waits for their keys.
KEY_APPS = ("play_and_get_digits", "voicemail")
# "orphaned": the ``adopt`` flow's app has just dropped its socket (the daemon "died").
STAGES = ("menu", "queue", "ringing", "bridged", "record", "orphaned")
ADOPTED_VARIABLE = "fsr_adopted"  # what fsrouter/recovery.py sets before uuid_transfer
NO_SUCH_UUID = "00000000-0000-4000-8000-000000000000"
# Caller variables a ``bridge`` leaves, compared after it completes (src/mod/applications/
# mod_dptools bridge, switch_ivr_originate.c, switch_channel.c:3430).
BRIDGE_VARS = ("originate_disposition", "DIALSTATUS", "originate_failed_cause",
               "last_bridge_hangup_cause", "bridge_hangup_cause", "originate_causes")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class EslSwitch(Protocol):
    """What a switch offers a scenario (RealSwitch and SimSwitch both do)."""

    speed: float

    def esl_endpoint(self) -> tuple[str, int, str]: ...
    def api(self, cmd: str, timeout: float = ...) -> str: ...
    def route_to(self, port: int, host: str = "127.0.0.1") -> None: ...
    def place_call(self, number: str, caller_number: str = ..., caller_name: str = ...,
                   uuid: str | None = None) -> str: ...
    def send_dtmf(self, uuid: str, digits: str) -> None: ...
    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> str: ...
    def originate(self, dial: str, app: str = "&park()", variables: Any = None,
                  uuid: str | None = None) -> Any: ...
    def fresh_id(self) -> str: ...


@dataclass(frozen=True)
class Scenario:
    """One call, written once, played on either switch.

    ``flow`` picks what the calibration app does: ``menu`` (menu, queue, sequential agent legs,
    busy tone when nobody takes the call), ``busy_tone``, ``voicemail``, ``sit`` (unassigned
    number), ``agent_outbound`` (an agent's own call to a customer, seen on the event
    connection only), or the contact-center steps the daemon uses: ``bridge`` (ringback,
    ``hangup_after_bridge``, optionally ``continue_on_fail``, ``bridge`` to the first phone,
    busy tone if the caller is still there), ``queue_exit`` (mod_fifo with the exit key and
    ``fifo_orbit_exten=_continue_:<max_wait>``, busy tone once the caller is out) and
    ``record`` (the caller is recorded; ``broadcast`` makes them talk), and crash recovery:
    ``adopt`` (the caller is answered and put in a long menu, or with ``adopt_in="queue"``
    in mod_fifo; then the app drops its socket without a word, as a killed daemon; the driver
    sends ``uuid_setvar <caller> fsr_adopted true`` and ``uuid_transfer <caller> <number>
    XML public`` as fsrouter/recovery.py does; the dialplan brings the caller back to the
    app, which notes what the channel shows and ends the call). ``digits`` are
    (seconds after the ``digits_after`` stage, key). ``hangup`` is (stage, seconds after the
    stage is reached), stage one of menu, queue, ringing, bridged, record. ``phones`` are
    scripted phone behaviours without their id: ``answer-500``, ``noanswer``, ``busy``,
    ``gone``, ``press-1-300``, ``hangup-800``.
    """

    name: str
    flow: str = "menu"
    digits: tuple[tuple[float, str], ...] = ()
    hangup: tuple[str, float] | None = None
    phones: tuple[str, ...] = ()
    press_to_accept: bool = False
    ring_timeout: int = 2
    talk_ms: int = 1000
    caller_number: str = "+4915112345678"
    caller_name: str = "Erika Mustermann"
    valid_digits: str = "1-3"
    digits_after: str = "menu"
    continue_on_fail: bool = False  # flow bridge
    max_wait: int = 30  # flow queue_exit: seconds before mod_fifo gives the caller back
    recv_dtmf_after: float | None = None  # flow queue_exit: the app sends the exit key itself
    broadcast: tuple[float, str] | None = None  # (seconds after the record starts, file)
    adopt_in: str = "menu"  # flow adopt: where the caller is when the socket dies

    def phone_destinations(self, suffix: str) -> list[str]:
        return [f"{behaviour}-{suffix}{n}" for n, behaviour in enumerate(self.phones)]


@dataclass
class _Run:
    """Shared state of one scenario run: the events seen and the moments of each stage."""

    scenario: Scenario
    caller_a: str
    destinations: list[str]
    events: list[Event] = field(default_factory=list)
    stages: dict[str, gevent.event.Event] = field(
        default_factory=lambda: {name: gevent.event.Event() for name in STAGES})
    caller_b: str = ""
    number: str = ""  # the number the caller dialled
    done: gevent.event.Event = field(default_factory=gevent.event.Event)
    facts: list[str] = field(default_factory=list)  # API replies seen by the app or driver

    def observe(self, event: Event) -> None:
        self.events.append(event)
        name, uuid = event.name, event.uuid or ""
        if (name == "CHANNEL_CREATE" and not self.caller_b
                and event.get("variable_other_loopback_leg_uuid") == self.caller_a):
            self.caller_b = uuid
        if uuid == self.caller_b and name == "CHANNEL_EXECUTE" and \
                event.get("Application") in KEY_APPS:
            self.stages["menu"].set()
        if name == "CUSTOM" and event.get("FIFO-Action") == "push" and uuid == self.caller_b:
            self.stages["queue"].set()
        if uuid == self.caller_b and name == "CHANNEL_EXECUTE" and \
                event.get("Application") == "record":
            self.stages["record"].set()
        if name == "CHANNEL_CREATE" and self._agent_leg(event) is not None:
            self.stages["ringing"].set()
        if name == "CHANNEL_BRIDGE" and self.caller_b in (
                event.get("Bridge-A-Unique-ID"), event.get("Bridge-B-Unique-ID")):
            self.stages["bridged"].set()
        if name == "CHANNEL_HANGUP_COMPLETE" and uuid in (self.caller_a, self.caller_b):
            if self._hung_up(self.caller_a) and self._hung_up(self.caller_b):
                self.done.set()

    def _hung_up(self, uuid: str) -> bool:
        return bool(uuid) and any(e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == uuid
                                  for e in self.events)

    def _agent_leg(self, event: Event) -> str | None:
        """The destination of an agent (a-)leg, from its channel name ``loopback/<dest>-a``."""
        channel = event.get("Channel-Name") or ""
        for dest in self.destinations:
            if channel == f"loopback/{dest}-a":
                return dest
        return None


# -- the calibration app --------------------------------------------------------------------


def calibration_app(scenario: Scenario, destinations: list[str], queue: str,
                    speed: float, facts: list[str] | None = None,
                    orphaned: gevent.event.Event | None = None
                    ) -> Callable[[OutboundSession], None]:
    """The fixed app on the outbound socket; each branch mirrors a recorded trace or what
    the daemon does (bridge, queue_exit, record, adopt). API replies it gets go to
    ``facts``; ``orphaned`` is set when the adopt flow has dropped its socket."""
    facts = facts if facts is not None else []
    orphaned = orphaned if orphaned is not None else gevent.event.Event()

    def wait(execution: Any, seconds: float) -> Event | None:
        try:
            return execution.wait(seconds / speed + 5)
        except ESLError:
            return None

    def hang_up_after_busy_tone(session: OutboundSession, cause: str) -> None:
        wait(session.execute("playback", BUSY_TONE), 10)
        wait(session.execute("hangup", cause), 5)

    def run(session: OutboundSession) -> None:
        # Never return while the caller is up: a closed socket lets the dialplan's fallback
        # hang the call up (NORMAL_TEMPORARY_FAILURE) and that would race our own hang-up.
        ended = gevent.event.Event()
        session.on_event(lambda e: ended.set() if e.name == "CHANNEL_HANGUP" else None)
        try:
            flow_of(session)
        finally:
            if not session.closed:  # a closed socket brings no more events
                ended.wait(30 / speed + 5)

    def caller_still_there(done: Event | None, session: OutboundSession) -> bool:
        return done is not None and done.get("Hangup-Cause") is None and not session.closed

    def bridge(session: OutboundSession) -> None:
        # As fsrouter's agent route: ringback, hangup_after_bridge, continue_on_fail.
        wait(session.execute("set", f"ringback={RINGBACK}"), 5)
        wait(session.execute("set", "hangup_after_bridge=true"), 5)
        if scenario.continue_on_fail:
            wait(session.execute("set", "continue_on_fail=true"), 5)
        block = f"{{originate_timeout={scenario.ring_timeout},talk_ms={scenario.talk_ms}}}"
        done = wait(session.execute("bridge", f"{block}loopback/{destinations[0]}/agents"),
                    scenario.ring_timeout + scenario.talk_ms / 1000 + 10)
        if caller_still_there(done, session):
            hang_up_after_busy_tone(session, "NORMAL_CLEARING")

    def queue_exit(session: OutboundSession) -> None:
        wait(session.execute("set", f"fifo_caller_exit_key={QUEUE_EXIT_KEY}"), 5)
        wait(session.execute("set", f"fifo_orbit_exten=_continue_:{scenario.max_wait}"), 5)
        waiting = session.execute("fifo", f"{queue} in undef {HOLD_MUSIC}")
        if scenario.recv_dtmf_after is not None:
            gevent.sleep(scenario.recv_dtmf_after / speed)
            reply = session.api(f"uuid_recv_dtmf {session.uuid} {QUEUE_EXIT_KEY}")
            facts.append("uuid_recv_dtmf: " + _UUID.sub("<uuid>", reply.strip()))
        if caller_still_there(wait(waiting, scenario.max_wait + 10), session):
            hang_up_after_busy_tone(session, "NORMAL_CLEARING")

    def record(session: OutboundSession) -> None:
        path = recording_path(session.uuid)
        wait(session.execute("record", f"{path} 30"), 40)
        if not session.closed:
            wait(session.execute("hangup", "NORMAL_CLEARING"), 5)

    def adopt(session: OutboundSession) -> None:
        if session.channel.get(f"variable_{ADOPTED_VARIABLE}"):  # back after the transfer
            facts.append(adopted_fact(session.channel))
            hang_up_after_busy_tone(session, "NORMAL_CLEARING")
            return
        wait(session.execute("answer"), 5)
        if scenario.adopt_in == "queue":
            session.execute("fifo", f"{queue} in undef {HOLD_MUSIC}")
        else:
            session.execute("play_and_get_digits", f"1 1 1 10000 # {MENU_FILE} {INVALID_FILE} "
                                                   f"fsr_choice ^[{scenario.valid_digits}]$ 10000")
        gevent.sleep(1.0 / speed)
        session.close("the daemon died")  # no exit, no hangup: the socket is just gone
        orphaned.set()

    def flow_of(session: OutboundSession) -> None:
        flow = scenario.flow
        if flow == "adopt":
            adopt(session)
            return
        if flow == "bridge":  # the caller is not answered first: the bridge gives early media
            bridge(session)
            return
        if flow == "sit":
            wait(session.execute("pre_answer"), 5)
            wait(session.execute("playback",
                                 "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"),
                 5)
            wait(session.execute("hangup", "UNALLOCATED_NUMBER"), 5)
            return
        wait(session.execute("answer"), 5)
        if flow == "busy_tone":
            hang_up_after_busy_tone(session, "USER_BUSY")
            return
        if flow == "voicemail":
            wait(session.execute("voicemail", "default fsrouter.test 1000"), 30)
            wait(session.execute("hangup", "NORMAL_CLEARING"), 5)
            return
        if flow == "queue_exit":
            queue_exit(session)
            return
        if flow == "record":
            record(session)
            return
        menu = session.execute(
            "play_and_get_digits",
            f"1 1 1 2000 # {MENU_FILE} {INVALID_FILE} fsr_choice ^[{scenario.valid_digits}]$ 2000",
        )
        done = wait(menu, 10)
        if done is None or not done.get("variable_fsr_choice"):
            if not session.closed and done is not None and done.get("Hangup-Cause") is None:
                hang_up_after_busy_tone(session, "NORMAL_CLEARING")
            return
        session.execute("fifo", f"{queue} in undef {HOLD_MUSIC}")
        _ring_agents(session, scenario, destinations, queue, speed)

    return run


def adopted_fact(channel: dict[str, str]) -> str:
    """What a transferred caller's channel data show, without this run's number and times."""
    dest = channel.get("Caller-Destination-Number", "")
    source = re.sub(r"^[0-9]+:" + _UUID.pattern + ":", "<epoch>:<uuid>:",
                    channel.get("Caller-Transfer-Source", "")).replace(dest, "<dest>")
    same = "same" if channel.get("variable_transfer_history") == channel.get(
        "variable_transfer_source") == channel.get("Caller-Transfer-Source") else "differ"
    facts = [f"{ADOPTED_VARIABLE}={channel.get(f'variable_{ADOPTED_VARIABLE}')}",
             f"dialplan={channel.get('Caller-Dialplan')}",
             f"context={channel.get('Caller-Context')}",
             f"rdnis={'<dest>' if channel.get('Caller-RDNIS') == dest else '?'}",
             f"profile={channel.get('Caller-Profile-Index')}", f"transfer_source={source}",
             f"transfer_history={same}", f"max_forwards={channel.get('variable_max_forwards')}",
             f"state={channel.get('Channel-State')}/{channel.get('Answer-State')}"]
    return "adopted: " + " ".join(facts)


def recording_path(caller_uuid: str) -> str:
    """Where the ``record`` flow writes (the same on both switches; run_scenario removes it)."""
    return str(Path(tempfile.gettempdir()) / f"fsr-scenario-{caller_uuid}.wav")


def _ring_agents(session: OutboundSession, scenario: Scenario, destinations: list[str],
                 queue: str, speed: float) -> None:
    """Originate the phones one after another until one takes the caller (mod_fifo bridges)."""
    hung_up = gevent.event.Event()
    session.on_event(lambda e: hung_up.set() if e.name == "CHANNEL_HANGUP" else None)
    for dest in destinations:
        if hung_up.is_set():
            return
        leg = str(uuidlib.uuid4())
        variables = [
            f"origination_uuid={leg}",
            f"originate_timeout={scenario.ring_timeout}",
            "ignore_early_media=true",
            f"fifo_bridge_uuid={session.uuid}",
            "fifo_bridge_uuid_required=true",
            f"origination_caller_id_number={ROUTING_NUMBER}",
            f"talk_ms={scenario.talk_ms}",
        ]
        if scenario.press_to_accept:
            variables += ["group_confirm_key=1", f"group_confirm_file={ACCEPT_FILE}",
                          "group_confirm_read_timeout=2000"]
        job = session.bgapi(
            f"originate {{{','.join(variables)}}}loopback/{dest}/agents "
            f"'&fifo({queue} out nowait)'")
        result = _job_or_hangup(job, hung_up, scenario.ring_timeout / speed + 10)
        if result is None:  # the caller left while this phone rang: stop the ringing
            session.api(f"uuid_kill {leg}")
            return
        if result.startswith("+OK"):
            hung_up.wait(60)
            return
    if not hung_up.is_set():
        session.execute("playback", BUSY_TONE).wait(15)
        session.execute("hangup", "NORMAL_CLEARING").wait(5)


def _job_or_hangup(job: Any, hung_up: gevent.event.Event, timeout: float) -> str | None:
    result: list[str] = []
    waiter = gevent.spawn(lambda: result.append(job.wait(timeout)))
    gevent.wait([waiter, hung_up], count=1, timeout=timeout)
    if result:
        return result[0].strip()
    waiter.kill()
    return None


# -- running and recording ------------------------------------------------------------------


def run_scenario(switch: EslSwitch, scenario: Scenario, timeout: float = 60.0) -> SwitchRecord:
    """Play ``scenario`` on ``switch`` and return what the switch's events say happened."""
    suffix = switch.fresh_id()
    destinations = scenario.phone_destinations(suffix)
    queue = f"fsr_q_{re.sub(r'[^a-z0-9]', '', suffix.lower())}"
    host, port, password = switch.esl_endpoint()
    caller_a = str(uuidlib.uuid4())
    run = _Run(scenario, caller_a, destinations)
    watcher = InboundClient(host, port, password, events=RECORDED_EVENTS)
    watcher.connect()
    watcher.on_event(run.observe)
    server = OutboundServer("127.0.0.1", 0, calibration_app(
        scenario, destinations, queue, switch.speed, run.facts, run.stages["orphaned"]),
        max_calls=4,
        linger_seconds=2)
    server.start()
    try:
        switch.route_to(server.port)
        if scenario.flow == "agent_outbound":
            return _agent_outbound(switch, scenario, destinations, run, watcher, timeout)
        number = run.number = f"4930{abs(hash(suffix)) % 10**7:07d}"
        switch.place_call(number, scenario.caller_number, scenario.caller_name, uuid=caller_a)
        driver = gevent.spawn(_drive_caller, switch, scenario, run)
        finished = run.done.wait(timeout / max(switch.speed, 1) + timeout)
        driver.kill()
        gevent.sleep(0.3 / switch.speed + 0.05)  # late events (agent legs' hang-up) arrive
        if not finished:
            switch.hangup(caller_a)
            raise TimeoutError(f"scenario {scenario.name}: call did not end in time")
        return build_record(run, number)
    finally:
        server.stop(timeout=2)
        server.close_all()
        watcher.close()
        if run.caller_b:
            Path(recording_path(run.caller_b)).unlink(missing_ok=True)


def _drive_caller(switch: EslSwitch, scenario: Scenario, run: _Run) -> None:
    jobs = [gevent.spawn(_press, switch, run, scenario.digits_after, at, digit)
            for at, digit in scenario.digits]
    if scenario.broadcast is not None:
        jobs.append(gevent.spawn(_talk, switch, run, *scenario.broadcast))
    if scenario.flow == "adopt":
        jobs.append(gevent.spawn(_adopt, switch, run))
    if scenario.hangup is not None:
        stage, delay = scenario.hangup
        run.stages[stage].wait()
        gevent.sleep(delay / switch.speed)
        # The leg the switch routed (the b-leg) hangs up, as a SIP caller's BYE would: killing
        # the loopback a-leg instead races the b-leg's dialplan on the real switch (observed:
        # the dead-daemon fallback sometimes ran first and ended it NORMAL_TEMPORARY_FAILURE).
        switch.hangup(run.caller_b or run.caller_a)
    gevent.joinall(jobs)


def _adopt(switch: EslSwitch, run: _Run) -> None:
    """What fsrouter/recovery.py sends for a waiting caller whose daemon died (and the replies
    to the same commands gone wrong)."""
    run.stages["orphaned"].wait()
    gevent.sleep(0.5 / switch.speed)  # the switch notices the dead socket
    caller, number = run.caller_b, run.number
    for label, cmd in (
            ("uuid_setvar no channel", f"uuid_setvar {NO_SUCH_UUID} {ADOPTED_VARIABLE} true"),
            ("uuid_setvar usage", f"uuid_setvar {caller}"),
            ("uuid_transfer no channel", f"uuid_transfer {NO_SUCH_UUID} {number} XML public"),
            ("uuid_transfer usage", f"uuid_transfer {caller}"),
            ("uuid_setvar", f"uuid_setvar {caller} {ADOPTED_VARIABLE} true"),
            ("uuid_getvar", f"uuid_getvar {caller} {ADOPTED_VARIABLE}"),
            ("uuid_transfer", f"uuid_transfer {caller} {number} XML public")):
        run.facts.append(f"{label}: {switch.api(cmd).strip()}")


def _talk(switch: EslSwitch, run: _Run, at: float, path: str) -> None:
    """The caller talks: ``path`` plays on the caller's own (a-)leg, as the e2e tests do."""
    run.stages["record"].wait()
    gevent.sleep(at / switch.speed)
    reply = switch.api(f"uuid_broadcast {run.caller_a} {path} aleg")
    run.facts.append("uuid_broadcast: " + _UUID.sub("<uuid>", reply.strip()))


def _press(switch: EslSwitch, run: _Run, stage: str, at: float, digit: str) -> None:
    run.stages[stage].wait()
    gevent.sleep(at / switch.speed)
    try:
        switch.send_dtmf(run.caller_a, digit)
    except Exception as exc:  # the call may be gone: that is part of the scenario
        log.info("scenario.dtmf_not_sent", digit=digit, error=str(exc))


def _agent_outbound(switch: EslSwitch, scenario: Scenario, destinations: list[str], run: _Run,
                    watcher: InboundClient, timeout: float) -> SwitchRecord:
    """An agent calls a customer: the event connection sees caller ID and ``fsr_agent``."""
    dest = destinations[0]
    origination = switch.originate(
        f"loopback/{dest}/agents", variables={
            "origination_caller_id_number": ROUTING_NUMBER,
            "origination_caller_id_name": scenario.caller_name,
            "fsr_agent": "alice", "talk_ms": str(scenario.talk_ms)},
        uuid=run.caller_a)
    result = origination.result(timeout)
    deadline = time.monotonic() + timeout
    while not run._hung_up(run.caller_a) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    record = SwitchRecord(caller_uuid=run.caller_a, number=dest.rsplit("-", 1)[0],
                          caller_number=ROUTING_NUMBER, caller_name=scenario.caller_name)
    create = _first(run.events, "CHANNEL_CREATE", run.caller_a)
    record.agent_legs.append(AgentLeg(
        dial=f"loopback/{dest.rsplit('-', 1)[0]}/agents",
        caller_id_number=(create.get("Caller-Caller-ID-Number") or "") if create else "",
        caller_id_name=(create.get("Caller-Caller-ID-Name") or "") if create else "",
        result=_UUID.sub("<uuid>", result.strip()),
        hangup_cause=_cause(run.events, run.caller_a)))
    record.apps.append(AppRun("variable", f"fsr_agent={create.get('variable_fsr_agent')}"
                              if create else ""))
    return record


def _first(events: list[Event], name: str, uuid: str) -> Event | None:
    return next((e for e in events if e.name == name and e.uuid == uuid), None)


def _cause(events: list[Event], uuid: str) -> str:
    event = _first(events, "CHANNEL_HANGUP_COMPLETE", uuid)
    return (event.get("Hangup-Cause") or "") if event else ""


def build_record(run: _Run, number: str) -> SwitchRecord:
    """The facts of one call, from the switch's own events only."""
    scenario, events = run.scenario, run.events
    record = SwitchRecord(caller_uuid=run.caller_b, number=number,
                          caller_number=scenario.caller_number, caller_name=scenario.caller_name)
    for event in events:
        if event.name == "CHANNEL_EXECUTE" and event.uuid == run.caller_b:
            app, arg = event.get("Application") or "", event.get("Application-Data") or ""
            for dest in run.destinations:  # a bridge names a phone: without this run's id
                arg = arg.replace(f"/{dest}/", f"/{dest.rsplit('-', 1)[0]}/")
            record.apps.append(AppRun(app, _UUID.sub("<uuid>", arg)))
            if app in ("playback", "play_and_get_digits"):
                record.prompts.append(arg.split()[5] if app == "play_and_get_digits" else arg)
        if event.name == "CHANNEL_BRIDGE" and run.caller_b in (
                event.get("Bridge-A-Unique-ID"), event.get("Bridge-B-Unique-ID")):
            other = ({event.get("Bridge-A-Unique-ID"), event.get("Bridge-B-Unique-ID")}
                     - {run.caller_b})
            record.bridged_to.extend(sorted(u for u in other if u))
    for dest in run.destinations:
        record.agent_legs.extend(_agent_legs(run, dest))
    record.hangup_causes = {run.caller_b: _cause(events, run.caller_b),
                            "caller-a": _cause(events, run.caller_a)}
    for leg in record.agent_legs:
        record.hangup_causes[leg.uuid] = leg.hangup_cause
    record.faults = [f"dtmf {e.get('DTMF-Digit')}" for e in events
                     if e.name == "DTMF" and e.uuid == run.caller_b]
    record.faults += [f"voicemail {e.get('VM-Action')} {e.get('VM-User')}@{e.get('VM-Domain')}"
                      for e in events if e.get("Event-Subclass") == "vm::maintenance"
                      and e.get("VM-Action") == "leave-message" and e.uuid == run.caller_b]
    record.faults += [fact for event in events if (fact := _fact(run, event))]
    record.faults += run.facts
    return record


def _fact(run: _Run, event: Event) -> str:
    """What an event says about the contact-center steps, or '' (mostly: nothing)."""
    name, uuid, app = event.name, event.uuid, event.get("Application") or ""
    cause = event.get("Hangup-Cause") or "-"
    if name == "CHANNEL_EXECUTE_COMPLETE" and uuid == run.caller_b and app == "bridge":
        found = " ".join(f"{key}={event.get('variable_' + key) or '-'}" for key in BRIDGE_VARS)
        return _UUID.sub("<uuid>", f"bridge done: {found} hangup={cause}")
    if name == "CHANNEL_EXECUTE_COMPLETE" and uuid == run.caller_b and \
            app == "play_and_get_digits" and event.get("variable_transfer_source"):
        return (f"menu interrupted: read_result={event.get('variable_read_result') or '-'} "
                f"profile={event.get('Caller-Profile-Index')} "
                f"dialplan={event.get('Caller-Dialplan')} hangup={cause}")
    status = event.get("variable_fifo_status") or ""
    if name == "CHANNEL_EXECUTE_COMPLETE" and uuid == run.caller_b and app == "fifo" and \
            status in ("ABORTED", "TIMEOUT"):
        key = event.get("variable_fifo_caller_exit_key") or "-"
        return f"fifo done: status={status} exit_key={key} hangup={cause}"
    action = event.get("FIFO-Action") or ""
    if name == "CUSTOM" and uuid == run.caller_b and action in ("abort", "timeout"):
        return f"fifo {action}"
    if name == "CHANNEL_EXECUTE" and uuid == run.caller_a and app != "park":
        return f"caller-a {app} {event.get('Application-Data') or ''}"
    if name == "CHANNEL_CREATE" and run._agent_leg(event) and event.get("Other-Type"):
        return f"agent leg Other-Type={event.get('Other-Type')}"
    return ""


def _agent_legs(run: _Run, dest: str) -> list[AgentLeg]:
    create = next((e for e in run.events if e.name == "CHANNEL_CREATE"
                   and e.get("Channel-Name") == f"loopback/{dest}-a"), None)
    job = next((e for e in run.events if e.name == "BACKGROUND_JOB"
                and f"loopback/{dest}/" in (e.get("Job-Command-Arg") or "")), None)
    if create is None and job is None:
        return []
    phone_side = next((e for e in run.events if e.name == "CHANNEL_CREATE"
                       and e.get("Channel-Name") == f"loopback/{dest}-b"), create)
    uuid = (create.uuid if create else "") or ""
    return [AgentLeg(
        dial=f"loopback/{dest.rsplit('-', 1)[0]}/agents",
        caller_id_number=(phone_side.get("Caller-Caller-ID-Number") or "") if phone_side else "",
        caller_id_name=(phone_side.get("Caller-Caller-ID-Name") or "") if phone_side else "",
        result=_UUID.sub("<uuid>", (job.body if job else "").strip()),
        uuid=uuid, hangup_cause=_cause(run.events, uuid))]


_PORT = re.compile(r"127\.0\.0\.1:[0-9]+")


def comparable(record: SwitchRecord, suffix_free: bool = True) -> dict[str, Any]:
    """``record.normalised()`` without what differs between runs: ports, numbers, queue ids."""
    data = record.normalised()
    data.pop("number", None)
    for app in data["apps"]:
        app["arg"] = re.sub(r"fsr_q_[a-z0-9]+", "<queue>", _PORT.sub("<target>", app["arg"]))
        app.pop("raw_arg", None)
    return data
