"""The benchmark's table (Markdown) and the issue's targets, from the results dictionary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

APPS = ("fsrouter", "floor", "greenswitch")
Getter = Callable[[dict[str, Any]], Any]


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _rows(results: dict[str, Any]) -> list[tuple[str, Getter]]:
    rows: list[tuple[str, Getter]] = []
    for rate in results["settings"]["rates"]:
        key = str(int(rate))
        for stat in ("median", "p99"):
            rows.append((f"setup latency at {key}/s, {stat} (ms)",
                         lambda a, k=key, s=stat: _get(a, "load", "latency", k, "setup_ms", s)))
        rows.append((f"  at {key}/s: calls completed / placed",
                     lambda a, k=key: _of(_get(a, "load", "latency", k, "completed"),
                                          _get(a, "load", "latency", k, "calls"))))
        rows.append((f"  at {key}/s: placed per s (simulator CPU %)",
                     lambda a, k=key: _pair(_get(a, "load", "latency", k, "placed_per_s"),
                                            _get(a, "load", "latency", k, "sim_cpu_percent"))))
    waiting = results["settings"]["waiting"]
    rows += [
        ("throughput: complete calls/s sustained (p99 <= 250 ms)",
         lambda a: _get(a, "load", "throughput", "sustained_calls_per_s")),
        ("  ramp stopped by", lambda a: _get(a, "load", "throughput", "stopped_by")),
        ("CPU per complete call (ms)", lambda a: _get(a, "load", "cpu", "ms_per_complete_call")),
        ("one core: complete calls/s (1000 / CPU ms)",
         lambda a: _get(a, "load", "cpu", "one_core_calls_per_s")),
        ("memory per waiting caller (KB, RSS slope)",
         lambda a: _get(a, "waiting", "kb_per_waiting_caller")),
        ("  callers waiting at the end (not taken by the application)",
         lambda a: _of_pair(_get(a, "waiting", "waiting"), _get(a, "waiting", "not_taken"))),
        ("RSS at the most callers waiting (MB)", lambda a: _get(a, "waiting", "rss_mb_at_max")),
        (f"idle CPU with {waiting} waiting (%)",
         lambda a: _get(a, "waiting", "idle_cpu_percent")),
        ("event lag, nobody waiting, median (ms)",
         lambda a: _get(a, "waiting", "event_lag_ms_idle", "median")),
        (f"event lag with {waiting} waiting, median (ms)",
         lambda a: _get(a, "waiting", "event_lag_ms", "median")),
        (f"event lag with {waiting} waiting, p99 (ms)",
         lambda a: _get(a, "waiting", "event_lag_ms", "p99")),
        (f"setup latency with {waiting} waiting, median (ms)",
         lambda a: _get(a, "waiting", "probe_setup_ms", "median")),
    ]
    return rows


def _pair(first: Any, second: Any) -> str | None:
    return None if first is None else f"{first} ({second})"


def _of_pair(count: Any, missing: Any) -> str | None:
    return None if count is None else f"{count} ({missing or 0})"


def _of(part: Any, whole: Any) -> str | None:
    return None if part is None else f"{part}/{whole}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.2f}"


def table(results: dict[str, Any]) -> str:
    """The simulator's table, then the real switch's when the results have one."""
    parts = [sim_table(results)] if "apps" in results else []
    if results.get("real_switch"):
        parts.append(real_table(results["real_switch"]))
    return "\n\n".join(parts)


def sim_table(results: dict[str, Any]) -> str:
    apps = results["apps"]
    head = ["measurement", *APPS, "fsrouter/floor", "fsrouter/greenswitch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, get in _rows(results):
        values = [get(apps.get(kind, {})) for kind in APPS]
        cells = [label, *(_cell(v) for v in values), _ratio(values[0], values[1]),
                 _ratio(values[0], values[2])]
        lines.append("| " + " | ".join(cells) + " |")
    routing = results.get("routing") or {}
    for label, key in (("routing decision (µs)", "decision_us"),
                       ("  of which plan_escalation (µs)", "plan_escalation_us"),
                       ("  routing decision, CPU time (µs)", "decision_cpu_us")):
        stats = routing.get(key) or {}
        cell = f"{_cell(stats.get('median'))} median, {_cell(stats.get('p99'))} p99"
        lines.append(f"| {label} | {cell} | - | - | - | - |")
    lines.append("")
    verdicts = {True: "met", False: "NOT met", None: "not judged"}
    lines += [f"- {t['target']}: {t['value']} -> {verdicts[t['met']]}"
              for t in results.get("targets", [])]
    return "\n".join(lines)


def _latency_target(target: str, a: float, b: float, met: bool,
                    apps: tuple[dict[str, Any], ...], key: str) -> dict[str, Any]:
    """Judged only where both completed every call: an overloaded step measures its queue."""
    steps = [_get(app, "load", "latency", key) or {} for app in apps]
    failed = [f"{s.get('completed')}/{s.get('calls')}" for s in steps
              if s.get("completed") != s.get("calls")]
    value = f"{a} vs {b} ms"
    if failed:
        return {"target": target, "met": None,
                "value": f"{value}; overloaded (completed {', '.join(failed)})"}
    return {"target": target, "value": value, "met": met}


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the figure it was judged on."""
    apps = results["apps"]
    fsr, floor, gs = (apps.get(kind, {}) for kind in APPS)
    out = []
    for rate in results["settings"]["rates"]:
        key = str(int(rate))
        a, b, c = (_get(x, "load", "latency", key, "setup_ms", "median") for x in (fsr, floor, gs))
        if None not in (a, b):
            out.append(_latency_target(f"setup median at {key}/s within 2 ms of the floor",
                                       a, b, a - b <= 2.0, (fsr, floor), key))
        if None not in (a, c):
            out.append(_latency_target(f"setup median at {key}/s below greenswitch",
                                       a, c, a < c, (fsr, gs), key))
    for label, path in (("sustained rate", ("load", "throughput", "sustained_calls_per_s")),
                        ("one-core rate from CPU per call",
                         ("load", "cpu", "one_core_calls_per_s"))):
        a, b = _get(fsr, *path), _get(floor, *path)
        if a and b:
            out.append({"target": f"throughput at least 70% of the floor ({label})",
                        "value": f"{a} vs {b} calls/s = {100 * a / b:.0f}%",
                        "met": a >= 0.7 * b})
    kb = _get(fsr, "waiting", "kb_per_waiting_caller")
    if kb is not None:
        out.append({"target": "under 50 KB per waiting caller", "value": f"{kb} KB",
                    "met": kb < 50})
    decision = _get(results.get("routing"), "decision_us", "median")
    if decision is not None:
        out.append({"target": "routing decision under 1 ms (median)",
                    "value": f"{decision} µs", "met": decision < 1000})
    return out


