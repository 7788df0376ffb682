"""``fsrouter audit``: the changes made through fsrouter, who made them, before and after.

Route changes, agent log-ins and log-outs (CLI and feature codes), run-time on-call
overrides, 2-way imports, reloads accepted or refused, delivery retries. Nothing in the trail
is ever changed or deleted. Filters: ``--since``/``--until``, ``--kind`` (``route.set``, or
``route.`` for every route change), ``--subject`` (a number, a user...), ``--who``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    emit_listing,
    iso,
    load,
    local_text,
    parse_number,
    shown,
    store,
    table,
    time_range,
)
from fsrouter.commands.history import MAX_LIMIT
from fsrouter.store import audit
from fsrouter.store.models import AuditEntry

COLUMNS = ("id", "at", "who", "kind", "subject", "before", "after")


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    since, until = time_range(args, zone)
    if not 1 <= args.limit <= MAX_LIMIT:
        raise Failure(EXIT_USAGE, f"--limit must be 1-{MAX_LIMIT}, got {args.limit}")
    subject = args.subject
    if subject is not None and subject[:1] in "+0123456789":
        try:  # a number in any form the configuration accepts
            subject = parse_number(subject, config)
        except ValueError:
            pass
    wanted = audit.AuditFilter(since, until, args.kind, subject, args.who, args.limit)
    with store(config, args.database, must_exist=True):
        rows = audit.entries(wanted)
    items = [item(row, zone) for row in rows]
    if getattr(args, "csv", False):  # one cell per side: the JSON text
        items = [{**entry, "before": _compact(entry["before"]),
                  "after": _compact(entry["after"])} for entry in items]
    emit_listing(args, items, COLUMNS, lambda: _text(rows, zone))
    return EXIT_OK


def item(row: AuditEntry, zone: str) -> dict[str, Any]:
    return {"id": row.id, "at": iso(row.at, zone), "who": row.who, "kind": row.kind,
            "subject": row.subject, "before": audit.decoded(row.before),
            "after": audit.decoded(row.after)}


def _compact(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(rows: list[AuditEntry], zone: str) -> list[str]:
    if not rows:
        return ["no audit entries"]
    return [*table(("at", "who", "what", "subject", "before -> after"), [
        [local_text(row.at, zone), shown(row.who, 30), row.kind, shown(row.subject, 40),
         f"{_side(row.before)} -> {_side(row.after)}"] for row in rows]),
        f"{len(rows)} entr(ies)"]


def _side(text: str | None) -> str:
    """A short view of one side: ``-`` for nothing, else ``key=value, ...``."""
    if text is None:
        return "-"
    value = audit.decoded(text)
    if isinstance(value, dict):
        return shown(", ".join(f"{k}={v}" for k, v in value.items() if v is not None), 70)
    return shown(value, 70)
