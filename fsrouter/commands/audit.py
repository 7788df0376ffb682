"""``fsrouter audit``: the changes made through fsrouter, who made them, before and after.

Route changes, agent log-ins and log-outs (CLI and feature codes), run-time on-call
overrides, 2-way imports, reloads accepted or refused, delivery retries. Nothing in the trail
is ever changed or deleted. Filters: ``--since``/``--until``, ``--kind`` (``route.set``, or
``route.`` for every route change), ``--subject`` (a number, a user...), ``--who``.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from typing import Any

from fsrouter.commands import EXIT_OK
from fsrouter.commands.common import (
    emit_listing,
    iso,
    load,
    local_text,
    parse_number,
    shown,
    store,
    table,
)
from fsrouter.commands.history import filter_text, window_of
from fsrouter.config import Config
from fsrouter.store import audit
from fsrouter.store.history import Window
from fsrouter.store.models import AuditEntry

COLUMNS = ("id", "at", "who", "kind", "subject", "before", "after")
_FIRST = ("user", "agent", "type", "target", "state", "from", "to", "reason")  # text order


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    wanted = audit_filter(config, window_of(config, args.since, args.until, args.limit),
                          args.kind, args.subject, args.who)
    with store(config, args.database, must_exist=True):
        rows = audit.entries(wanted)
    items = [item(row, zone) for row in rows]
    if getattr(args, "csv", False):  # one cell per side: the JSON text
        items = [{**entry, "before": _compact(entry["before"]),
                  "after": _compact(entry["after"])} for entry in items]
    emit_listing(args, items, COLUMNS, lambda: _text(items, zone))
    return EXIT_OK


def audit_filter(config: Config, wanted: Window, kind: str | None = None,
                 subject: str | None = None, who: str | None = None) -> audit.AuditFilter:
    """The trail's filters from plain values (the command and the console share it)."""
    subject = filter_text(subject, "subject")
    if subject is not None and subject[:1] in "+0123456789":
        try:  # a number in any form the configuration accepts
            subject = parse_number(subject, config)
        except ValueError:
            pass
    return audit.AuditFilter(wanted.since, wanted.until, filter_text(kind, "kind"), subject,
                             filter_text(who, "who"), wanted.limit, wanted.offset)


def item(row: AuditEntry, zone: str) -> dict[str, Any]:
    return {"id": row.id, "at": iso(row.at, zone), "who": row.who, "kind": row.kind,
            "subject": row.subject, "before": localised(audit.decoded(row.before), zone),
            "after": localised(audit.decoded(row.after), zone)}


_STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d")


def localised(value: Any, zone: str) -> Any:
    """Times inside a before/after value (stored as UTC ISO) in the one output convention."""
    if isinstance(value, dict):
        return {key: localised(item, zone) for key, item in value.items()}
    if isinstance(value, list):
        return [localised(item, zone) for item in value]
    if isinstance(value, str) and _STORED_TIME.fullmatch(value):
        return iso(datetime.fromisoformat(value), zone)
    return value


def _compact(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(items: list[dict[str, Any]], zone: str) -> list[str]:
    if not items:
        return ["no audit entries"]
    return [*table(("at", "who", "what", "subject", "before -> after"), [
        [local_text(datetime.fromisoformat(entry["at"]), zone), shown(entry["who"], 30),
         entry["kind"], shown(entry["subject"], 40),
         f"{_side(entry['before'])} -> {_side(entry['after'])}"] for entry in items]),
        f"{len(items)} entr(ies)"]


def _side(value: Any) -> str:
    """A short view of one side: ``-`` for nothing, else ``key=value, ...``."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (_FIRST.index(k) if k in _FIRST else len(_FIRST), k))
        return shown(", ".join(f"{k}={value[k]}" for k in keys
                               if value[k] is not None and k != "id"), 90)
    return shown(value, 70)
