"""``python -m bench.cost``: only the two figures that change with the hot path, fast.

CPU time per complete call (the application's utime + stime from ``/proc`` over a batch of
complete calls at a rate every application keeps up with) and memory per waiting caller
(the RSS slope while callers are added to the queue), for each application asked for, with
the same simulator, call script and processes as ``python -m bench`` (bench/run.py). About
a minute per application with the defaults, instead of the full run's six or more::

    .venv/bin/python -m bench.cost                       # fsrouter and floor
    .venv/bin/python -m bench.cost --apps fsrouter --calls 400 --waiting 1000 --repeat 3

The CPU figure is the median over ``--repeat`` batches. The applications run side by side
and take turns batch by batch, and the ratio fsrouter/floor is given per round: on a shared
machine the absolute figures move by 10-20% between runs, the ratio much less.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import hotpath
from bench.driver import SimSide, pin_here
from bench.run import APPS, QUICK, Settings, Workspace, fill, run_step, warm_up_waiting
from bench.stats import percentile, rounded, slope


def cpu_per_call(apps: tuple[str, ...], root: Path, calls: int, rate: float, repeat: int,
                 pin: bool, profile: bool = False) -> dict[str, dict[str, Any]]:
    """Median CPU ms per complete call over ``repeat`` batches of ``calls`` calls for each
    application. The applications run side by side and take turns batch by batch, so a
    change in the machine's other load hits them alike (their ratio is the steadier
    figure). With ``profile``, py-spy samples one more batch of each (not counted)."""
    running = {kind: Workspace(root / f"{kind}-cpu", max_calls=20_000).start(kind, pin)
               for kind in apps}
    values: dict[str, list[float]] = {kind: [] for kind in apps}
    completed = dict.fromkeys(apps, 0)
    out: dict[str, dict[str, Any]] = {kind: {} for kind in apps}
    try:
        for app in running.values():
            run_step(app, 20, 20, QUICK.speed, quiet_s=0)  # warm-up: imports, caches, store
        for _ in range(repeat):
            for kind, app in running.items():
                step = run_step(app, rate, calls, QUICK.speed, quiet_s=0.5)
                completed[kind] += step.completed
                values[kind].append(1000 * step.app_cpu_s / max(len(step.calls), 1))
        if profile:
            for kind, app in running.items():
                out[kind]["profile"] = _profile(app, root / f"{kind}-profile.txt", rate, calls)
    finally:
        for app in running.values():
            app.stop()
    for kind in apps:
        out[kind].update({"ms_per_complete_call": rounded(percentile(values[kind], 0.5)),
                          "batches_ms": [rounded(v) for v in values[kind]],
                          "completed": completed[kind], "placed": calls * repeat})
    return out


def _profile(app: Any, raw: Path, rate: float, calls: int) -> dict[str, Any]:
    spy = hotpath.start(app.pid, calls / rate, raw)
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    run_step(app, rate, calls, QUICK.speed, quiet_s=0.5)
    spy.communicate(timeout=120)
    return hotpath.summarise(raw, top=25) if raw.exists() else {"skipped": "py-spy failed"}


def kb_per_waiting(kind: str, root: Path, waiting: int, pin: bool) -> dict[str, Any]:
    """RSS slope (KB per caller) over 0 -> ``waiting`` callers in the queue."""
    settings: Settings = replace(QUICK, waiting=waiting, waiting_step=max(waiting // 4, 1),
                                 pin=pin)
    work = Workspace(root / f"{kind}-waiting", max_calls=waiting + 1000)
    app = work.start(kind, pin)
    side = SimSide(app.port, settings.waiting_speed)
    try:
        warm_up_waiting(side, settings)
        points = [(0, app.rss_kb())]
        callers, _ = fill(app, side, settings, points)
        side.hang_up(callers)
        side.wait_closed(callers, 120)
    finally:
        side.stop()
        app.stop()
    return {"kb_per_waiting_caller": rounded(slope(points), 1), "rss_kb_points": points}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--apps", default="fsrouter,floor")
    parser.add_argument("--calls", type=int, default=300, help="complete calls per batch")
    parser.add_argument("--rate", type=float, default=20.0, help="complete calls per second")
    parser.add_argument("--repeat", type=int, default=3, help="batches (median)")
    parser.add_argument("--waiting", type=int, default=1000, help="callers for the RSS slope")
    parser.add_argument("--skip", choices=("cpu", "memory"), help="leave one figure out")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy one more batch of each application and print the shares")
    args = parser.parse_args(argv)
    apps = tuple(a for a in args.apps.split(",") if a)
    if not set(apps) <= set(APPS):
        parser.error(f"--apps must name some of {', '.join(APPS)}")
    from fsrouter import logs

    logs.configure("warning", json=True)
    pin = not args.no_pin and pin_here(1)
    out: dict[str, Any] = {kind: {} for kind in apps}
    with tempfile.TemporaryDirectory(prefix="fsrouter-cost-") as tmp:
        if args.skip != "cpu":
            cpu = cpu_per_call(apps, Path(tmp), args.calls, args.rate, args.repeat, pin,
                               args.profile)
            for kind in apps:
                out[kind]["cpu"] = cpu[kind]
                if "profile" in cpu[kind]:
                    print(kind, json.dumps(cpu[kind]["profile"], indent=1), file=sys.stderr)
        if args.skip != "memory":
            for kind in apps:
                out[kind]["memory"] = kb_per_waiting(kind, Path(tmp), args.waiting, pin)
    if "fsrouter" in apps and "floor" in apps and args.skip != "cpu":
        pairs = zip(out["fsrouter"]["cpu"]["batches_ms"], out["floor"]["cpu"]["batches_ms"],
                    strict=True)
        ratios = [a / b for a, b in pairs if b]
        out["fsrouter_over_floor"] = {"median": rounded(percentile(ratios, 0.5)),
                                      "per_round": [rounded(r) for r in ratios]}
    print(json.dumps({kind: _short(v) if kind in apps else v for kind, v in out.items()},
                     indent=1))
    return 0


def _short(figures: dict[str, Any]) -> dict[str, Any]:
    cpu, memory = figures.get("cpu", {}), figures.get("memory", {})
    return {"cpu_ms_per_call": cpu.get("ms_per_complete_call"),
            "cpu_batches_ms": cpu.get("batches_ms"),
            "completed": f"{cpu.get('completed')}/{cpu.get('placed')}" if cpu else None,
            "kb_per_waiting_caller": memory.get("kb_per_waiting_caller")}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
