"""``fsrouter oncall override add|list|remove``: on-call changes without editing the YAML.

"I am sick, Bernd covers tonight": an override puts one user on call for one schedule from
``--from`` to ``--to``. It is stored in the database and beats the schedule's rotations and its
YAML overrides; the daemon reads it on the next call, ``simulate --with-db`` and ``oncall``
show it. ``add`` checks everything first (user and schedule in the configuration, times, no
overlap with another run-time override of the schedule) and writes the row and its audit
entry in one transaction, or nothing.

:func:`checked`, :func:`add`, :func:`listed` and :func:`remove` take plain values (the last
three need the database bound): the web console calls them too, with the same rules.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    by_of,
    did_you_mean,
    emit,
    emit_listing,
    fail_if,
    iso,
    load,
    local_text,
    parse_moment,
    shown,
    store,
    table,
    utc_now,
)
from fsrouter.config import Config
from fsrouter.store import NotFound, StoreInputError, overrides
from fsrouter.store.models import OncallOverride

COLUMNS = ("id", "schedule", "user", "from", "to", "reason", "created_by", "created_at",
           "active")


def run_add(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    by = by_of(args)
    now = utc_now()
    start, end = checked(config, args.schedule, args.user, args.reason, args.start, args.end,
                         now)
    with store(config, args.database):
        row = add(config, args.schedule, args.user, start, end, args.reason, by, now)
    emit([f"override #{row.id}: {row.user_id} is on call for {row.schedule} from "
          f"{local_text(row.starts_at, zone)} to {local_text(row.ends_at, zone)}"
          + (f" ({shown(row.reason, 60)})" if row.reason else ""),
          f"added by {shown(by, 40)}; it applies to the next call"])
    return EXIT_OK


def add(config: Config, schedule: str, user: str, start: datetime, end: datetime,
        reason: str | None, by: str, now: datetime) -> OncallOverride:
    """Store the override (checked by :func:`checked`) and its audit entry; :class:`Failure`
    (exit 2) on an overlap or a value the store refuses. The database must be bound."""
    try:
        return overrides.add_override(schedule, user, start, end, reason, by, now)
    except overrides.OverlapError as error:
        raise Failure(EXIT_USAGE, *_overlap_lines(error, config.defaults.timezone),
                      "nothing was changed") from None
    except StoreInputError as error:
        raise Failure(EXIT_USAGE, f"{error}: nothing was changed") from None


def checked(config: Config, schedule: str, user: str, reason: str | None, start_text: str,
            end_text: str, now: datetime) -> tuple[datetime, datetime]:
    """The override's instants; every problem at once (exit 2), nothing written."""
    zone = config.defaults.timezone
    errors = []
    if user not in config.users:
        errors.append(f"unknown user {shown(user, 40)!r}"
                      f"{did_you_mean(user, config.users)}")
    if schedule not in config.schedules:
        known = ", ".join(sorted(config.schedules)) or "none configured"
        errors.append(f"unknown schedule {shown(schedule, 40)!r}"
                      f"{did_you_mean(schedule, config.schedules)} (schedules: {known})")
    if reason is not None and (len(reason) > overrides.MAX_REASON
                               or not reason.isprintable()):
        errors.append(f"--reason: at most {overrides.MAX_REASON} printable characters")
    bounds: list[datetime | None] = []
    for flag, text in (("--from", start_text), ("--to", end_text)):
        try:
            bounds.append(parse_moment(text, zone))
        except ValueError as error:
            errors.append(f"{flag}: {error}")
            bounds.append(None)
    start, end = bounds
    if start is not None and end is not None:
        if end <= start:
            errors.append(f"--to ({local_text(end, zone)}) must be after --from "
                          f"({local_text(start, zone)})")
        elif end <= now:
            errors.append(f"--to ({local_text(end, zone)}) is in the past: the override "
                          "would change nothing")
    fail_if(errors, lambda n: f"{n} problem(s): nothing was changed")
    assert start is not None and end is not None
    return start, end


def _overlap_lines(error: overrides.OverlapError, zone: str) -> list[str]:
    return [f"overlaps override #{row.id}: {row.user_id} for {row.schedule} from "
            f"{local_text(row.starts_at, zone)} to {local_text(row.ends_at, zone)} "
            f"(remove it first: fsrouter oncall override remove {row.id})"
            for row in error.clashes]


def run_list(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    now = utc_now()
    with store(config, args.database):
        rows = listed(None if args.all else now, args.schedule)
    items = [item(row, zone, now) for row in rows]
    emit_listing(args, items, COLUMNS, lambda: _text(items, rows, zone, config))
    return EXIT_OK


def listed(ending_after: datetime | None, schedule: str | None = None
           ) -> list[OncallOverride]:
    """The run-time overrides (those ending after ``ending_after``; None: all), by start."""
    return overrides.list_overrides(ending_after=ending_after, schedule=schedule)


def item(row: OncallOverride, zone: str, now: datetime) -> dict[str, Any]:
    return {"id": row.id, "schedule": row.schedule, "user": row.user_id,
            "from": iso(row.starts_at, zone), "to": iso(row.ends_at, zone),
            "reason": row.reason, "created_by": row.created_by,
            "created_at": iso(row.created_at, zone),
            "active": row.starts_at <= now < row.ends_at}


def _text(items: list[dict[str, Any]], rows: list[OncallOverride], zone: str,
          config: Config) -> list[str]:
    if not rows:
        return ["no run-time overrides"]
    lines = table(("id", "schedule", "user", "from", "to", "reason", "by"), [
        [str(row.id), shown(row.schedule, 30), shown(row.user_id, 30)
         + ("" if row.user_id in config.users else " (not configured)"),
         local_text(row.starts_at, zone), local_text(row.ends_at, zone),
         shown(row.reason or "", 40), shown(row.created_by, 30)
         + (" (active now)" if entry["active"] else "")]
        for row, entry in zip(rows, items, strict=True)])
    return lines


def run_remove(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    by = by_of(args)
    ids = list(dict.fromkeys(args.ids))
    with store(config, args.database):
        rows = remove(ids, by, utc_now())
    emit(f"removed override #{row.id}: {row.user_id} for {row.schedule} "
         f"{local_text(row.starts_at, zone)} -> {local_text(row.ends_at, zone)}"
         for row in rows)
    emit([f"{len(rows)} override(s) removed by {shown(by, 40)}"])
    return EXIT_OK


def remove(ids: Sequence[int], by: str, now: datetime) -> list[OncallOverride]:
    """Remove these overrides (audited as ``by``), all or none: :class:`Failure` (exit 2) when
    one does not exist. The database must be bound."""
    try:
        return overrides.remove_overrides(list(dict.fromkeys(ids)), by, now)
    except NotFound as error:
        raise Failure(EXIT_USAGE, f"{error}: nothing was changed") from None
