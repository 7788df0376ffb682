"""Benchmarks on the real FreeSWITCH (``python -m bench --real`` / ``--real-only``).

One switch (fsrouter.testing.realswitch: the shipped ``freeswitch_conf/`` plus the test
overlay) serves, one after another, three applications on the outbound socket (bench/apps.py):
fsrouter (the real daemon), ``rawfloor`` (a bare gevent StreamServer) and greenswitch as
shipped; then the same flow written as XML dialplan with mod_fifo.

The flow (one call): a loopback caller dials the hotline; the application answers and plays
the menu; this process presses ``1`` (``uuid_send_dtmf`` on the caller's leg as soon as the
switch reports the menu running); the caller waits in mod_fifo with hold music while the
application originates one scripted phone that answers at once, mod_fifo bridges them, and
the phone hangs up after ``talk_ms``.

Every figure comes from the switch: an inbound event connection here is subscribed to
CHANNEL_EXECUTE, CHANNEL_HANGUP_COMPLETE, BACKGROUND_JOB and ``CUSTOM fifo::info``.
Set-up latency is the ``Event-Date-Timestamp`` (µs, the switch's clock) of the first
application the daemon runs on the routed leg minus that of the leg's ``socket``
CHANNEL_EXECUTE. The switch stamps events from its timer thread's clock, which ticks every
20 ms by default (``runtime.microseconds_per_tick``, src/switch_core.c; read by
``switch_micro_time_now()``, src/switch_time.c). That is what an operator runs, so it is
the default here; ``--fine-clock`` runs the switch with ``1ms-timer`` (stamps, and the
latencies, to 1 ms), which also makes the switch wake every millisecond: measured, its CPU per
call rose from ~28 to ~45 ms and it overloaded at a third of the rate, so the other figures of
such a run are not the stock switch's.
The switch's CPU is utime + stime of its process from ``/proc``.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import gevent
import gevent.event
import yaml

from bench import scenario
from bench.driver import AppProcess, open_loop
from bench.stats import StepFigures, median_of, rounded, spread_of, summary
from fsrouter.esl import Event, InboundClient, Job
from fsrouter.testing.phones import phone_number
from fsrouter.testing.realswitch import RealSwitch, quote_originate_value

APPS = {"fsrouter": "fsrouter", "floor": "rawfloor", "greenswitch": "greenswitch"}
XML_CONTEXT = "bench_xml"
MENU_APP = "play_and_get_digits"
EVENTS = ["CHANNEL_EXECUTE", "CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB", "CUSTOM",
          "fifo::info"]
# The switch's event clock ticks every 20 ms unless told otherwise (see the module docstring).
FINE_CLOCK = {"1ms-timer": "true"}
CALL_GRACE_S = 30.0  # a call not over this long after the last one was placed is lost


@dataclass(frozen=True)
class RealSettings:
    apps: tuple[str, ...] = tuple(APPS)
    rates: tuple[float, ...] = (10.0, 30.0)
    latency_s: float = 10.0  # seconds of calls per latency rate
    ramp_start: float = 10.0
    ramp_factor: float = 1.5
    ramp_s: float = 6.0
    ramp_steps: int = 8
    p99_limit_ms: float = 250.0
    cpu_rate: float = 10.0  # the dialplan comparison: this rate, cpu_calls calls
    cpu_calls: int = 100
    warm_calls: int = 5
    talk_ms: int = 1000
    idle_s: float = 3.0  # the switch's own idle CPU, measured once
    pin: bool = False  # the switch has threads of its own: leave placement to the kernel
    fine_clock: bool = False  # 1ms-timer: stamps to 1 ms, but a switch that costs more


QUICK = RealSettings(rates=(10.0,), latency_s=4.0, ramp_s=3.0, ramp_steps=4, cpu_calls=40)


# --- one call, as the switch reports it ---------------------------------------------------


@dataclass
class RealCall:
    """One caller. ``caller`` is the loopback a-leg we originate; ``routed`` its b-leg, the
    channel the dialplan hands to the application."""

    caller: str
    placed: float
    job: Job | None = None
    routed: str = ""
    socket_us: int = 0
    first_app: str = ""
    first_us: int = 0
    menu: bool = False
    queued: bool = False
    bridged: bool = False
    ended: bool = False
    cause: str = ""
    agent_job: Job | None = None

    @property
    def setup_ms(self) -> float | None:
        """Socket CHANNEL_EXECUTE to the first application the daemon runs (switch clock)."""
        if not (self.socket_us and self.first_us):
            return None
        return (self.first_us - self.socket_us) / 1000

    def on_execute(self, app: str, stamp: int) -> None:
        if app == "socket":
            self.socket_us = self.socket_us or stamp
        elif self.socket_us and not self.first_app:
            self.first_app, self.first_us = app, stamp
        if app == MENU_APP:
            self.menu = True

    @property
    def completed(self) -> bool:
        """Placed, menu played, bridged to the phone, over with a normal hang-up."""
        return (self.menu and self.bridged and self.ended and self.cause == "NORMAL_CLEARING"
                and _job_ok(self.job))


def _job_ok(job: Job | None) -> bool:
    if job is None:
        return False
    try:
        return job.wait(0).strip().startswith("+OK")
    except Exception:  # not finished, or failed: not a good call
        return False


class Caller:
    """Places calls and records what the switch reports about them (an inbound connection).

    It plays the caller's part: presses the key when the menu runs. For the dialplan variant
    (``dial_agents``) it also starts the phone's leg when mod_fifo reports the caller queued,
    with the originate fsrouter sends (``Flow.leg_command``).
    """

    def __init__(self, switch: RealSwitch, flow: scenario.Flow, digit: str) -> None:
        host, port, password = switch.esl_endpoint()
        self.flow = flow
        self.digit = digit
        self.calls: dict[str, RealCall] = {}
        self.by_routed: dict[str, RealCall] = {}
        self.dial_agents = False
        self.progress = gevent.event.Event()
        self.client = InboundClient(host, port, password, events=EVENTS)
        self.client.on_event(self._on_event)
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    # events (in the connection's dispatcher: record, never block)

    def _on_event(self, event: Event) -> None:
        name = event.name
        if name == "CHANNEL_EXECUTE":
            self._on_execute(event)
        elif name == "CUSTOM" and event.subclass == "fifo::info":
            self._on_fifo(event)
        elif name == "CHANNEL_HANGUP_COMPLETE":
            call = self.by_routed.get(event.uuid or "")
            if call is not None:
                call.ended, call.cause = True, event.get("Hangup-Cause") or ""
                self.progress.set()

    def _routed_call(self, event: Event) -> RealCall | None:
        uuid = event.uuid or ""
        call = self.by_routed.get(uuid)
        if call is None and uuid not in self.calls:
            call = self.calls.get(event.get("variable_other_loopback_leg_uuid") or "")
            if call is not None:
                call.routed = uuid
                self.by_routed[uuid] = call
        return call

    def _on_execute(self, event: Event) -> None:
        call = self._routed_call(event)
        if call is None:
            return
        app = event.get("Application") or ""
        call.on_execute(app, int(event.get("Event-Date-Timestamp") or 0))
        if app == MENU_APP:
            gevent.spawn(self._press, call)

    def _on_fifo(self, event: Event) -> None:
        call = self.by_routed.get(event.uuid or "")
        if call is None:
            return
        action = event.get("FIFO-Action")
        if action == "push":
            call.queued = True
            if self.dial_agents:
                gevent.spawn(self._dial_agent, call, event.get("Caller-Caller-ID-Name") or "")
        elif action == "bridge-caller-start":
            call.bridged = True

    def _press(self, call: RealCall) -> None:
        try:
            self.client.api(f"uuid_send_dtmf {call.caller} {self.digit}")
        except Exception:  # the call is gone already: it will count as not completed
            pass

    def _dial_agent(self, call: RealCall, caller_name: str) -> None:
        dial, ring_timeout = self.flow.phones[self.digit][0]
        command = self.flow.leg_command(self.digit, call.routed, caller_name, dial,
                                        ring_timeout, str(uuidlib.uuid4()))
        try:
            call.agent_job = self.client.bgapi(command)
        except Exception:
            pass

    # placing calls

    def place(self, number: str, context: str) -> RealCall:
        call = RealCall(str(uuidlib.uuid4()), time.perf_counter())
        self.calls[call.caller] = call
        variables = {"origination_uuid": call.caller,
                     "origination_caller_id_number": scenario.CALLER_NUMBER,
                     "origination_caller_id_name": scenario.CALLER_NAME,
                     "originate_timeout": "30"}
        block = ",".join(f"{k}={quote_originate_value(v, k)}" for k, v in variables.items())
        call.job = self.client.bgapi(f"originate {{{block}}}loopback/{number}/{context} &park()")
        return call

    def place_at_rate(self, rate: float, count: int, context: str = "public") -> list[RealCall]:
        return open_loop(rate, count, lambda: self.place(scenario.ROUTING_NUMBER, context))

    def wait_over(self, calls: list[RealCall], timeout: float) -> bool:
        """Until every call ended (or its originate failed), at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not all(c.ended or _job_failed(c.job) for c in calls):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.progress.clear()
            self.progress.wait(min(left, 0.5))
        return True


