"""Creates that are safe to run twice, for the journal of writes waiting for the database
(:mod:`fsrouter.resilience.journal`).

A create replayed after an outage may already have reached the database: the try that
failed could have committed just before its connection died. Each function here looks for
the row by its natural key first and returns the row it finds instead of writing a second:

=================  =============================================
call record        ``call_uuid`` (unique)
incident           ``call_uuid`` (a call opens at most one incident)
attempt            ``leg_uuid`` (the uuid we gave the leg)
voicemail          ``path`` of the recording (one file per message)
webhook delivery   ``delivery_id`` (unique, sent as X-Fsrouter-Delivery)
2-way mapping      ``customer_number`` (unique; a newer mapping wins)
=================  =============================================

Only one journal replays a given call's writes (the daemon handling the call), so the check
and the insert need not share a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fsrouter.store import queries
from fsrouter.store.db import session
from fsrouter.store.models import (
    Attempt,
    CallRecord,
    Incident,
    OutboxMessage,
    TwoWayMapping,
    Voicemail,
)


def create_call_record_once(call_uuid: str, number: str, route_type: str,
                            caller_number: str | None, caller_name: str | None,
                            started_at: datetime, host: str | None = None,
                            node: str | None = None) -> CallRecord:
    with session():
        found = CallRecord.get_or_none(CallRecord.call_uuid == call_uuid)
    if found is not None:
        return found
    return queries.create_call_record(call_uuid, number, route_type, caller_number,
                                      caller_name, started_at, host=host, node=node)


def create_incident_once(number: str, option_digit: str | None, option_label: str | None,
                         caller_number: str | None, caller_name: str | None,
                         call_uuid: str, now: datetime,
                         answered_at: datetime | None = None) -> Incident:
    with session():
        found = Incident.get_or_none(Incident.call_uuid == call_uuid)
    if found is not None:
        return found
    return queries.create_incident(number, option_digit, option_label, caller_number,
                                   caller_name, call_uuid, now, answered_at=answered_at)


def record_finished_attempt_once(call_uuid: str, seq: int, user_id: str, phone: str,
                                 started: datetime, phone_type: str | None,
                                 incident_id: int | None, leg_uuid: str, result: str,
                                 cause: str | None, ended: datetime) -> Attempt:
    """The row of an attempt the store refused at its start, with its result."""
    with session():
        found = Attempt.get_or_none(Attempt.leg_uuid == leg_uuid)
    row_id = found.id if found is not None else queries.record_attempt(
        call_uuid, seq, user_id, phone, started, phone_type=phone_type,
        incident_id=incident_id, leg_uuid=leg_uuid).id
    return queries.finish_attempt(row_id, result, cause, ended)


def record_voicemail_once(user_id: str, path: str, now: datetime, **details: Any) -> Voicemail:
    with session():
        found = Voicemail.get_or_none(Voicemail.path == path)
    if found is not None:
        return found
    return queries.record_voicemail(user_id, path, now, **details)


def enqueue_outbox_once(items: Sequence[queries.OutboxItem], now: datetime
                        ) -> list[OutboxMessage]:
    """The deliveries not stored yet (by delivery id); returns every item's row."""
    ids = [item.delivery_id for item in items]
    with session():
        known = {row.delivery_id for row in
                 OutboxMessage.select(OutboxMessage.delivery_id)
                 .where(OutboxMessage.delivery_id.in_(ids))}
    missing = [item for item in items if item.delivery_id not in known]
    if missing:
        queries.enqueue_outbox(missing, now)
    with session():
        return list(OutboxMessage.select().where(OutboxMessage.delivery_id.in_(ids)))


def remember_two_way_once(customer_number: str, user_id: str, our_number: str, now: datetime,
                          ttl: timedelta) -> TwoWayMapping | None:
    """The mapping learned at ``now``, unless the customer's stored one is newer (another
    node learned it while this write waited): then that one stays and is returned."""
    with session():
        found = TwoWayMapping.get_or_none(TwoWayMapping.customer_number == customer_number)
    if found is not None and found.last_call_at >= now:
        return found
    return queries.remember_two_way(customer_number, user_id, our_number, now, ttl)
