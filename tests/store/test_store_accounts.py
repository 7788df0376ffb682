"""The console's accounts, tokens and failed log-ins (migration 4) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fsrouter.store import accounts
from fsrouter.store.audit import AuditFilter, entries
from fsrouter.store.errors import NotFound, StoreInputError

NOW = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)


def test_accounts_with_their_audit_trail(db):
    accounts.add_account("anna", "supervisor", "$argon2id$fake", "cli:olga", NOW)
    with pytest.raises(StoreInputError, match="already exists"):
        accounts.add_account("anna", "viewer", "$argon2id$other", "cli:olga", NOW)
    row = accounts.get_account("anna")
    assert (row.role, row.password_hash, row.sessions_after) == (
        "supervisor", "$argon2id$fake", NOW)
    later = NOW + timedelta(hours=1)
    accounts.set_password("anna", "$argon2id$new", "cli:olga", later)
    assert accounts.get_account("anna").sessions_after == later
    accounts.rehash("anna", "$argon2id$stale", "$argon2id$ignored")  # the hash moved on
    assert accounts.get_account("anna").password_hash == "$argon2id$new"
    accounts.end_sessions("anna", later + timedelta(minutes=5))
    assert accounts.get_account("anna").sessions_after == later + timedelta(minutes=5)
    accounts.remove_account("anna", "cli:olga", later)
    assert accounts.get_account("anna") is None
    for missing in (lambda: accounts.remove_account("anna", "x", NOW),
                    lambda: accounts.set_password("anna", "h", "x", NOW)):
        with pytest.raises(NotFound):
            missing()
    trail = [(e.kind, e.subject, e.who, e.before, e.after) for e in entries(AuditFilter())]
    assert trail == [
        ("web_user.add", "anna", "cli:olga", None, '{"role": "supervisor"}'),
        ("web_user.passwd", "anna", "cli:olga", None, '{"password": "changed"}'),
        ("web_user.remove", "anna", "cli:olga", '{"role": "supervisor"}', None)]


def test_tokens(db):
    accounts.add_token("ci", "viewer", "a" * 64, "cli:olga", NOW)
    with pytest.raises(StoreInputError):
        accounts.add_token("ci", "viewer", "b" * 64, "cli:olga", NOW)
    row = accounts.token_by_hash("a" * 64)
    assert (row.name, row.role, row.created_by, row.last_used_at) == (
        "ci", "viewer", "cli:olga", None)
    accounts.token_used(row.id, NOW)
    assert accounts.token_by_hash("a" * 64).last_used_at == NOW
    assert [t.name for t in accounts.list_tokens()] == ["ci"]
    accounts.remove_token("ci", "cli:olga", NOW)
    assert accounts.token_by_hash("a" * 64) is None
    assert [e.kind for e in entries(AuditFilter(kind="web_token."))] == [
        "web_token.add", "web_token.remove"]


def test_claimed_attempts_stop_at_the_limits_and_age_out(db):
    window = timedelta(minutes=15)

    def claim(name: str, address: str, at: datetime) -> bool:
        return accounts.claim_attempt(name, address, at, at - window, 3, 5)

    assert [claim("anna", "10.0.0.1", NOW) for _ in range(4)] == [True] * 3 + [False]
    assert [claim(f"n{i}", "10.0.0.1", NOW) for i in range(3)] == [True, True, False]
    assert claim("bob", "10.0.0.2", NOW)  # another name from another address
    accounts.clear_failures("anna")  # a good log-in: anna's count, and so the address's, drop
    assert claim("anna", "10.0.0.1", NOW)
    # 16 minutes later the old ones no longer count (and are deleted by the next claim).
    later = NOW + timedelta(minutes=16)
    assert [claim(f"m{i}", "10.0.0.1", later) for i in range(5)] == [True] * 5
    assert not claim("m9", "10.0.0.1", later)
