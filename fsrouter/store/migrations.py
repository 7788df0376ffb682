"""Schema migrations: an ordered list, each applied once in its own transaction.

Two processes may start at once (daemon and CLI, or two fsrouter instances on one
PostgreSQL). Each migration therefore runs under a lock taken before the version is read:
``BEGIN IMMEDIATE`` on SQLite (the write lock; the other process waits ``busy_timeout``), a
transaction-scoped advisory lock on PostgreSQL. The second process then sees the version
recorded and skips it.

Adding a migration: append ``(n, function)`` to :data:`MIGRATIONS`. Migration 1 builds the
tables from the models; when a model changes, the change needs migration n+1 AND migration 1
must keep producing the old shape (freeze the old column list there), or a fresh database
gets the column twice. The tests upgrade a fresh database on both engines, which catches it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import peewee
import structlog
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_operations

from fsrouter.store.db import session
from fsrouter.store.models import (
    ALL_MODELS,
    ApiToken,
    AuditEntry,
    BaseModel,
    CallRecord,
    Incident,
    LoginFailure,
    OncallOverride,
    OutboxMessage,
    SchemaVersion,
    UTCDateTimeField,
    Voicemail,
    WebAccount,
)

log = structlog.get_logger(__name__)

# Any 64-bit constant unique to fsrouter; PostgreSQL advisory locks are per database.
_PG_LOCK_KEY = 0x0F5_0A7E_0001


class _VoicemailV1(BaseModel):
    """The voicemails table as migration 1 created it (frozen; migration 2 adds columns)."""

    id = peewee.AutoField()
    user_id = peewee.CharField(max_length=128, index=True)
    call_uuid = peewee.CharField(max_length=64, null=True)
    caller_number = peewee.TextField(null=True)
    caller_name = peewee.TextField(null=True)
    path = peewee.TextField()
    duration_s = peewee.FloatField(null=True)
    created_at = UTCDateTimeField()
    emailed_at = UTCDateTimeField(null=True)
    email_error = peewee.TextField(null=True)
    incident = peewee.ForeignKeyField(Incident, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "voicemails"


class _CallRecordV1(BaseModel):
    """The call_records table as migration 1 created it (frozen; migration 6 adds ``node``)."""

    id = peewee.AutoField()
    call_uuid = peewee.CharField(max_length=64, unique=True)
    number = peewee.CharField(max_length=16)
    route_type = peewee.CharField(max_length=40)
    caller_number = peewee.TextField(null=True)
    caller_name = peewee.TextField(null=True)
    started_at = UTCDateTimeField()
    answered_at = UTCDateTimeField(null=True)
    ended_at = UTCDateTimeField(null=True, index=True)
    hangup_cause = peewee.CharField(max_length=64, null=True)
    outcome = peewee.CharField(max_length=40, null=True)
    incident = peewee.ForeignKeyField(Incident, null=True, on_delete="SET NULL", backref="+")
    bridged_to_user = peewee.CharField(max_length=128, null=True)
    host = peewee.CharField(max_length=255, null=True)

    class Meta:
        table_name = "call_records"
        indexes = ((("number", "started_at"), False),)


# The models in their migration-1 shape.
_FROZEN: dict[type[BaseModel], type[BaseModel]] = {Voicemail: _VoicemailV1,
                                                    CallRecord: _CallRecordV1}
_M001_MODELS = tuple(_FROZEN.get(model, model) for model in ALL_MODELS)


def _m001_initial(db: peewee.Database) -> None:
    """All tables and indexes of the first release, in ALL_MODELS' order (it respects the
    foreign keys; peewee's own sort would not see that attempts refer to the frozen
    call_records)."""
    with db.bind_ctx(_M001_MODELS, bind_refs=False, bind_backrefs=False):
        for model in _M001_MODELS:
            model.create_table(safe=True)


def _m002_notify(db: peewee.Database) -> None:
    """The mailer's retry state on voicemails, and the webhook outbox table.

    The columns are spelled out here (not taken from the model) so this migration keeps
    producing the same shape when the model changes later; the same holds for the outbox
    table: if :class:`OutboxMessage` changes, freeze its current shape here first.
    """
    migrator = SchemaMigrator.from_database(db)
    run_operations(
        migrator.add_column(
            "voicemails", "email_attempts",
            peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")]),
            allow_not_null=True),  # NOT NULL DEFAULT 0 in one ALTER: fills existing rows
        migrator.add_column("voicemails", "email_next_at", UTCDateTimeField(null=True)),
        migrator.add_column("voicemails", "email_gave_up_at", UTCDateTimeField(null=True)),
        migrator.add_column("voicemails", "host", peewee.CharField(max_length=255, null=True)),
    )
    with db.bind_ctx([OutboxMessage], bind_refs=False, bind_backrefs=False):
        db.create_tables([OutboxMessage], safe=True)


def _m003_overrides_audit(db: peewee.Database) -> None:
    """Run-time on-call overrides and the append-only audit log (if either model changes
    later, freeze its current shape here first, as for migration 2)."""
    with db.bind_ctx([OncallOverride, AuditEntry], bind_refs=False, bind_backrefs=False):
        db.create_tables([OncallOverride, AuditEntry], safe=True)


def _m004_web_accounts(db: peewee.Database) -> None:
    """The console's accounts, API tokens and failed log-ins (issue 20; if a model changes
    later, freeze its current shape here first, as for migration 2)."""
    models = [WebAccount, ApiToken, LoginFailure]
    with db.bind_ctx(models, bind_refs=False, bind_backrefs=False):
        db.create_tables(models, safe=True)


def _m005_cluster(db: peewee.Database) -> None:
    """Nodes with their leases, and agent claims (fsrouter/cluster; docs/two-nodes.md).

    Plain DDL, spelled out (frozen): times are epoch seconds of the database's own clock, so
    nodes whose clocks differ still agree on when a lease ends.
    """
    real = "DOUBLE PRECISION" if isinstance(db, peewee.PostgresqlDatabase) else "REAL"
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS cluster_nodes ("
        " id VARCHAR(128) NOT NULL PRIMARY KEY, host VARCHAR(255) NOT NULL,"
        f" pid INTEGER NOT NULL, started_at {real} NOT NULL, heartbeat_at {real} NOT NULL,"
        f" lease_until {real} NOT NULL)")
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS agent_claims ("
        " agent VARCHAR(128) NOT NULL PRIMARY KEY, node VARCHAR(128) NOT NULL,"
        " call_uuid VARCHAR(64) NOT NULL, leg_uuid VARCHAR(64) NOT NULL,"
        f" claimed_at {real} NOT NULL)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS agent_claims_node ON agent_claims (node)")


def _m006_call_node(db: peewee.Database) -> None:
    """The cluster node handling each call (recovery and takeover, docs/two-nodes.md);
    NULL for records of earlier releases (recovery treats them by host, as before)."""
    migrator = SchemaMigrator.from_database(db)
    run_operations(migrator.add_column("call_records", "node",
                                       peewee.CharField(max_length=128, null=True)))


Migration = Callable[[peewee.Database], None]
MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _m001_initial),
    (2, _m002_notify),
    (3, _m003_overrides_audit),
    (4, _m004_web_accounts),
    (5, _m005_cluster),
    (6, _m006_call_node),
]


def latest_version() -> int:
    """The version a fully upgraded database has."""
    return MIGRATIONS[-1][0]


def current_version(db: Any) -> int:
    """The highest applied migration, 0 for an empty database."""
    real = _unwrap(db)
    with session(real):
        return _applied_version(real)


def upgrade(db: Any) -> list[int]:
    """Apply the missing migrations in order; return the versions this call applied."""
    real = _unwrap(db)
    applied = []
    for version, migrate in MIGRATIONS:
        if _apply_one(real, version, migrate):
            applied.append(version)
    if applied:
        log.info("store.migrated", versions=applied, database=getattr(real, "label", "?"))
    return applied


def _apply_one(db: peewee.Database, version: int, migrate: Migration) -> bool:
    with session(db, immediate=True):
        _lock(db)
        with db.bind_ctx([SchemaVersion]):
            SchemaVersion.create_table(safe=True)
            if _applied_version(db) >= version:
                return False
            migrate(db)
            SchemaVersion.create(version=version, applied_at=datetime.now(UTC))
    return True


def _lock(db: peewee.Database) -> None:
    # SQLite already holds the write lock from BEGIN IMMEDIATE.
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))


def _applied_version(db: peewee.Database) -> int:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = db.execute_sql(f"SELECT MAX(version) FROM {SchemaVersion._meta.table_name}").fetchone()
    return int(row[0] or 0)


def _unwrap(db: Any) -> peewee.Database:
    return db.obj if isinstance(db, peewee.DatabaseProxy) else db
