"""``fsrouter incidents list|show``, ``fsrouter calls list``, ``fsrouter voicemails list``:
what happened last night, from the database (reads only).

Lists take ``--since``/``--until`` (ISO; without an offset in ``defaults.timezone``) and
``--limit`` (the newest rows, shown oldest first), and print a table, ``--json`` or ``--csv``.
Times are ISO 8601 with offset in ``defaults.timezone`` in JSON and CSV (one convention for
every ``--json`` output), ``2026-12-05 03:12 +01:00`` in tables.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    emit,
    emit_json,
    emit_listing,
    iso,
    load,
    local_text,
    parse_number,
    parse_range,
    shown,
    store,
    table,
)
from fsrouter.config import Config
from fsrouter.store import NotFound, history
from fsrouter.store.models import INCIDENT_STATES, Attempt, CallRecord, Incident, Voicemail

MAX_LIMIT = 100_000
MAX_OFFSET = 10_000_000
MAX_FILTER = 128  # characters of a free-text filter (an outcome, a user...)
INCIDENT_COLUMNS = ("id", "created_at", "number", "option", "label", "caller_number",
                    "caller_name", "state", "accepted_by", "accepted_at", "resolved_at",
                    "reason")
CALL_COLUMNS = ("id", "call_uuid", "started_at", "answered_at", "ended_at", "number",
                "route_type", "caller_number", "caller_name", "outcome", "hangup_cause",
                "incident_id", "bridged_to", "attempts", "host")
VOICEMAIL_COLUMNS = ("id", "created_at", "user", "caller_number", "caller_name",
                     "duration_s", "incident_id", "mail", "emailed_at", "mail_attempts",
                     "mail_error", "path")


class Missing(Failure):
    """No such incident or voicemail (exit 2 for a command; the console answers 404)."""

    def __init__(self, *lines: str) -> None:
        super().__init__(EXIT_USAGE, *lines)


class Refused(Failure):
    """A row asks for what may not be done, e.g. a file outside its directory (exit 2; the
    console answers 403)."""

    def __init__(self, *lines: str) -> None:
        super().__init__(EXIT_USAGE, *lines)


def window(args: argparse.Namespace, config: Config) -> history.Window:
    return window_of(config, args.since, args.until, args.limit)


def window_of(config: Config, since: str | None, until: str | None, limit: int,
              offset: int = 0) -> history.Window:
    """The time range and page of a listing from plain values (ISO texts; without an offset
    in ``defaults.timezone``); :class:`Failure` (exit 2) naming the bad one."""
    start, end = parse_range(since, until, config.defaults.timezone)
    if not 1 <= limit <= MAX_LIMIT:
        raise Failure(EXIT_USAGE, f"--limit must be 1-{MAX_LIMIT}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise Failure(EXIT_USAGE, f"offset must be 0-{MAX_OFFSET}, got {offset}")
    return history.Window(start, end, limit, offset)


def filter_text(text: str | None, flag: str) -> str | None:
    """A free-text filter (matched exactly, never interpreted): printable and short."""
    if text is None or text == "":
        return None
    if len(text) > MAX_FILTER or not text.isprintable():
        raise Failure(EXIT_USAGE, f"--{flag}: at most {MAX_FILTER} printable characters, "
                      f"got {shown(text, 40)!r}")
    return text


def _number(text: str | None, config: Config) -> str | None:
    if text is None or text == "":
        return None
    try:
        return parse_number(text, config)
    except ValueError as error:
        raise Failure(EXIT_USAGE, f"--number {shown(text, 40)!r}: {error}") from None


def _when(moment: datetime | None, zone: str) -> str:
    return local_text(moment, zone)


# ---------------------------------------------------------------- incidents


@dataclass(frozen=True)
class IncidentQuery:
    """Checked filters of an incident listing; :meth:`rows` reads them (store bound)."""

    window: history.Window
    number: str | None = None
    option: str | None = None
    state: str | None = None

    def rows(self) -> list[Incident]:
        return history.list_incidents(self.window, self.number, self.option, self.state)


def incident_query(config: Config, wanted: history.Window, number: str | None = None,
                   option: str | None = None, state: str | None = None) -> IncidentQuery:
    if state is not None and state != "" and state not in INCIDENT_STATES:
        raise Failure(EXIT_USAGE, f"--state must be one of {', '.join(INCIDENT_STATES)}")
    return IncidentQuery(wanted, _number(number, config), filter_text(option, "option"),
                         state or None)


def run_incidents(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    query = incident_query(config, window(args, config), args.number, args.option, args.state)
    with store(config, args.database, must_exist=True):
        rows = query.rows()
    items = [incident_item(row, zone) for row in rows]
    emit_listing(args, items, INCIDENT_COLUMNS, lambda: [
        *table(("id", "created", "number", "option", "caller", "state", "accepted by",
                "reason"),
               [[str(row.id), _when(row.created_at, zone), row.number,
                 f"{row.option_digit or '-'} {shown(row.option_label or '', 25)}",
                 shown(row.caller_number or "-", 20), row.state,
                 shown(row.accepted_by or "-", 20), shown(row.outcome_reason or "", 30)]
                for row in rows]),
        f"{len(rows)} incident(s)"])
    return EXIT_OK


def incident_item(row: Incident, zone: str) -> dict[str, Any]:
    return {"id": row.id, "created_at": iso(row.created_at, zone), "number": row.number,
            "option": row.option_digit, "label": row.option_label,
            "caller_number": row.caller_number, "caller_name": row.caller_name,
            "state": row.state, "accepted_by": row.accepted_by,
            "accepted_at": iso(row.accepted_at, zone),
            "resolved_at": iso(row.resolved_at, zone), "reason": row.outcome_reason}


def run_incident_show(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    with store(config, args.database, must_exist=True):
        timeline = incident_timeline(args.id)
    if args.json:
        emit_json(incident_data(timeline, zone))
    else:
        emit(_show_lines(timeline, zone))
    return EXIT_OK


def incident_timeline(incident_id: int) -> history.Timeline:
    """One incident's story (store bound); :class:`Failure` (exit 2) when there is none."""
    try:
        return history.incident_timeline(incident_id)
    except NotFound as error:
        raise Missing(str(error)) from None


