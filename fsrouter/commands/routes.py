"""``fsrouter routes list|set|reset``: the route table, and run-time assignments in the database.

The database overrides the YAML per number (product.md §2); the daemon reads it on every call,
so a change applies to the next call without a restart. ``set`` checks everything first (each
number, the target, every CSV line) and writes all rows in one transaction or none.

The work itself is in functions on plain values that the command and the web console
(:mod:`fsrouter.web.pages.routes`) both call, so they share one set of rules:
:func:`current_routes`, :func:`select_routes`, :func:`routes_from_numbers`,
:func:`routes_from_csv`, :func:`write_routes`, :func:`parse_numbers` and
:func:`reset_routes`. They raise :class:`Failure` with every problem; the ones that touch the
database expect it bound (``with store(...)`` here, ``with db()`` on the web).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    CsvRow,
    Failure,
    by_of,
    did_you_mean,
    emit,
    emit_json,
    fail_if,
    is_agent,
    iso,
    load,
    local_text,
    operator_name,
    parse_csv,
    parse_number,
    read_csv,
    shown,
    store,
    table,
    utc_now,
)
from fsrouter.config import Config
from fsrouter.config.schema import (
    AgentNumber,
    CallRoutingNumber,
    CustomNumber,
    QueueNumber,
    UnassignedNumber,
)
from fsrouter.routing.destinations import NumberEntry, assignment_problem
from fsrouter.store import StoreInputError, audit, queries, session
from fsrouter.store.models import NumberAssignment

ROUTE_TYPES = ("agent", "queue", "unassigned", "custom")
MAX_TARGET = 200  # what the store keeps


# ---------------------------------------------------------------- list


def run_list(args: argparse.Namespace) -> int:
    config = load(args.config)
    with store(config, args.database):
        routes = current_routes(config)
    if args.json:
        emit_json(routes)
        return EXIT_OK
    zone = config.defaults.timezone
    emit(table(("number", "name", "type", "destination", "2-way", "source", "changed"),
               [_row(route, zone) for route in routes]))
    emit(f"note: {route['number']}: {route['note']}" for route in routes if route["note"])
    return EXIT_OK


def current_routes(config: Config) -> list[dict[str, Any]]:
    """The route table now (the database bound): YAML and run-time assignments merged."""
    return route_table(config, queries.list_assignments())


def route_targets(config: Config) -> dict[str, str | None]:
    """Number -> the agent, queue or custom target it goes to now (the database bound)."""
    targets = {entry.number: _entry_target(entry) for entry in config.numbers}
    return targets | {row.number: row.target for row in queries.list_assignments()}


def _entry_target(entry: NumberEntry) -> str | None:
    if isinstance(entry, AgentNumber):
        return entry.agent
    if isinstance(entry, QueueNumber):
        return entry.queue
    if isinstance(entry, CustomNumber):
        return entry.dial_string or entry.extension
    return None


def select_routes(routes: list[dict[str, Any]], route_type: str | None = None,
                  source: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
    """The routes of one type and source whose number, name or destination holds ``text``
    (any case); None or empty matches everything."""
    needle = (text or "").strip().casefold()
    return [route for route in routes
            if (not route_type or route["type"] == route_type)
            and (not source or route["source"] == source)
            and (not needle or any(needle in str(route[key] or "").casefold()
                                   for key in ("number", "name", "destination")))]


def route_table(config: Config, assignments: list[NumberAssignment]) -> list[dict[str, Any]]:
    """One entry per number in the YAML or the database, by number."""
    by_number = {row.number: row for row in assignments}
    numbers = sorted({entry.number for entry in config.numbers} | set(by_number))
    return [_route(config, number, config.number_by_e164(number), by_number.get(number))
            for number in numbers]


def _route(config: Config, number: str, entry: NumberEntry | None,
           row: NumberAssignment | None) -> dict[str, Any]:
    yaml_type = entry.type if entry is not None else None
    route: dict[str, Any] = {
        "number": number, "name": entry.name if entry is not None else None,
        "yaml_type": yaml_type, "yaml_destination": describe_entry(entry),
        "changed_by": None, "changed_at": None, "note": None,
        "two_way": bool(getattr(entry, "two_way", False)),
    }
    if row is None:
        return {**route, "type": yaml_type, "destination": describe_entry(entry),
                "source": "yaml"}
    problem = assignment_problem(row.route_type, row.target, config.users, config.queues)
    note = f"assignment ignored by the daemon: {problem}; the YAML applies" if problem else None
    return {**route, "type": row.route_type,
            "destination": describe_assignment(row.route_type, row.target),
            "source": "db", "changed_by": row.changed_by,
            "changed_at": iso(row.changed_at, config.defaults.timezone), "note": note}


def _row(route: dict[str, Any], zone: str) -> list[str]:
    changed = ""
    if route["source"] == "db":
        when = local_text(datetime.fromisoformat(route["changed_at"]), zone)
        changed = f"{shown(route['changed_by'], 40)} {when}"
    return [route["number"], shown(route["name"] or "", 30), route["type"],
            shown(route["destination"], 70), _two_way_text(route), route["source"], changed]


def _two_way_text(route: dict[str, Any]) -> str:
    """The YAML's ``two_way`` flag; the daemon uses it only for agent and queue routes."""
    if not route["two_way"]:
        return "no"
    return "yes" if route["type"] in ("agent", "queue") else f"unused ({route['type']})"


