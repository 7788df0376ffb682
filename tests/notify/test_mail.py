"""Voicemail to e-mail against a real SMTP server (aiosmtpd) on loopback and a real SQLite
file: the WAV arrives byte-identical, failures are retried with a persisted backoff, hostile
caller names cannot inject headers and real names arrive intact."""

from __future__ import annotations

import io
import os
import random
import wave
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import structlog

from fsrouter.notify.mail import NAME_LIMIT, Mailer, compose
from fsrouter.store import queries
from fsrouter.store.models import Voicemail
from fsrouter.testing.waiting import wait_for
from tests.notify.servers import T0, SmtpServer, make_config, store

SMTP_PASSWORD = "pw-Zq9!x7"


def write_wav(path: Path, seconds: float = 1.5, seed: int = 7) -> bytes:
    """A real 8 kHz mono WAV with noise in it (so any byte change shows)."""
    rng = random.Random(seed)
    frames = bytes(rng.getrandbits(8) for _ in range(int(8000 * seconds) * 2))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def config_for(port: int, email: str | None = "anna@beispiel.de", language: str = "de",
               **smtp: object):
    user: dict[str, object] = {"name": "Anna Schmidt", "language": language}
    if email is not None:
        user["email"] = email
    return make_config(
        users={"anna": user},
        smtp={"host": "127.0.0.1", "port": port, "from": "fsrouter@beispiel.de", **smtp},
        defaults={"timezone": "Europe/Berlin"},
    )


def leave(tmp_path: Path, name: str | None = "Müller, Jörg", number: str | None = "+4930123456",
          when=T0, incident: bool = True, **extra: object) -> tuple[Voicemail, bytes]:
    path = tmp_path / "vm" / f"{when:%Y%m%dT%H%M%S}-{random.random()}.wav"
    audio = write_wav(path)
    incident_id = None
    if incident:
        incident_id = queries.create_incident("+4930999", "1", "Datenbank", number, name, None,
                                              when).id
    row = queries.record_voicemail("anna", str(path), when, call_uuid="c-1",
                                   caller_number=number, caller_name=name, duration_s=65.4,
                                   incident_id=incident_id, **extra)
    return row, audio


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def attachment(message: EmailMessage) -> tuple[str, str, bytes]:
    part = next(message.iter_attachments())
    return part.get_content_type(), part.get_filename(), part.get_content()