# --- the real switch (bench/realswitch.py) ---------------------------------------------------


def _real_rows(real: dict[str, Any]) -> list[tuple[str, Getter]]:
    rows: list[tuple[str, Getter]] = []
    for rate in real["settings"]["rates"]:
        key = str(int(rate))
        for stat in ("median", "p99"):
            rows.append((f"set-up latency at {key}/s, {stat} (ms, switch clock)",
                         lambda a, k=key, s=stat: _get(a, "latency", k, "setup_ms", s)))
        rows.append((f"  at {key}/s: calls completed / placed",
                     lambda a, k=key: _of(_get(a, "latency", k, "completed"),
                                          _get(a, "latency", k, "calls"))))
        rows.append((f"  at {key}/s: first application after socket",
                     lambda a, k=key: _counts(_get(a, "latency", k, "first_apps"))))
        rows.append((f"  at {key}/s: switch CPU per call (ms)",
                     lambda a, k=key: _get(a, "latency", k, "switch_cpu_ms_per_call")))
        rows.append((f"  at {key}/s: application CPU per call (ms)",
                     lambda a, k=key: _get(a, "latency", k, "app_cpu_ms_per_call")))
    limit = real["settings"]["p99_limit_ms"]
    rows += [
        (f"calls/s sustained, no call lost (p99 <= {limit:g} ms)",
         lambda a: _get(a, "throughput", "sustained_calls_per_s")),
        ("  ramp stopped by", lambda a: _get(a, "throughput", "stopped_by")),
        ("  ramp: offered/s (completed/placed, p99 ms)",
         lambda a: _ramp(_get(a, "throughput", "steps"))),
    ]
    return rows


