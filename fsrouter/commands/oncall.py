"""``fsrouter oncall``: who is on call per hotline option over the next days, and the gaps.

For every option of every ``call_routing`` number it prints one line per change: from, to,
and who the option's policy rings first (then the later levels), or the out-of-hours action.
A time when the policy has nobody at all to ring is a gap: it is warned about and the command
exits 5 (for CI and monitoring), else 0. The computation is
:mod:`fsrouter.routing.coverage` (exact change points, no clock inside).

Run-time overrides (``fsrouter oncall override add``) are read from the configured database
(``--database URL`` another one; ``--no-db``, or a SQLite file that does not exist yet: the
configuration alone). Every segment says where each schedule's person comes from: the
rotation, a YAML override or a run-time override.

:func:`on_call` and :func:`with_overrides` take plain values (the latter needs the database
bound): the web console's Now and On call pages call them too.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fsrouter.calls.call_routing import as_runtime
from fsrouter.commands import EXIT_GAPS, EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    emit,
    emit_json,
    iso,
    load,
    local_text,
    parse_moment,
    shown,
    store,
    utc_now,
)
from fsrouter.config import Config
from fsrouter.routing.coverage import OptionCoverage, Segment, State, coverage
from fsrouter.routing.schedules import Origin, with_runtime_overrides
from fsrouter.store import StoreError, overrides
from fsrouter.store.db import SqliteTarget, parse_url
from fsrouter.store.models import OncallOverride

MAX_DAYS = 366


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    if not 1 <= args.days <= MAX_DAYS:
        raise Failure(EXIT_USAGE, f"--days must be 1-{MAX_DAYS}, got {args.days}")
    zone = config.defaults.timezone
    try:
        start = parse_moment(args.start, zone) if args.start else utc_now()
    except ValueError as error:
        raise Failure(EXIT_USAGE, f"--from: {error}") from None
    end = start + timedelta(days=args.days)
    config, source = with_database(config, args, start, end)
    options = on_call(config, start, end)
    gaps = sum(len(option.gaps) for option in options)
    if args.json:
        emit_json({"from": iso(start, zone), "to": iso(end, zone), "database": source,
                   "options": [option_data(option, zone) for option in options],
                   "gaps": gaps})
    else:
        lines = render(config, options, start, end)
        emit([lines[0], f"run-time overrides: {source}", *lines[1:]])
    return EXIT_GAPS if gaps else EXIT_OK


def on_call(config: Config, start: datetime, end: datetime,
            numbers: Collection[str] | None = None) -> list[OptionCoverage]:
    """Coverage of every hotline option (of ``numbers`` when given) from ``start`` to ``end``
    (``config`` as :func:`with_overrides` gives it, for the run-time overrides);
    :class:`Failure` (exit 2) for a rotation that hands over every few seconds."""
    try:
        return coverage(config, start, end, numbers)
    except ValueError as error:
        raise Failure(EXIT_USAGE, str(error)) from None


def with_overrides(config: Config, start: datetime, end: datetime
                   ) -> tuple[Config, list[OncallOverride]]:
    """The configuration with the run-time overrides of [start, end) in its schedules, and
    those overrides. The database must be bound."""
    rows = overrides.list_overrides(ending_after=start, starting_before=end)
    return applied(config, rows), rows


def applied(config: Config, rows: list[OncallOverride]) -> Config:
    """``config`` with these run-time overrides in its schedules."""
    schedules = with_runtime_overrides(config.schedules, as_runtime(rows), config.users)
    return config.model_copy(update={"schedules": schedules})


def with_database(config: Config, args: argparse.Namespace, start: datetime, end: datetime
                  ) -> tuple[Config, str]:
    """The configuration with the run-time overrides of [start, end) in its schedules, and
    where they came from (the configuration alone with ``--no-db`` or no SQLite file yet)."""
    if getattr(args, "no_db", False):
        return config, "not read (--no-db)"
    url = getattr(args, "database", None)
    try:
        target = parse_url(url or config.database.url)
    except StoreError as error:
        raise Failure(EXIT_USAGE, f"database: {error}") from None
    if not url and isinstance(target, SqliteTarget) and target.path != ":memory:" \
            and not Path(target.path).is_file():
        return config, f"none (no database at {target.path})"
    with store(config, url, must_exist=True) as db:
        config, rows = with_overrides(config, start, end)
        label = str(getattr(db, "label", "database"))
    return config, f"{len(rows)} from {label}"


def render(config: Config, options: list[OptionCoverage], start: Any, end: Any) -> list[str]:
    zone = config.defaults.timezone
    lines = [f"on call from {local_text(start, zone)} to {local_text(end, zone)} ({zone})"]
    if not options:
        lines.append("no call_routing numbers: nothing to check")
    warnings = []
    for option in options:
        lines.append("")
        lines.append(f"{title(option)}, policy {option.policy}")
        for segment in option.segments:
            lines.append(f"  {span(segment, zone)}  {who(segment.state)}"
                         + origins_text(segment.state))
        warnings += [f"WARN {title(option)}: nobody to ring {span(gap, zone)}"
                     + _reasons(gap.state) for gap in option.gaps]
    lines.append("")
    lines += warnings or ["no gaps"]
    return lines


def title(option: OptionCoverage) -> str:
    name = f" ({shown(option.name, 40)})" if option.name else ""
    return f"{option.number}{name} option {option.digit} {shown(option.label, 40)}"


def span(segment: Segment, zone: str) -> str:
    return f"{local_text(segment.start, zone)} -> {local_text(segment.end, zone)}"


def who(state: State) -> str:
    """``anna; then carla``, the out-of-hours action, or ``NOBODY``."""
    if state.policy is None:
        return f"out of hours: {state.action}"
    prefix = f"out of hours ({state.action}): " if state.out_of_hours else ""
    if state.gap:
        return f"{prefix}NOBODY to ring"
    first = ", ".join(state.first_level) or "nobody on call in level 1"
    later = f"; then {', '.join(state.later)}" if state.later else ""
    return f"{prefix}{first}{later}"


def origin_text(schedule: str, origin: Origin) -> str:
    """``primary: run-time override #3 (sick)``, ``primary: rotation``."""
    source = origin.source
    if origin.override_id is not None:
        source += f" #{origin.override_id}"
    if origin.reason:
        source += f" ({shown(origin.reason, 40)})"
    return f"{shown(schedule, 30)}: {source}"


def origins_text(state: State) -> str:
    """`` [it_infra: run-time override #3 (sick)]`` when an override names someone; nothing
    when every schedule follows its rotation (``--json`` always has the origins)."""
    if all(origin.source in ("rotation", "nobody") for _, origin in state.origins):
        return ""
    return "  [" + "; ".join(origin_text(s, o) for s, o in state.origins) + "]"


def _reasons(state: State) -> str:
    return f" ({'; '.join(state.problems)})" if state.problems else ""


def option_data(option: OptionCoverage, zone: str) -> dict[str, Any]:
    return {"number": option.number, "name": option.name, "digit": option.digit,
            "label": option.label, "policy": option.policy,
            "segments": [{"from": iso(s.start, zone), "to": iso(s.end, zone),
                          "policy": s.state.policy, "out_of_hours": s.state.out_of_hours,
                          "action": s.state.action, "first_level": list(s.state.first_level),
                          "later": list(s.state.later), "gap": s.state.gap,
                          "problems": list(s.state.problems),
                          "origins": [{"schedule": schedule, "user": origin.user,
                                       "source": origin.source,
                                       "override_id": origin.override_id,
                                       "reason": origin.reason}
                                      for schedule, origin in s.state.origins]}
                         for s in option.segments]}
