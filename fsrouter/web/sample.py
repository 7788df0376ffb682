"""A realistic week at the example company (config.example.yaml), written into a database
through the store's own functions (what the daemon and the commands write): hotline
incidents with their dial attempts, calls to the agents' lines, voicemails with recordings
and every mail state, route changes, log-ins, on-call overrides and a retried delivery.

For the console's screenshots (fsrouter.web.screenshots) and its "usable" checks, which must
see pages as full as a real night makes them. Deterministic: the same ``now`` and ``seed``
give the same rows.
"""

from __future__ import annotations

import math
import random
import struct
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from fsrouter.commands.routes import set_audited
from fsrouter.store import audit, overrides
from fsrouter.store import queries as q
from fsrouter.store.history import retry_mails

HOTLINE = "+493023125000"
OPTIONS = (("1", "IT-Infrastruktur", ("anna", "bernd", "carla")),
           ("2", "Datenbanken", ("dirk", "carla", "anna")))
PHONES = {"anna": "+4915123456789", "bernd": "+4916098765432", "carla": "+491713456789",
          "dirk": "+4917612345678"}
AGENT_LINES = {"eva": "+493023125201", "felix": "+493023125202", "greta": "+498941612300"}
CALLERS = (("+4917012345678", "Erika Mustermann"), ("+4930555000", None),
           ("+4989123456", "Kanzlei Roth"), ("+4922155501", "Stadtwerke Köln"),
           ("+436641234567", "Huber, Josef"), ("+41445551212", None),
           ("+4940123987", "Hafen Logistik"), ("+4969555123", "Müller & Söhne"))
RATE = 8000  # Hz, what FreeSWITCH records voicemail at on a narrowband call


@dataclass
class Filled:
    incidents: list[int] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    voicemails: list[int] = field(default_factory=list)
    rung: dict[int, int] = field(default_factory=dict)  # incident -> dial attempts

    def busiest(self) -> int:
        """The incident with the most dial attempts (the newest of those)."""
        return max(self.incidents, key=lambda incident: (self.rung.get(incident, 0),
                                                         incident))


