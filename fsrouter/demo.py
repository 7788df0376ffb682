"""``fsrouter demo``: the daemon and the built-in simulator, end to end, no switch needed.

It validates the shipped example configuration, starts the simulator (a FreeSWITCH stand-in
running ten times faster than real time) and the daemon on free loopback ports with a
temporary SQLite database, places scripted calls, prints a timeline per call and a summary of
what the database holds, and stops the daemon the way SIGTERM would. It exits 0 only when
every call ended as the script expects.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import gevent

from fsrouter.config import Config, ConfigError, load_config
from fsrouter.config.schema import CallRoutingNumber

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"
# A Wednesday morning: the on-call rotations of the example have someone for every option.
MOMENT = datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
CALLER = "+4915112345678"
SPEED = 10.0


@dataclass
class Step:
    name: str
    expect: str
    run: Callable[[], str]


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(config_path: Path | None = None) -> int:
    """Run the demo; 0 only when every scripted call ended as expected."""
    from fsrouter.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE

    path = config_path or EXAMPLE
    if not path.is_file():
        _say(f"demo: configuration {path} not found (pass --config)")
        return EXIT_USAGE
    from fsrouter.sim.driver import SimSwitch

    with tempfile.TemporaryDirectory(prefix="fsrouter-demo-") as tmp:
        switch = SimSwitch(Path(tmp) / "sim", speed=SPEED)
        # The example reads the Event Socket password from this variable.
        os.environ["FSROUTER_ESL_PASSWORD"] = switch.password
        try:
            config = load_config(path)
        except ConfigError as error:
            for issue in error.issues:
                print(issue, file=sys.stderr)
            return EXIT_USAGE
        _say(f"config  {path.name}: valid ({len(config.numbers)} numbers, "
             f"{len(config.users)} users, {len(config.policies)} escalation policies)")
        path = _demo_copy(path, Path(tmp))
        switch.start()
        # Strict like the real switch: a prompt file that does not exist is FILE NOT FOUND.
        switch.sim.known_files = set()  # type: ignore[attr-defined]
        try:
            ok = _run_calls(path, load_config(path), switch, Path(tmp))
        finally:
            switch.stop()
    return EXIT_OK if ok else EXIT_ERROR


def _demo_copy(path: Path, tmp: Path) -> Path:
    """The configuration with voicemail recordings going to the demo's temporary directory."""
    import yaml

    data = yaml.safe_load(path.read_text("utf-8"))
    data["voicemail"] = {**(data.get("voicemail") or {}), "directory": str(tmp / "voicemail")}
    data["smtp"] = {**(data.get("smtp") or {}), "host": "127.0.0.1", "port": 9}  # discard
    # Prompts are rendered here at start (espeak-ng); the simulator plays those files.
    data["prompts"] = {**(data.get("prompts") or {}), "directory": str(tmp / "prompts")}
    copy = tmp / "config.yaml"
    copy.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return copy


def _run_calls(path: Path, config: Config, switch: object, tmp: Path) -> bool:
    from fsrouter.daemon import start_daemon
    from fsrouter.testing.watcher import Watcher

    began = time.monotonic()
    daemon = start_daemon(path, database_url=f"sqlite:///{tmp}/demo.db", listen_port=0,
                          now=lambda: MOMENT,
                          switch_endpoint=switch.esl_endpoint())  # type: ignore[attr-defined]
    _say_prompts(load_config(path))
    _say(f"daemon  ready on 127.0.0.1:{daemon.server.port} in "
         f"{1000 * (time.monotonic() - began):.0f} ms; simulator at {SPEED:.0f}x real time; "
         f"calls routed as at {MOMENT:%a %Y-%m-%d %H:%M %Z}")
    switch.route_to(daemon.server.port)  # type: ignore[attr-defined]
    watcher = Watcher(switch.esl_endpoint())  # type: ignore[attr-defined]
    hotline = next(n for n in config.numbers if isinstance(n, CallRoutingNumber))
    script = _Script(config, switch, watcher, hotline)
    results = []
    try:
        for step in script.steps():
            _say(f"\ncall    {step.name}")
            outcome = step.run()
            verdict = "ok" if outcome == step.expect else f"UNEXPECTED (wanted {step.expect})"
            _say(f"        -> {outcome}: {verdict}")
            results.append(outcome == step.expect)
    finally:
        watcher.close()
        _summary()
        daemon.request_stop("demo finished")
        daemon.shutdown(drain_seconds=5)
        _say("daemon  drained and stopped")
    _say(f"\n{sum(results)}/{len(results)} calls ended as expected")
    return all(results)


