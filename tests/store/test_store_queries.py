"""Query functions on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import peewee
import pytest

from fsrouter.store import queries as q
from fsrouter.store.errors import NotFound, StoreError, StoreInputError
from fsrouter.store.models import CallRecord, Incident, NumberAssignment

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_call(uuid: str = "c-1", **overrides) -> CallRecord:
    values = dict(
        call_uuid=uuid,
        number="+4930123456",
        route_type="oncall",
        caller_number="+491701234567",
        caller_name="Erika",
        started_at=T0,
        host="fs1",
    )
    values.update(overrides)
    return q.create_call_record(**values)


def test_call_record_lifecycle(db):
    new_call()
    q.mark_answered("c-1", at(1))
    q.link_call("c-1", bridged_to_user="alice")
    assert [c.call_uuid for c in q.open_calls()] == ["c-1"]
    record = q.finish_call("c-1", "bridged", "NORMAL_CLEARING", at(60))
    assert (record.outcome, record.hangup_cause, record.bridged_to_user) == (
        "bridged",
        "NORMAL_CLEARING",
        "alice",
    )
    assert record.started_at == T0 and record.answered_at == at(1) and record.ended_at == at(60)
    assert record.ended_at.tzinfo is UTC
    assert q.open_calls() == []
    # A late second finish (e.g. reconciliation) does not overwrite the first outcome.
    again = q.finish_call("c-1", "failed", "LOSE_RACE", at(90))
    assert (again.outcome, again.ended_at) == ("bridged", at(60))


def test_open_calls_are_oldest_first(db):
    new_call("late", started_at=at(5))
    new_call("early", started_at=at(-5))
    assert [c.call_uuid for c in q.open_calls()] == ["early", "late"]


def test_duplicate_call_uuid_is_refused_and_first_kept(db):
    new_call()
    with pytest.raises(StoreInputError):
        new_call(caller_name="Mallory")
    assert q.get_call("c-1").caller_name == "Erika"


def test_unknown_call_is_not_found(db):
    with pytest.raises(NotFound):
        q.mark_answered("nope", T0)
    with pytest.raises(NotFound):
        q.finish_call("nope", "bridged", None, T0)


@pytest.mark.parametrize(
    "name",
    ["A\x00B", "\ud800lone surrogate", "x" * 5000, "line\r\nbreak\x1b[31m", "'; DROP TABLE x;--"],
)
def test_hostile_caller_text_is_stored_sanitised(db, name):
    new_call(caller_name=name, caller_number=name)
    stored = q.get_call("c-1")
    assert stored.caller_name == q.clean_caller_text(name)
    assert len(stored.caller_name) <= q.MAX_CALLER_TEXT
    assert "\x00" not in stored.caller_name and "\x1b" not in stored.caller_name


def test_times_must_be_aware_and_are_returned_in_utc(db):
    with pytest.raises(ValueError, match="naive"):
        new_call(started_at=datetime(2024, 5, 1, 12, 0))
    berlin_summer = timezone(timedelta(hours=2))
    new_call(started_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=berlin_summer))
    assert q.get_call("c-1").started_at == T0
    assert q.get_call("c-1").started_at.tzinfo is UTC


def test_incident_accept_and_resolve(db):
    new_call()
    incident = q.create_incident("+4930123456", "2", "Database", "+49170", "Erika", "c-1", at(3))
    assert q.get_call("c-1").incident_id == incident.id
    assert [i.id for i in q.open_incidents()] == [incident.id]
    assert q.accept_incident(incident.id, "alice", at(20)) is True
    assert q.accept_incident(incident.id, "bob", at(21)) is False  # first answer wins
    assert q.resolve_incident(incident.id, at(60), reason="call ended") is True
    assert q.resolve_incident(incident.id, at(61), state="abandoned") is False
    stored = q.get_incident(incident.id)
    assert (stored.state, stored.accepted_by, stored.accepted_at, stored.resolved_at) == (
        "resolved",
        "alice",
        at(20),
        at(60),
    )
    assert stored.outcome_reason == "call ended"
    assert q.open_incidents() == []


def test_incident_bad_input_and_unknown_ids(db):
    with pytest.raises(StoreInputError):
        q.create_incident("030123", "1", None, None, None, None, T0)
    with pytest.raises(StoreInputError):
        q.create_incident("+4930123456", "12", None, None, None, None, T0)
    with pytest.raises(NotFound):
        q.accept_incident(999, "alice", T0)
    with pytest.raises(NotFound):
        q.resolve_incident(999, T0)
    incident = q.create_incident("+4930123456", None, None, None, None, None, T0)
    with pytest.raises(StoreInputError):
        q.resolve_incident(incident.id, T0, state="open")
    assert q.resolve_incident(incident.id, at(9), state="unanswered") is True
    assert Incident.get_by_id(incident.id).state == "unanswered"


def test_attempts(db):
    new_call()
    new_call("c-2")
    first = q.record_attempt(
        "c-1", 0, "alice", "+491701111111", at(1), phone_type="mobile", job_uuid="job-1"
    )
    second = q.record_attempt("c-1", 1, "bob", "+4930999", at(31), leg_uuid="leg-2")
    q.record_attempt("c-2", 0, "carol", "+4930888", at(2))
    done = q.finish_attempt(first.id, "no_answer", "NO_ANSWER", at(31), leg_uuid="leg-1")
    assert (done.result, done.cause, done.ended_at, done.leg_uuid) == (
        "no_answer",
        "NO_ANSWER",
        at(31),
        "leg-1",
    )
    q.finish_attempt(second.id, "accepted", None, at(40))
    q.finish_attempt(second.id, "cancelled", None, at(41))  # first result stands
    rows = q.attempts_for_call("c-1")
    assert [(a.seq, a.user_id, a.result) for a in rows] == [
        (0, "alice", "no_answer"),
        (1, "bob", "accepted"),
    ]
    with pytest.raises(StoreInputError):
        q.finish_attempt(first.id, "maybe", None, T0)
    with pytest.raises(NotFound):
        q.finish_attempt(12345, "busy", "USER_BUSY", T0)
    with pytest.raises(NotFound):
        q.record_attempt("nope", 0, "alice", "+4930", T0)


def test_presence(db):
    assert q.get_presence("alice") is None
    row = q.set_presence("alice", T0, state="logged_in")
    assert (row.state, row.busy, row.since) == ("logged_in", False, T0)
    q.set_presence("alice", at(10), busy=True, busy_call_uuid="c-9")
    row = q.get_presence("alice")
    assert (row.state, row.busy, row.busy_call_uuid, row.since, row.updated_at) == (
        "logged_in",
        True,
        "c-9",
        T0,
        at(10),
    )
    q.set_presence("alice", at(20), state="logged_in", busy=False)
    row = q.get_presence("alice")
    assert (row.busy, row.busy_call_uuid, row.since) == (False, None, T0)
    q.set_presence("alice", at(30), state="logged_out")
    assert q.get_presence("alice").since == at(30)
    with pytest.raises(StoreInputError):
        q.set_presence("alice", T0, state="away")


def test_two_way_mapping_latest_wins_and_expires(db):
    q.remember_two_way("+4917012345", "alice", "+4930111", T0, timedelta(days=7))
    q.remember_two_way("+4917012345", "bob", "+4930222", at(60), timedelta(days=7))
    found = q.lookup_two_way("+4917012345", at(120))
    assert (found.user_id, found.our_number, found.last_call_at) == ("bob", "+4930222", at(60))
    assert found.expires_at == at(60) + timedelta(days=7)
    assert q.lookup_two_way("+4917012345", at(60) + timedelta(days=7)) is None
    assert q.lookup_two_way("+4917099999", T0) is None
    assert q.lookup_two_way("'; --", T0) is None  # caller-controlled: no error, no match
    assert q.purge_two_way(at(60) + timedelta(days=8)) == 1
    with pytest.raises(StoreInputError):
        q.remember_two_way("0170", "alice", "+4930111", T0, timedelta(days=1))


def test_set_assignments_and_reset(db):
    rows = q.set_assignments(
        [
            q.Assignment("+4930100", "agent", "alice"),
            q.Assignment("+4930200", "queue", "support"),
            q.Assignment("+4930300", "unassigned"),
        ],
        changed_by="ops",
        now=T0,
    )
    assert [(r.number, r.route_type, r.target) for r in rows] == [
        ("+4930100", "agent", "alice"),
        ("+4930200", "queue", "support"),
        ("+4930300", "unassigned", None),
    ]
    q.set_assignments([q.Assignment("+4930100", "agent", "bob")], changed_by="lead", now=at(5))
    moved = q.get_assignment("+4930100")
    assert (moved.target, moved.changed_by, moved.changed_at) == ("bob", "lead", at(5))
    assert q.reset_assignments(["+4930200", "+4930999"]) == 1
    assert [r.number for r in q.list_assignments()] == ["+4930100", "+4930300"]
    assert q.reset_assignments([]) == 0


@pytest.mark.parametrize(
    "bad",
    [
        q.Assignment("030100", "agent", "x"),
        q.Assignment("+4930400", "pager", "x"),
        q.Assignment("+4930400", "agent", None),
        q.Assignment("+4930400", "unassigned", "alice"),
        q.Assignment("+4930400", "custom", "a" * 300),
        q.Assignment("+4930100", "agent", "dup"),  # the same number twice in one batch
    ],
)
def test_bulk_assignment_is_all_or_nothing(db, bad):
    before = q.set_assignments([q.Assignment("+4930100", "agent", "alice")], "ops", T0)
    batch = [q.Assignment("+4930100", "agent", "bob"), q.Assignment("+4930500", "queue", "q"), bad]
    with pytest.raises(StoreInputError):
        q.set_assignments(batch, changed_by="ops", now=at(1))
    after = q.list_assignments()
    assert [(r.number, r.target, r.changed_at) for r in after] == [
        (r.number, r.target, r.changed_at) for r in before
    ]


def _refuse_number_in_database(db, number: str) -> None:
    """A trigger that makes the database itself fail an insert (past our validation)."""
    with db.connection_context():
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.number = '{number}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$"
            )
            db.execute_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON number_assignments "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        else:
            db.execute_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON number_assignments "
                f"WHEN NEW.number = '{number}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )


def test_bulk_assignment_rolls_back_when_the_database_refuses_a_row(db):
    q.set_assignments([q.Assignment("+4930100", "agent", "alice")], "ops", T0)
    _refuse_number_in_database(db, "+4930666")
    batch = [
        q.Assignment("+4930100", "agent", "bob"),  # an update, written before the failure
        q.Assignment("+4930500", "queue", "q"),  # an insert, written before the failure
        q.Assignment("+4930666", "agent", "carol"),
    ]
    with pytest.raises(StoreError, match="refused"):
        q.set_assignments(batch, changed_by="ops", now=at(1))
    assert [(r.number, r.target) for r in q.list_assignments()] == [("+4930100", "alice")]
    assert NumberAssignment.select().count() == 1


def test_voicemail(db):
    incident = q.create_incident("+4930123456", "1", None, None, None, None, T0)
    vm = q.record_voicemail(
        "alice",
        "/var/spool/vm/1.wav",
        T0,
        call_uuid="c-1",
        caller_name="Bad\x00Name",
        duration_s=12.5,
        incident_id=incident.id,
    )
    assert [v.id for v in q.unsent_voicemails()] == [vm.id]
    q.mark_voicemail_emailed(vm.id, at(5), error="SMTP 451")
    assert q.unsent_voicemails()[0].email_error == "SMTP 451"
    q.mark_voicemail_emailed(vm.id, at(65))
    assert q.unsent_voicemails() == []
    with pytest.raises(NotFound):
        q.mark_voicemail_emailed(999, T0)
    with pytest.raises(StoreInputError):
        q.record_voicemail("alice", "/x.wav", T0, duration_s=-1)