def incident_data(timeline: history.Timeline, zone: str) -> dict[str, Any]:
    """``incidents show --json``: the incident, its calls, attempts, voicemails, events."""
    return {**incident_item(timeline.incident, zone),
            "calls": [call_item(call, zone, None) for call in timeline.calls],
            "attempts": [attempt_item(a, zone) for a in timeline.attempts],
            "voicemails": [voicemail_item(v, zone) for v in timeline.voicemails],
            "events": [{"at": iso(at, zone), "event": text}
                       for at, text in events(timeline)]}


def events(timeline: history.Timeline) -> list[tuple[datetime, str]]:
    """The incident's story in time order: call, menu choice, each attempt, the end."""
    incident = timeline.incident
    found: list[tuple[datetime, str]] = []
    for call in timeline.calls:
        found.append((call.started_at, f"call {call.call_uuid} from "
                      f"{shown(call.caller_number or 'unknown', 30)} to {call.number}"))
    found.append((incident.created_at, f"menu choice {incident.option_digit or '-'} "
                  f"{shown(incident.option_label or '', 40)}: incident opened"))
    for attempt in timeline.attempts:
        found.append((attempt.started_at, f"ring {attempt.user_id} on {attempt.phone}"
                      f" ({attempt.phone_type or '?'})"))
        if attempt.ended_at is not None:
            found.append((attempt.ended_at, f"  {attempt.user_id} {attempt.phone}: "
                          f"{attempt.result or '?'} ({attempt.cause or 'no cause'})"))
    if incident.accepted_at is not None:
        found.append((incident.accepted_at, f"accepted by {incident.accepted_by}"))
    for voicemail in timeline.voicemails:
        found.append((voicemail.created_at, f"voicemail #{voicemail.id} for "
                      f"{voicemail.user_id} ({voicemail.duration_s or 0:.0f} s, mail "
                      f"{history.mail_state(voicemail)})"))
    for call in timeline.calls:
        if call.ended_at is not None:
            found.append((call.ended_at, f"call ended: {call.outcome or '?'} "
                          f"({call.hangup_cause or 'no cause'})"))
    if incident.resolved_at is not None:
        found.append((incident.resolved_at, f"incident {incident.state}"
                      + (f" ({shown(incident.outcome_reason, 40)})"
                         if incident.outcome_reason else "")))
    return sorted(found, key=lambda event: event[0])


def _show_lines(timeline: history.Timeline, zone: str) -> list[str]:
    incident = timeline.incident
    lines = [f"incident {incident.id}: {incident.number} option "
             f"{incident.option_digit or '-'} {shown(incident.option_label or '', 40)}",
             f"caller    {shown(incident.caller_number or 'unknown', 30)}"
             + (f" ({shown(incident.caller_name, 40)})" if incident.caller_name else ""),
             f"state     {incident.state}"
             + (f", accepted by {incident.accepted_by}" if incident.accepted_by else "")
             + (f" ({shown(incident.outcome_reason, 40)})" if incident.outcome_reason
                else ""),
             "timeline"]
    lines += [f"  {_when(at, zone)}  {text}" for at, text in events(timeline)]
    return lines


# ---------------------------------------------------------------- calls


@dataclass(frozen=True)
class CallQuery:
    window: history.Window
    number: str | None = None
    outcome: str | None = None

    def rows(self) -> tuple[list[CallRecord], dict[int, int]]:
        """The calls and how many dial attempts each made (store bound)."""
        rows = history.list_calls(self.window, self.number, self.outcome)
        return rows, history.attempt_counts([row.id for row in rows])


def call_query(config: Config, wanted: history.Window, number: str | None = None,
               outcome: str | None = None) -> CallQuery:
    return CallQuery(wanted, _number(number, config), filter_text(outcome, "outcome"))


