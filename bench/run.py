"""``python -m bench [--quick]``: every measurement in one run, a table, bench/results.json.

For each application (fsrouter, floor, greenswitch; see bench/apps.py) on the same simulator
and the same call script (bench/scenario.py):

1. setup latency: median and p99 from the switch opening the socket to the ``sendmsg`` that
   answers, at 20, 100 and 300 new complete calls per second;
2. throughput: the offered rate is raised step by step until a step's p99 setup latency
   passes 250 ms or a call fails to complete; also the application's CPU time per complete
   call, which gives what one core sustains however busy the simulator is;
3. waiting callers: RSS slope over 0 -> 5,000 callers waiting in the queue (their phone
   ringing), idle CPU, and event lag (the menu's completion to the next command) there;
4. routing decision time for a generated configuration (fsrouter only, bench/routing.py).

The application runs pinned to CPU 0 and this process, the simulator, to CPU 1 when there
are two CPUs. fsrouter's hot path is profiled once with py-spy (bench/hotpath.py).

``--real`` adds the same comparison on the real FreeSWITCH (bench/realswitch.py) under the
key ``real_switch``; ``--real-only`` runs just that and merges it into the existing JSON.
``--two-nodes`` runs only one node against two (bench/twonodes.py, bench/results_two_nodes.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import gevent

from bench import hotpath, scenario
from bench.driver import ROOT, AppProcess, CallTimes, SimSide, pin_here
from bench.routing import measure_routing
from bench.stats import StepFigures, percentile, rounded, slope, summary
from fsrouter.testing.waiting import wait_for

APPS = ("fsrouter", "floor", "greenswitch")
RESULTS = ROOT / "bench" / "results.json"
FILL_DEADLINE_S = 95.0  # the waiting callers' phones ring 120 s: measure well before that


@dataclass(frozen=True)
class Settings:
    apps: tuple[str, ...] = APPS
    rates: tuple[float, ...] = (20.0, 100.0, 300.0)
    latency_s: float = 10.0  # seconds of calls per latency rate
    speed: float = 10.0  # simulated time runs this much faster (a complete call ~0.7 s)
    ramp_start: float = 20.0
    ramp_factor: float = 1.25
    ramp_s: float = 5.0
    ramp_steps: int = 14
    p99_limit_ms: float = 250.0
    waiting: int = 5000
    waiting_step: int = 500
    fill_rate: float = 200.0
    probes: int = 50
    decisions: int = 2000
    profile_s: float = 8.0  # 0: no profile
    warm_calls: int = 20  # calls before measuring (imports, caches, connections)
    waiting_speed: float = 1.0  # real time: the waiting callers' phone rings for 120 s
    settle_s: float = 1.0  # pause before reading RSS
    idle_s: float = 3.0  # window for idle CPU with everyone waiting
    quiet_s: float = 0.5  # a step starts once the application idled this long (< 5% CPU)
    pin: bool = True
    quick: bool = False


QUICK = Settings(latency_s=2.0, ramp_s=2.0, ramp_steps=10, waiting=1000, waiting_step=250,
                 probes=10, decisions=300, profile_s=3.0, quick=True)


# --- one application process ---------------------------------------------------------------


class Workspace:
    """A directory with the fsrouter configuration (and its SQLite file) and the Flow."""

    def __init__(self, root: Path, max_calls: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.config = scenario.write_config(root, max_calls)
        self.db = root / "fsrouter.db"
        self.flow = root / "flow.json"
        scenario.flow_from_config(self.config).save(self.flow)
        self.env = {**os.environ, scenario.PASSWORD_ENV: secrets.token_hex(12),
                    "PYTHONPATH": str(ROOT)}

    def start(self, kind: str, pin: bool) -> AppProcess:
        return AppProcess(kind, self.config, self.flow, self.env, pin)


@dataclass
class Step(StepFigures):
    """Calls placed at one rate, and what they cost."""

    rate: float
    calls: list[CallTimes]
    placed_s: float
    wall_s: float
    sim_cpu_s: float
    app_cpu_s: float
    all_closed: bool

    def summary(self) -> dict[str, Any]:
        return {
            **self.counts(), "setup_ms": summary(self.setup_ms),
            "event_lag_ms": summary([c.event_lag_ms for c in self.calls
                                     if c.event_lag_ms is not None]),
            "app_cpu_ms_per_call": self.ms_per_call(self.app_cpu_s),
            "app_cpu_percent": rounded(100 * self.app_cpu_s / self.wall_s, 1),
            "sim_cpu_percent": rounded(100 * self.sim_cpu_s / self.wall_s, 1),
        }


def wait_quiet(app: AppProcess, window: float, timeout: float = 60.0) -> None:
    """Until the application idles (< 5% CPU) for ``window`` s: the last step's backlog of an
    overloaded step must not slow the next one down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu = app.cpu_seconds()
        gevent.sleep(window)
        if app.cpu_seconds() - cpu < 0.05 * window:
            return


