"""The creates the journal replays after a database outage (fsrouter.store.replay) are safe to
run twice: a try that failed may have committed before its answer was lost, and the replay
must then find that row instead of writing a second. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fsrouter.store import queries, replay
from fsrouter.store.models import Attempt, CallRecord, Incident, OutboxMessage, Voicemail

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CALL = "11111111-2222-3333-4444-555555555555"
LEG = "aaaaaaaa-2222-3333-4444-555555555555"
NUMBER = "+493040009000"
CUSTOMER = "+4915112345678"


def twice(write, *args, **kwargs):
    first, second = write(*args, **kwargs), write(*args, **kwargs)
    return first, second


def test_every_create_written_twice_is_one_row(db):
    first, second = twice(replay.create_call_record_once, CALL, NUMBER, "call_routing",
                          CUSTOMER, "Jane", T0, host="node-a")
    assert first.id == second.id and CallRecord.select().count() == 1
    first, second = twice(replay.create_incident_once, NUMBER, "1", "Database", CUSTOMER,
                          "Jane", CALL, T0, answered_at=T0)
    assert first.id == second.id and Incident.select().count() == 1
    assert queries.get_call(CALL).incident_id == first.id
    first, second = twice(replay.record_finished_attempt_once, CALL, 0, "olga", "+4915100000001",
                          T0, "mobile", first.id, LEG, "no_answer", "NO_ANSWER", T0)
    assert first.id == second.id and Attempt.select().count() == 1
    assert first.result == "no_answer"
    first, second = twice(replay.record_voicemail_once, "vera", "/var/vm/1.wav", T0,
                          call_uuid=CALL, duration_s=3.0, host="node-a")
    assert first.id == second.id and Voicemail.select().count() == 1
    item = queries.OutboxItem("d0d0d0d0-2222-3333-4444-555555555555", "incident.created",
                              "http://127.0.0.1:9/hook", '{"id":1}')
    first, second = twice(replay.enqueue_outbox_once, [item], T0)
    assert [r.id for r in first] == [r.id for r in second] and OutboxMessage.select().count() == 1


def test_an_older_mapping_written_late_does_not_replace_a_newer_one(db):
    ttl = timedelta(hours=48)
    queries.remember_two_way(CUSTOMER, "bob", NUMBER, T0 + timedelta(minutes=5), ttl)
    kept = replay.remember_two_way_once(CUSTOMER, "carl", NUMBER, T0, ttl)  # waited, older
    assert kept.user_id == "bob"
    newer = replay.remember_two_way_once(CUSTOMER, "carl", NUMBER, T0 + timedelta(hours=1), ttl)
    assert newer.user_id == "carl"
    assert queries.lookup_two_way(CUSTOMER, T0 + timedelta(hours=2)).user_id == "carl"
