"""The audit trail: every change made through fsrouter, kept for good.

One append-only table (:class:`~fsrouter.store.models.AuditEntry`): who, when, what kind of
change, its subject (a number, a user, an override), and the value before and after as JSON.
Nothing here updates or deletes a row. :func:`record` joins the caller's transaction when
there is one (``with session(immediate=True): change...; record(...)``), so a change and its
audit entry are written together or not at all.

Kinds (``noun.verb``): ``route.set``, ``route.reset``, ``agent.login``, ``agent.logout``,
``override.add``, ``override.remove``, ``two_way.import``, ``reload.accepted``,
``reload.refused``, ``delivery.retry``; the console's accounts and tokens: ``web_user.add``,
``web_user.passwd``, ``web_user.remove``, ``web_token.add``, ``web_token.remove``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsrouter.store import queries
from fsrouter.store.db import session
from fsrouter.store.errors import StoreInputError
from fsrouter.store.models import AuditEntry

KIND = re.compile(r"[a-z][a-z_]{0,19}\.[a-z][a-z_]{0,18}")
MAX_WHO = 128
MAX_SUBJECT = 300
MAX_VALUE = 20_000  # bytes of JSON per side; a longer value is cut and marked
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str, what: str, limit: int) -> str:
    text = _CONTROL.sub("?", str(value)).strip()
    if not text:
        raise StoreInputError(f"audit {what} must not be empty")
    return text[:limit]


def _json(value: Any) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, default=str)
    if len(text) > MAX_VALUE:
        text = json.dumps({"truncated": text[: MAX_VALUE - 100]})
    return text


def record(kind: str, subject: str, who: str, now: datetime, before: Any = None,
           after: Any = None) -> AuditEntry:
    """Append one entry (in the caller's transaction, if any)."""
    if not KIND.fullmatch(kind):
        raise StoreInputError(f"audit kind must look like route.set, got {kind!r}")
    with session():
        return AuditEntry.create(at=now, who=_printable(who, "who", MAX_WHO), kind=kind,
                                 subject=_printable(subject, "subject", MAX_SUBJECT),
                                 before=_json(before), after=_json(after))


def record_many(entries: Sequence[tuple[str, str, Any, Any]], who: str, now: datetime) -> int:
    """Append ``(kind, subject, before, after)`` entries, one transaction."""
    with session():
        for kind, subject, before, after in entries:
            record(kind, subject, who, now, before, after)
    return len(entries)


def change_presence(user_id: str, state: str, who: str, now: datetime) -> str:
    """Log an agent in or out and audit it (when it changes), one transaction; returns the
    state before. Used by ``fsrouter agents`` and the phones' feature codes."""
    with session(immediate=True):
        row = queries.get_presence(user_id)
        was = row.state if row is not None else "logged_out"
        queries.set_presence(user_id, now, state=state)
        if was != state:
            kind = "agent.login" if state == "logged_in" else "agent.logout"
            record(kind, user_id, who, now, {"state": was}, {"state": state})
    return was


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None  # exact, or a prefix ending in "." ("route.")
    subject: str | None = None
    who: str | None = None
    limit: int = 1000
    offset: int = 0  # skip the newest N (a page of the console)


def entries(wanted: AuditFilter) -> list[AuditEntry]:
    """Matching entries, oldest first (the newest ``limit`` of them)."""
    query = AuditEntry.select()
    if wanted.since is not None:
        query = query.where(AuditEntry.at >= wanted.since)
    if wanted.until is not None:
        query = query.where(AuditEntry.at < wanted.until)
    if wanted.kind:
        query = query.where(AuditEntry.kind.startswith(wanted.kind)
                            if wanted.kind.endswith(".") else AuditEntry.kind == wanted.kind)
    if wanted.subject:
        query = query.where(AuditEntry.subject == wanted.subject)
    if wanted.who:
        query = query.where(AuditEntry.who == wanted.who)
    with session():
        rows = list(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                    .limit(wanted.limit).offset(wanted.offset or None))
    return rows[::-1]


def decoded(text: str | None) -> Any:
    """A stored before/after value as Python data."""
    return None if text is None else json.loads(text)