def run_calls(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    query = call_query(config, window(args, config), args.number, args.outcome)
    with store(config, args.database, must_exist=True):
        rows, counts = query.rows()
    items = [call_item(row, zone, counts.get(row.id, 0)) for row in rows]
    emit_listing(args, items, CALL_COLUMNS, lambda: [
        *table(("started", "number", "type", "caller", "outcome", "cause", "incident",
                "bridged to", "tries"),
               [[_when(row.started_at, zone), row.number, row.route_type,
                 shown(row.caller_number or "-", 20), row.outcome or "(open)",
                 row.hangup_cause or "-", str(row.incident_id or "-"),
                 shown(row.bridged_to_user or "-", 20), str(counts.get(row.id, 0))]
                for row in rows]),
        f"{len(rows)} call(s)"])
    return EXIT_OK


def call_item(row: CallRecord, zone: str, attempts: int | None) -> dict[str, Any]:
    item = {"id": row.id, "call_uuid": row.call_uuid, "started_at": iso(row.started_at, zone),
            "answered_at": iso(row.answered_at, zone), "ended_at": iso(row.ended_at, zone),
            "number": row.number, "route_type": row.route_type,
            "caller_number": row.caller_number, "caller_name": row.caller_name,
            "outcome": row.outcome, "hangup_cause": row.hangup_cause,
            "incident_id": row.incident_id, "bridged_to": row.bridged_to_user,
            "host": row.host}
    if attempts is not None:
        item["attempts"] = attempts
    return item


def attempt_item(row: Attempt, zone: str) -> dict[str, Any]:
    return {"seq": row.seq, "user": row.user_id, "phone": row.phone,
            "phone_type": row.phone_type, "started_at": iso(row.started_at, zone),
            "ended_at": iso(row.ended_at, zone), "result": row.result, "cause": row.cause}


# ---------------------------------------------------------------- voicemails


@dataclass(frozen=True)
class VoicemailQuery:
    window: history.Window
    user: str | None = None
    mail: str | None = None

    def rows(self) -> list[Voicemail]:
        return history.list_voicemails(self.window, self.user, self.mail)


def voicemail_query(wanted: history.Window, user: str | None = None,
                    mail: str | None = None) -> VoicemailQuery:
    if mail is not None and mail != "" and mail not in history.MAIL_STATES:
        raise Failure(EXIT_USAGE, f"--mail must be one of {', '.join(history.MAIL_STATES)}")
    return VoicemailQuery(wanted, filter_text(user, "user"), mail or None)


def run_voicemails(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    query = voicemail_query(window(args, config), args.user, args.mail)
    with store(config, args.database, must_exist=True):
        rows = query.rows()
    items = [voicemail_item(row, zone) for row in rows]
    emit_listing(args, items, VOICEMAIL_COLUMNS, lambda: [
        *table(("id", "left", "for", "caller", "length", "incident", "mail"),
               [[str(row.id), _when(row.created_at, zone), shown(row.user_id, 20),
                 shown(row.caller_number or "-", 20), f"{row.duration_s or 0:.0f} s",
                 str(row.incident_id or "-"), _mail_text(row, zone)]
                for row in rows]),
        f"{len(rows)} voicemail(s)"])
    return EXIT_OK


def _mail_text(row: Voicemail, zone: str) -> str:
    state = history.mail_state(row)
    if state == "sent":
        return f"sent {_when(row.emailed_at, zone)}"
    error = f": {shown(row.email_error, 50)}" if row.email_error else ""
    return f"{state} after {row.email_attempts} tries{error}"


def voicemail_item(row: Voicemail, zone: str) -> dict[str, Any]:
    return {"id": row.id, "created_at": iso(row.created_at, zone), "user": row.user_id,
            "caller_number": row.caller_number, "caller_name": row.caller_name,
            "duration_s": row.duration_s, "incident_id": row.incident_id,
            "mail": history.mail_state(row), "emailed_at": iso(row.emailed_at, zone),
            "mail_attempts": row.email_attempts, "mail_error": row.email_error,
            "path": row.path}


def voicemail_file(config: Config, voicemail_id: int) -> Path:
    """The recording of a voicemail (store bound), only when its stored path is a regular file
    inside ``voicemail.directory`` (symbolic links resolved): a row is data, not a licence to
    read any file. :class:`Missing` or :class:`Refused` otherwise."""
    try:
        row = history.get_voicemail(voicemail_id)
    except NotFound as error:
        raise Missing(str(error)) from None
    folder = Path(os.path.realpath(config.voicemail.directory))
    path = Path(os.path.realpath(row.path))
    if not path.is_relative_to(folder) or path == folder:
        raise Refused(f"voicemail {voicemail_id}: its file is outside "
                      f"{config.voicemail.directory}")
    if not path.is_file():
        raise Missing(f"voicemail {voicemail_id}: no recording on this host")
    return path