def write_recording(path: Path, seconds: float, pitch: float = 220.0) -> None:
    """A small WAV (8 kHz, 16-bit mono) that sounds like a voice's rhythm: tones in bursts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for i in range(int(seconds * RATE)):
        t = i / RATE
        envelope = max(0.0, math.sin(math.pi * t * 3.1)) ** 2
        tone = math.sin(2 * math.pi * pitch * t) + 0.4 * math.sin(2 * math.pi * pitch * 2.7 * t)
        frames += struct.pack("<h", int(9000 * envelope * tone / 1.4))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))


def fill(now: datetime, voicemail_dir: Path, nights: int = 7, seed: int = 20) -> Filled:
    """``nights`` nights of hotline and agent-line traffic up to ``now`` (store open)."""
    rng = random.Random(seed)
    filled = Filled()
    start = now - timedelta(days=nights)
    for night in range(nights):
        evening = start + timedelta(days=night, hours=18)
        for n in range(rng.randint(4, 8)):
            moment = evening + timedelta(minutes=rng.randint(0, 13 * 60))
            if moment < now - timedelta(minutes=30):
                _hotline_call(rng, filled, moment, f"n{night}-{n}", voicemail_dir)
        for n in range(rng.randint(6, 12)):
            moment = evening - timedelta(hours=rng.randint(1, 9), minutes=rng.randint(0, 59))
            _agent_call(rng, filled, moment, f"a{night}-{n}", voicemail_dir)
    _changes(now)
    return filled


def _hotline_call(rng: random.Random, filled: Filled, moment: datetime, key: str,
                  voicemail_dir: Path) -> None:
    caller, name = rng.choice(CALLERS)
    digit, label, team = rng.choice(OPTIONS)
    uuid = f"call-{key}"
    q.create_call_record(uuid, HOTLINE, "call_routing", caller, name, moment)
    incident = q.create_incident(HOTLINE, digit, label, caller, name, uuid,
                                 moment + timedelta(seconds=14),
                                 answered_at=moment + timedelta(seconds=1))
    filled.incidents.append(incident.id)
    filled.calls.append(uuid)
    at = moment + timedelta(seconds=15)
    taken_by = None
    for seq, user in enumerate(team[: rng.randint(1, 3)]):
        attempt = q.record_attempt(uuid, seq, user, PHONES[user], at, "mobile", incident.id)
        filled.rung[incident.id] = seq + 1
        rang = timedelta(seconds=rng.randint(6, 30))
        if rng.random() < 0.45:
            q.end_attempt(attempt.id, "accepted", "NORMAL_CLEARING", at + rang)
            taken_by = user
            at += rang
            break
        q.end_attempt(attempt.id, rng.choice(("no_answer", "no_answer", "busy", "rejected")),
                      rng.choice(("NO_ANSWER", "USER_BUSY", "CALL_REJECTED")), at + rang)
        at += rang + timedelta(seconds=2)
    if taken_by is not None:
        q.accept_incident(incident.id, taken_by, at, call_uuid=uuid)
        end = at + timedelta(minutes=rng.randint(2, 25))
        q.resolve_incident(incident.id, end, "resolved", "call ended")
        q.close_call(uuid, "bridged", "NORMAL_CLEARING", end)
        return
    q.note_incident(incident.id, "nobody_answered")
    if rng.random() < 0.5:
        q.resolve_incident(incident.id, at + timedelta(seconds=5), "abandoned",
                           "caller hung up in the queue")
        q.close_call(uuid, "abandoned", "ORIGINATOR_CANCEL", at + timedelta(seconds=5))
        return
    _voicemail(rng, filled, "anna" if digit == "1" else "dirk", uuid, caller, name, at,
               incident.id, voicemail_dir)
    q.resolve_incident(incident.id, at + timedelta(seconds=40), "unanswered", "voicemail")
    q.close_call(uuid, "no_answer_fallback", "NORMAL_CLEARING", at + timedelta(seconds=40))


def _agent_call(rng: random.Random, filled: Filled, moment: datetime, key: str,
                voicemail_dir: Path) -> None:
    agent = rng.choice(tuple(AGENT_LINES))
    caller, name = rng.choice(CALLERS)
    uuid = f"call-{key}"
    q.create_call_record(uuid, AGENT_LINES[agent], "agent", caller, name, moment)
    filled.calls.append(uuid)
    roll = rng.random()
    if roll < 0.6:
        q.close_call(uuid, "bridged", "NORMAL_CLEARING",
                     moment + timedelta(minutes=rng.randint(1, 12)),
                     answered_at=moment + timedelta(seconds=rng.randint(3, 15)))
    elif roll < 0.8 or agent != "eva":
        q.close_call(uuid, "busy_tone", "USER_BUSY", moment + timedelta(seconds=4))
    else:
        _voicemail(rng, filled, agent, uuid, caller, name, moment + timedelta(seconds=20),
                   None, voicemail_dir)
        q.close_call(uuid, "voicemail", "NORMAL_CLEARING", moment + timedelta(seconds=55))


def _voicemail(rng: random.Random, filled: Filled, user: str, uuid: str, caller: str,
               name: str | None, at: datetime, incident_id: int | None,
               voicemail_dir: Path) -> None:
    seconds = rng.randint(4, 9)
    path = voicemail_dir / f"{uuid}.wav"
    write_recording(path, seconds, pitch=rng.choice((180.0, 220.0, 260.0)))
    row = q.record_voicemail(user, str(path), at, call_uuid=uuid, caller_number=caller,
                             caller_name=name, duration_s=float(seconds),
                             incident_id=incident_id)
    filled.voicemails.append(row.id)
    sent = at + timedelta(seconds=rng.randint(5, 40))
    q.claim_voicemail_email(row.id, at, sent)
    roll = rng.random()
    if roll < 0.6:
        q.mark_voicemail_emailed(row.id, sent)
    elif roll < 0.8:
        q.defer_voicemail_email(row.id, "SMTP 451 4.7.1 greylisted, try again later", sent,
                                None)
    else:
        q.defer_voicemail_email(row.id, "connection to smtp.beispiel.de:587 timed out",
                                sent, sent + timedelta(minutes=5))


def _changes(now: datetime) -> None:
    """What supervisors did this week: routes, log-ins, overrides, a retried mail."""
    day = timedelta(days=1)
    set_audited([q.Assignment(AGENT_LINES["felix"], "agent", "greta")], "web:lead",
                now - 5 * day)
    set_audited([q.Assignment(AGENT_LINES["greta"], "queue", "sales")], "cli:anna",
                now - 3 * day)
    set_audited([q.Assignment(AGENT_LINES["felix"], "agent", "felix")], "web:lead",
                now - 2 * day)
    for user, state, back in (("eva", "logged_in", 6), ("felix", "logged_in", 6),
                              ("greta", "logged_in", 4), ("felix", "logged_out", 1)):
        audit.change_presence(user, state, f"phone:{user}", now - back * day)
    audit.change_presence("eva", "logged_out", "web:lead", now - timedelta(hours=20))
    audit.change_presence("eva", "logged_in", "phone:eva", now - timedelta(hours=2))
    midnight = now.replace(hour=9, minute=0, second=0, microsecond=0)
    overrides.add_override("it_infra", "carla", midnight + 2 * day, midnight + 4 * day,
                           "Anna at a conference", "web:lead", now - 2 * day)
    overrides.add_override("database", "anna", midnight + 6 * day, midnight + 7 * day,
                           "Dirk on leave", "cli:dirk", now - day)
    failed = [row.id for row in q.unsent_voicemails() if row.email_gave_up_at is not None]
    if failed:
        retry_mails(failed[:1], "web:lead", now - timedelta(hours=1))
