"""The notify outboxes: the voicemail mailer's and the webhook sender's rows (fsrouter.notify).

A sender claims a row before it sends it: one UPDATE that checks the row is still due moves
its next try to the end of a lease, so two processes (or two instances on one PostgreSQL)
never send a row at the same time, and a sender that dies mid-send leaves the row to be tried
again when the lease ends. Nothing here deletes an undelivered row. (Split from
``fsrouter.store.queries``, which re-exports these names.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import peewee

from fsrouter.store.db import session
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.models import OUTBOX_STATES, OutboxMessage, Voicemail
from fsrouter.store.validate import _CONTROL, _one_of, _optional_text, _text


def mark_voicemail_emailed(voicemail_id: int, now: datetime, error: str | None = None) -> None:
    """Record a successful mail (``error=None``) or the last failure."""
    values: dict[str, object] = {"email_error": error}
    if error is None:
        values["emailed_at"] = now
    _update_voicemail(voicemail_id, values)


def unsent_voicemails() -> list[Voicemail]:
    with session():
        query = Voicemail.select().where(Voicemail.emailed_at.is_null())
        return list(query.order_by(Voicemail.created_at, Voicemail.id))


MAX_ERROR_TEXT = 1000
_EVENT_NAME = re.compile(r"[a-z_]+(\.[a-z_]+)*")


def _error_text(error: str) -> str:
    """An error for the row: one line of printable text, cut to :data:`MAX_ERROR_TEXT`."""
    text = str(error).encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub(" ", text).strip() or "error"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def _as_utc(raw: object) -> datetime | None:
    """A raw MIN()/COALESCE() result (text on SQLite, naive on PostgreSQL) as aware UTC."""
    return None if raw is None else Voicemail.created_at.python_value(raw)


def _voicemail_pending(host: str | None) -> peewee.Expression:
    pending = Voicemail.emailed_at.is_null() & Voicemail.email_gave_up_at.is_null()
    if host is not None:
        pending &= Voicemail.host.is_null() | (Voicemail.host == host)
    return pending


def _voicemail_due(now: datetime, host: str | None) -> peewee.Expression:
    return _voicemail_pending(host) & (
        Voicemail.email_next_at.is_null() | (Voicemail.email_next_at <= now))


def due_voicemails(now: datetime, host: str | None = None, limit: int = 50) -> list[Voicemail]:
    """Voicemails to mail now (never tried, or their next try has come), oldest first.

    ``host``: only rows recorded on that host or on no particular host.
    """
    with session():
        query = Voicemail.select().where(_voicemail_due(now, host))
        return list(query.order_by(Voicemail.created_at, Voicemail.id).limit(limit))


def next_voicemail_due(host: str | None = None) -> datetime | None:
    """When the next pending voicemail falls due (may be in the past); None: nothing pending."""
    when = peewee.fn.COALESCE(Voicemail.email_next_at, Voicemail.created_at)
    with session():
        raw = Voicemail.select(peewee.fn.MIN(when)).where(_voicemail_pending(host)).scalar()
    return _as_utc(raw)


def claim_voicemail_email(
    voicemail_id: int, now: datetime, lease_until: datetime, host: str | None = None
) -> Voicemail | None:
    """Take a due voicemail for one try (counted in ``email_attempts``); None if it is not
    due any more (sent, parked, or claimed by another sender)."""
    with session():
        changed = (
            Voicemail.update(email_attempts=Voicemail.email_attempts + 1,
                             email_next_at=lease_until)
            .where((Voicemail.id == voicemail_id) & _voicemail_due(now, host))
            .execute()
        )
        return Voicemail.get_or_none(Voicemail.id == voicemail_id) if changed else None


def defer_voicemail_email(
    voicemail_id: int, error: str, now: datetime, next_at: datetime | None
) -> None:
    """A try failed: record ``error``; try again at ``next_at``, or park the row when it is
    None (kept, not retried until :func:`requeue_parked_voicemails`)."""
    values: dict[str, object] = {"email_error": _error_text(error), "email_next_at": next_at}
    if next_at is None:
        values["email_gave_up_at"] = now
    _update_voicemail(voicemail_id, values)


def _update_voicemail(voicemail_id: int, values: dict[str, object]) -> None:
    with session():
        changed = Voicemail.update(**values).where(Voicemail.id == voicemail_id).execute()
    if not changed:
        raise NotFound(f"no voicemail {voicemail_id}")


def postpone_voicemail_emails(until: datetime, host: str | None = None) -> int:
    """The mail server cannot be reached: pending voicemails due before ``until`` wait until
    then, without counting a try. Returns how many."""
    earlier = Voicemail.email_next_at.is_null() | (Voicemail.email_next_at < until)
    with session():
        return (
            Voicemail.update(email_next_at=until)
            .where(_voicemail_pending(host) & earlier)
            .execute()
        )


def requeue_parked_voicemails(host: str | None = None) -> int:
    """Make parked voicemails due again (after a reload or restart); returns how many."""
    parked = Voicemail.emailed_at.is_null() & Voicemail.email_gave_up_at.is_null(False)
    if host is not None:
        parked &= Voicemail.host.is_null() | (Voicemail.host == host)
    with session():
        return (
            Voicemail.update(email_gave_up_at=None, email_next_at=None).where(parked).execute()
        )


@dataclass(frozen=True)
class OutboxItem:
    """One webhook delivery to store: the body is the exact JSON that will be sent."""

    delivery_id: str
    event: str
    url: str
    body: str
    secret_env: str | None = None


def _validate_outbox_item(item: OutboxItem) -> OutboxItem:
    _text(item.delivery_id, "delivery_id", 36)
    if not _EVENT_NAME.fullmatch(item.event) or len(item.event) > 64:
        raise StoreInputError(f"event must be a name like incident.created, got {item.event!r}")
    _text(item.url, "url", 2000)
    _optional_text(item.secret_env, "secret_env", 128)
    if not isinstance(item.body, str) or not item.body.isascii():
        raise StoreInputError("body must be ASCII text (JSON with escapes)")
    return item


def enqueue_outbox(items: Sequence[OutboxItem], now: datetime) -> list[OutboxMessage]:
    """Store deliveries, due at once; all are written or, on a bad item, none."""
    checked = [_validate_outbox_item(item) for item in items]
    with session():
        return [
            OutboxMessage.create(
                delivery_id=item.delivery_id, event=item.event, url=item.url,
                secret_env=item.secret_env, body=item.body, state="pending",
                created_at=now, next_at=now, attempts=0,
            )
            for item in checked
        ]


def _outbox_due(now: datetime) -> peewee.Expression:
    return (OutboxMessage.state == "pending") & (OutboxMessage.next_at <= now)


def due_outbox(now: datetime, limit: int = 100) -> list[OutboxMessage]:
    """Deliveries to try now, oldest first."""
    with session():
        query = OutboxMessage.select().where(_outbox_due(now))
        return list(query.order_by(OutboxMessage.created_at, OutboxMessage.id).limit(limit))


def next_outbox_due() -> datetime | None:
    """When the next pending delivery falls due (may be in the past); None: nothing pending."""
    with session():
        raw = (OutboxMessage.select(peewee.fn.MIN(OutboxMessage.next_at))
               .where(OutboxMessage.state == "pending").scalar())
    return _as_utc(raw)


def claim_outbox(message_id: int, now: datetime, lease_until: datetime) -> OutboxMessage | None:
    """Take a due delivery for one try (counted in ``attempts``); None if it is not due any
    more (delivered, failed, or claimed by another sender)."""
    with session():
        changed = (
            OutboxMessage.update(attempts=OutboxMessage.attempts + 1, next_at=lease_until)
            .where((OutboxMessage.id == message_id) & _outbox_due(now))
            .execute()
        )
        return OutboxMessage.get_or_none(OutboxMessage.id == message_id) if changed else None


def outbox_delivered(message_id: int, status: int, now: datetime) -> None:
    with session():
        OutboxMessage.update(state="delivered", delivered_at=now, last_status=status,
                             last_error=None).where(OutboxMessage.id == message_id).execute()


def outbox_retry(
    message_id: int, error: str, status: int | None, now: datetime, next_at: datetime | None
) -> None:
    """A try failed: record it; try again at ``next_at``, or mark the delivery failed (kept)
    when it is None."""
    values: dict[str, object] = {"last_error": _error_text(error), "last_status": status}
    if next_at is None:
        values.update(state="failed", failed_at=now)
    else:
        values["next_at"] = next_at
    with session():
        OutboxMessage.update(**values).where(OutboxMessage.id == message_id).execute()


def postpone_outbox(url: str, until: datetime) -> int:
    """``url`` cannot be reached: its pending deliveries due before ``until`` wait until then,
    without counting a try (and keep their order). Returns how many."""
    with session():
        return (
            OutboxMessage.update(next_at=until)
            .where((OutboxMessage.url == url) & (OutboxMessage.state == "pending")
                   & (OutboxMessage.next_at < until))
            .execute()
        )


def get_outbox(message_id: int) -> OutboxMessage:
    with session():
        row = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    if row is None:
        raise NotFound(f"no outbox message {message_id}")
    return row


def list_outbox(state: str | None = None) -> list[OutboxMessage]:
    """Deliveries, oldest first; ``state`` one of pending, delivered, failed."""
    with session():
        query = OutboxMessage.select()
        if state is not None:
            query = query.where(OutboxMessage.state == _one_of(state, OUTBOX_STATES, "state"))
        return list(query.order_by(OutboxMessage.created_at, OutboxMessage.id))


def purge_delivered_outbox(before: datetime) -> int:
    """Delete deliveries that succeeded before ``before``; pending and failed ones stay."""
    with session():
        return (
            OutboxMessage.delete()
            .where((OutboxMessage.state == "delivered") & (OutboxMessage.delivered_at < before))
            .execute()
        )
