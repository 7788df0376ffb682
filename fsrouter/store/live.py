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
    # Plain tuples, not model instances: the page asks every few seconds (bench/console.py).
    columns = (CallRecord.call_uuid, CallRecord.number, CallRecord.route_type,
               CallRecord.caller_number, CallRecord.caller_name, CallRecord.started_at,
               CallRecord.answered_at, CallRecord.bridged_to_user, Incident.option_digit,
               CallRecord.incident, Incident.state, Incident.outcome_reason,
               Incident.accepted_by, Incident.accepted_at, CallRecord.host)
    with session():
        query = (CallRecord
                 .select(*columns)
                 .join(Incident, join_type=peewee.JOIN.LEFT_OUTER,
                       on=(CallRecord.incident == Incident.id))
                 .where(CallRecord.ended_at.is_null())
                 .order_by(CallRecord.started_at, CallRecord.id)
                 .limit(limit)
                 .tuples())
        return [LiveCall(*row) for row in query]