def _job_failed(job: Job | None) -> bool:
    if job is None:
        return True
    try:
        return not job.wait(0).strip().startswith("+OK")
    except Exception:
        return False  # still running


# --- one step: calls at a rate ------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Step(StepFigures):
    rate: float
    calls: list[RealCall]
    placed_s: float
    wall_s: float
    switch_cpu_s: float
    app_cpu_s: float | None
    own_cpu_s: float  # this process: placing calls, reading events, pressing keys
    ended_in_time: bool
    latency: bool = True  # False for the dialplan: no socket, no set-up latency

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.counts(),
            "switch_cpu_ms_per_call": self.ms_per_call(self.switch_cpu_s),
            "switch_cpu_percent": rounded(100 * self.switch_cpu_s / self.wall_s, 1),
            "caller_cpu_percent": rounded(100 * self.own_cpu_s / self.wall_s, 1),
            "all_over_in_time": self.ended_in_time,
            "causes": dict(Counter(c.cause or "not ended" for c in self.calls)),
        }
        if self.app_cpu_s is not None:
            out["app_cpu_ms_per_call"] = self.ms_per_call(self.app_cpu_s)
        if self.latency:
            out["setup_ms"] = summary(self.setup_ms)
            out["first_apps"] = dict(Counter(c.first_app or "none" for c in self.calls))
        return out