def body_text(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


# ---------------------------------------------------------------- composing


def test_compose_german(db, tmp_path):
    row, audio = leave(tmp_path)
    config = config_for(25)
    message = parse(compose(row, config.users["anna"], config).as_bytes())
    assert message["Subject"] == "Neue Sprachnachricht von Müller, Jörg (+4930123456)"
    assert message["From"] == "fsrouter@beispiel.de"
    assert message["To"].addresses[0].addr_spec == "anna@beispiel.de"
    assert message["To"].addresses[0].display_name == "Anna Schmidt"
    assert message["Auto-Submitted"] == "auto-generated"
    text = body_text(message)
    assert "Hallo Anna Schmidt," in text
    assert "Anrufer:  Müller, Jörg" in text
    assert "Nummer:   +4930123456" in text
    assert "01.05.2024 14:00:00 CEST" in text  # 12:00 UTC in Berlin, summer time
    assert "Dauer:    1:05 Min." in text
    assert f"Vorfall:  #{row.incident_id}" in text
    kind, filename, data = attachment(message)
    assert (kind, data) == ("audio/wav", audio)
    assert filename == f"voicemail-20240501-140000-{row.id}.wav"


def test_compose_english_without_incident_or_caller_id(db, tmp_path):
    row, _ = leave(tmp_path, name=None, number=None, incident=False)
    config = config_for(25, language="en-GB")
    message = parse(compose(row, config.users["anna"], config).as_bytes())
    assert message["Subject"] == "New voicemail from unknown caller"
    text = body_text(message)
    assert "Hello Anna Schmidt," in text
    assert "(no name sent)" in text and "(number withheld)" in text
    assert "2024-05-01 14:00:00 CEST" in text
    assert "Incident" not in text


@pytest.mark.parametrize("name", ["Müller, Jörg", "O'Brien & Söhne", "Ærøskøbing \"Ltd\"",
                                  "Ñandú; <Ops>", "東京 オフィス"])
def test_real_names_arrive_intact(db, tmp_path, name):
    row, _ = leave(tmp_path, name=name)
    config = config_for(25)
    raw = compose(row, config.users["anna"], config).as_bytes()
    assert raw.isascii()  # headers RFC 2047-encoded, body transfer-encoded
    message = parse(raw)
    assert message["Subject"] == f"Neue Sprachnachricht von {name} (+4930123456)"
    assert f"Anrufer:  {name}\n" in body_text(message)


HOSTILE = {
    "crlf": "Evil\r\nBcc: victim@example.com\r\nX-Injected: 1",
    "lf_only": "Evil\nBcc: victim@example.com",
    "nul": "A\x00B\x00\x00Bcc: victim@example.com",
    "encoded_word": "=?utf-8?q?Evil=0D=0ABcc=3A_victim=40example=2Ecom?=",
    "encoded_word_b64": "=?UTF-8?B?RXZpbA0KQmNjOiB2aWN0aW1AZXhhbXBsZS5jb20=?=",
    "surrogate": "Bad \udc80\ud800 Unicode",
    "bidi": "Invoice\u202egnp.exe",
    "huge": "A" * 10_240,
    "unicode_breaks": "one\u2028Bcc: victim@example.com\u0085two",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_caller_text_cannot_inject(tmp_path, kind):
    # Built directly (not through the store, which cleans too): compose must hold on its own.
    path = tmp_path / "x.wav"
    write_wav(path)
    hostile = HOSTILE[kind]
    row = Voicemail(id=41, user_id="anna", path=str(path), caller_name=hostile,
                    caller_number=hostile, duration_s=3.0, created_at=T0)
    config = config_for(25)
    raw = compose(row, config.users["anna"], config).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\x00" not in raw
    assert not any(line.lower().startswith((b"bcc", b"x-injected")) for line in head.split(b"\r\n"))
    message = parse(raw)
    assert message.defects == [] and message["Bcc"] is None and message["X-Injected"] is None
    subject = message["Subject"]
    assert not any(char in subject for char in "\r\n\x00\u2028\u0085\u202e\ud800\udc80")
    text = body_text(message)
    name_line = next(line for line in text.splitlines() if line.startswith("Anrufer:"))
    assert len(name_line) < NAME_LIMIT + 40
    if kind == "huge":
        assert name_line.endswith("…[gekürzt]")
        assert subject.count("…[gekürzt]") == 2  # name and number, both cut visibly
    if kind.startswith("encoded_word"):
        # Shown as typed (with an invisible word joiner), never decoded by the mail client.
        assert subject.replace("\u2060", "").startswith(f"Neue Sprachnachricht von {hostile} (")
        assert "victim@example.com" not in subject
    if kind == "surrogate":
        assert "Bad \ufffd\ufffd Unicode" in subject
    _, _, data = attachment(message)
    assert data == path.read_bytes()


# ---------------------------------------------------------------- sending


def test_mail_arrives_with_the_recording_byte_identical(db, tmp_path, smtp, clock):
    smtp.start()
    row, audio = leave(tmp_path)
    mailer = Mailer(lambda: config_for(smtp.port), now=clock)
    assert mailer.send_pending() == 1
    assert smtp.handler.recipients == [["anna@beispiel.de"]]
    message = parse(smtp.handler.messages[0])
    assert message["Subject"] == "Neue Sprachnachricht von Müller, Jörg (+4930123456)"
    kind, filename, data = attachment(message)
    assert kind == "audio/wav" and data == audio
    stored = Voicemail.get_by_id(row.id)
    assert stored.emailed_at == T0 and stored.email_error is None
    assert stored.email_attempts == 1
    assert Path(row.path).read_bytes() == audio  # the mailer never deletes the recording
    assert mailer.send_pending() == 0  # sent once only
    assert len(smtp.handler.messages) == 1


def test_server_down_then_started_mail_arrives_after_a_retry(db, tmp_path, smtp):
    row, audio = leave(tmp_path)
    mailer = Mailer(lambda: config_for(smtp.port), base_delay=0.2, max_delay=0.5,
                    poll_interval=1.0, smtp_timeout=5)
    mailer.start()
    try:
        failed = wait_for(lambda: Voicemail.get_by_id(row.id).email_error, what="a failure")
        assert "unreachable" in failed and "refused" in failed.lower()
        smtp.start()  # the same address starts answering
        wait_for(lambda: smtp.handler.messages, what="the mail")
        wait_for(lambda: Voicemail.get_by_id(row.id).emailed_at, what="the row marked sent")
    finally:
        mailer.stop()
    assert not mailer.running
    _, _, data = attachment(parse(smtp.handler.messages[0]))
    assert data == audio
    stored = Voicemail.get_by_id(row.id)
    assert stored.email_attempts >= 2 and stored.email_error is None
    assert Path(row.path).exists()


def test_backoff_is_persisted_and_survives_a_restart(db_path, tmp_path, smtp, clock):
    config = config_for(smtp.port)
    with store(db_path):
        first, _ = leave(tmp_path)
        second, _ = leave(tmp_path, name="Zweiter", when=T0 + timedelta(seconds=1))
        mailer = Mailer(lambda: config, now=clock, base_delay=60, max_delay=3600,
                        rng=random.Random(1))
        assert mailer.send_pending() == 0
        row = Voicemail.get_by_id(first.id)
        assert row.email_attempts == 1 and "unreachable" in row.email_error
        wait = (row.email_next_at - T0).total_seconds()
        assert 30 <= wait <= 60  # base 60 s, jitter 50-100 %
        # The server was the problem: the second one waits for the same moment, no try spent.
        other = Voicemail.get_by_id(second.id)
        assert (other.email_attempts, other.email_next_at) == (0, row.email_next_at)
        assert mailer.send_pending() == 0  # nothing due yet: no new try
        assert Voicemail.get_by_id(first.id).email_attempts == 1
    smtp.start()
    with store(db_path):  # "restarted": a new process state, the same database file
        clock.advance(wait - 1)
        mailer = Mailer(lambda: config, now=clock, base_delay=60, rng=random.Random(2))
        assert mailer.send_pending() == 0 and smtp.handler.messages == []  # backoff kept
        clock.advance(2)
        assert mailer.send_pending() == 2
        assert [Voicemail.get_by_id(i).email_attempts for i in (first.id, second.id)] == [2, 1]
    subjects = [parse(raw)["Subject"] for raw in smtp.handler.messages]
    assert subjects == ["Neue Sprachnachricht von Müller, Jörg (+4930123456)",
                        "Neue Sprachnachricht von Zweiter (+4930123456)"]


def test_server_outage_is_retried_for_as_long_as_it_takes(db, tmp_path, smtp, clock):
    row, _ = leave(tmp_path)
    mailer = Mailer(lambda: config_for(smtp.port), now=clock, base_delay=1, max_delay=60,
                    max_attempts=2)
    for _ in range(5):  # more tries than max_attempts: a server outage does not park a row
        assert mailer.send_pending() == 0
        stored = Voicemail.get_by_id(row.id)
        assert stored.email_gave_up_at is None and stored.email_next_at is not None
        clock.current = stored.email_next_at
    assert stored.email_attempts == 5
    smtp.start()
    assert mailer.send_pending() == 1


def test_temporary_rejection_is_retried_with_growing_backoff(db, tmp_path, smtp, clock):
    smtp.handler.replies = ["451 4.3.0 try again later", "452 4.3.1 still busy"]
    smtp.start()
    row, audio = leave(tmp_path)
    mailer = Mailer(lambda: config_for(smtp.port), now=clock, base_delay=10, max_delay=15,
                    rng=random.Random(3))
    waits, errors = [], []
    for _ in range(2):
        assert mailer.send_pending() == 0
        stored = Voicemail.get_by_id(row.id)
        waits.append((stored.email_next_at - clock()).total_seconds())
        errors.append(stored.email_error)
        clock.current = stored.email_next_at
    assert "451 4.3.0 try again later" in errors[0] and "452" in errors[1]
    assert 5 <= waits[0] <= 10 and 7.5 <= waits[1] <= 15  # doubled, then capped at 15
    assert mailer.send_pending() == 1
    stored = Voicemail.get_by_id(row.id)
    assert stored.email_attempts == 3 and stored.emailed_at is not None
    assert attachment(parse(smtp.handler.messages[0]))[2] == audio


def test_user_without_email_is_parked_and_tried_again_after_a_reload(db, tmp_path, smtp,
                                                                     clock):
    smtp.start()
    row, _ = leave(tmp_path)
    holder = {"config": config_for(smtp.port, email=None)}
    mailer = Mailer(lambda: holder["config"], now=clock)
    with structlog.testing.capture_logs() as logs:
        assert mailer.send_pending() == 0
    stored = Voicemail.get_by_id(row.id)
    assert "no e-mail address" in stored.email_error
    assert stored.email_gave_up_at == T0 and stored.emailed_at is None
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == ["mailer.parked"]
    for _ in range(3):  # not retried for ever: parked rows are left alone...
        clock.advance(86400)
        assert mailer.send_pending() == 0
    assert Voicemail.get_by_id(row.id).email_attempts == 1
    assert mailer.next_due() is None  # ...and do not wake the sender
    holder["config"] = config_for(smtp.port, email="anna@beispiel.de")  # reload with an address
    assert mailer.send_pending() == 1
    assert smtp.handler.recipients == [["anna@beispiel.de"]]


def test_unknown_user_is_parked(db, tmp_path, smtp, clock):
    smtp.start()
    path = tmp_path / "x.wav"
    write_wav(path)
    row = queries.record_voicemail("ghost", str(path), T0)
    mailer = Mailer(lambda: config_for(smtp.port), now=clock)
    assert mailer.send_pending() == 0
    stored = Voicemail.get_by_id(row.id)
    assert "not in the configuration" in stored.email_error and stored.email_gave_up_at


def test_missing_recording_is_recorded_retried_then_parked(db, tmp_path, smtp, clock):
    smtp.start()
    row, _ = leave(tmp_path)
    os.remove(row.path)
    mailer = Mailer(lambda: config_for(smtp.port), now=clock, base_delay=1, max_attempts=3)
    for attempt in (1, 2, 3):
        assert mailer.send_pending() == 0
        stored = Voicemail.get_by_id(row.id)
        assert stored.email_attempts == attempt
        assert f"the recording {row.path} is missing" == stored.email_error
        clock.advance(10)
    assert stored.email_gave_up_at is not None and stored.email_next_at is None
    assert smtp.handler.messages == []
    assert Voicemail.get_or_none(Voicemail.id == row.id) is not None  # the row stays


def test_login_with_password_from_env_and_password_never_logged(db, tmp_path, clock,
                                                                 monkeypatch):
    server = SmtpServer(password=SMTP_PASSWORD.encode()).start()
    try:
        row, _ = leave(tmp_path)
        monkeypatch.setenv("FSROUTER_SMTP_PASSWORD", "wrong-" + SMTP_PASSWORD)
        config = config_for(server.port, username="fsrouter", password_env="FSROUTER_SMTP_PASSWORD")
        mailer = Mailer(lambda: config, now=clock)
        with structlog.testing.capture_logs() as logs:
            assert mailer.send_pending() == 0  # 535: authentication failed -> parked
            stored = Voicemail.get_by_id(row.id)
            assert "535" in stored.email_error and stored.email_gave_up_at is not None
            monkeypatch.setenv("FSROUTER_SMTP_PASSWORD", SMTP_PASSWORD)
            config = config_for(server.port, username="fsrouter",
                                password_env="FSROUTER_SMTP_PASSWORD")  # a reload
            assert mailer.send_pending() == 1
        assert server.handler.logins[-1] == (b"fsrouter", SMTP_PASSWORD.encode())
        assert len(server.handler.messages) == 1
        everything = repr(logs) + repr(stored.email_error)
        assert SMTP_PASSWORD not in everything
    finally:
        server.stop()


def test_unset_password_variable_is_a_clear_error(db, tmp_path, smtp, clock, monkeypatch):
    smtp.start()
    row, _ = leave(tmp_path)
    monkeypatch.delenv("FSROUTER_SMTP_PASSWORD", raising=False)
    config = config_for(smtp.port, username="fsrouter", password_env="FSROUTER_SMTP_PASSWORD")
    assert Mailer(lambda: config, now=clock).send_pending() == 0
    error = Voicemail.get_by_id(row.id).email_error
    assert "FSROUTER_SMTP_PASSWORD" in error and "not set" in error


def test_kick_sends_a_new_voicemail_at_once(db, tmp_path, smtp):
    smtp.start()
    mailer = Mailer(lambda: config_for(smtp.port), poll_interval=600)
    mailer.start()
    try:
        wait_for(lambda: mailer.running)
        row, _ = leave(tmp_path)
        mailer.kick()
        wait_for(lambda: Voicemail.get_by_id(row.id).emailed_at, timeout=10,
                   what="the kicked mail")
    finally:
        mailer.stop()
    assert len(smtp.handler.messages) == 1


def test_only_this_hosts_recordings(db, tmp_path, smtp, clock):
    smtp.start()
    mine, _ = leave(tmp_path, host="fs1")
    theirs, _ = leave(tmp_path, host="fs2")
    anyone, _ = leave(tmp_path)
    assert Mailer(lambda: config_for(smtp.port), now=clock, host="fs1").send_pending() == 2
    sent = {row.id for row in Voicemail.select() if row.emailed_at}
    assert sent == {mine.id, anyone.id} and theirs.id not in sent
