"""The tables fsrouter keeps: incidents, call records, dial attempts, presence, 2-way mappings,
run-time number assignments, voicemails, the webhook outbox, run-time on-call overrides, the
audit log and the schema version.

Timestamps: every ``*_at`` column is a :class:`UTCDateTimeField`. Python code hands it aware
datetimes (any zone) and gets aware UTC datetimes back; the database holds naive UTC as the
fixed-width text ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLite, so text order is time order) or a
``TIMESTAMP`` without time zone (PostgreSQL). Naive datetimes are refused: a naive value is a
bug waiting to shift by the server's offset.

Schema changes go through :mod:`fsrouter.store.migrations`, never ``create_tables`` here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import peewee

from fsrouter.store.db import database_proxy

INCIDENT_STATES = ("open", "accepted", "resolved", "abandoned", "unanswered")
ATTEMPT_RESULTS = (
    "answered",
    "accepted",
    "no_answer",
    "busy",
    "rejected",
    "unreachable",
    "failed",
    "cancelled",
    "not_accepted",
)
PRESENCE_STATES = ("logged_in", "logged_out")
ROUTE_TYPES = ("agent", "queue", "unassigned", "custom")
# Known call outcomes; the store accepts any short snake_case word so the call layer can add one.
CALL_OUTCOMES = (
    "bridged",
    "hangup_in_menu",
    "hangup_in_queue",
    "busy_tone",
    "voicemail",
    "unassigned",
    "no_answer_fallback",
    "failed",
)

_DB_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def utc_text(value: datetime) -> str:
    """An aware datetime as the stored text (``_DB_FORMAT`` in UTC). isoformat is ~0.8 us
    cheaper than strftime, a dozen times per call; strftime for years before 1000, which it
    does not pad (glibc) while isoformat does: the text stays the same for every value."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year < 1000:
        return value.strftime(_DB_FORMAT)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class UTCDateTimeField(peewee.DateTimeField):
    """Aware datetime in Python, naive UTC in the database (see the module docstring)."""

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"{self.name}: expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{self.name}: naive datetime {value!r}; pass an aware datetime")
        return utc_text(value)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    applied_at = UTCDateTimeField()

    class Meta:
        table_name = "schema_version"


class Incident(BaseModel):
    id = peewee.AutoField()
    number = peewee.CharField(max_length=16)  # E.164 routing number
    option_digit = peewee.CharField(max_length=1, null=True)
    option_label = peewee.TextField(null=True)
    caller_number = peewee.TextField(null=True)  # caller-controlled: stored sanitised
    caller_name = peewee.TextField(null=True)  # caller-controlled: stored sanitised
    call_uuid = peewee.CharField(max_length=64, null=True, index=True)
    state = peewee.CharField(max_length=16, default="open")
    created_at = UTCDateTimeField()
    accepted_at = UTCDateTimeField(null=True)
    accepted_by = peewee.CharField(max_length=128, null=True)
    resolved_at = UTCDateTimeField(null=True)
    outcome_reason = peewee.TextField(null=True)

    class Meta:
        table_name = "incidents"
        indexes = ((("state", "created_at"), False),)


class CallRecord(BaseModel):
    id = peewee.AutoField()
    call_uuid = peewee.CharField(max_length=64, unique=True)
    number = peewee.CharField(max_length=16)
    route_type = peewee.CharField(max_length=40)
    caller_number = peewee.TextField(null=True)
    caller_name = peewee.TextField(null=True)
    started_at = UTCDateTimeField()
    answered_at = UTCDateTimeField(null=True)
    ended_at = UTCDateTimeField(null=True, index=True)  # NULL = still open (reconciliation)
    hangup_cause = peewee.CharField(max_length=64, null=True)
    outcome = peewee.CharField(max_length=40, null=True)
    incident = peewee.ForeignKeyField(Incident, null=True, on_delete="SET NULL")
    bridged_to_user = peewee.CharField(max_length=128, null=True)
    host = peewee.CharField(max_length=255, null=True)
    # The cluster node (fsrouter.cluster.node_id) handling the call: recovery acts on its own
    # node's records and takes over those of nodes whose lease ran out (migration 6).
    node = peewee.CharField(max_length=128, null=True)

    class Meta:
        table_name = "call_records"
        indexes = ((("number", "started_at"), False),)


class Attempt(BaseModel):
    id = peewee.AutoField()
    call = peewee.ForeignKeyField(CallRecord, on_delete="CASCADE")  # indexed: attempts by call
    incident = peewee.ForeignKeyField(Incident, null=True, on_delete="SET NULL")
    seq = peewee.IntegerField()
    user_id = peewee.CharField(max_length=128)
    phone = peewee.CharField(max_length=64)
    phone_type = peewee.CharField(max_length=16, null=True)
    leg_uuid = peewee.CharField(max_length=64, null=True, index=True)
    job_uuid = peewee.CharField(max_length=64, null=True, index=True)
    started_at = UTCDateTimeField()
    ended_at = UTCDateTimeField(null=True)
    result = peewee.CharField(max_length=16, null=True)
    cause = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "attempts"


class AgentPresence(BaseModel):
    id = peewee.AutoField()
    user_id = peewee.CharField(max_length=128, unique=True)
    state = peewee.CharField(max_length=16, default="logged_out")
    busy = peewee.BooleanField(default=False)
    since = UTCDateTimeField()  # when `state` last changed
    busy_call_uuid = peewee.CharField(max_length=64, null=True)
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "agent_presence"


