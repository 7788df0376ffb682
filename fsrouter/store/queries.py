"""The store operations the call layer, the CLI and reconciliation use.

Each function is one short transaction on the bound database (see
:func:`fsrouter.store.db.session`). Times are passed in (``now``) because the caller already
has the moment it is recording, and tests can then say exactly when things happened.

The call flows use the lean forms on their hot path (bench/README.md): :func:`close_call` and
:func:`end_attempt` do not read the row back, :func:`record_attempt` takes the call record's
id when the caller has it, and writes that belong together share one transaction
(:func:`create_incident` links the call and sets its ``answered_at``, :func:`accept_incident`
sets who the call was bridged to). A transaction costs more than a statement in it.

The statements every call makes (section "the call flows' statements") are written as SQL
here instead of built by peewee for each call: building a query cost ~100-150 µs, running
it ~30 µs. They are plain SQL both databases take (``?`` becomes the driver's placeholder),
values go through the model fields' own ``db_value``, so the rows are exactly what peewee
would write; tests/store runs them on SQLite and PostgreSQL.

Caller-controlled text (caller ID name and number) is stored sanitised, never rejected: a
hostile caller name must not cost us the call record. NUL and other control characters and
unpaired surrogates are replaced and the text is cut to :data:`MAX_CALLER_TEXT`.
Values we produce ourselves (states, results, E.164 numbers) are checked strictly and raise
:class:`StoreInputError` before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from fsrouter.store.db import database_proxy, session
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.models import (
    ATTEMPT_RESULTS,
    PRESENCE_STATES,
    ROUTE_TYPES,
    AgentPresence,
    Attempt,
    CallRecord,
    Incident,
    NumberAssignment,
    TwoWayMapping,
    Voicemail,
)
from fsrouter.store.validate import (  # noqa: F401 (the flows import them from here)
    _CONTROL,
    _E164,
    _WORD,
    MAX_CALLER_TEXT,
    _e164,
    _one_of,
    _optional_text,
    _text,
    _word,
    clean_caller_text,
)

_CLOSED_INCIDENT_STATES = ("resolved", "abandoned", "unanswered")

# ---------------------------------------------------------------- the call flows' statements

_CALL_INSERT = ('INSERT INTO "call_records" ("call_uuid", "number", "route_type", '
                '"caller_number", "caller_name", "started_at", "host", "node") '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
_CALL_ANSWERED = 'UPDATE "call_records" SET "answered_at" = ? WHERE "call_uuid" = ?'
# COALESCE: an answered_at already set stays (an adopted caller keeps its first); NULL = keep.
_CALL_LINK_INCIDENT = ('UPDATE "call_records" SET "incident_id" = ?, '
                       '"answered_at" = COALESCE("answered_at", ?) WHERE "call_uuid" = ?')
_CALL_BRIDGED = 'UPDATE "call_records" SET "bridged_to_user" = ? WHERE "call_uuid" = ?'
_CALL_INCIDENT = 'UPDATE "call_records" SET "incident_id" = ? WHERE "call_uuid" = ?'
_CALL_CLOSE = ('UPDATE "call_records" SET "outcome" = ?, "hangup_cause" = ?, "ended_at" = ?, '
               '"answered_at" = COALESCE("answered_at", ?) '
               'WHERE "call_uuid" = ? AND "ended_at" IS NULL')
_INCIDENT_INSERT = ('INSERT INTO "incidents" ("number", "option_digit", "option_label", '
                    '"caller_number", "caller_name", "call_uuid", "state", "created_at") '
                    'VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
_INCIDENT_ACCEPT = ('UPDATE "incidents" SET "state" = ?, "accepted_at" = ?, "accepted_by" = ? '
                    'WHERE "id" = ? AND "state" = ?')
_INCIDENT_CLOSE = ('UPDATE "incidents" SET "state" = ?, "resolved_at" = ?, "outcome_reason" = ? '
                   'WHERE "id" = ? AND "state" IN (?, ?)')
_ATTEMPT_INSERT = ('INSERT INTO "attempts" ("call_id", "incident_id", "seq", "user_id", "phone", '
                   '"phone_type", "leg_uuid", "job_uuid", "started_at") '
                   'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
_ATTEMPT_END = ('UPDATE "attempts" SET "ended_at" = ?, "result" = ?, "cause" = ? '
                'WHERE "id" = ? AND "ended_at" IS NULL')
_ATTEMPT_END_LEG = ('UPDATE "attempts" SET "ended_at" = ?, "result" = ?, "cause" = ?, '
                    '"leg_uuid" = ? WHERE "id" = ? AND "ended_at" IS NULL')
_CALL_ID = 'SELECT "id" FROM "call_records" WHERE "call_uuid" = ?'
# An agent never seen gets a logged-out row (as set_presence makes it); a known one keeps its
# state and since. ON CONFLICT ... DO UPDATE: SQLite >= 3.24 and PostgreSQL take it alike.
_PRESENCE_BUSY = ('INSERT INTO "agent_presence" ("user_id", "state", "busy", "since", '
                  '"busy_call_uuid", "updated_at") VALUES (?, ?, ?, ?, ?, ?) '
                  'ON CONFLICT ("user_id") DO UPDATE SET "busy" = excluded."busy", '
                  '"busy_call_uuid" = excluded."busy_call_uuid", '
                  '"updated_at" = excluded."updated_at"')
_ASSIGNMENT = ('SELECT "id", "number", "route_type", "target", "changed_at", "changed_by" '
               'FROM "number_assignments" WHERE "number" = ?')


# Driver errors as peewee's (what execute_sql does; fsrouter.store.db translates those).
_DRIVER_ERRORS = peewee.__exception_wrapper__


def _execute(sql: str, params: Sequence[object]) -> Any:
    """Run one of the statements above in the current session (``session()``) on its
    connection's cursor, without execute_sql's logging and hook checks; driver errors come
    out as peewee's, like those of a peewee query."""
    db = database_proxy.obj
    param = db.param
    with _DRIVER_ERRORS:
        cursor = db.cursor()
        cursor.execute(sql if param == "?" else sql.replace("?", param), params)
    return cursor