def describe_entry(entry: NumberEntry | None) -> str:
    """Where a YAML ``numbers`` entry sends callers, in a few words."""
    if entry is None:
        return "-"
    if isinstance(entry, CallRoutingNumber):
        options = sorted(entry.options, key=lambda option: option.digit)
        return "menu: " + ", ".join(f"{o.digit} {o.label} ({o.policy})" for o in options)
    if isinstance(entry, AgentNumber):
        return f"agent {entry.agent}" + (" (2-way)" if entry.two_way else "")
    if isinstance(entry, QueueNumber):
        return f"queue {entry.queue}" + (" (2-way)" if entry.two_way else "")
    if isinstance(entry, UnassignedNumber):
        return "not in service (404)" if entry.behaviour == "404" else "not in service (SIT)"
    assert isinstance(entry, CustomNumber)
    if entry.dial_string is not None:
        return f"bridge {entry.dial_string}"
    return f"extension {entry.extension}@{entry.context}"


def describe_assignment(route_type: str, target: str | None) -> str:
    if route_type == "unassigned":
        return "not in service (SIT)"
    if route_type == "custom" and target and "/" in target:
        return f"bridge {target}"
    if route_type == "custom":
        return f"extension {target}@default"
    return f"{route_type} {target}"


# ---------------------------------------------------------------- set


@dataclass(frozen=True)
class Wanted:
    """One checked assignment, and where it was given (for messages)."""

    where: str
    number: str
    route_type: str
    target: str | None
    line: int = 0  # in a CSV file


def run_set(args: argparse.Namespace) -> int:
    config = load(args.config)
    by = args.by or operator_name()
    if args.from_file is not None and args.numbers:
        raise Failure(EXIT_USAGE, "routes set: give numbers or --from-file, not both")
    if args.from_file is not None:
        path = Path(args.from_file)
        rows, broken = read_csv(path, header_first="number")
        wanted = _checked_csv(config, rows, broken, str(path), by, lambda line: f"{path}:{line}")
    else:
        if not args.numbers:
            raise Failure(EXIT_USAGE, "routes set: give numbers and a target, or --from-file")
        route_type, target = _target_of(args)
        wanted = routes_from_numbers(config, args.numbers, route_type, target, by,
                                     target_where=f"--{route_type}")
    with store(config, args.database):
        notes = write_routes(config, wanted, by, utc_now())
    emit(set_lines(wanted, notes, by))
    return EXIT_OK


def routes_from_numbers(config: Config, texts: Sequence[str], route_type: str,
                        target: str | None, by: str, target_where: str = "target"
                        ) -> list[Wanted]:
    """Numbers as typed, all to one target: checked, or :class:`Failure` with every problem
    (``target_where`` names the target in its message)."""
    errors = []
    if route_type not in ROUTE_TYPES:
        errors.append(f"unknown type {shown(route_type, 20)!r} "
                      "(agent, queue, unassigned or custom)")
    else:
        problem = target_problem(route_type, target, config)
        if problem:
            errors.append(f"{target_where}: {problem}")
    wanted = []
    for text in texts:
        try:
            wanted.append(Wanted(shown(text, 40), parse_number(text, config), route_type,
                                 target))
        except ValueError as error:
            errors.append(f"{shown(text, 40)}: {error}")
    errors += [f"{later.where}: {later.number} is also given as {first.where}"
               for first, later in _duplicates(wanted)]
    _check(errors, by, wanted, "no numbers given: nothing was changed")
    return wanted