def run_step(app: AppProcess, rate: float, count: int, speed: float,
             digit: str = scenario.COMPLETE_DIGIT, quiet_s: float = 0.5) -> Step:
    """Place ``count`` calls at ``rate`` on a fresh simulator and wait for all to end."""
    if quiet_s > 0:
        wait_quiet(app, quiet_s)
    side = SimSide(app.port, speed)
    app_cpu, sim_cpu, began = app.cpu_seconds(), time.process_time(), time.perf_counter()
    calls = side.place_at_rate(rate, count, digit)
    placed = time.perf_counter() - began
    closed = side.wait_closed(calls, timeout=120 + 2 * count / rate)
    side.stop()
    return Step(rate, calls, placed, time.perf_counter() - began,
                time.process_time() - sim_cpu, app.cpu_seconds() - app_cpu, closed)


def store_rows(db: Path) -> dict[str, Any]:
    """What fsrouter's database holds: every call record and attempt must be final."""
    with sqlite3.connect(db) as conn:
        def grouped(sql: str) -> dict[str, int]:
            return {str(k): v for k, v in conn.execute(sql).fetchall()}
        return {
            "call_records": grouped("SELECT outcome, COUNT(*) FROM call_records GROUP BY 1"),
            "open_call_records": conn.execute(
                "SELECT COUNT(*) FROM call_records WHERE ended_at IS NULL").fetchone()[0],
            "attempts": grouped("SELECT result, COUNT(*) FROM attempts GROUP BY 1"),
            "open_attempts": conn.execute(
                "SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL").fetchone()[0],
            "incidents": grouped("SELECT state, COUNT(*) FROM incidents GROUP BY 1"),
        }


# --- 1 and 2: latency, throughput, profile ------------------------------------------------


def measure_load(kind: str, settings: Settings, root: Path) -> dict[str, Any]:
    """Setup latency at the fixed rates, then the throughput ramp (one process)."""
    work = Workspace(root / f"{kind}-load", max_calls=20_000)
    app = work.start(kind, settings.pin)
    out: dict[str, Any] = {}
    try:
        run_step(app, 20, settings.warm_calls, settings.speed, quiet_s=0)  # warm-up
        out["latency"] = {}
        for rate in settings.rates:
            step = run_step(app, rate, max(int(rate * settings.latency_s), 2), settings.speed,
                            quiet_s=settings.quiet_s)
            out["latency"][str(int(rate))] = step.summary()
        out["throughput"] = ramp(app, settings)
        out["cpu"] = cpu_per_call([*out["latency"].values(), *out["throughput"]["steps"]])
        if kind == "fsrouter" and settings.profile_s > 0:
            out["profile"] = profile(app, settings, root, out["throughput"])
    finally:
        out["exit_code"] = app.stop()
    if kind == "fsrouter":
        out["store"] = store_rows(work.db)
    return out


def ramp(app: AppProcess, settings: Settings) -> dict[str, Any]:
    """Raise the rate until p99 setup passes the limit or a call fails; the last good step."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    rate, stop = settings.ramp_start, "steps"
    for _ in range(settings.ramp_steps):
        step = run_step(app, rate, max(int(rate * settings.ramp_s), 2), settings.speed,
                        quiet_s=settings.quiet_s)
        info = step.summary()
        steps.append(info)
        if step.completed < len(step.calls) or step.p99_ms > settings.p99_limit_ms:
            stop = "p99 over the limit" if step.completed == len(step.calls) else "calls failed"
            break
        best = info
        if info["sim_cpu_percent"] and info["sim_cpu_percent"] >= 90:
            stop = "the simulator's core is saturated"
            break
        rate = round(rate * settings.ramp_factor, 1)
    sustained = best["placed_per_s"] if best else None
    return {"steps": steps, "sustained_calls_per_s": sustained, "stopped_by": stop}


def cpu_per_call(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The application's CPU time per complete call: the median over every step whose calls
    all completed (it hardly depends on the rate; a step with failures is not counted)."""
    values = [s["app_cpu_ms_per_call"] for s in steps
              if s["completed"] == s["calls"] and s["app_cpu_ms_per_call"]]
    ms = percentile(values, 0.5)
    return {"ms_per_complete_call": rounded(ms), "steps": len(values),
            "one_core_calls_per_s": rounded(1000 / ms, 1) if ms else None}