class TwoWayMapping(BaseModel):
    id = peewee.AutoField()
    customer_number = peewee.CharField(max_length=16, unique=True)  # E.164
    user_id = peewee.CharField(max_length=128)
    our_number = peewee.CharField(max_length=16)  # the caller ID the agent used
    last_call_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(index=True)

    class Meta:
        table_name = "two_way_mappings"


class NumberAssignment(BaseModel):
    id = peewee.AutoField()
    number = peewee.CharField(max_length=16, unique=True)  # E.164
    route_type = peewee.CharField(max_length=16)
    target = peewee.TextField(null=True)
    changed_at = UTCDateTimeField()
    changed_by = peewee.CharField(max_length=128)

    class Meta:
        table_name = "number_assignments"


class Voicemail(BaseModel):
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
    incident = peewee.ForeignKeyField(Incident, null=True, on_delete="SET NULL")
    # Added by migration 2 (the mailer's retries, see fsrouter.notify.mail):
    email_attempts = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    email_next_at = UTCDateTimeField(null=True)  # next try, or the end of a sender's lease
    email_gave_up_at = UTCDateTimeField(null=True)  # parked: tried again after reload/restart
    host = peewee.CharField(max_length=255, null=True)  # whose disk has the file; NULL: any

    class Meta:
        table_name = "voicemails"


OUTBOX_STATES = ("pending", "delivered", "failed")


class OutboxMessage(BaseModel):
    """One webhook delivery (one event for one configured URL), kept until delivered or given
    up; created by migration 2. The body is stored as sent, so retries are byte-identical."""

    id = peewee.AutoField()
    delivery_id = peewee.CharField(max_length=36, unique=True)  # uuid4: X-Fsrouter-Delivery
    event = peewee.CharField(max_length=64)
    url = peewee.TextField()
    secret_env = peewee.CharField(max_length=128, null=True)  # the variable, never the secret
    body = peewee.TextField()  # JSON, ASCII only
    state = peewee.CharField(max_length=16, default="pending")
    created_at = UTCDateTimeField()
    next_at = UTCDateTimeField()  # due from then on, or the end of a sender's lease
    attempts = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    last_status = peewee.IntegerField(null=True)  # the last HTTP status, NULL: no response
    last_error = peewee.TextField(null=True)
    delivered_at = UTCDateTimeField(null=True)
    failed_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "outbox"
        indexes = ((("state", "next_at"), False),)


class OncallOverride(BaseModel):
    """A run-time on-call override ("Bernd covers tonight"): beats the schedule's rotations
    and its YAML overrides from ``starts_at`` to ``ends_at``; created by migration 3."""

    id = peewee.AutoField()
    schedule = peewee.CharField(max_length=128)
    user_id = peewee.CharField(max_length=128)
    starts_at = UTCDateTimeField()
    ends_at = UTCDateTimeField(index=True)
    reason = peewee.TextField(null=True)
    created_at = UTCDateTimeField()
    created_by = peewee.CharField(max_length=128)

    class Meta:
        table_name = "oncall_overrides"
        indexes = ((("schedule", "starts_at"), False),)


class AuditEntry(BaseModel):
    """One change made through fsrouter, append-only (never updated or deleted); created by
    migration 3. ``before``/``after`` are JSON text (NULL: nothing before / nothing after)."""

    id = peewee.AutoField()
    at = UTCDateTimeField(index=True)
    who = peewee.CharField(max_length=128)
    kind = peewee.CharField(max_length=40)
    subject = peewee.TextField()
    before = peewee.TextField(null=True)
    after = peewee.TextField(null=True)

    class Meta:
        table_name = "audit_log"
        indexes = ((("subject", "at"), False),)


WEB_ROLES = ("viewer", "supervisor")


class WebAccount(BaseModel):
    """A console log-in (``fsrouter web user add``); created by migration 4. The password is
    kept only as an argon2 hash. Sessions issued before ``sessions_after`` are void (log-out,
    a new password)."""

    id = peewee.AutoField()
    name = peewee.CharField(max_length=64, unique=True)
    role = peewee.CharField(max_length=16)
    password_hash = peewee.CharField(max_length=255)
    created_at = UTCDateTimeField()
    changed_at = UTCDateTimeField()
    sessions_after = UTCDateTimeField()

    class Meta:
        table_name = "web_accounts"


class ApiToken(BaseModel):
    """A token for scripts calling the console's API (``fsrouter web token add``); created by
    migration 4. Only the SHA-256 of the token is kept: it is shown once, when made."""

    id = peewee.AutoField()
    name = peewee.CharField(max_length=64, unique=True)
    token_sha256 = peewee.CharField(max_length=64, unique=True)
    role = peewee.CharField(max_length=16)
    created_at = UTCDateTimeField()
    created_by = peewee.CharField(max_length=128)
    last_used_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "web_tokens"


class LoginFailure(BaseModel):
    """One failed console log-in, kept for the rate limit's window; created by migration 4.
    ``name`` is the name as typed (it need not exist), ``address`` the client's address."""

    id = peewee.AutoField()
    name = peewee.CharField(max_length=64, index=True)
    address = peewee.CharField(max_length=64, index=True)
    at = UTCDateTimeField(index=True)

    class Meta:
        table_name = "web_login_failures"


# Creation order respects foreign keys.
ALL_MODELS: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    Incident,
    CallRecord,
    Attempt,
    AgentPresence,
    TwoWayMapping,
    NumberAssignment,
    Voicemail,
)
# Tables that later migrations create (migration 1 creates ALL_MODELS in their first shape).
LATER_MODELS: tuple[type[BaseModel], ...] = (OutboxMessage, OncallOverride, AuditEntry,
                                              WebAccount, ApiToken, LoginFailure)
