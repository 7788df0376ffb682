"""``fsrouter two-way list|import``: who called which customer (2-way VoIP mappings).

A customer calling back a number marked ``two_way`` reaches the agent who last called them,
while the mapping lives (``two_way.max_age_hours`` from the last call). ``import`` reads
``customer_number,agent,our_number[,last_call_iso]`` lines (e.g. from a previous dialer),
checks every line first and writes all of them or none. The newest mapping per customer
wins: a line older than what the database holds, or one that has already expired, is skipped
and said so.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    agent_problem,
    by_of,
    emit,
    emit_json,
    fail_if,
    iso,
    line_errors,
    load,
    local_text,
    parse_moment,
    parse_number,
    read_csv,
    shown,
    store,
    table,
    utc_now,
)
from fsrouter.config import Config
from fsrouter.store import audit, queries, session
from fsrouter.store.models import TwoWayMapping


def run_list(args: argparse.Namespace) -> int:
    config = load(args.config)
    now = utc_now()
    with store(config, args.database):
        rows = mappings(now, include_expired=args.all)
    zone = config.defaults.timezone
    items = [_item(row, config, now) for row in rows]
    if args.json:
        emit_json(items)
        return EXIT_OK
    emit(table(("customer", "agent", "our number", "last call", "expires"), [
        [row.customer_number, shown(row.user_id, 30) + _agent_note(row.user_id, config),
         row.our_number, local_text(row.last_call_at, zone),
         local_text(row.expires_at, zone) + (" (expired)" if row.expires_at <= now else "")]
        for row in rows]))
    return EXIT_OK


def mappings(now: datetime, include_expired: bool) -> list[TwoWayMapping]:
    """Live mappings (all with ``include_expired``), newest call first."""
    with session():
        query = TwoWayMapping.select()
        if not include_expired:
            query = query.where(TwoWayMapping.expires_at > now)
        return list(query.order_by(TwoWayMapping.last_call_at.desc(),
                                   TwoWayMapping.customer_number))


def _item(row: TwoWayMapping, config: Config, now: datetime) -> dict[str, Any]:
    zone = config.defaults.timezone
    return {"customer_number": row.customer_number, "agent": row.user_id,
            "agent_configured": row.user_id in config.users, "our_number": row.our_number,
            "last_call": iso(row.last_call_at, zone), "expires": iso(row.expires_at, zone),
            "expired": row.expires_at <= now}


def _agent_note(user_id: str, config: Config) -> str:
    return "" if user_id in config.users else " (not configured)"


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class Line:
    line: int
    customer: str
    agent: str
    our_number: str
    last_call: datetime


def run_import(args: argparse.Namespace) -> int:
    config = load(args.config)
    path = Path(args.file)
    now = utc_now()
    lines, errors = parse_file(config, path, now)
    fail_if(errors, lambda n: f"{n} problem(s): nothing was imported")
    if not lines:
        raise Failure(EXIT_USAGE, f"{path}: no mappings in the file: nothing was imported")
    ttl = timedelta(hours=config.two_way.max_age_hours)
    by = by_of(args)
    with store(config, args.database), session(immediate=True):
        imported, notes = _write(newest_per_customer(lines), ttl, now, by)
    emit(f"note: {path}:{note}" for note in notes)
    emit([f"imported {imported} mapping(s) from {path} "
          f"(kept for {config.two_way.max_age_hours} h after the last call)"])
    return EXIT_OK


def parse_file(config: Config, path: Path, now: datetime) -> tuple[list[Line], list[str]]:
    """The checked lines, and ``file:line: reason`` for every bad one."""
    rows, broken = read_csv(path, header_first="customer_number")
    problems = [(row.line, row.cells[0]) for row in broken]
    lines = []
    for row in rows:
        item, reasons = _parse_row(config, row.line, row.cells, now)
        if reasons:
            problems.append((row.line, "; ".join(reasons)))
        elif item is not None:
            lines.append(item)
    return lines, line_errors(path, problems)


def _parse_row(config: Config, line: int, cells: tuple[str, ...], now: datetime
               ) -> tuple[Line | None, list[str]]:
    if not 3 <= len(cells) <= 4:
        return None, [f"expected customer_number,agent,our_number[,last_call] "
                      f"(3 or 4 columns), got {len(cells)}"]
    reasons: list[str] = []
    customer = _number(cells[0], "customer_number", config, reasons)
    our_number = _number(cells[2], "our_number", config, reasons)
    problem = agent_problem(cells[1], config)
    if problem:
        reasons.append(problem)
    last_call = now
    if len(cells) == 4 and cells[3]:
        try:
            last_call = parse_moment(cells[3], config.defaults.timezone)
        except ValueError as error:
            reasons.append(f"last_call: {error}")
        else:
            if last_call > now:
                reasons.append(f"last_call {shown(cells[3], 40)} is in the future")
    if reasons:
        return None, reasons
    return Line(line, customer, cells[1], our_number, last_call), []


def _number(text: str, what: str, config: Config, reasons: list[str]) -> str:
    try:
        return parse_number(text, config)
    except ValueError as error:
        reasons.append(f"{what} {shown(text, 40)!r}: {error}")
        return ""


def newest_per_customer(lines: list[Line]) -> list[Line]:
    """One line per customer: the newest call (a later line wins a tie)."""
    newest: dict[str, Line] = {}
    for item in lines:
        known = newest.get(item.customer)
        if known is None or item.last_call >= known.last_call:
            newest[item.customer] = item
    return sorted(newest.values(), key=lambda item: item.line)


def _mapping_value(row: TwoWayMapping | None) -> dict[str, str] | None:
    if row is None:
        return None
    return {"agent": row.user_id, "our_number": row.our_number,
            "last_call": row.last_call_at.isoformat(), "expires": row.expires_at.isoformat()}


def _write(lines: list[Line], ttl: timedelta, now: datetime, by: str
           ) -> tuple[int, list[str]]:
    """Store the lines and audit each (inside the caller's transaction); skip expired and
    older ones."""
    imported, notes = 0, []
    for item in lines:
        if item.last_call + ttl <= now:
            notes.append(f"{item.line}: {item.customer}: skipped, expired "
                         f"{(item.last_call + ttl).isoformat(timespec='minutes')}")
            continue
        known = TwoWayMapping.get_or_none(TwoWayMapping.customer_number == item.customer)
        if known is not None and known.last_call_at > item.last_call:
            notes.append(f"{item.line}: {item.customer}: skipped, the database has a newer "
                         f"call by {shown(known.user_id, 30)}")
            continue
        row = queries.remember_two_way(item.customer, item.agent, item.our_number,
                                       item.last_call, ttl)
        audit.record("two_way.import", item.customer, by, now, _mapping_value(known),
                     _mapping_value(row))
        imported += 1
    return imported, notes
