"""Two nodes against one, on the real FreeSWITCH (``python -m bench --two-nodes``; issue 18.8).

The flow and the figures are bench/realswitch.py's (a loopback caller dials the hotline, the
daemon answers and plays the menu, the caller presses 1, waits in mod_fifo while one scripted
phone is rung, which answers and hangs up after ``talk_ms``; set-up latency from the switch's
own event stamps; the sustained rate from a ramp that stops at the first lost or failed call
or when p99 set-up passes the limit). Two topologies, one after the other, in one run:

- ``one_node``: switch a and one ``fsrouter`` daemon (bench/apps.py) with its records in
  PostgreSQL; switch b runs too but gets no calls (its idle cost is in both runs);
- ``two_nodes``: switches a and b and daemons A and B, both serving both switches and sharing
  one PostgreSQL database; each switch offers a call to its own daemon first and the other
  second (``fsrouter_target`` = ``local|other``, fsrouter.testing.switchpair); the calls of a
  step alternate between the two switches, so the load is split evenly.

Both topologies share this machine's cores: on a 2-core machine two switches and two daemons
compete for the same CPU as one of each, so the two-node figures measure the cost of the
second node, not a speed-up (the report names the cores and the load next to each figure).
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gevent
import yaml

from bench import realswitch, scenario
from bench.driver import AppProcess, open_loop
from bench.realswitch import CALL_GRACE_S, Caller, RealCall, RealSettings, Step, process_cpu
from bench.stats import percentile, rounded
from fsrouter.testing.phones import phone_number
from fsrouter.testing.postgres import start_postgres
from fsrouter.testing.switchpair import SwitchPair

RESULTS = Path(__file__).with_name("results_two_nodes.json")
SETTINGS = RealSettings(apps=("fsrouter",), rates=(10.0, 20.0), latency_s=10.0,
                        ramp_start=10.0, ramp_factor=1.5, ramp_s=6.0, ramp_steps=6)
QUICK = replace(SETTINGS, rates=(10.0,), latency_s=4.0, ramp_s=3.0, ramp_steps=4)


def count_rows(db_url: str, table: str) -> int:
    """Rows of one of fsrouter's tables (a fixed name from this module) in ``db_url``."""
    from fsrouter.store import open_database
    from fsrouter.store.db import close_database, database_proxy

    db = open_database(db_url)
    try:
        return int(database_proxy.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        close_database(db)


def daemon_config(workdir: Path, db_url: str, switches: list[dict[str, Any]],
                  talk_ms: int) -> Path:
    """bench/realswitch.py's hotline configuration, on PostgreSQL and the given switches."""
    config = scenario.fsrouter_config(workdir / "unused.db", max_calls=5000)
    config["database"] = {"url": db_url}
    config.pop("switch")
    config["switches"] = switches
    config["users"]["anna"]["phones"][0]["number"] = phone_number("hangup", talk_ms, 1)
    config["policies"]["oncall"]["levels"][0]["targets"] = [{"user": "anna"}]
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "fsrouter.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
    return path


@dataclass
class Topology:
    """The callers (one per switch that gets calls), the switches' and daemons' processes."""

    callers: list[Caller]
    switch_pids: list[int]
    apps: list[AppProcess]

    def cpu(self) -> tuple[float, float]:
        return (sum(process_cpu(pid) for pid in self.switch_pids),
                sum(app.cpu_seconds() for app in self.apps))

    def step(self, rate: float, count: int) -> Step:
        """``count`` calls at ``rate`` in all, taking turns over the callers (open loop)."""
        switch_cpu, app_cpu = self.cpu()
        own, began = time.process_time(), time.perf_counter()
        turns = itertools.cycle(self.callers)
        placed: list[tuple[Caller, RealCall]] = []

        def place() -> None:
            caller = next(turns)
            placed.append((caller, caller.place(scenario.ROUTING_NUMBER, "public")))

        open_loop(rate, count, place)
        placed_s = time.perf_counter() - began
        deadline = time.monotonic() + CALL_GRACE_S
        over = all(caller.wait_over([c for who, c in placed if who is caller],
                                    max(deadline - time.monotonic(), 0.1))
                   for caller in self.callers)
        wall = time.perf_counter() - began
        gevent.sleep(0.2)  # the last originate results and hang-up events
        switch_after, app_after = self.cpu()
        return Step(rate, [c for _, c in placed], placed_s, wall, switch_after - switch_cpu,
                    app_after - app_cpu, time.process_time() - own, over)


def step_summary(step: Step) -> dict[str, Any]:
    """realswitch's step summary with the p95 of set-up latency and the load average."""
    out = step.summary()
    out["setup_ms"]["p95"] = rounded(percentile(step.setup_ms, 0.95))
    # The stock switch stamps events on its 20 ms clock: each latency is a multiple of 20 ms
    # and the median flips between 0 and 20; the mean averages the ticks' phase out.
    out["setup_ms"]["mean"] = rounded(statistics.fmean(step.setup_ms)) if step.setup_ms else None
    out["load_average_after"] = rounded(os.getloadavg()[0])
    return out


def measure(topology: Topology, settings: RealSettings) -> dict[str, Any]:
    """Warm-up, latency at each rate, then the ramp (as realswitch.Bench.measure_app)."""
    out: dict[str, Any] = {"load_average_at_start": list(os.getloadavg())}
    warm = topology.step(5.0, settings.warm_calls)
    out["warm_up_completed"] = f"{warm.completed}/{len(warm.calls)}"
    out["latency"] = {
        str(int(rate)): step_summary(topology.step(rate, max(int(rate * settings.latency_s), 2)))
        for rate in settings.rates}
    out["throughput"] = realswitch.ramp_with(
        lambda rate, count: topology.step(rate, count), settings, step_summary)
    out["load_average_at_end"] = list(os.getloadavg())
    return out


class TwoNodeBench:
    """A PostgreSQL server with a database per topology, a pair of switches, and a workspace."""

    def __init__(self, settings: RealSettings, root: Path) -> None:
        self.settings = settings
        self.root = root
        params = realswitch.FINE_CLOCK if settings.fine_clock else None
        self.pair = SwitchPair(root / "switches", switch_params=params)
        self.postgres = start_postgres("fsrouter_bench_one_node")
        self.pair.start()
        self.flow: scenario.Flow | None = None

    def stop(self) -> None:
        self.pair.stop()
        self.postgres.stop()

    def _app(self, name: str, db_url: str, switch_names: tuple[str, ...]) -> AppProcess:
        entries, env = self.pair.switches_config()
        chosen = [entry for entry in entries if entry["name"] in switch_names]
        config = daemon_config(self.root / name, db_url, chosen, self.settings.talk_ms)
        if self.flow is None:
            self.flow = scenario.flow_from_config(config)
            self.flow.save(self.root / "flow.json")
        app_env = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        return AppProcess("fsrouter", config, self.root / "flow.json", app_env, pin=False)

    def _run(self, apps: list[AppProcess], callers_on: tuple[str, ...],
             db_url: str) -> dict[str, Any]:
        assert self.flow is not None
        callers = [Caller(self.pair[name], self.flow, scenario.COMPLETE_DIGIT)
                   for name in callers_on]
        pids = [switch.pid for _, switch in self.pair if switch.pid is not None]
        try:
            nodes = count_rows(db_url, "cluster_nodes")  # both daemons registered by now
            out = measure(Topology(callers, pids, apps), self.settings)
            out["nodes_in_database"] = nodes
            out["call_records_in_database"] = count_rows(db_url, "call_records")
            out["calls_placed"] = sum(len(caller.calls) for caller in callers)
            out["daemon_cpu_s"] = [rounded(app.cpu_seconds()) for app in apps]
        finally:
            for caller in callers:
                caller.close()
            out_codes = [app.stop() for app in apps]
            for _, switch in self.pair:
                switch.route_to(1)  # nobody: a late call takes the dead-daemon fallback
        out["daemon_exit_codes"] = out_codes
        return out

    def one_node(self) -> dict[str, Any]:
        app = self._app("one", self.postgres.url, ("a",))
        self.pair["a"].route_to(app.port)
        return self._run([app], ("a",), self.postgres.url)

    def two_nodes(self) -> dict[str, Any]:
        url = self.postgres.create_database("fsrouter_bench_two_nodes")
        apps = [self._app("node-a", url, ("a", "b")), self._app("node-b", url, ("a", "b"))]
        self.pair.route_failover({"a": apps[0].port, "b": apps[1].port})
        return self._run(apps, ("a", "b"), url)


def run_two_nodes(settings: RealSettings, say: Any = print) -> dict[str, Any]:
    """One node, then two nodes, on fresh switches and a fresh PostgreSQL."""
    from bench.run import machine

    out: dict[str, Any] = {"machine": machine(), "settings": asdict(settings)}
    with tempfile.TemporaryDirectory(prefix="fsrouter-twonodes-") as tmp:
        bench = TwoNodeBench(settings, Path(tmp))
        try:
            out["switch_version"] = bench.pair["a"].api("version").strip()
            out["clock_tick_ms"] = 1 if settings.fine_clock else 20
            say("two nodes: one switch, one daemon, PostgreSQL ...")
            out["one_node"] = bench.one_node()
            say("two nodes: two switches, two daemons, one PostgreSQL ...")
            out["two_nodes"] = bench.two_nodes()
        finally:
            bench.stop()
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    return out


def run_repeated(settings: RealSettings, repeats: int, say: Any = print) -> dict[str, Any]:
    """``repeats`` whole runs, each kept (the figures depend on what else the machine runs)."""
    runs = []
    for number in range(1, repeats + 1):
        say(f"two nodes: run {number} of {repeats} ...")
        runs.append(run_two_nodes(settings, say))
    return {"repeats": repeats, "runs": runs}


def table(results: dict[str, Any]) -> str:
    """One row per run and topology: set-up latency, sustained rate, CPU per call, load."""
    lines = ["| run | topology | load at start | set-up median / p95 (mean) in ms at "
             "each rate, completed/placed | sustained calls/s (stopped by) | switch + daemon "
             "CPU per call at the first rate (ms) | load at end |",
             "|---|---|---|---|---|---|---|"]
    for number, run in enumerate(results["runs"], 1):
        cores = run["machine"]["cpu_count"]
        for key in ("one_node", "two_nodes"):
            part = run[key]
            rates = "; ".join(
                f"{rate}/s: {step['setup_ms']['median']} / {step['setup_ms']['p95']} "
                f"(mean {step['setup_ms'].get('mean')}), "
                f"{step['completed']}/{step['calls']}" for rate, step in part["latency"].items())
            first = next(iter(part["latency"].values()))
            cpu = f"{first['switch_cpu_ms_per_call']} + {first.get('app_cpu_ms_per_call')}"
            throughput = part["throughput"]
            lines.append(
                f"| {number} ({cores} cores) | {key.replace('_', ' ')} | "
                f"{rounded(part['load_average_at_start'][0])} | {rates} | "
                f"{throughput['sustained_calls_per_s']} ({throughput['stopped_by']}) | {cpu} | "
                f"{rounded(part['load_average_at_end'][0])} |")
    return "\n".join(lines)