def routes_from_csv(config: Config, text: str, name: str, by: str,
                    where: Callable[[int], str] | None = None) -> list[Wanted]:
    """The lines ``number,type,target`` of a CSV text: checked, or :class:`Failure` with
    every bad line (``where(line)`` starts its message; ``name:line`` by default)."""
    rows, broken = parse_csv(text, header_first="number")
    return _checked_csv(config, rows, broken, name, by,
                        where or (lambda line: f"{name}:{line}"))


def _checked_csv(config: Config, rows: list[CsvRow], broken: list[CsvRow], name: str,
                 by: str, where: Callable[[int], str]) -> list[Wanted]:
    problems = [(row.line, row.cells[0]) for row in broken]
    wanted = []
    for row in rows:
        item, problem = _parse_row(config, row.cells, where(row.line), row.line)
        if problem:
            problems.append((row.line, problem))
        elif item is not None:
            wanted.append(item)
    problems += [(later.line, f"{later.number} is also on line {first.line}")
                 for first, later in _duplicates(wanted)]
    errors = [f"{where(line)}: {reason}" for line, reason in sorted(problems)]
    _check(errors, by, wanted, f"{name}: no routes in the file: nothing was changed")
    return wanted


def _check(errors: list[str], by: str, wanted: list[Wanted], empty: str) -> None:
    """Every problem at once (exit 2, nothing written), then: is there anything to do?"""
    fail_if(errors + _by_problem(by), lambda n: f"{n} problem(s): nothing was changed")
    if not wanted:
        raise Failure(EXIT_USAGE, empty)


def write_routes(config: Config, wanted: list[Wanted], by: str, now: datetime) -> list[str]:
    """Write checked routes, all or none, audited as ``by`` (the database bound); returns the
    notes on what the change means."""
    notes = [note for item in wanted for note in _notes(config, item)]
    items = [queries.Assignment(w.number, w.route_type, w.target) for w in wanted]
    try:
        set_audited(items, by, now)
    except StoreInputError as error:
        raise Failure(EXIT_USAGE, f"{error}: nothing was changed") from None
    return notes


def set_lines(wanted: list[Wanted], notes: list[str], by: str) -> list[str]:
    """What ``routes set`` reports after writing."""
    return [*(f"set {w.number} -> {describe_assignment(w.route_type, w.target)}"
              for w in wanted),
            *(f"note: {note}" for note in notes),
            f"{len(wanted)} route(s) set by {shown(by, 40)}; they apply to the next call"]


def route_value(row: NumberAssignment | None) -> dict[str, Any] | None:
    """A number's run-time assignment as the audit trail keeps it (None: the YAML applies)."""
    if row is None:
        return None
    return {"type": row.route_type, "target": row.target}


def set_audited(items: list[queries.Assignment], by: str, now: datetime) -> None:
    """Set the routes and audit each one (before and after), in one transaction."""
    with session(immediate=True):
        before = {item.number: route_value(queries.get_assignment(item.number))
                  for item in items}
        rows = queries.set_assignments(items, by, now)
        audit.record_many([("route.set", row.number, before[row.number], route_value(row))
                           for row in rows], by, now)


