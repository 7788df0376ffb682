"""What happened: incidents with their timeline, call records, voicemails, and the mails and
webhooks that could not be delivered (and making them due again).

Reads for ``fsrouter incidents|calls|voicemails|deliveries``. The only writes are
:func:`retry_mails` and :func:`retry_webhooks`: they put failed deliveries back in the
senders' queues (fsrouter.notify picks them up on its next poll) and audit it, in one
transaction. The senders' own retry rules are theirs; a retried row is simply due now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import peewee

from fsrouter.store import audit
from fsrouter.store.db import session
from fsrouter.store.errors import NotFound
from fsrouter.store.models import Attempt, CallRecord, Incident, OutboxMessage, Voicemail

DEFAULT_LIMIT = 200


@dataclass(frozen=True)
class Window:
    """Rows from ``since`` (inclusive) to ``until`` (exclusive); the newest ``limit`` after
    skipping the newest ``offset`` (a page of the console)."""

    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _in_window(query: peewee.ModelSelect, column: peewee.Field, window: Window
               ) -> peewee.ModelSelect:
    if window.since is not None:
        query = query.where(column >= window.since)
    if window.until is not None:
        query = query.where(column < window.until)
    return query


def _newest(query: peewee.ModelSelect, column: peewee.Field, key: peewee.Field,
            window: Window) -> list[peewee.Model]:
    """The newest ``limit`` rows (after ``offset``), oldest first (a listing reads like a
    log)."""
    with session():
        rows = list(query.order_by(column.desc(), key.desc()).limit(window.limit)
                    .offset(window.offset or None))
    return rows[::-1]


# ---------------------------------------------------------------- incidents


def list_incidents(window: Window, number: str | None = None, option: str | None = None,
                   state: str | None = None) -> list[Incident]:
    query = _in_window(Incident.select(), Incident.created_at, window)
    if number is not None:
        query = query.where(Incident.number == number)
    if option is not None:
        query = query.where(Incident.option_digit == option)
    if state is not None:
        query = query.where(Incident.state == state)
    return _newest(query, Incident.created_at, Incident.id, window)


@dataclass(frozen=True)
class Timeline:
    incident: Incident
    calls: list[CallRecord]
    attempts: list[Attempt]
    voicemails: list[Voicemail]


def incident_timeline(incident_id: int) -> Timeline:
    """An incident with its calls, every dial attempt and the voicemails left."""
    with session():
        incident = Incident.get_or_none(Incident.id == incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        calls = list(CallRecord.select().where(CallRecord.incident == incident_id)
                     .order_by(CallRecord.started_at, CallRecord.id))
        attempts = list(Attempt.select().where(Attempt.incident == incident_id)
                        .order_by(Attempt.started_at, Attempt.seq, Attempt.id))
        voicemails = list(Voicemail.select().where(Voicemail.incident == incident_id)
                          .order_by(Voicemail.created_at, Voicemail.id))
    return Timeline(incident, calls, attempts, voicemails)


# ---------------------------------------------------------------- calls and voicemails


def list_calls(window: Window, number: str | None = None, outcome: str | None = None
               ) -> list[CallRecord]:
    query = _in_window(CallRecord.select(), CallRecord.started_at, window)
    if number is not None:
        query = query.where(CallRecord.number == number)
    if outcome is not None:
        query = query.where(CallRecord.outcome == outcome)
    return _newest(query, CallRecord.started_at, CallRecord.id, window)


def attempt_counts(call_ids: Sequence[int]) -> dict[int, int]:
    """How many dial attempts each call made."""
    if not call_ids:
        return {}
    with session():
        rows = (Attempt.select(Attempt.call, peewee.fn.COUNT(Attempt.id).alias("n"))
                .where(Attempt.call.in_(list(call_ids))).group_by(Attempt.call).tuples())
        return {call_id: count for call_id, count in rows}


def get_voicemail(voicemail_id: int) -> Voicemail:
    """One voicemail, or :class:`NotFound`."""
    with session():
        row = Voicemail.get_or_none(Voicemail.id == voicemail_id)
    if row is None:
        raise NotFound(f"no voicemail {voicemail_id}")
    return row


MAIL_STATES = ("sent", "pending", "failed")


def mail_state(row: Voicemail) -> str:
    """``sent``, ``failed`` (given up, kept until retried) or ``pending``."""
    if row.emailed_at is not None:
        return "sent"
    return "failed" if row.email_gave_up_at is not None else "pending"


def _mail_state_is(state: str) -> peewee.Expression:
    if state == "sent":
        return Voicemail.emailed_at.is_null(False)
    failed = Voicemail.emailed_at.is_null() & Voicemail.email_gave_up_at.is_null(False)
    if state == "failed":
        return failed
    return Voicemail.emailed_at.is_null() & Voicemail.email_gave_up_at.is_null()


def list_voicemails(window: Window, user: str | None = None, mail: str | None = None
                    ) -> list[Voicemail]:
    query = _in_window(Voicemail.select(), Voicemail.created_at, window)
    if user is not None:
        query = query.where(Voicemail.user_id == user)
    if mail is not None:
        query = query.where(_mail_state_is(mail))
    return _newest(query, Voicemail.created_at, Voicemail.id, window)


# ---------------------------------------------------------------- failed deliveries


def failed_mails(window: Window) -> list[Voicemail]:
    query = _in_window(Voicemail.select().where(_mail_state_is("failed")),
                       Voicemail.created_at, window)
    return _newest(query, Voicemail.created_at, Voicemail.id, window)


def failed_webhooks(window: Window) -> list[OutboxMessage]:
    query = _in_window(OutboxMessage.select().where(OutboxMessage.state == "failed"),
                       OutboxMessage.created_at, window)
    return _newest(query, OutboxMessage.created_at, OutboxMessage.id, window)


def _mail_value(row: Voicemail) -> dict[str, object]:
    return {"state": mail_state(row), "attempts": row.email_attempts,
            "error": row.email_error}


def _webhook_value(row: OutboxMessage) -> dict[str, object]:
    return {"state": row.state, "attempts": row.attempts, "error": row.last_error,
            "status": row.last_status}


def retry_mails(ids: Sequence[int], who: str, now: datetime) -> list[Voicemail]:
    """Make these failed voicemail mails due now (all or none: :class:`NotFound` when one
    is missing or not failed)."""
    with session(immediate=True):
        rows = list(Voicemail.select().where(Voicemail.id.in_(list(ids))
                                             & _mail_state_is("failed")))
        _require_all(ids, [row.id for row in rows], "failed voicemail mail")
        for row in rows:
            audit.record("delivery.retry", f"mail:{row.id}", who, now, _mail_value(row),
                         {"state": "pending"})
        Voicemail.update(email_gave_up_at=None, email_next_at=now).where(
            Voicemail.id.in_(list(ids))).execute()
    return rows


def retry_webhooks(ids: Sequence[int], who: str, now: datetime) -> list[OutboxMessage]:
    """Make these failed webhook deliveries due now (all or none, as :func:`retry_mails`)."""
    with session(immediate=True):
        rows = list(OutboxMessage.select().where(OutboxMessage.id.in_(list(ids))
                                                 & (OutboxMessage.state == "failed")))
        _require_all(ids, [row.id for row in rows], "failed webhook delivery")
        for row in rows:
            audit.record("delivery.retry", f"webhook:{row.id}", who, now,
                         _webhook_value(row), {"state": "pending"})
        OutboxMessage.update(state="pending", failed_at=None, next_at=now).where(
            OutboxMessage.id.in_(list(ids))).execute()
    return rows


def _require_all(wanted: Sequence[int], found: Sequence[int], what: str) -> None:
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise NotFound(f"no {what} " + ", ".join(str(i) for i in missing))
