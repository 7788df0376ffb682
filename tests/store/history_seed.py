"""A night at the hotline, written through the store's own call-flow functions (what the
daemon writes): the reads of ``fsrouter incidents|calls|voicemails|deliveries`` are checked
against it on both engines and through the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fsrouter.store import queries as q

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = datetime(2026, 12, 5, 2, 10, tzinfo=BERLIN)
HOTLINE = "+493023125000"
AGENT_LINE = "+493023125201"


def at(minutes: float) -> datetime:
    return NIGHT + timedelta(minutes=minutes)


@dataclass
class Night:
    accepted: int  # incident bernd accepted (option 1)
    unanswered: int  # incident nobody took (option 2), a voicemail whose mail failed
    voicemail: int
    webhook: int  # a webhook delivery given up on


def seed() -> Night:
    # 02:10 option 1: anna does not answer, bernd accepts; resolved when the call ends.
    q.create_call_record("c-1", HOTLINE, "call_routing", "+4917012345678", "Erika", at(0))
    first = q.create_incident(HOTLINE, "1", "IT-Infrastruktur", "+4917012345678", "Erika",
                              "c-1", at(0.5), answered_at=at(0.1))
    anna = q.record_attempt("c-1", 0, "anna", "+4915100000001", at(0.6), "mobile", first.id)
    q.end_attempt(anna.id, "no_answer", "NO_ANSWER", at(1.0))
    bernd = q.record_attempt("c-1", 1, "bernd", "+4915100000002", at(1.0), "mobile", first.id)
    q.end_attempt(bernd.id, "accepted", "NORMAL_CLEARING", at(1.3))
    q.accept_incident(first.id, "bernd", at(1.3), call_uuid="c-1")
    q.resolve_incident(first.id, at(9.0), "resolved", "call ended")
    q.close_call("c-1", "bridged", "NORMAL_CLEARING", at(9.0))
    # 03:40 option 2: dirk does not answer; the caller leaves a voicemail; the mail fails.
    q.create_call_record("c-2", HOTLINE, "call_routing", "+4930555000", None, at(90))
    second = q.create_incident(HOTLINE, "2", "Datenbanken", "+4930555000", None, "c-2",
                               at(90.5), answered_at=at(90.1))
    dirk = q.record_attempt("c-2", 0, "dirk", "+4915100000004", at(90.6), "mobile", second.id)
    q.end_attempt(dirk.id, "no_answer", "NO_ANSWER", at(91))
    q.note_incident(second.id, "nobody_answered")
    voicemail = q.record_voicemail("dirk", "/var/lib/fsrouter/voicemail/1.wav", at(91.5),
                                   call_uuid="c-2", caller_number="+4930555000",
                                   duration_s=21.0, incident_id=second.id)
    q.claim_voicemail_email(voicemail.id, at(92), at(93))
    q.defer_voicemail_email(voicemail.id, "SMTP 550 mailbox unavailable", at(92), None)
    q.close_call("c-2", "no_answer_fallback", "NORMAL_CLEARING", at(92))
    # 07:55 a customer rings eva's line directly.
    q.create_call_record("c-3", AGENT_LINE, "agent", "+4989123456", "=HYPERLINK(1)", at(345))
    q.close_call("c-3", "bridged", "NORMAL_CLEARING", at(350), answered_at=at(345.2))
    # The incident webhook for the second incident was given up on.
    [hook] = q.enqueue_outbox([q.OutboxItem("d-1", "incident.created",
                                            "https://hooks.example.test/x", "{}")], at(90.5))
    q.claim_outbox(hook.id, at(90.5), at(91))
    q.outbox_retry(hook.id, "HTTP 503", 503, at(91), None)
    return Night(first.id, second.id, voicemail.id, hook.id)