def _target_of(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.agent is not None:
        return "agent", args.agent
    if args.queue is not None:
        return "queue", args.queue
    if args.custom is not None:
        return "custom", args.custom
    if args.unassigned:
        return "unassigned", None
    raise Failure(EXIT_USAGE,
                  "routes set: give one of --agent, --queue, --unassigned or --custom")


def _parse_row(config: Config, cells: tuple[str, ...], where: str, line: int
               ) -> tuple[Wanted | None, str | None]:
    if not 2 <= len(cells) <= 3:
        return None, f"expected number,type,target (3 columns), got {len(cells)}"
    text, route_type = cells[0], cells[1].lower()
    target = cells[2] if len(cells) == 3 and cells[2] != "" else None
    problems = []
    try:
        number = parse_number(text, config)
    except ValueError as error:
        number = ""
        problems.append(f"number {shown(text, 40)!r}: {error}")
    if route_type not in ROUTE_TYPES:
        problems.append(f"unknown type {shown(cells[1], 20)!r} "
                        f"(agent, queue, unassigned or custom)")
    else:
        problem = target_problem(route_type, target, config)
        if problem:
            problems.append(problem)
    if problems:
        return None, "; ".join(problems)
    return Wanted(where, number, route_type, target, line), None


def target_problem(route_type: str, target: str | None, config: Config) -> str | None:
    """Why ``target`` cannot be used for ``route_type``; the daemon's own check comes last."""
    if route_type == "unassigned":
        return f"unassigned takes no target, got {shown(target, 40)!r}" if target else None
    if not target:
        return {"agent": "agent needs a user id as target",
                "queue": "queue needs a queue name as target",
                "custom": "custom needs a dial string (user/1000) or an extension as target",
                }[route_type]
    if len(target) > MAX_TARGET:
        return f"target longer than {MAX_TARGET} characters"
    if route_type == "agent" and target not in config.users:
        return f"unknown agent {shown(target, 40)!r}{did_you_mean(target, config.users)}"
    if route_type == "queue" and target not in config.queues:
        return f"unknown queue {shown(target, 40)!r}{did_you_mean(target, config.queues)}"
    problem = assignment_problem(route_type, target, config.users, config.queues)
    if problem and route_type == "custom":
        return (f"{problem}: a custom target is a dial string like user/1000 or an extension "
                "like 1000 (letters, digits and @ . _ : + - / only)")
    return problem


def _duplicates(wanted: list[Wanted]) -> list[tuple[Wanted, Wanted]]:
    """(first, later) for every number given more than once."""
    first: dict[str, Wanted] = {}
    pairs = []
    for item in wanted:
        if item.number in first:
            pairs.append((first[item.number], item))
        else:
            first[item.number] = item
    return pairs


def _by_problem(by: str) -> list[str]:
    if not by.strip() or len(by) > 128 or not by.isprintable():
        return [f"--by: must be 1-128 printable characters, got {shown(by, 40)!r}"]
    return []


def _notes(config: Config, item: Wanted) -> list[str]:
    entry = config.number_by_e164(item.number)
    notes = []
    if entry is None:
        notes.append(f"{item.number} is not in the configuration's numbers: the database "
                     "serves it (the dialplan must send it to fsrouter)")
    elif isinstance(entry, CallRoutingNumber):
        notes.append(f"{item.number} is the on-call hotline {shown(entry.name or '', 40)!r} in "
                     "the YAML: its menu is replaced until `fsrouter routes reset`")
    if item.route_type == "agent" and item.target and not is_agent(config.users[item.target]):
        notes.append(f"{item.target} has no SIP phone or extension: callers get the number's "
                     "logged-out action (voicemail by default)")
    return notes


# ---------------------------------------------------------------- reset


def run_reset(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.all == bool(args.numbers):
        raise Failure(EXIT_USAGE, "routes reset: give numbers or --all (not both)")
    numbers = parse_numbers(config, args.numbers)
    by = by_of(args)
    with store(config, args.database):
        lines = reset_routes(config, None if args.all else numbers, by, utc_now())
    emit(lines)
    return EXIT_OK


def parse_numbers(config: Config, texts: Sequence[str]) -> list[str]:
    """Numbers as typed, in E.164; :class:`Failure` naming every one that is not a number."""
    numbers, errors = [], []
    for text in texts:
        try:
            numbers.append(parse_number(text, config))
        except ValueError as error:
            errors.append(f"{shown(text, 40)}: {error}")
    fail_if(errors, lambda n: f"{n} problem(s): nothing was changed")
    return numbers


def reset_routes(config: Config, numbers: list[str] | None, by: str, now: datetime
                 ) -> list[str]:
    """Drop the run-time assignments of ``numbers`` (None: all), audited as ``by`` in the
    same transaction (the database bound); returns what the next call to each gets."""
    fail_if(_by_problem(by), lambda n: f"{n} problem(s): nothing was changed")
    with session(immediate=True):
        rows = {row.number: row for row in queries.list_assignments()}
        had = list(rows)
        numbers = had if numbers is None else list(dict.fromkeys(numbers))
        dropped = queries.reset_assignments(numbers)
        audit.record_many([("route.reset", number, route_value(rows[number]), None)
                           for number in numbers if number in rows], by, now)
    return [*(_after_reset(config, number) if number in had
              else f"note: {number} had no run-time assignment; {_applies(config, number)}"
              for number in numbers),
            f"{dropped} assignment(s) removed"]


def _applies(config: Config, number: str) -> str:
    """What the next call to ``number`` gets from the YAML (the only source after a reset)."""
    entry = config.number_by_e164(number)
    if entry is None:
        return ("it is not in the configuration's numbers: callers get not in service (SIT) "
                "from fsrouter")
    return f"the YAML applies: {describe_entry(entry)}"


def _after_reset(config: Config, number: str) -> str:
    return f"reset {number}: {_applies(config, number)}"