def _counts(counts: Any) -> str | None:
    if not isinstance(counts, dict):
        return None
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _ramp(steps: Any) -> str | None:
    if not steps:
        return None
    return "; ".join(f"{s['offered_per_s']:g} ({s['completed']}/{s['calls']}, "
                     f"{_cell(_get(s, 'setup_ms', 'p99'))})" for s in steps)


def real_table(real: dict[str, Any]) -> str:
    """The real switch's figures: per application, then the switch's CPU per call. After
    several runs (``--repeat``): each figure is the median, with the runs' min-max after it."""
    apps = real["apps"]
    spread = real.get("spread") or {}
    machine = real.get("machine") or {}
    switch = real.get("switch") or {}
    runs = real.get("runs") or []
    lines = [f"Real switch: {switch.get('version')}, event clock tick "
             f"{switch.get('clock_tick_ms', 20)} ms, {machine.get('cpu_count')} x "
             f"{machine.get('cpu_model')}, load average "
             f"{_load(machine.get('load_average_at_start'))} at the start, "
             f"{_load(machine.get('load_average_at_end'))} at the end; switch idle CPU "
             f"{_cell(switch.get('idle_cpu_percent'))}%", ""]
    if runs:
        lines[0] = f"Real switch, median of {len(runs)} runs (min-max of the runs after it): " \
            + lines[0].removeprefix("Real switch: ")
        lines[1:1] = [_run_line(n, run) for n, run in enumerate(runs, 1)]
    head = ["measurement", *APPS, "fsrouter/floor", "fsrouter/greenswitch"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, get in _real_rows(real):
        values = [get(apps.get(kind, {})) for kind in APPS]
        if runs and label.startswith("  ramp: "):  # no median of steps: each run's, below
            values = ["per run, below" if kind in apps else None for kind in APPS]
        ranges = [get(_get(spread, "apps", kind) or {}) for kind in APPS]
        cells = [label, *(_ranged(v, r) for v, r in zip(values, ranges, strict=True)),
                 _ratio(values[0], values[1]), _ratio(values[0], values[2])]
        lines.append("| " + " | ".join(cells) + " |")
    cpu = real.get("cpu") or {}
    fsr, xml = cpu.get("fsrouter") or {}, cpu.get("dialplan") or {}
    fsr_spread, xml_spread = _get(spread, "cpu", "fsrouter") or {}, _get(spread, "cpu",
                                                                         "dialplan") or {}
    rate = real["settings"]["cpu_rate"]
    lines += ["", "| switch CPU, menu-queue-agent flow | fsrouter | XML dialplan + mod_fifo "
              "| fsrouter/dialplan |", "|---|---|---|---|"]
    for label, key in ((f"switch CPU per call at {rate:g}/s (ms)", "switch_cpu_ms_per_call"),
                       ("switch CPU (% of one core)", "switch_cpu_percent")):
        a, b = fsr.get(key), xml.get(key)
        lines.append(f"| {label} | {_ranged(a, fsr_spread.get(key))} | "
                     f"{_ranged(b, xml_spread.get(key))} | {_ratio(a, b)} |")
    done = [_cell(_of(x.get("completed"), x.get("calls"))) for x in (fsr, xml)]
    lines.append(f"| calls completed / placed | {done[0]} | {done[1]} | - |")
    for n, run in enumerate(runs, 1):
        ramps = [f"{kind} {_ramp(_get(run, 'apps', kind, 'throughput', 'steps'))}"
                 for kind in APPS if kind in run.get("apps", {})]
        lines.append(f"\nrun {n}, ramp offered/s (completed/placed, p99 ms): " + "; ".join(ramps))
    return "\n".join(lines)


def _run_line(number: int, run: dict[str, Any]) -> str:
    machine = run.get("machine") or {}
    return (f"- run {number}: load average {_load(machine.get('load_average_at_start'))} at "
            f"the start, {_load(machine.get('load_average_at_end'))} at the end; switch idle "
            f"CPU {_get(run, 'switch', 'idle_cpu_percent')}%")


def _ranged(value: Any, span: Any) -> str:
    """A median and the runs' min-max, when there were runs and they differ."""
    if isinstance(span, list) and len(span) == 2 and span[0] != span[1]:
        return f"{_cell(value)} ({_cell(span[0])}-{_cell(span[1])})"
    return _cell(value)


def _load(values: Any) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "-"
