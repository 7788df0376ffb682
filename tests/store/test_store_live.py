"""store.live: the open call records with their incident, as the console's Now page reads
them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import peewee

from fsrouter.store import queries
from fsrouter.store.live import LiveCall, live_calls

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
HOTLINE = "+493023125000"


def test_open_calls_oldest_first_with_their_incident(db: peewee.Database) -> None:
    queries.create_call_record("b", HOTLINE, "call_routing", "+4930222", None,
                               T0 + timedelta(seconds=5))
    incident = queries.create_incident(HOTLINE, "2", "DB", "+4930222", None, "b",
                                       T0 + timedelta(seconds=6), answered_at=T0)
    queries.accept_incident(incident.id, "dirk", T0 + timedelta(seconds=20))
    queries.create_call_record("a", HOTLINE, "call_routing", "+4930111", "Eve", T0)
    queries.create_call_record("gone", HOTLINE, "call_routing", None, None, T0)
    queries.finish_call("gone", "hangup_in_menu", "NORMAL_CLEARING", T0 + timedelta(seconds=1))
    queries.create_call_record("q", "+493023125200", "queue", "+4930333", None,
                               T0 + timedelta(seconds=9))
    queries.link_call("q", bridged_to_user="eva")

    calls = live_calls()
    assert [call.call_uuid for call in calls] == ["a", "b", "q"]
    first, second, third = calls
    assert first == LiveCall("a", HOTLINE, "call_routing", "+4930111", "Eve", T0, None, None,
                             None, None, None, None, None, None, None)
    assert (second.option_digit, second.incident_id, second.incident_state,
            second.accepted_by, second.accepted_at, second.answered_at) == (
        "2", incident.id, "accepted", "dirk", T0 + timedelta(seconds=20), T0)
    assert (third.route_type, third.bridged_to_user, third.incident_id) == ("queue", "eva",
                                                                            None)
    assert live_calls(limit=1) == [first]