def _say_prompts(config: Config) -> None:
    from fsrouter import prompts

    rows = prompts.entries(config)
    spoken = [row for row in rows if row.kind == "tts"]
    _say(f"prompts {len(spoken)} spoken prompts rendered by {config.tts.engine} into "
         f"{config.prompts.directory} (8 and 16 kHz), "
         f"{sum(row.rendered for row in spoken)} ready; e.g.")
    for row in spoken[:3]:
        _say(f"        {row.key} ({row.language}): \"{row.text}\"")


class _Script:
    """The scripted calls: each places a caller and follows it to the end."""

    def __init__(self, config: Config, switch: object, watcher: object,
                 hotline: CallRoutingNumber) -> None:
        self.config = config
        self.switch = switch
        self.watcher = watcher
        self.hotline = hotline

    def steps(self) -> list[Step]:
        option = self.hotline.options[0]
        return [
            Step(f"{self.hotline.number}: key {option.digit} ({option.label}); first phone does "
                 "not answer, second is busy, third answers and presses 1", "bridged",
                 lambda: self._hotline_call(option.digit)),
            Step(f"{self.hotline.number}: caller hangs up during the menu", "hangup_in_menu",
                 self._hang_up_in_menu),
            Step(f"{self._agent_number('eva')}: Eva is logged in and answers", "bridged",
                 lambda: self._agent_call("eva", "hangup-3000-eva")),
            Step(f"{self._agent_number('felix')}: Felix is logged in but on another call: "
                 "busy tone", "busy_tone", self._busy_agent_call),
            Step(f"{self._agent_number('greta')}: Greta is logged out: the caller leaves a "
                 "voicemail", "voicemail", self._voicemail_call),
            Step(f"{self._queue_number()}: Eva called this customer earlier (learned from the "
                 "switch's events); the customer calls the sales line back and reaches Eva",
                 "bridged:eva", self._callback_call),
            Step(f"{self._unassigned()}: number not in service", "UNALLOCATED_NUMBER",
                 self._unassigned_call),
        ]

    # -- contact center ---------------------------------------------------------------------

    def _agent_number(self, agent: str) -> str:
        return next(n.number for n in self.config.numbers
                    if n.type == "agent" and n.agent == agent)  # type: ignore[union-attr]

    def _queue_number(self) -> str:
        return next(n.number for n in self.config.numbers if n.type == "queue")

    def _phone(self, agent: str) -> str:
        return f"user/{self.config.users[agent].extension}"

    def _login(self, *agents: str) -> None:
        from fsrouter.store import queries

        for agent in agents:  # what `fsrouter agents login` or the feature code *21 does
            queries.set_presence(agent, datetime.now(MOMENT.tzinfo), state="logged_in")

    def _agent_call(self, agent: str, behaviour: str) -> str:
        self._login(agent)
        self.switch.sim.register_phone(self._phone(agent), behaviour)  # type: ignore
        caller, b_leg = self._place(self._agent_number(agent))
        return self._finished(b_leg).outcome or "?"

    def _busy_agent_call(self) -> str:
        self._login("felix")
        self.switch.sim.register_phone(self._phone("felix"), "answer-60000-felix")  # type: ignore
        # Felix's own call: the daemon's event connection sees his phone busy.
        own = self.switch.originate(  # type: ignore[attr-defined]
            self._phone("felix"), "&park()", {"fsr_agent": "felix", "fsr_kind": "agent"})
        self._wait_busy("felix", True)
        try:
            caller, b_leg = self._place(self._agent_number("felix"))
            return self._finished(b_leg).outcome or "?"
        finally:
            self.switch.hangup(own.uuid)  # type: ignore[attr-defined]
            self._wait_busy("felix", False)

    def _wait_busy(self, agent: str, busy: bool) -> None:
        from fsrouter.store import queries

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = queries.get_presence(agent)
            if row is not None and row.busy == busy:
                return
            gevent.sleep(0.05)
        raise TimeoutError(f"{agent} never became {'busy' if busy else 'free'}")

    def _voicemail_call(self) -> str:
        from fsrouter.store.models import Voicemail

        caller, b_leg = self._place(self._agent_number("greta"))
        self.watcher.wait("CHANNEL_EXECUTE", timeout=30,  # type: ignore[attr-defined]
                          **{"Unique-ID": b_leg, "Application": "record"})
        gevent.sleep(0.5)  # the caller talks (5 s in switch time)
        self.switch.hangup(caller)  # type: ignore[attr-defined]
        outcome = self._finished(b_leg).outcome or "?"
        for message in Voicemail.select().where(Voicemail.call_uuid == b_leg):
            _say(f"        voicemail #{message.id} for {message.user_id}: "
                 f"{message.duration_s:.1f} s in {Path(message.path).name}; mail queued")
        return outcome

    def _callback_call(self) -> str:
        from fsrouter.store import queries

        customer = "+4915191100050"  # a scripted phone that answers
        self._login("eva", "felix", "greta")
        self.switch.sim.register_phone(self._phone("eva"), "hangup-3000-eva")  # type: ignore
        # Eva calls the customer from her phone, showing her direct number.
        out = self.switch.originate(  # type: ignore[attr-defined]
            f"loopback/{customer}/agents", "&park()",
            {"fsr_agent": "eva", "origination_caller_id_number": self._agent_number("eva")})
        deadline = time.monotonic() + 10
        while queries.lookup_two_way(customer, datetime.now(MOMENT.tzinfo)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the 2-way mapping was not learned")
            gevent.sleep(0.05)
        self.switch.hangup(out.uuid)  # type: ignore[attr-defined]
        self._wait_busy("eva", False)
        _say(f"        learned: {customer} -> eva (via {self._agent_number('eva')})")
        caller = str(uuidlib.uuid4())
        self.switch.place_call(self._queue_number(), customer, "Kunde", uuid=caller)  # type: ignore
        b_leg = self.watcher.wait(  # type: ignore[attr-defined]
            "CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
        record = self._finished(b_leg)
        return f"{record.outcome}:{record.bridged_to_user}"

    def _place(self, number: str) -> tuple[str, str]:
        caller = str(uuidlib.uuid4())
        self.switch.place_call(number, CALLER, "Erika Mustermann", uuid=caller)  # type: ignore
        b_leg = self.watcher.wait(  # type: ignore[attr-defined]
            "CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
        return caller, b_leg

    def _wait_menu(self, b_leg: str) -> None:
        self.watcher.wait("CHANNEL_EXECUTE", **{  # type: ignore[attr-defined]
            "Unique-ID": b_leg, "Application": "play_and_get_digits"})

    def _hotline_call(self, digit: int) -> str:
        from fsrouter.routing.escalation import plan_escalation
        from fsrouter.store import queries

        option = next(o for o in self.hotline.options if o.digit == digit)
        plan = plan_escalation(self.config.policies[option.policy], self.config.users,
                               self.config.schedules, MOMENT)
        for attempt, behaviour in zip(plan.attempts, ("noanswer-d1", "busy-d2",
                                                      "press-1-1500-d3"), strict=False):
            dial = self.config.defaults.dial_string(attempt.phone)
            self.switch.sim.register_phone(dial, behaviour)  # type: ignore[attr-defined]
        caller, b_leg = self._place(self.hotline.number)
        self._wait_menu(b_leg)
        gevent.sleep(0.05)
        self.switch.send_dtmf(caller, str(digit))  # type: ignore[attr-defined]
        self.watcher.wait("CHANNEL_BRIDGE", timeout=60,  # type: ignore[attr-defined]
                          **{"Bridge-B-Unique-ID": b_leg})
        gevent.sleep(0.2)
        self.switch.hangup(b_leg)  # type: ignore[attr-defined]
        record = self._finished(b_leg)
        for attempt in queries.attempts_for_call(b_leg):
            _say(f"        attempt {attempt.seq + 1}: {attempt.user_id} {attempt.phone} "
                 f"-> {attempt.result} ({attempt.cause})")
        return record.outcome or "?"

    def _hang_up_in_menu(self) -> str:
        caller, b_leg = self._place(self.hotline.number)
        self._wait_menu(b_leg)
        self.switch.hangup(b_leg)  # type: ignore[attr-defined]
        return self._finished(b_leg).outcome or "?"

    def _unassigned(self) -> str:
        return next(n.number for n in self.config.numbers if n.type == "unassigned")

    def _unassigned_call(self) -> str:
        caller, b_leg = self._place(self._unassigned())
        done = self.watcher.wait("CHANNEL_HANGUP_COMPLETE",  # type: ignore[attr-defined]
                                 timeout=30, **{"Unique-ID": b_leg})
        return done.get("Hangup-Cause") or "?"

    def _finished(self, call_uuid: str) -> object:
        from fsrouter.store import queries

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            record = queries.get_call(call_uuid) if _exists(call_uuid) else None
            if record is not None and record.ended_at is not None:
                return record
            gevent.sleep(0.05)
        raise TimeoutError(f"call {call_uuid} did not end")


def _exists(call_uuid: str) -> bool:
    from fsrouter.store.models import CallRecord

    return CallRecord.select().where(CallRecord.call_uuid == call_uuid).exists()


def _summary() -> None:
    from fsrouter.store.models import CallRecord, Incident

    _say("\nincidents")
    for incident in Incident.select().order_by(Incident.id):
        _say(f"  #{incident.id} {incident.number} option {incident.option_digit} "
             f"({incident.option_label}): {incident.state}, accepted by "
             f"{incident.accepted_by or '-'}, caller {incident.caller_number}")
    _say("call records")
    for call in CallRecord.select().order_by(CallRecord.started_at):
        _say(f"  {call.number} {call.route_type:<13} outcome {call.outcome:<18} "
             f"incident {call.incident_id or '-'}")
