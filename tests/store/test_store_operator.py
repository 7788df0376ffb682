"""The operator's tables on a real SQLite file and a real PostgreSQL database: run-time on-call
overrides (overlaps refused, all or nothing), the append-only audit trail (written with the
change, in its transaction), the history reads and the retry of failed deliveries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from fsrouter.store import audit, history, overrides, session
from fsrouter.store import queries as q
from fsrouter.store.db import close_database, open_database
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.migrations import upgrade
from fsrouter.store.models import AuditEntry, NumberAssignment, OncallOverride
from fsrouter.testing.waiting import wait_for
from tests.store.history_seed import AGENT_LINE, HOTLINE, NIGHT, at, seed

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def hours(n: float) -> datetime:
    return NOW + timedelta(hours=n)


def count(model) -> int:
    with session():
        return model.select().count()


# ---------------------------------------------------------------- overrides


def test_override_add_list_and_remove_are_audited(db):
    row = overrides.add_override("it_infra", "bernd", hours(6), hours(20), "anna sick",
                                 "cli:lead", NOW)
    assert [r.id for r in overrides.list_overrides()] == [row.id]
    assert [r.user_id for r in overrides.active_at(hours(6))] == ["bernd"]
    assert overrides.active_at(hours(5.99)) == [] and overrides.active_at(hours(20)) == []
    assert overrides.list_overrides(ending_after=hours(20)) == []
    overrides.remove_overrides([row.id], "cli:lead", hours(1))
    assert overrides.list_overrides() == []
    added, removed = audit.entries(audit.AuditFilter())
    assert (added.kind, added.who, added.subject, added.before) == (
        "override.add", "cli:lead", f"it_infra#{row.id}", None)
    assert audit.decoded(added.after) == {
        "id": row.id, "schedule": "it_infra", "user": "bernd", "reason": "anna sick",
        "from": "2026-12-05T18:00:00+00:00", "to": "2026-12-06T08:00:00+00:00"}
    assert (removed.kind, audit.decoded(removed.before), removed.after) == (
        "override.remove", audit.decoded(added.after), None)


@pytest.mark.parametrize(("start", "end"), [(5, 7), (19, 21), (7, 8), (0, 30)])
def test_an_overlapping_override_is_refused_and_nothing_is_written(db, start, end):
    first = overrides.add_override("it_infra", "bernd", hours(6), hours(20), None, "a", NOW)
    with pytest.raises(overrides.OverlapError) as refused:
        overrides.add_override("it_infra", "carla", hours(start), hours(end), None, "b", NOW)
    assert [row.id for row in refused.value.clashes] == [first.id]
    assert count(OncallOverride) == 1 and count(AuditEntry) == 1


def test_touching_overrides_and_other_schedules_do_not_overlap(db):
    overrides.add_override("it_infra", "bernd", hours(6), hours(20), None, "a", NOW)
    overrides.add_override("it_infra", "carla", hours(20), hours(30), None, "a", NOW)
    overrides.add_override("it_infra", "anna", hours(0), hours(6), None, "a", NOW)
    overrides.add_override("database", "dirk", hours(6), hours(20), None, "a", NOW)
    assert [(r.schedule, r.user_id) for r in overrides.list_overrides()] == [
        ("database", "dirk"), ("it_infra", "anna"), ("it_infra", "bernd"),
        ("it_infra", "carla")]


def test_bad_overrides_are_refused(db):
    with pytest.raises(StoreInputError):
        overrides.add_override("it_infra", "bernd", hours(6), hours(6), None, "a", NOW)
    with pytest.raises(StoreInputError):
        overrides.add_override("it_infra", "bernd\x00", hours(6), hours(7), None, "a", NOW)
    assert count(OncallOverride) == 0 and count(AuditEntry) == 0


def test_removing_a_missing_override_removes_none(db):
    row = overrides.add_override("it_infra", "bernd", hours(6), hours(20), None, "a", NOW)
    with pytest.raises(NotFound, match="#999"):
        overrides.remove_overrides([row.id, 999], "a", NOW)
    assert count(OncallOverride) == 1 and count(AuditEntry) == 1


def test_an_add_waits_for_a_concurrent_writer_and_then_sees_its_row(postgres_url):
    """PostgreSQL (READ COMMITTED): another transaction has inserted an overlapping override
    but not committed; the add must wait for it (table lock) and then refuse, not insert a
    second one beside it. (SQLite: BEGIN IMMEDIATE serialises writers.)"""
    import psycopg2

    from tests.store.conftest import empty_postgres

    empty_postgres(postgres_url)
    db = open_database(postgres_url)
    other = psycopg2.connect(postgres_url)
    try:
        upgrade(db)
        cur = other.cursor()
        cur.execute("INSERT INTO oncall_overrides (schedule, user_id, starts_at, ends_at, "
                    "created_at, created_by) VALUES ('it_infra', 'bernd', %s, %s, %s, 'x')",
                    (hours(6).replace(tzinfo=None), hours(20).replace(tzinfo=None),
                     NOW.replace(tzinfo=None)))
        outcome: list[str] = []

        def add() -> None:
            try:
                overrides.add_override("it_infra", "carla", hours(7), hours(8), None, "y", NOW)
                outcome.append("added")
            except overrides.OverlapError:
                outcome.append("refused")

        thread = threading.Thread(target=add)
        thread.start()
        probe = other.cursor()

        def waiting_or_done() -> bool:
            probe.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return bool(outcome) or probe.fetchone()[0] > 0
        wait_for(waiting_or_done, 20, "the add to wait for the lock (or finish)")
        other.commit()
        thread.join(30)
        assert outcome == ["refused"]
        assert len(overrides.list_overrides()) == 1
    finally:
        other.close()
        close_database(db)


# ---------------------------------------------------------------- audit


def test_a_number_keeps_every_change_in_the_audit_trail(db):
    from fsrouter.commands.routes import set_audited

    set_audited([q.Assignment(AGENT_LINE, "agent", "felix")], "cli:lead", NOW)
    set_audited([q.Assignment(AGENT_LINE, "queue", "sales")], "cli:anna", hours(1))
    assert count(NumberAssignment) == 1  # the route table keeps only the latest
    trail = audit.entries(audit.AuditFilter(subject=AGENT_LINE))
    assert [(e.who, audit.decoded(e.before), audit.decoded(e.after)) for e in trail] == [
        ("cli:lead", None, {"type": "agent", "target": "felix"}),
        ("cli:anna", {"type": "agent", "target": "felix"}, {"type": "queue", "target": "sales"})]
    assert [e.at for e in trail] == [NOW, hours(1)]


def test_an_audit_entry_that_cannot_be_written_undoes_the_change(db):
    with pytest.raises(StoreInputError), session(immediate=True):
        audit.change_presence("eva", "logged_in", "cli:lead", NOW)
        audit.record("not a kind", "eva", "cli:lead", NOW)
    assert q.get_presence("eva") is None and count(AuditEntry) == 0


def test_presence_changes_are_audited_only_when_they_change(db):
    assert audit.change_presence("eva", "logged_in", "phone:eva", NOW) == "logged_out"
    assert audit.change_presence("eva", "logged_in", "cli:lead", hours(1)) == "logged_in"
    assert audit.change_presence("eva", "logged_out", "cli:lead", hours(2)) == "logged_in"
    trail = audit.entries(audit.AuditFilter(kind="agent."))
    assert [(e.kind, e.who) for e in trail] == [("agent.login", "phone:eva"),
                                              ("agent.logout", "cli:lead")]


def test_audit_filters_and_limit(db):
    for minute in range(5):
        audit.record("route.set", f"+4930{minute}", "cli:a" if minute % 2 else "cli:b",
                     NOW + timedelta(minutes=minute), None, {"n": minute})
    audit.record("reload.refused", "/etc/fsrouter/config.yaml", "daemon", hours(1), None,
                 {"problems": ["x"]})
    assert len(audit.entries(audit.AuditFilter(kind="route."))) == 5
    assert [e.subject for e in audit.entries(audit.AuditFilter(who="cli:a"))] == [
        "+49301", "+49303"]
    window = audit.AuditFilter(since=NOW + timedelta(minutes=1), until=NOW + timedelta(
        minutes=3))
    assert [e.subject for e in audit.entries(window)] == ["+49301", "+49302"]
    assert [e.subject for e in audit.entries(audit.AuditFilter(limit=2))] == [
        "+49304", "/etc/fsrouter/config.yaml"]
    # A page further back (the console): skip the newest two, the next two, oldest first.
    assert [e.subject for e in audit.entries(audit.AuditFilter(limit=2, offset=2))] == [
        "+49302", "+49303"]


# ---------------------------------------------------------------- history


def test_incidents_filter_by_time_number_option_and_state(db):
    night = seed()
    everything = history.Window()
    assert [i.id for i in history.list_incidents(everything)] == [night.accepted,
                                                                   night.unanswered]
    assert [i.id for i in history.list_incidents(everything, option="2")] == [
        night.unanswered]
    assert [i.id for i in history.list_incidents(everything, state="resolved")] == [
        night.accepted]
    assert history.list_incidents(everything, number=AGENT_LINE) == []
    assert [i.id for i in history.list_incidents(history.Window(since=at(60)))] == [
        night.unanswered]
    assert [i.id for i in history.list_incidents(history.Window(limit=1, offset=1))] == [
        night.accepted]  # one page back
    assert history.list_incidents(history.Window(offset=2)) == []
    assert [i.id for i in history.list_incidents(history.Window(until=at(60)))] == [
        night.accepted]
    assert [i.id for i in history.list_incidents(history.Window(limit=1))] == [
        night.unanswered]


def test_the_incident_timeline_has_every_attempt_and_the_end(db):
    night = seed()
    line = history.incident_timeline(night.accepted)
    assert [c.call_uuid for c in line.calls] == ["c-1"]
    assert [(a.user_id, a.result, a.cause) for a in line.attempts] == [
        ("anna", "no_answer", "NO_ANSWER"), ("bernd", "accepted", "NORMAL_CLEARING")]
    assert (line.incident.accepted_by, line.incident.state) == ("bernd", "resolved")
    other = history.incident_timeline(night.unanswered)
    assert [v.id for v in other.voicemails] == [night.voicemail]
    with pytest.raises(NotFound):
        history.incident_timeline(999)


def test_calls_and_voicemails(db):
    night = seed()
    calls = history.list_calls(history.Window())
    assert [c.call_uuid for c in calls] == ["c-1", "c-2", "c-3"]
    assert history.attempt_counts([c.id for c in calls]) == {calls[0].id: 2, calls[1].id: 1}
    assert [c.call_uuid for c in history.list_calls(history.Window(), number=HOTLINE,
                                                     outcome="bridged")] == ["c-1"]
    [voicemail] = history.list_voicemails(history.Window(), user="dirk")
    assert voicemail.id == night.voicemail and history.mail_state(voicemail) == "failed"
    assert history.list_voicemails(history.Window(), mail="sent") == []
    assert history.list_voicemails(history.Window(since=NIGHT + timedelta(hours=3))) == []


def test_failed_deliveries_are_made_due_again_and_audited(db):
    night = seed()
    window = history.Window()
    assert [v.id for v in history.failed_mails(window)] == [night.voicemail]
    assert [w.id for w in history.failed_webhooks(window)] == [night.webhook]
    retry_at = at(600)
    history.retry_mails([night.voicemail], "cli:lead", retry_at)
    history.retry_webhooks([night.webhook], "cli:lead", retry_at)
    assert history.failed_mails(window) == [] and history.failed_webhooks(window) == []
    # The senders' own queries now hand them out again.
    assert [v.id for v in q.due_voicemails(retry_at)] == [night.voicemail]
    assert [m.id for m in q.due_outbox(retry_at)] == [night.webhook]
    trail = audit.entries(audit.AuditFilter(kind="delivery.retry"))
    assert [(e.subject, audit.decoded(e.before)["error"]) for e in trail] == [
        (f"mail:{night.voicemail}", "SMTP 550 mailbox unavailable"),
        (f"webhook:{night.webhook}", "HTTP 503")]


def test_retrying_something_that_has_not_failed_changes_nothing(db):
    night = seed()
    with pytest.raises(NotFound, match="999"):
        history.retry_mails([night.voicemail, 999], "cli:lead", at(600))
    assert [v.id for v in history.failed_mails(history.Window())] == [night.voicemail]
    assert count(AuditEntry) == 0
