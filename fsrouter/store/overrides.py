"""Run-time on-call overrides ("I am sick, Bernd covers tonight"), kept in the database.

The daemon reads them on every hotline call and hands them to the pure schedule resolution
(:func:`fsrouter.routing.schedules.with_runtime_overrides`); ``simulate`` and ``oncall`` do
the same. Adding one checks, under a lock, that it overlaps no other run-time override of the
same schedule; the row and its audit entry are one transaction (all or nothing). Whether the
user and schedule exist is the configuration's business: the command checks that first.
"""

from __future__ import annotations

from datetime import UTC, datetime

import peewee

from fsrouter.store import audit
from fsrouter.store.db import database_proxy, session
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.models import OncallOverride

MAX_REASON = 200


class OverlapError(StoreInputError):
    """The new override overlaps others of the same schedule (``clashes``)."""

    def __init__(self, clashes: list[OncallOverride]) -> None:
        ids = ", ".join(f"#{row.id}" for row in clashes)
        super().__init__(f"overlaps run-time override {ids} of the same schedule")
        self.clashes = clashes


def as_dict(row: OncallOverride) -> dict[str, object]:
    """The audit value of an override (UTC ISO times)."""
    return {"id": row.id, "schedule": row.schedule, "user": row.user_id,
            "from": row.starts_at.astimezone(UTC).isoformat(),
            "to": row.ends_at.astimezone(UTC).isoformat(),
            "reason": row.reason}


def _check(schedule: str, user_id: str, starts_at: datetime, ends_at: datetime,
           reason: str | None) -> None:
    for value, what in ((schedule, "schedule"), (user_id, "user")):
        if not value or len(value) > 128 or not value.isprintable():
            raise StoreInputError(f"{what} must be 1-128 printable characters")
    if starts_at >= ends_at:
        raise StoreInputError("the override must end after it starts")
    if reason is not None and (len(reason) > MAX_REASON or not reason.isprintable()):
        raise StoreInputError(f"reason must be at most {MAX_REASON} printable characters")


def _lock_table() -> None:
    """Serialise adders on PostgreSQL (SQLite: BEGIN IMMEDIATE already holds the write lock)."""
    if isinstance(database_proxy.obj, peewee.PostgresqlDatabase):
        database_proxy.execute_sql(
            'LOCK TABLE "oncall_overrides" IN SHARE ROW EXCLUSIVE MODE')


def add_override(schedule: str, user_id: str, starts_at: datetime, ends_at: datetime,
                 reason: str | None, who: str, now: datetime) -> OncallOverride:
    """Store a new override and its audit entry; :class:`OverlapError` if it overlaps."""
    _check(schedule, user_id, starts_at, ends_at, reason)
    with session(immediate=True):
        _lock_table()
        clashes = list(OncallOverride.select().where(
            (OncallOverride.schedule == schedule) & (OncallOverride.starts_at < ends_at)
            & (OncallOverride.ends_at > starts_at)).order_by(OncallOverride.starts_at))
        if clashes:
            raise OverlapError(clashes)
        row = OncallOverride.create(schedule=schedule, user_id=user_id, starts_at=starts_at,
                                    ends_at=ends_at, reason=reason or None, created_at=now,
                                    created_by=who)
        audit.record("override.add", f"{schedule}#{row.id}", who, now, None, as_dict(row))
        return row


def remove_overrides(ids: list[int], who: str, now: datetime) -> list[OncallOverride]:
    """Delete these overrides (all or none: :class:`NotFound` names the missing ids)."""
    with session(immediate=True):
        rows = list(OncallOverride.select().where(OncallOverride.id.in_(ids)))
        missing = sorted(set(ids) - {row.id for row in rows})
        if missing:
            raise NotFound("no run-time override " + ", ".join(f"#{i}" for i in missing))
        for row in rows:
            audit.record("override.remove", f"{row.schedule}#{row.id}", who, now,
                         as_dict(row), None)
        OncallOverride.delete().where(OncallOverride.id.in_(ids)).execute()
    return sorted(rows, key=lambda row: row.id)


def list_overrides(ending_after: datetime | None = None, schedule: str | None = None,
                   starting_before: datetime | None = None) -> list[OncallOverride]:
    """Overrides by schedule and start; only those still running after ``ending_after`` and
    starting before ``starting_before`` when given."""
    query = OncallOverride.select()
    if ending_after is not None:
        query = query.where(OncallOverride.ends_at > ending_after)
    if starting_before is not None:
        query = query.where(OncallOverride.starts_at < starting_before)
    if schedule is not None:
        query = query.where(OncallOverride.schedule == schedule)
    with session():
        return list(query.order_by(OncallOverride.schedule, OncallOverride.starts_at,
                                   OncallOverride.id))


# Every hotline call asks this (fsrouter.calls.call_routing): plain SQL, as the call flows'
# statements in fsrouter.store.queries (building the query with peewee cost ~10x running it).
_ACTIVE = ('SELECT "id", "schedule", "user_id", "starts_at", "ends_at", "reason" '
           'FROM "oncall_overrides" WHERE "starts_at" <= ? AND "ends_at" > ? '
           'ORDER BY "schedule", "starts_at", "id"')


def active_at(moment: datetime) -> list[OncallOverride]:
    """The overrides in force at ``moment`` (what a call arriving then uses)."""
    at = OncallOverride.starts_at.db_value(moment)
    sql = _ACTIVE if database_proxy.param == "?" else _ACTIVE.replace("?", database_proxy.param)
    with session():
        found = database_proxy.execute_sql(sql, (at, at)).fetchall()
    when = OncallOverride.starts_at.python_value
    return [OncallOverride(id=row[0], schedule=row[1], user_id=row[2], starts_at=when(row[3]),
                           ends_at=when(row[4]), reason=row[5]) for row in found]


def get_override(override_id: int) -> OncallOverride:
    with session():
        row = OncallOverride.get_or_none(OncallOverride.id == override_id)
    if row is None:
        raise NotFound(f"no run-time override #{override_id}")
    return row