def _insert(sql: str, params: Sequence[object]) -> int:
    """Run an INSERT; the new row's id."""
    if database_proxy.returning_clause:  # PostgreSQL
        return int(_execute(sql + ' RETURNING "id"', params).fetchone()[0])
    return int(_execute(sql, params).lastrowid)


def _changed(sql: str, params: Sequence[object]) -> int:
    """Run an UPDATE; how many rows it changed."""
    return int(_execute(sql, params).rowcount)


def _at(value: datetime | None) -> str | None:
    """A timestamp as the models store it (UTCDateTimeField.db_value: aware only)."""
    return CallRecord.started_at.db_value(value)


def _as_model(model: type[peewee.Model], **values: Any) -> Any:
    """The instance peewee's ``Model.create`` would have returned for a row just inserted."""
    instance = model(**values)
    instance._dirty.clear()  # as after save(): nothing unsaved
    return instance


# ---------------------------------------------------------------- call records


def create_call_record(
    call_uuid: str,
    number: str,
    route_type: str,
    caller_number: str | None,
    caller_name: str | None,
    started_at: datetime,
    host: str | None = None,
    node: str | None = None,
) -> CallRecord:
    """Record a new inbound call, handled by cluster ``node``; :class:`StoreInputError` if the
    uuid is already recorded."""
    _text(call_uuid, "call_uuid", 64)
    _e164(number, "number")
    _word(route_type, "route_type")
    caller_number, caller_name = clean_caller_text(caller_number), clean_caller_text(caller_name)
    host = _optional_text(host, "host", 255)
    node = _optional_text(node, "node", 128)
    with session():
        record_id = _insert(_CALL_INSERT, [call_uuid, number, route_type, caller_number,
                                           caller_name, _at(started_at), host, node])
    return _as_model(CallRecord, id=record_id, call_uuid=call_uuid, number=number,
                     route_type=route_type, caller_number=caller_number,
                     caller_name=caller_name, started_at=started_at, host=host, node=node)