def run_step(caller: Caller, switch_pid: int, app: AppProcess | None, rate: float, count: int,
             context: str = "public") -> Step:
    """Place ``count`` calls at ``rate`` and wait until they are over (or lost)."""
    cpu, app_cpu = process_cpu(switch_pid), app.cpu_seconds() if app else None
    own, began = time.process_time(), time.perf_counter()
    calls = caller.place_at_rate(rate, count, context)
    placed = time.perf_counter() - began
    over = caller.wait_over(calls, CALL_GRACE_S)
    wall = time.perf_counter() - began
    gevent.sleep(0.2)  # the last originate results and hang-up events
    return Step(rate, calls, placed, wall, process_cpu(switch_pid) - cpu,
                app.cpu_seconds() - app_cpu if app and app_cpu is not None else None,
                time.process_time() - own, over, latency=context == "public")


def ramp(caller: Caller, switch_pid: int, app: AppProcess,
         settings: RealSettings) -> dict[str, Any]:
    """Raise the rate until a call is lost or fails, or p99 set-up passes the limit."""
    return ramp_with(lambda rate, count: run_step(caller, switch_pid, app, rate, count),
                     settings)


def ramp_with(run: Callable[[float, int], Step], settings: RealSettings,
              summarise: Callable[[Step], dict[str, Any]] = Step.summary) -> dict[str, Any]:
    """:func:`ramp` with the steps run by ``run(rate, count)`` (bench/twonodes.py's too)."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    rate, stop = settings.ramp_start, "steps"
    for _ in range(settings.ramp_steps):
        step = run(rate, max(int(rate * settings.ramp_s), 2))
        info = summarise(step)
        steps.append(info)
        if step.completed < len(step.calls):
            stop = "calls lost or failed"
            break
        if step.p99_ms > settings.p99_limit_ms:
            stop = "p99 over the limit"
            break
        best = info
        rate = round(rate * settings.ramp_factor, 1)
    return {"steps": steps, "sustained_calls_per_s": best["placed_per_s"] if best else None,
            "stopped_by": stop}


# --- the applications and the dialplan ------------------------------------------------------


def bench_config(workdir: Path, esl_port: int, talk_ms: int) -> Path:
    """fsrouter's configuration for the real switch: the benchmark's hotline, key 1 rings one
    scripted phone that answers at once and hangs up after ``talk_ms``."""
    config = scenario.fsrouter_config(workdir / "fsrouter.db", max_calls=5000)
    config["switch"] = {"host": "127.0.0.1", "port": esl_port,
                        "password_env": scenario.PASSWORD_ENV}
    config["users"]["anna"]["phones"][0]["number"] = phone_number("hangup", talk_ms, 1)
    config["policies"]["oncall"]["levels"][0]["targets"] = [{"user": "anna"}]
    path = workdir / "fsrouter.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def dialplan_xml(flow: scenario.Flow, digit: str) -> str:
    """The same flow as XML dialplan: answer, the same menu, the key picks the extension
    (``transfer``), the same ``set``s and ``fifo ... in`` as fsrouter sends; the phone's leg is
    started by the benchmark with fsrouter's originate (see :class:`Caller`)."""
    queue = [f'<action application={quoteattr(app)} data={quoteattr(arg)}/>'
             for app, arg in flow.queue_args(digit)]
    return f"""
<context name="{XML_CONTEXT}">
  <extension name="bench-hotline">
    <condition field="destination_number" expression="^\\+?[0-9]{{4,15}}$">
      <action application="answer"/>
      <action application="{MENU_APP}" data={quoteattr(flow.menu_arg)}/>
      <action application="transfer" data="choice-${{{flow.menu_variable}}} XML {XML_CONTEXT}"/>
    </condition>
  </extension>
  <extension name="bench-option-{digit}">
    <condition field="destination_number" expression="^choice-{digit}$">
      {"".join(queue)}
      <action application="hangup" data="NORMAL_CLEARING"/>
    </condition>
  </extension>
  <extension name="bench-no-choice">
    <condition field="destination_number" expression="^choice-">
      <action application="hangup" data="NORMAL_CLEARING"/>
    </condition>
  </extension>
</context>
"""


