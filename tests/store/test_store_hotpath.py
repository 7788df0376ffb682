"""The call flows' statements (plain SQL in queries.py) write exactly what the peewee models
read back, on SQLite and PostgreSQL; the lean forms and the shared transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from fsrouter.store import queries as q
from fsrouter.store.db import session
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.models import (
    AgentPresence,
    Attempt,
    CallRecord,
    Incident,
    NumberAssignment,
    utc_text,
)
from tests.store.test_store_queries import T0, at

BERLIN = timezone(timedelta(hours=2))


def fields(instance: object, model: type) -> dict[str, object]:
    return {name: getattr(instance, name) for name in model._meta.fields}


def new_call(uuid: str = "c-1") -> CallRecord:
    return q.create_call_record(uuid, "+4930123456", "call_routing", "+49170 1234",
                                "Jörg \x00 'x'", T0.astimezone(BERLIN), host="fs1")


def test_created_rows_read_back_as_returned(db):
    record = new_call()
    stored = q.get_call("c-1")
    assert fields(record, CallRecord) == fields(stored, CallRecord)
    assert stored.caller_name == "Jörg \ufffd 'x'" and stored.started_at.tzinfo is UTC
    incident = q.create_incident("+4930123456", "1", "Label", "+49170", "Erika", "c-1", at(5))
    assert fields(incident, Incident) == fields(q.get_incident(incident.id), Incident)
    assert q.get_call("c-1").incident_id == incident.id
    attempt = q.record_attempt("c-1", 0, "anna", "+4917012", at(6), phone_type="mobile",
                               incident_id=incident.id, leg_uuid="leg-1", job_uuid="job-1")
    [stored_attempt] = q.attempts_for_call("c-1")
    assert fields(attempt, Attempt) == fields(stored_attempt, Attempt)
    assert not record.is_dirty() and not incident.is_dirty() and not attempt.is_dirty()


def test_record_attempt_with_the_call_id_is_the_same_row(db):
    record = new_call()
    by_id = q.record_attempt("c-1", 0, "anna", "+4917012", at(6), call_id=record.id)
    by_uuid = q.record_attempt("c-1", 1, "bernd", "+4917013", at(7))
    assert [a.id for a in q.attempts_for_call("c-1")] == [by_id.id, by_uuid.id]
    assert by_id.call_id == by_uuid.call_id == record.id
    with pytest.raises(NotFound):
        q.record_attempt("nope", 0, "anna", "+4917012", at(6))


def test_incident_links_and_answers_the_call_in_one_go_keeping_a_first_answer(db):
    new_call("c-1")
    new_call("c-2")
    q.mark_answered("c-2", at(1))  # e.g. an adopted caller answered before
    first = q.create_incident("+4930123456", "1", "L", None, None, "c-1", at(5),
                              answered_at=at(2))
    second = q.create_incident("+4930123456", "1", "L", None, None, "c-2", at(5),
                               answered_at=at(3))
    assert (q.get_call("c-1").incident_id, q.get_call("c-1").answered_at) == (first.id, at(2))
    assert (q.get_call("c-2").incident_id, q.get_call("c-2").answered_at) == (second.id, at(1))
    q.create_incident("+4930123456", "2", "L", None, None, "c-1", at(6))  # no answered_at
    assert q.get_call("c-1").answered_at == at(2)


def test_close_call_once_and_its_answer_time(db):
    new_call("c-1")
    new_call("c-2")
    assert q.close_call("c-1", "hangup_in_menu", "NORMAL_CLEARING", at(9), answered_at=at(1))
    assert not q.close_call("c-1", "failed", "LOSE_RACE", at(20), answered_at=at(2))
    record = q.get_call("c-1")
    assert (record.outcome, record.hangup_cause, record.ended_at, record.answered_at) == (
        "hangup_in_menu", "NORMAL_CLEARING", at(9), at(1))
    assert q.close_call("c-2", "hangup_before_answer", None, at(9))
    assert q.get_call("c-2").answered_at is None
    assert not q.close_call("nope", "bridged", None, at(9))
    with pytest.raises(StoreInputError):
        q.close_call("c-2", "Not A Word", None, at(9))
    with pytest.raises(ValueError, match="naive"):
        q.close_call("c-2", "bridged", None, datetime(2024, 5, 1))


def test_end_attempt_once_with_and_without_a_leg(db):
    new_call()
    one = q.record_attempt("c-1", 0, "anna", "+4917012", at(1))
    two = q.record_attempt("c-1", 1, "bernd", "+4917013", at(2))
    assert q.end_attempt(one.id, "no_answer", "NO_ANSWER", at(5))
    assert not q.end_attempt(one.id, "answered", "NORMAL_CLEARING", at(6))
    assert q.end_attempt(two.id, "answered", "NORMAL_CLEARING", at(7), leg_uuid="leg-2")
    rows = {a.id: a for a in q.attempts_for_call("c-1")}
    assert (rows[one.id].result, rows[one.id].cause, rows[one.id].ended_at) == (
        "no_answer", "NO_ANSWER", at(5))
    assert (rows[two.id].result, rows[two.id].leg_uuid) == ("answered", "leg-2")
    assert not q.end_attempt(99999, "failed", None, at(8))
    with pytest.raises(StoreInputError):
        q.end_attempt(two.id, "exploded", None, at(8))


def test_accept_sets_who_the_call_went_to_in_the_same_transaction(db):
    new_call()
    incident = q.create_incident("+4930123456", "1", "L", None, None, "c-1", at(5))
    assert q.accept_incident(incident.id, "bernd", at(10), call_uuid="c-1")
    assert not q.accept_incident(incident.id, "anna", at(11))  # no longer open
    stored = q.get_incident(incident.id)
    assert (stored.state, stored.accepted_by, stored.accepted_at) == ("accepted", "bernd", at(10))
    assert q.get_call("c-1").bridged_to_user == "bernd"
    assert q.resolve_incident(incident.id, at(20), "resolved", "call ended")
    assert not q.resolve_incident(incident.id, at(21), "abandoned")
    assert (q.get_incident(incident.id).state, q.get_incident(incident.id).resolved_at) == (
        "resolved", at(20))
    with pytest.raises(NotFound):
        q.accept_incident(99999, "anna", at(11))


def test_assignment_reads_as_the_model_does(db):
    assert q.get_assignment("+4930123456") is None
    q.set_assignments([q.Assignment("+4930123456", "agent", "alice")], "ops", T0)
    got = q.get_assignment("+4930123456")
    stored = NumberAssignment.get(NumberAssignment.number == "+4930123456")
    assert fields(got, NumberAssignment) == fields(stored, NumberAssignment)
    assert got.changed_at == T0 and got.changed_at.tzinfo is UTC


def test_set_busy_writes_what_set_presence_writes(db):
    """The watcher's one-statement busy write: the same rows as set_presence(busy=...),
    for an agent never seen (a logged-out row) and for a logged-in one (state, since kept)."""
    def row(user: str) -> dict[str, object]:
        fields_ = fields(q.get_presence(user), AgentPresence)
        fields_.pop("id")
        return {**fields_, "user_id": fields_["user_id"][:-1]}  # the twins compare equal

    q.set_presence("anna1", T0, state="logged_in")
    q.set_presence("anna2", T0, state="logged_in")
    for moment, busy, call in ((at(10), True, "c-9"), (at(20), False, "c-9"),
                               (at(30), True, None)):
        q.set_busy("anna1", moment, busy, call)
        q.set_presence("anna2", moment, busy=busy, busy_call_uuid=call)
        q.set_busy("bernd1", moment, busy, call)  # the first time: an agent never seen
        q.set_presence("bernd2", moment, busy=busy, busy_call_uuid=call)
        assert row("anna1") == row("anna2")
        assert row("bernd1") == row("bernd2")
    stored = q.get_presence("anna1")
    assert (stored.state, stored.since, stored.busy, stored.busy_call_uuid, stored.updated_at) \
        == ("logged_in", T0, True, None, at(30))
    assert (q.get_presence("bernd1").state, q.get_presence("bernd1").since) == (
        "logged_out", at(10))
    with pytest.raises(StoreInputError):
        q.set_busy("", at(40), True, "c-9")


def test_close_call_resolving_ends_both_once(db):
    """The end of a bridged hotline call: the record closed and its incident resolved in one
    transaction; run again (the journal's replay) it changes nothing."""
    new_call()
    incident = q.create_incident("+4930123456", "1", "L", None, None, "c-1", at(5))
    q.accept_incident(incident.id, "bernd", at(10), call_uuid="c-1")
    assert q.close_call_resolving("c-1", "bridged", "NORMAL_CLEARING", at(20), at(2),
                                  incident.id, "call ended")
    assert not q.close_call_resolving("c-1", "failed", "LOSE_RACE", at(30), at(3),
                                      incident.id, "again")
    record, stored = q.get_call("c-1"), q.get_incident(incident.id)
    assert (record.outcome, record.hangup_cause, record.ended_at, record.answered_at) == (
        "bridged", "NORMAL_CLEARING", at(20), at(2))
    assert (stored.state, stored.resolved_at, stored.outcome_reason, stored.accepted_by) == (
        "resolved", at(20), "call ended", "bernd")
    with pytest.raises(StoreInputError):
        q.close_call_resolving("c-1", "Not A Word", None, at(9), None, incident.id, "x")


def test_the_call_flows_one_select_reads_take_no_transaction(db, db_url):
    """get_assignment and the contact-center reads are one SELECT each: no BEGIN and COMMIT
    around it (two statements saved per call). SQLite: its pooled connection is traced."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the statement trace is SQLite's")
    seen: list[str] = []
    with session() as store:
        store.connection().set_trace_callback(seen.append)  # the pool hands it out again
    seen.clear()  # that session's COMMIT
    q.get_assignment("+4930123456")
    q.presence_of(["anna"])
    q.lookup_two_way("+4917012345", T0)
    q.call_count("+4930123456")
    assert [sql.split()[0] for sql in seen] == ["SELECT"] * 4, seen
    with session():  # inside a session: part of its transaction
        q.get_assignment("+4930123456")
    assert [sql.split()[0] for sql in seen[4:]] == ["BEGIN", "SELECT", "COMMIT"]


def test_link_call_sets_what_it_is_given_and_knows_a_missing_call(db):
    new_call()
    incident = q.create_incident("+4930123456", "1", "L", None, None, None, at(5))
    q.link_call("c-1", incident_id=incident.id, bridged_to_user="bernd")
    record = q.get_call("c-1")
    assert (record.incident_id, record.bridged_to_user) == (incident.id, "bernd")
    q.link_call("c-1", bridged_to_user="anna")
    assert (q.get_call("c-1").incident_id, q.get_call("c-1").bridged_to_user) == (
        incident.id, "anna")
    with pytest.raises(NotFound):
        q.link_call("nope", bridged_to_user="anna")
    with pytest.raises(StoreInputError):
        q.link_call("c-1", bridged_to_user="")


def test_end_attempt_bridged_ends_the_attempt_and_names_the_agent_once(db):
    record = new_call()
    attempt = q.record_attempt("c-1", 0, "alice", "+4917012", at(1), call_id=record.id)
    assert q.end_attempt_bridged("c-1", "alice", attempt.id, "answered", "NORMAL_CLEARING",
                                 at(5))
    assert not q.end_attempt_bridged("c-1", "alice", attempt.id, "failed", None, at(6))
    [stored] = q.attempts_for_call("c-1")
    assert (stored.result, stored.cause, stored.ended_at) == ("answered", "NORMAL_CLEARING",
                                                              at(5))
    assert q.get_call("c-1").bridged_to_user == "alice"
    with pytest.raises(StoreInputError):
        q.end_attempt_bridged("c-1", "alice", attempt.id, "exploded", None, at(7))


@pytest.mark.parametrize("value", [
    datetime(2026, 12, 5, 19, 30, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 5, 19, 30, 1, 7, tzinfo=BERLIN),
    datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
])
def test_timestamps_are_stored_as_strftime_wrote_them(value):
    assert utc_text(value) == value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