def get_call(call_uuid: str) -> CallRecord:
    with session():
        record = CallRecord.get_or_none(CallRecord.call_uuid == call_uuid)
    if record is None:
        raise NotFound(f"no call record for call {call_uuid!r}")
    return record


def mark_answered(call_uuid: str, answered_at: datetime) -> None:
    """The caller's leg was answered (menu or queue started)."""
    with session():
        changed = _changed(_CALL_ANSWERED, [_at(answered_at), call_uuid])
    if not changed:
        raise NotFound(f"no call record for call {call_uuid!r}")


def link_call(
    call_uuid: str, incident_id: int | None = None, bridged_to_user: str | None = None
) -> None:
    """Attach the incident and/or the person the call was bridged to."""
    if bridged_to_user is not None:
        _text(bridged_to_user, "bridged_to_user")
    if incident_id is None and bridged_to_user is None:
        return
    with session():
        changed = 0
        if incident_id is not None:
            changed = _changed(_CALL_INCIDENT, [incident_id, call_uuid])
        if bridged_to_user is not None:
            changed = _changed(_CALL_BRIDGED, [bridged_to_user, call_uuid])
    if not changed:
        raise NotFound(f"no call record for call {call_uuid!r}")


def finish_call(call_uuid: str, outcome: str, cause: str | None, ended_at: datetime,
                answered_at: datetime | None = None) -> CallRecord:
    """Close the call record and return it. A second finish keeps the first outcome."""
    close_call(call_uuid, outcome, cause, ended_at, answered_at)
    return get_call(call_uuid)


def close_call(call_uuid: str, outcome: str, cause: str | None, ended_at: datetime,
               answered_at: datetime | None = None) -> bool:
    """:func:`finish_call` without reading the record back; False if it was already closed
    (or does not exist). ``answered_at`` is set unless the record has one already."""
    with session():
        return _close_call_row(call_uuid, outcome, cause, ended_at, answered_at)


def _close_call_row(call_uuid: str, outcome: str, cause: str | None, ended_at: datetime,
                    answered_at: datetime | None) -> bool:
    _word(outcome, "outcome")
    _optional_text(cause, "cause")
    return bool(_changed(_CALL_CLOSE, [outcome, cause, _at(ended_at), _at(answered_at),
                                       call_uuid]))


def close_call_resolving(call_uuid: str, outcome: str, cause: str | None, ended_at: datetime,
                         answered_at: datetime | None, incident_id: int, reason: str) -> bool:
    """:func:`close_call` and :func:`resolve_incident` (``resolved``, at ``ended_at``) in one
    transaction: the end of a bridged hotline call writes both at the same moment. Each
    UPDATE keeps a first end, so the pair is safe to run twice (the journal's replay)."""
    with session():
        changed = _close_call_row(call_uuid, outcome, cause, ended_at, answered_at)
        _changed(_INCIDENT_CLOSE, ["resolved", _at(ended_at), reason, incident_id, "open",
                                   "accepted"])
    return changed


def open_calls() -> list[CallRecord]:
    """Calls without an end, oldest first: what reconciliation checks against the switch."""
    with session():
        query = CallRecord.select().where(CallRecord.ended_at.is_null())
        return list(query.order_by(CallRecord.started_at, CallRecord.id))


# ---------------------------------------------------------------- incidents