def profile(app: AppProcess, settings: Settings, root: Path,
            throughput: dict[str, Any]) -> dict[str, Any]:
    """py-spy over a steady load at 70% of the sustained rate."""
    rate = max(round(0.7 * (throughput["sustained_calls_per_s"] or 20), 1), 5.0)
    raw = root / "fsrouter-profile.txt"
    spy = hotpath.start(app.pid, settings.profile_s, raw)
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    gevent.sleep(0.5)  # py-spy attaches
    step = run_step(app, rate, int(rate * settings.profile_s), settings.speed, quiet_s=0)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    return {"rate_per_s": rate, "completed": step.completed, **hotpath.summarise(raw)}


# --- 3: waiting callers ---------------------------------------------------------------------


def measure_waiting(kind: str, settings: Settings, root: Path) -> dict[str, Any]:
    """RSS over 0 -> N callers in the queue, then idle CPU and event lag with N waiting."""
    work = Workspace(root / f"{kind}-waiting", max_calls=settings.waiting + 1000)
    app = work.start(kind, settings.pin)
    side = SimSide(app.port, settings.waiting_speed)
    out: dict[str, Any] = {}
    waiting: list[CallTimes] = []
    try:
        lag_idle = warm_up_waiting(side, settings)
        points = [(0, app.rss_kb())]
        waiting, placed = fill(app, side, settings, points)
        out.update(_waiting_figures(points, waiting, side))
        out["not_taken"] = placed - len(waiting)  # ended in the switch's fallback instead
        cpu = app.cpu_seconds()
        gevent.sleep(settings.idle_s)
        out["idle_cpu_percent"] = rounded(100 * (app.cpu_seconds() - cpu) / settings.idle_s, 1)
        probes = side.place_at_rate(10, settings.probes, scenario.COMPLETE_DIGIT)
        side.wait_closed(probes, 60)
        out["probes_completed"] = sum(c.completed for c in probes)
        out["event_lag_ms_idle"] = summary(lag_idle)
        out["event_lag_ms"] = summary([c.event_lag_ms for c in probes if c.event_lag_ms])
        out["probe_setup_ms"] = summary([c.setup_ms for c in probes if c.setup_ms])
        side.hang_up(waiting)
        out["all_hung_up_closed"] = side.wait_closed(waiting, 120)
        # The application must have cancelled every ringing leg (uuid_kill) by now.
        wait_for(lambda: side.channels_up() == 0, 10, quiet=True, every=0.05)
        out["channels_left_up"] = side.channels_up()
    finally:
        side.stop()
        out["exit_code"] = app.stop()
    if kind == "fsrouter":
        out["store"] = store_rows(work.db)
    return out


