"""The calls in progress as the daemons recorded them: what the console's Now page shows.

The console is a process of its own: it sees calls only through the rows the daemons write.
A call record without ``ended_at`` is a call in progress; its incident (hotline calls) says
whether the caller still waits (``open``) or talks to someone (``accepted``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import peewee

from fsrouter.store.db import session
from fsrouter.store.models import CallRecord, Incident

# A page shows at most this many calls (a runaway of open records must not make it huge).
MAX_LIVE_CALLS = 500


@dataclass(frozen=True)
class LiveCall:
    call_uuid: str
    number: str  # the number dialled (E.164)
    route_type: str  # call_routing, agent, queue, custom, ...
    caller_number: str | None  # sanitised by the store when written
    caller_name: str | None
    started_at: datetime
    answered_at: datetime | None
    bridged_to_user: str | None
    option_digit: str | None  # hotline calls once an option is chosen
    incident_id: int | None
    incident_state: str | None
    incident_reason: str | None  # e.g. out_of_hours
    accepted_by: str | None
    accepted_at: datetime | None
    host: str | None


def live_calls(limit: int = MAX_LIVE_CALLS) -> list[LiveCall]:
    """The open call records (oldest first, at most ``limit``) with their incident."""
    with session():
        query = (CallRecord
                 .select(CallRecord, Incident)
                 .join(Incident, join_type=peewee.JOIN.LEFT_OUTER,
                       on=(CallRecord.incident == Incident.id))
                 .where(CallRecord.ended_at.is_null())
                 .order_by(CallRecord.started_at, CallRecord.id)
                 .limit(limit))
        return [_live(record) for record in query]


def _live(record: CallRecord) -> LiveCall:
    incident = record.incident if record.incident_id is not None else None
    return LiveCall(
        call_uuid=record.call_uuid, number=record.number, route_type=record.route_type,
        caller_number=record.caller_number, caller_name=record.caller_name,
        started_at=record.started_at, answered_at=record.answered_at,
        bridged_to_user=record.bridged_to_user,
        option_digit=incident.option_digit if incident else None,
        incident_id=record.incident_id,
        incident_state=incident.state if incident else None,
        incident_reason=incident.outcome_reason if incident else None,
        accepted_by=incident.accepted_by if incident else None,
        accepted_at=incident.accepted_at if incident else None,
        host=record.host)