def create_incident(
    number: str,
    option_digit: str | None,
    option_label: str | None,
    caller_number: str | None,
    caller_name: str | None,
    call_uuid: str | None,
    now: datetime,
    answered_at: datetime | None = None,
) -> Incident:
    """Open an incident and attach it to its call record (when there is one), in one
    transaction; ``answered_at`` is also set on the record unless it has one already."""
    _e164(number, "number")
    if option_digit is not None and not (len(option_digit) == 1 and option_digit in "0123456789"):
        raise StoreInputError(f"option_digit must be one digit, got {option_digit!r}")
    values = {"number": number, "option_digit": option_digit,
              "option_label": _optional_text(option_label, "option_label", 200),
              "caller_number": clean_caller_text(caller_number),
              "caller_name": clean_caller_text(caller_name),
              "call_uuid": _optional_text(call_uuid, "call_uuid"), "state": "open"}
    with session():  # the columns in the order of _INCIDENT_INSERT
        incident_id = _insert(_INCIDENT_INSERT, [*values.values(), _at(now)])
        if call_uuid is not None:
            _changed(_CALL_LINK_INCIDENT, [incident_id, _at(answered_at), call_uuid])
    return _as_model(Incident, id=incident_id, created_at=now, **values)


def get_incident(incident_id: int) -> Incident:
    with session():
        incident = Incident.get_or_none(Incident.id == incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    return incident


def accept_incident(incident_id: int, user_id: str, now: datetime,
                    call_uuid: str | None = None) -> bool:
    """Mark an open incident accepted by ``user_id``; False if it was no longer open.

    The state check is in the UPDATE itself, so two people answering at once cannot both win.
    With ``call_uuid``, that call record's ``bridged_to_user`` is set in the same transaction
    (whatever the incident's state: the call was bridged to them).
    """
    _text(user_id, "user_id")
    with session():
        changed = _changed(_INCIDENT_ACCEPT, ["accepted", _at(now), user_id, incident_id, "open"])
        if call_uuid is not None:
            _changed(_CALL_BRIDGED, [user_id, call_uuid])
    if not changed:
        get_incident(incident_id)  # NotFound for a wrong id, else it was just not open
    return bool(changed)


def resolve_incident(
    incident_id: int, now: datetime, state: str = "resolved", reason: str | None = None
) -> bool:
    """Close an incident (resolved, abandoned or unanswered); False if it was already closed."""
    _one_of(state, _CLOSED_INCIDENT_STATES, "closing state")
    with session():
        changed = _changed(_INCIDENT_CLOSE, [state, _at(now), reason, incident_id, "open",
                                             "accepted"])
    if not changed:
        get_incident(incident_id)
    return bool(changed)


def note_incident(incident_id: int, reason: str) -> bool:
    """Record why an incident needs follow-up (caller abandoned, nobody answered); it stays
    open. False if it was already closed."""
    with session():
        changed = (
            Incident.update(outcome_reason=_text(reason, "reason"))
            .where((Incident.id == incident_id) & Incident.state.in_(("open", "accepted")))
            .execute()
        )
    return bool(changed)


def incident_count(number: str, option_digit: str) -> int:
    """How many incidents a number's option has had (round robin picks who goes first)."""
    with session():
        return (Incident.select()
                .where((Incident.number == number) & (Incident.option_digit == option_digit))
                .count())


def open_incidents() -> list[Incident]:
    """Incidents not yet closed (open or accepted), oldest first."""
    with session():
        query = Incident.select().where(Incident.state.in_(("open", "accepted")))
        return list(query.order_by(Incident.created_at, Incident.id))


# ---------------------------------------------------------------- dial attempts


def record_attempt(
    call_uuid: str,
    seq: int,
    user_id: str,
    phone: str,
    started_at: datetime,
    phone_type: str | None = None,
    incident_id: int | None = None,
    leg_uuid: str | None = None,
    job_uuid: str | None = None,
    call_id: int | None = None,
) -> Attempt:
    """One person being rung for a call (one ``bgapi originate``). ``call_id``, the call
    record's id when the caller has it, saves looking the record up by ``call_uuid``."""
    if not isinstance(seq, int) or seq < 0:
        raise StoreInputError(f"seq must be a non-negative integer, got {seq!r}")
    _text(user_id, "user_id")
    _text(phone, "phone", 64)
    values = {"seq": seq, "user_id": user_id, "phone": phone,  # in _ATTEMPT_INSERT's order
              "phone_type": _optional_text(phone_type, "phone_type", 16),
              "leg_uuid": _optional_text(leg_uuid, "leg_uuid"),
              "job_uuid": _optional_text(job_uuid, "job_uuid")}
    with session():
        if call_id is None:
            row = _execute(_CALL_ID, [call_uuid]).fetchone()
            if row is None:
                raise NotFound(f"no call record for call {call_uuid!r}")
            call_id = int(row[0])
        attempt_id = _insert(_ATTEMPT_INSERT, [call_id, incident_id, *values.values(),
                                               _at(started_at)])
    return _as_model(Attempt, id=attempt_id, call=call_id, incident=incident_id,
                     started_at=started_at, **values)


def finish_attempt(
    attempt_id: int, result: str, cause: str | None, now: datetime, leg_uuid: str | None = None
) -> Attempt:
    """Record how an attempt ended and return it; the first recorded result stands."""
    end_attempt(attempt_id, result, cause, now, leg_uuid)
    with session():
        attempt = Attempt.get_or_none(Attempt.id == attempt_id)
    if attempt is None:
        raise NotFound(f"no attempt {attempt_id}")
    return attempt


def end_attempt(
    attempt_id: int, result: str, cause: str | None, now: datetime, leg_uuid: str | None = None
) -> bool:
    """:func:`finish_attempt` without reading the row back; False if it had ended already
    (or does not exist)."""
    with session():
        return _end_attempt_row(attempt_id, result, cause, now, leg_uuid)


def _end_attempt_row(attempt_id: int, result: str, cause: str | None, now: datetime,
                     leg_uuid: str | None = None) -> bool:
    _one_of(result, ATTEMPT_RESULTS, "result")
    _optional_text(cause, "cause")
    if leg_uuid is None:
        return bool(_changed(_ATTEMPT_END, [_at(now), result, cause, attempt_id]))
    return bool(_changed(_ATTEMPT_END_LEG, [_at(now), result, cause,
                                            _text(leg_uuid, "leg_uuid", 64), attempt_id]))


def end_attempt_bridged(call_uuid: str, bridged_to_user: str, attempt_id: int, result: str,
                        cause: str | None, now: datetime) -> bool:
    """:func:`end_attempt` and :func:`link_call` (``bridged_to_user``) in one transaction: a
    contact-center call bridged to an agent by the bridge app writes both at that moment.
    The call's uuid first, as every call write (fsrouter.resilience.journal.calls); safe to
    run twice (the first result stands). False if the attempt had ended already."""
    _text(bridged_to_user, "bridged_to_user")
    with session():
        ended = _end_attempt_row(attempt_id, result, cause, now)
        if not _changed(_CALL_BRIDGED, [bridged_to_user, call_uuid]):
            raise NotFound(f"no call record for call {call_uuid!r}")
    return ended


def attempts_for_call(call_uuid: str) -> list[Attempt]:
    with session():
        query = Attempt.select().join(CallRecord).where(CallRecord.call_uuid == call_uuid)
        return list(query.order_by(Attempt.seq, Attempt.id))


# ---------------------------------------------------------------- agent presence


def set_presence(
    user_id: str,
    now: datetime,
    state: str | None = None,
    busy: bool | None = None,
    busy_call_uuid: str | None = None,
) -> AgentPresence:
    """Update an agent's login state and/or busy flag (only what is given changes).

    ``since`` moves only when the login state really changes. ``busy=False`` clears the
    busy call uuid.
    """
    _text(user_id, "user_id")
    if state is not None:
        _one_of(state, PRESENCE_STATES, "presence state")
    with session(immediate=True) as db:
        # Insert-if-missing then lock the row: two processes updating one agent serialise.
        AgentPresence.insert(
            user_id=user_id, state="logged_out", busy=False, since=now, updated_at=now
        ).on_conflict_ignore().execute()
        query = AgentPresence.select().where(AgentPresence.user_id == user_id)
        row = (query.for_update() if db.for_update else query).get()
        if state is not None and state != row.state:
            row.state, row.since = state, now
        if busy is not None:
            row.busy = busy
            row.busy_call_uuid = _optional_text(busy_call_uuid, "busy_call_uuid") if busy else None
        row.updated_at = now
        row.save()
        return row


def set_busy(user_id: str, now: datetime, busy: bool, busy_call_uuid: str | None = None
             ) -> None:
    """:func:`set_presence` with ``busy`` only, in one statement, without reading the row
    back: the agent watcher's write on each agent call's first and last channel (the ORM's
    insert, locked read and save cost ~0.4 ms, twice a call)."""
    _text(user_id, "user_id")
    call_uuid = _optional_text(busy_call_uuid, "busy_call_uuid") if busy else None
    with session():
        _execute(_PRESENCE_BUSY, [user_id, "logged_out", AgentPresence.busy.db_value(busy),
                                  _at(now), call_uuid, _at(now)])


def get_presence(user_id: str) -> AgentPresence | None:
    with session():
        return AgentPresence.get_or_none(AgentPresence.user_id == user_id)


def presence_of(user_ids: Iterable[str]) -> dict[str, AgentPresence]:
    """The presence rows of these agents (agents never seen are missing: logged out)."""
    wanted = list(user_ids)
    if not wanted:
        return {}
    with session(transaction=False):  # one SELECT
        rows = AgentPresence.select().where(AgentPresence.user_id.in_(wanted))
        return {row.user_id: row for row in rows}


def call_count(number: str) -> int:
    """How many calls a number has had (round robin takes turns by it)."""
    with session(transaction=False):  # one SELECT
        return CallRecord.select().where(CallRecord.number == number).count()


# ---------------------------------------------------------------- 2-way VoIP


def remember_two_way(
    customer_number: str, user_id: str, our_number: str, now: datetime, ttl: timedelta
) -> TwoWayMapping:
    """The agent ``user_id`` called ``customer_number`` showing ``our_number``; latest wins."""
    _e164(customer_number, "customer_number")
    _e164(our_number, "our_number")
    _text(user_id, "user_id")
    if ttl <= timedelta(0):
        raise StoreInputError(f"ttl must be positive, got {ttl}")
    values = {
        TwoWayMapping.user_id: user_id,
        TwoWayMapping.our_number: our_number,
        TwoWayMapping.last_call_at: now,
        TwoWayMapping.expires_at: now + ttl,
    }
    with session():
        TwoWayMapping.insert(
            {TwoWayMapping.customer_number: customer_number, **values}
        ).on_conflict(conflict_target=[TwoWayMapping.customer_number], update=values).execute()
        return TwoWayMapping.get(TwoWayMapping.customer_number == customer_number)


def lookup_two_way(customer_number: str, now: datetime) -> TwoWayMapping | None:
    """The live mapping for a caller, or None (also for a malformed number: caller-controlled)."""
    if not isinstance(customer_number, str) or not _E164.fullmatch(customer_number):
        return None
    with session(transaction=False):  # one SELECT
        return TwoWayMapping.get_or_none(
            (TwoWayMapping.customer_number == customer_number) & (TwoWayMapping.expires_at > now)
        )


def purge_two_way(now: datetime) -> int:
    """Delete expired mappings; returns how many."""
    with session():
        return TwoWayMapping.delete().where(TwoWayMapping.expires_at <= now).execute()


# ---------------------------------------------------------------- number assignments


@dataclass(frozen=True)
class Assignment:
    """Where one number goes (overrides the YAML until reset)."""

    number: str
    route_type: str
    target: str | None = None


def validate_assignment(item: Assignment) -> Assignment:
    _e164(item.number, "number")
    _one_of(item.route_type, ROUTE_TYPES, f"route_type of {item.number}")
    if item.route_type == "unassigned":
        if item.target not in (None, ""):
            raise StoreInputError(f"{item.number}: an unassigned number takes no target")
        return Assignment(item.number, "unassigned", None)
    if item.target is None:
        raise StoreInputError(f"{item.number}: route_type {item.route_type} needs a target")
    _text(item.target, f"target of {item.number}", 200)
    return item


def set_assignments(
    assignments: Iterable[Assignment], changed_by: str, now: datetime
) -> list[NumberAssignment]:
    """Set many numbers at once: all rows are written or, on any bad row, none."""
    _text(changed_by, "changed_by")
    items = [validate_assignment(item) for item in assignments]
    numbers = [item.number for item in items]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise StoreInputError(f"numbers given more than once: {', '.join(duplicates)}")
    with session(immediate=True):
        for item in items:
            _upsert_assignment(item, changed_by, now)
        query = NumberAssignment.select().where(NumberAssignment.number.in_(numbers))
        return list(query.order_by(NumberAssignment.number))


def _upsert_assignment(item: Assignment, changed_by: str, now: datetime) -> None:
    values = {
        NumberAssignment.route_type: item.route_type,
        NumberAssignment.target: item.target,
        NumberAssignment.changed_at: now,
        NumberAssignment.changed_by: changed_by,
    }
    NumberAssignment.insert({NumberAssignment.number: item.number, **values}).on_conflict(
        conflict_target=[NumberAssignment.number], update=values
    ).execute()


def reset_assignments(numbers: Iterable[str]) -> int:
    """Drop run-time overrides so the YAML applies again; returns how many were dropped."""
    wanted = [_e164(n, "number") for n in numbers]
    if not wanted:
        return 0
    with session():
        return NumberAssignment.delete().where(NumberAssignment.number.in_(wanted)).execute()


def list_assignments() -> list[NumberAssignment]:
    with session():
        return list(NumberAssignment.select().order_by(NumberAssignment.number))


def get_assignment(number: str) -> NumberAssignment | None:
    with session(transaction=False):  # one SELECT
        row = _execute(_ASSIGNMENT, [number]).fetchone()
    if row is None:
        return None
    return _as_model(NumberAssignment, id=row[0], number=row[1], route_type=row[2],
                     target=row[3], changed_at=NumberAssignment.changed_at.python_value(row[4]),
                     changed_by=row[5])


# ---------------------------------------------------------------- voicemail


def record_voicemail(
    user_id: str,
    path: str,
    now: datetime,
    call_uuid: str | None = None,
    caller_number: str | None = None,
    caller_name: str | None = None,
    duration_s: float | None = None,
    incident_id: int | None = None,
    host: str | None = None,
) -> Voicemail:
    """A message left for ``user_id``; ``host`` is the host whose disk has the recording (the
    mailer of that host sends it; None: any host's mailer may)."""
    _text(user_id, "user_id")
    _text(path, "path", 1024)
    if duration_s is not None and not (isinstance(duration_s, int | float) and duration_s >= 0):
        raise StoreInputError(f"duration_s must be a non-negative number, got {duration_s!r}")
    with session():
        return Voicemail.create(
            user_id=user_id,
            path=path,
            created_at=now,
            call_uuid=_optional_text(call_uuid, "call_uuid"),
            caller_number=clean_caller_text(caller_number),
            caller_name=clean_caller_text(caller_name),
            duration_s=duration_s,
            incident=incident_id,
            host=_optional_text(host, "host", 255),
        )


# The notify outboxes live in fsrouter.store.outbox; their names stay importable from here.
from fsrouter.store.outbox import (  # noqa: E402 F401
    MAX_ERROR_TEXT,
    OutboxItem,
    claim_outbox,
    claim_voicemail_email,
    defer_voicemail_email,
    due_outbox,
    due_voicemails,
    enqueue_outbox,
    get_outbox,
    list_outbox,
    mark_voicemail_emailed,
    next_outbox_due,
    next_voicemail_due,
    outbox_delivered,
    outbox_retry,
    postpone_outbox,
    postpone_voicemail_emails,
    purge_delivered_outbox,
    requeue_parked_voicemails,
    unsent_voicemails,
)