def warm_up_waiting(side: SimSide, settings: Settings) -> list[float]:
    """Both kinds of call first, so imports and caches are not counted per caller; returns
    the event lag of the complete calls (nobody waiting yet)."""
    count = max(settings.warm_calls // 2, 1)
    complete = side.place_at_rate(20, count, scenario.COMPLETE_DIGIT)
    waits = side.place_at_rate(20, count, scenario.WAIT_DIGIT)
    wait_for(lambda: all(c.record.agent_legs for c in waits), 30, quiet=True, every=0.05)
    side.hang_up(waits)
    side.wait_closed(complete + waits, 60)
    gevent.sleep(settings.settle_s)
    return [c.event_lag_ms for c in complete if c.event_lag_ms is not None]


def fill(app: AppProcess, side: SimSide, settings: Settings,
         points: list[tuple[int, int]]) -> tuple[list[CallTimes], int]:
    """Add waiting callers a step at a time; after each step, RSS against the number of
    callers in the queue with their phone ringing. Returns those callers and how many
    waiting callers were placed.

    A caller the application did not take (greenswitch's accept backlog overflows in bursts)
    ends in the simulator's fallback; it is left out and more are placed instead.
    """
    placed: list[CallTimes] = []
    began = time.monotonic()
    while time.monotonic() - began < FILL_DEADLINE_S:
        batch = side.place_at_rate(settings.fill_rate, settings.waiting_step,
                                   scenario.WAIT_DIGIT)
        placed += batch
        wait_for(lambda b=batch: all(_settled(side, c) for c in b),
                 FILL_DEADLINE_S - (time.monotonic() - began), quiet=True, every=0.05)
        gevent.sleep(settings.settle_s)  # let the application settle before its RSS
        waiting = [c for c in placed if _ringing(side, c)]
        if len(waiting) <= points[-1][0]:
            break  # no progress: the application takes no more callers
        points.append((len(waiting), app.rss_kb()))
        if len(waiting) >= settings.waiting:
            break
    return [c for c in placed if _ringing(side, c)], len(placed)


def _ringing(side: SimSide, call: CallTimes) -> bool:
    """In the queue with the phone ringing: the application has sent its originate."""
    chan = side.sim.channels.get(call.uuid)
    return bool(call.record.agent_legs) and chan is not None and chan.alive and not call.closed


def _settled(side: SimSide, call: CallTimes) -> bool:
    chan = side.sim.channels.get(call.uuid)
    return bool(call.record.agent_legs) or chan is None or not chan.alive or bool(call.closed)


def _waiting_figures(points: list[tuple[int, int]], waiting: list[CallTimes],
                     side: SimSide) -> dict[str, Any]:
    per_caller = slope(points)
    return {
        "waiting": len(waiting), "in_queue": side.waiting(),
        "rss_kb_points": points,
        "kb_per_waiting_caller": rounded(per_caller, 1),
        "rss_mb_at_max": rounded(points[-1][1] / 1024, 1),
    }


# --- the run --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info
                          if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {name: _version(name) for name in ("gevent", "greenlet", "greenswitch",
                                                   "peewee", "structlog", "py-spy")}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "cpu_model": model,
        "python": platform.python_version(), "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()), "versions": versions,
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain")),
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_all(settings: Settings, say: Any = print) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "settings": asdict(settings), "apps": {}}
    results["machine"]["pinned"] = settings.pin and pin_here(1)
    with tempfile.TemporaryDirectory(prefix="fsrouter-bench-") as tmp:
        root = Path(tmp)
        for kind in settings.apps:
            say(f"{kind}: latency and throughput ...")
            app_out = {"load": measure_load(kind, settings, root)}
            say(f"{kind}: {settings.waiting} waiting callers ...")
            app_out["waiting"] = measure_waiting(kind, settings, root)
            results["apps"][kind] = app_out
        say("routing decisions ...")
        results["routing"] = measure_routing(root, settings.decisions)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short runs (2 s per rate, 1,000 waiting callers)")
    parser.add_argument("--apps", default=",".join(APPS),
                        help="comma-separated subset of fsrouter,floor,greenswitch")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write JSON")
    parser.add_argument("--table", type=Path, metavar="JSON",
                        help="only print the table of an earlier run's results")
    parser.add_argument("--real", action="store_true",
                        help="also run the benchmark on the real FreeSWITCH")
    parser.add_argument("--real-only", action="store_true",
                        help="only the real FreeSWITCH part, merged into the existing JSON")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="real switch: run it N times, report median and min-max")
    parser.add_argument("--fine-clock", action="store_true",
                        help="the real switch with 1ms-timer: latencies to 1 ms, at a CPU cost")
    parser.add_argument("--two-nodes", action="store_true",
                        help="only one node against two on the real FreeSWITCH and PostgreSQL "
                             "(bench/twonodes.py), written to bench/results_two_nodes.json")
    args = parser.parse_args(argv)
    from bench.report import evaluate, real_table, table

    if args.two_nodes:
        return _run_two_nodes(args.quick, max(args.repeat, 1), args.fine_clock)

    if args.table:
        print(table(json.loads(args.table.read_text("utf-8"))))
        return 0
    apps = tuple(a for a in args.apps.split(",") if a)
    if not set(apps) <= set(APPS):
        parser.error(f"--apps must name some of {', '.join(APPS)}")
    settings = replace(QUICK if args.quick else Settings(), apps=apps, pin=not args.no_pin)
    from fsrouter import logs

    logs.configure("warning", json=True)  # the simulator's own log lines stay quiet
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    if args.real_only:
        results = _previous(args.output)
    else:
        results = run_all(settings, say=say)
        results["targets"] = evaluate(results)
    if args.real or args.real_only:
        results["real_switch"] = _run_real(args.quick, apps, say, args.fine_clock,
                                           max(args.repeat, 1))
    args.output.write_text(json.dumps(results, indent=1) + "\n", "utf-8")
    print(real_table(results["real_switch"]) if args.real_only else table(results))
    print(f"\nwritten to {args.output}")
    return 0


def _previous(path: Path) -> dict[str, Any]:
    """An earlier run's results (the simulator's figures stay), or nothing yet."""
    try:
        return dict(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        return {}


def _run_real(quick: bool, apps: tuple[str, ...], say: Any, fine_clock: bool,
              repeats: int) -> dict[str, Any]:
    from bench import realswitch

    settings = realswitch.QUICK if quick else realswitch.RealSettings()
    return realswitch.run_real_repeated(replace(settings, apps=apps, fine_clock=fine_clock),
                                        repeats, say=say)



def _run_two_nodes(quick: bool, repeats: int, fine_clock: bool) -> int:
    from bench import twonodes
    from fsrouter import logs

    logs.configure("warning", json=True)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    settings = replace(twonodes.QUICK if quick else twonodes.SETTINGS, fine_clock=fine_clock)
    results = twonodes.run_repeated(settings, repeats, say=say)
    twonodes.RESULTS.write_text(json.dumps(results, indent=1) + "\n", "utf-8")
    print(twonodes.table(results))
    print(f"\nwritten to {twonodes.RESULTS}")
    return 0