def install_dialplan(switch: RealSwitch, flow: scenario.Flow, digit: str) -> None:
    """Add the dialplan context to the running switch's configuration and ``reloadxml``."""
    path = switch.workdir / "conf" / "freeswitch.xml"
    text = path.read_text("utf-8")
    text = re.sub(rf'\s*<context name="{XML_CONTEXT}">.*?</context>\n', "", text, flags=re.S)
    anchor = '<section name="dialplan">'
    path.write_text(text.replace(anchor, anchor + dialplan_xml(flow, digit), 1), "utf-8")
    reply = switch.api("reloadxml")
    if "+OK" not in reply:
        raise RuntimeError(f"reloadxml: {reply.strip()}")


def switch_idle_cpu(pid: int, seconds: float) -> float:
    cpu = process_cpu(pid)
    gevent.sleep(seconds)
    return rounded(100 * (process_cpu(pid) - cpu) / seconds, 2)


@dataclass
class Bench:
    """One switch, the Caller, and a workspace for the applications."""

    settings: RealSettings
    root: Path
    switch: RealSwitch = field(init=False)
    caller: Caller = field(init=False)
    flow: scenario.Flow = field(init=False)
    config: Path = field(init=False)

    def start(self, with_caller: bool = True) -> None:
        """Start the switch, write fsrouter's configuration and the Flow, add the dialplan;
        and open the Caller unless ``with_caller`` is False (see :meth:`open_caller`)."""
        params = FINE_CLOCK if self.settings.fine_clock else None
        self.switch = RealSwitch(self.root / "freeswitch", switch_params=params)
        self.switch.start()
        assert self.switch.ports is not None
        self.config = bench_config(self.root, self.switch.ports.esl, self.settings.talk_ms)
        self.flow = scenario.flow_from_config(self.config)
        self.flow.save(self.root / "flow.json")
        install_dialplan(self.switch, self.flow, scenario.COMPLETE_DIGIT)
        if with_caller:
            self.caller = self.open_caller()

    def open_caller(self) -> Caller:
        """A new event connection that places calls and records them."""
        return Caller(self.switch, self.flow, scenario.COMPLETE_DIGIT)

    def stop(self) -> None:
        if getattr(self, "caller", None) is not None:
            self.caller.close()
        if getattr(self, "switch", None) is not None:
            self.switch.stop(grace=0)

    @property
    def pid(self) -> int:
        assert self.switch.pid is not None
        return self.switch.pid

    def start_app(self, kind: str) -> AppProcess:
        env = {**os.environ, scenario.PASSWORD_ENV: self.switch.password,
               "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        app = AppProcess(APPS[kind], self.config, self.root / "flow.json", env,
                         self.settings.pin)
        self.switch.route_to(app.port)
        return app

    def measure_app(self, kind: str) -> dict[str, Any]:
        """Latency at each rate, then the ramp, on one application process."""
        settings = self.settings
        app = self.start_app(kind)
        out: dict[str, Any] = {"process": APPS[kind]}
        try:
            warm = run_step(self.caller, self.pid, app, 5.0, settings.warm_calls)
            out["warm_up_completed"] = f"{warm.completed}/{len(warm.calls)}"
            out["latency"] = {}
            for rate in settings.rates:
                step = run_step(self.caller, self.pid, app, rate,
                                max(int(rate * settings.latency_s), 2))
                out["latency"][str(int(rate))] = step.summary()
            out["throughput"] = ramp(self.caller, self.pid, app, settings)
        finally:
            out["exit_code"] = app.stop()
            self.switch.route_to(1)  # nobody: a late call takes the dead-daemon fallback
        return out

    def measure_dialplan(self) -> dict[str, Any]:
        """The same flow as XML dialplan with mod_fifo, at the CPU comparison's rate."""
        settings = self.settings
        self.caller.dial_agents = True
        try:
            run_step(self.caller, self.pid, None, 5.0, settings.warm_calls, XML_CONTEXT)
            step = run_step(self.caller, self.pid, None, settings.cpu_rate, settings.cpu_calls,
                            XML_CONTEXT)
        finally:
            self.caller.dial_agents = False
        return step.summary()

    def measure_cpu(self, kind: str) -> dict[str, Any]:
        """The switch's CPU per call for one application at the comparison's rate."""
        app = self.start_app(kind)
        try:
            run_step(self.caller, self.pid, app, 5.0, self.settings.warm_calls)
            step = run_step(self.caller, self.pid, app, self.settings.cpu_rate,
                            self.settings.cpu_calls)
        finally:
            app.stop()
            self.switch.route_to(1)
        return step.summary()


