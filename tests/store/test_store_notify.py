"""Migration 2 and the notify outbox queries, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fsrouter.store import migrations
from fsrouter.store import queries as q
from fsrouter.store.db import session
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.migrations import current_version, upgrade
from fsrouter.store.models import OutboxMessage, Voicemail

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_migration_2_keeps_existing_voicemails(empty_db, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    assert upgrade(empty_db) == [1]
    with empty_db.connection_context():
        columns = {c.name for c in empty_db.get_columns("voicemails")}
        assert "email_attempts" not in columns and "outbox" not in empty_db.get_tables()
    old = migrations._VoicemailV1  # a row written by the first release
    with empty_db.bind_ctx([old]), session():
        old.create(user_id="anna", path="/vm/1.wav", created_at=T0, email_error="SMTP 451")
    monkeypatch.undo()
    assert upgrade(empty_db)[0] == 2  # and any later migrations
    assert current_version(empty_db) == migrations.latest_version()
    [row] = q.unsent_voicemails()
    assert (row.user_id, row.email_error, row.email_attempts, row.email_next_at,
            row.email_gave_up_at, row.host) == ("anna", "SMTP 451", 0, None, None, None)
    assert [v.id for v in q.due_voicemails(T0)] == [row.id]  # the old row is mailed too
    with empty_db.connection_context():
        assert "outbox" in empty_db.get_tables()
        assert ("state", "next_at") in [tuple(i.columns) for i in empty_db.get_indexes("outbox")]


def vm(user: str = "anna", when: datetime = T0, host: str | None = None) -> Voicemail:
    return q.record_voicemail(user, f"/vm/{user}-{when.timestamp()}.wav", when, host=host)


def test_voicemail_claims_are_exclusive_and_leased(db):
    row = vm()
    assert q.next_voicemail_due() == T0
    claimed = q.claim_voicemail_email(row.id, at(1), lease_until=at(301))
    assert claimed.email_attempts == 1 and claimed.email_next_at == at(301)
    assert q.claim_voicemail_email(row.id, at(2), lease_until=at(302)) is None  # taken
    assert q.due_voicemails(at(300)) == []
    assert q.next_voicemail_due() == at(301)
    again = q.claim_voicemail_email(row.id, at(301), lease_until=at(601))  # the lease ended
    assert again.email_attempts == 2
    q.mark_voicemail_emailed(row.id, at(302))
    assert q.claim_voicemail_email(row.id, at(9999), lease_until=at(10000)) is None
    assert q.next_voicemail_due() is None


def test_voicemail_defer_park_requeue_postpone(db):
    first, second, third = vm(when=at(0)), vm(when=at(1)), vm(when=at(2))
    q.claim_voicemail_email(first.id, at(5), at(100))
    q.defer_voicemail_email(first.id, "refused\r\nby server\x00" + "x" * 5000, at(5), at(65))
    stored = Voicemail.get_by_id(first.id)
    assert stored.email_next_at == at(65)
    assert stored.email_error.startswith("refused  by server ")
    assert len(stored.email_error) == q.MAX_ERROR_TEXT and stored.email_error.endswith("...")
    assert q.postpone_voicemail_emails(at(65)) == 2  # the two that were due now wait too
    assert [v.email_next_at for v in q.unsent_voicemails()] == [at(65)] * 3
    assert Voicemail.get_by_id(second.id).email_attempts == 0
    q.defer_voicemail_email(third.id, "no address", at(6), None)  # parked
    assert Voicemail.get_by_id(third.id).email_gave_up_at == at(6)
    assert [v.id for v in q.due_voicemails(at(70))] == [first.id, second.id]
    assert q.requeue_parked_voicemails() == 1
    assert [v.id for v in q.due_voicemails(at(70))] == [first.id, second.id, third.id]
    with pytest.raises(NotFound):
        q.defer_voicemail_email(999, "x", at(1), None)


def test_voicemails_by_host(db):
    mine, theirs, anyone = vm(host="fs1"), vm(user="b", host="fs2"), vm(user="c")
    assert {v.id for v in q.due_voicemails(T0, host="fs1")} == {mine.id, anyone.id}
    assert {v.id for v in q.due_voicemails(T0)} == {mine.id, theirs.id, anyone.id}
    assert q.claim_voicemail_email(theirs.id, T0, at(60), host="fs1") is None
    q.defer_voicemail_email(theirs.id, "x", T0, None)
    assert q.requeue_parked_voicemails(host="fs1") == 0
    assert q.requeue_parked_voicemails(host="fs2") == 1


def item(n: int, url: str = "https://hooks.example/a", event: str = "incident.created",
         secret_env: str | None = None) -> q.OutboxItem:
    return q.OutboxItem(f"00000000-0000-4000-8000-{n:012d}", event, url, f'{{"n":{n}}}',
                        secret_env)


def test_outbox_lifecycle(db):
    a, b = q.enqueue_outbox([item(1, secret_env="HOOK_SECRET"), item(2)], T0)
    assert (a.state, a.attempts, a.next_at, a.secret_env) == ("pending", 0, T0, "HOOK_SECRET")
    assert [r.id for r in q.due_outbox(T0)] == [a.id, b.id]
    assert q.next_outbox_due() == T0
    claimed = q.claim_outbox(a.id, T0, at(40))
    assert claimed.attempts == 1 and claimed.body == '{"n":1}'
    assert q.claim_outbox(a.id, at(1), at(41)) is None  # leased to the first sender
    q.outbox_retry(a.id, "HTTP 500", 500, at(1), at(6))
    assert q.postpone_outbox("https://hooks.example/a", at(6)) == 1  # b waits with it
    assert q.due_outbox(at(5)) == []
    assert [r.id for r in q.due_outbox(at(6))] == [a.id, b.id]
    q.claim_outbox(a.id, at(6), at(46))
    q.outbox_delivered(a.id, 204, at(7))
    q.claim_outbox(b.id, at(6), at(46))
    q.outbox_retry(b.id, "HTTP 410", 410, at(7), None)  # gave up
    a, b = q.get_outbox(a.id), q.get_outbox(b.id)
    assert (a.state, a.delivered_at, a.last_status, a.last_error) == ("delivered", at(7), 204,
                                                                       None)
    assert (b.state, b.failed_at, b.last_status, b.attempts) == ("failed", at(7), 410, 1)
    assert q.next_outbox_due() is None
    assert [r.id for r in q.list_outbox("failed")] == [b.id]
    assert q.purge_delivered_outbox(at(8)) == 1
    assert [r.id for r in q.list_outbox()] == [b.id]  # failed rows are kept
    with pytest.raises(NotFound):
        q.get_outbox(a.id)


@pytest.mark.parametrize("bad", [
    q.OutboxItem("d", "Incident Created", "https://x", "{}"),
    q.OutboxItem("d", "incident.created", "https://x", '{"n":"Jörg"}'),
    q.OutboxItem("d" * 37, "incident.created", "https://x", "{}"),
    q.OutboxItem("d", "incident.created", "https://x\r\n", "{}"),
])
def test_outbox_refuses_bad_items_and_writes_none(db, bad):
    with pytest.raises(StoreInputError):
        q.enqueue_outbox([item(1), bad], T0)
    assert OutboxMessage.select().count() == 0