def run_real(settings: RealSettings, say: Any = print) -> dict[str, Any]:
    """Everything on one real switch; the ``real_switch`` part of bench/results.json."""
    from bench.run import machine

    out: dict[str, Any] = {"machine": machine(), "settings": asdict(settings), "apps": {}}
    with tempfile.TemporaryDirectory(prefix="fsrouter-realbench-") as tmp:
        bench = Bench(settings, Path(tmp))
        try:
            bench.start()
            out["switch"] = {"version": bench.switch.api("version").strip(),
                             "clock_tick_ms": 1 if settings.fine_clock else 20,
                             "ready_seconds": rounded(bench.switch.ready_seconds),
                             "idle_cpu_percent": switch_idle_cpu(bench.pid, settings.idle_s)}
            for kind in settings.apps:
                say(f"real switch: {kind} ...")
                out["apps"][kind] = bench.measure_app(kind)
            say("real switch: CPU per call, fsrouter against XML dialplan with mod_fifo ...")
            out["cpu"] = {"fsrouter": bench.measure_cpu("fsrouter"),
                          "dialplan": bench.measure_dialplan()}
        finally:
            bench.stop()
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    out["ratios"] = ratios(out)
    return out


def run_real_repeated(settings: RealSettings, repeats: int,
                      say: Any = print) -> dict[str, Any]:
    """``run_real`` ``repeats`` times, each on a fresh switch. The figures are the median of
    the runs (leaf by leaf, ratios included), ``spread`` holds the same figures as
    ``[min, max]``, and ``runs`` every run whole (its machine's load at start and end)."""
    runs = []
    for number in range(1, repeats + 1):
        say(f"real switch: run {number} of {repeats} ...")
        runs.append(run_real(settings, say))
    if repeats == 1:
        return runs[0]
    out: dict[str, Any] = median_of(runs)
    out["settings"], out["switch"] = runs[0]["settings"], runs[0].get("switch", {})
    out["repeats"] = repeats
    out["spread"] = spread_of(runs)
    out["runs"] = runs
    return out


def ratios(real: dict[str, Any]) -> dict[str, Any]:
    """fsrouter against the floor, greenswitch and the dialplan, on the headline figures."""
    def get(kind: str, *path: str) -> Any:
        data: Any = real["apps"].get(kind)
        for key in path:
            data = data.get(key) if isinstance(data, dict) else None
        return data

    def ratio(a: Any, b: Any) -> float | None:
        return rounded(a / b) if isinstance(a, int | float) and isinstance(b, int | float) \
            and b else None

    out: dict[str, Any] = {}
    first = str(int(real["settings"]["rates"][0]))
    figures = {f"setup_median_at_{first}": ("latency", first, "setup_ms", "median"),
               f"setup_p99_at_{first}": ("latency", first, "setup_ms", "p99"),
               "sustained_calls_per_s": ("throughput", "sustained_calls_per_s")}
    for name, path in figures.items():
        for other in ("floor", "greenswitch"):
            out[f"{name}_fsrouter/{other}"] = ratio(get("fsrouter", *path), get(other, *path))
    cpu = real.get("cpu") or {}
    out["switch_cpu_per_call_fsrouter/dialplan"] = ratio(
        (cpu.get("fsrouter") or {}).get("switch_cpu_ms_per_call"),
        (cpu.get("dialplan") or {}).get("switch_cpu_ms_per_call"))
    return out
