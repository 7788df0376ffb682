"""Voicemail to e-mail: compose the mail (recording attached) and send it, retrying until it
is delivered. Nothing is lost and the recording file is never deleted here.

Each voicemail row carries its own retry state (``email_attempts``, ``email_next_at``,
``email_gave_up_at``, ``email_error``), so a restart keeps the backoff. What happens when a
send fails:

- The mail server cannot be reached, times out, or answers 4xx: the row is tried again after
  an exponential backoff (``base_delay`` doubling up to ``max_delay``, with jitter), for as
  long as it takes: an outage ends, and the mail should then go out without anyone acting.
  When the server itself is the problem, the other due rows wait for the same moment instead
  of each spending a try.
- The recording file is missing or unreadable: retried the same way (a shared mount may come
  back), but parked after ``max_attempts`` tries.
- Problems retrying cannot fix: the user is not in the configuration or has no e-mail
  address, the address is malformed, the SMTP password cannot be read, the server answers
  5xx (address refused, authentication failed). The row is parked at once.

Each SMTP session has one deadline for the whole of it (``deadline``: connect, greeting,
STARTTLS, login, the mail, QUIT), below the claim's ``lease``: a server that drips its replies
a byte at a time cannot hold a session past it, so it ends (as a failed try, retried later)
before another node may take the voicemail and send it again.

A parked row keeps its error, is logged, and is tried once more after every configuration
reload or restart (that is when an operator fixes an address or the SMTP settings), so a
user without an e-mail address is not retried for ever.

Caller name and number are caller-controlled: they are cleaned (control and bidi characters
replaced, invalid Unicode replaced, absurd lengths cut with a visible marker) and put into
headers only through the ``email`` package, which encodes them (RFC 2047); an encoded word
typed by the caller is defused so a mail client cannot decode it into something else.
"""

from __future__ import annotations

import random
import smtplib
import socket
import ssl
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import gevent
import structlog

from fsrouter.config import Config, ConfigError
from fsrouter.config.schema import Smtp, User
from fsrouter.notify.worker import Worker, backoff_seconds, utc_now
from fsrouter.store import queries
from fsrouter.store.models import Voicemail

log = structlog.get_logger(__name__)

NAME_LIMIT = 100  # characters of a caller name shown; more is cut with a marker
NUMBER_LIMIT = 40
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\u0085\u2028\u2029")
# An invisible WORD JOINER between "=" and "?" keeps caller text from being an RFC 2047
# encoded word, which a mail client would otherwise decode (into anything, CR/LF included).
_DEFUSED_ENCODED_WORD = "=\u2060?"
LEASE_MARGIN = 30.0  # seconds between a session's deadline and the end of its claim


@dataclass(frozen=True)
class _Texts:
    subject: str
    greeting: str
    intro: str
    caller: str
    number: str
    time: str
    duration: str
    incident: str
    attached: str
    unknown_caller: str
    no_name: str
    no_number: str
    unknown: str
    cut: str
    time_format: str
    minutes: str
    seconds: str


_GERMAN = _Texts(
    subject="Neue Sprachnachricht von {who}",
    greeting="Hallo {name},",
    intro="Sie haben eine neue Sprachnachricht.",
    caller="Anrufer",
    number="Nummer",
    time="Zeit",
    duration="Dauer",
    incident="Vorfall",
    attached="Die Aufnahme ist als WAV-Datei angehängt.",
    unknown_caller="unbekanntem Anrufer",
    no_name="(kein Name übermittelt)",
    no_number="(Rufnummer unterdrückt)",
    unknown="unbekannt",
    cut="…[gekürzt]",
    time_format="%d.%m.%Y %H:%M:%S %Z",
    minutes="Min.",
    seconds="Sek.",
)
_ENGLISH = _Texts(
    subject="New voicemail from {who}",
    greeting="Hello {name},",
    intro="You have a new voicemail.",
    caller="Caller",
    number="Number",
    time="Time",
    duration="Duration",
    incident="Incident",
    attached="The recording is attached as a WAV file.",
    unknown_caller="unknown caller",
    no_name="(no name sent)",
    no_number="(number withheld)",
    unknown="unknown",
    cut="…[truncated]",
    time_format="%Y-%m-%d %H:%M:%S %Z",
    minutes="min",
    seconds="s",
)


# ---------------------------------------------------------------- composing


def clean_caller_text(value: str | None, limit: int, marker: str) -> str | None:
    """Caller-controlled text made safe to show: one line, valid Unicode, at most ``limit``
    characters (then ``marker``); None when nothing printable is left."""
    if value is None:
        return None
    raw = str(value)
    # Only the start matters: looking at 4x the limit bounds the work for absurd input.
    text = "".join(_visible(char) for char in raw[: limit * 4]).strip()
    cut = len(raw) > limit * 4 or len(text) > limit
    text = text[:limit].rstrip()
    if not text:
        return None
    return text + marker if cut else text


def _visible(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF or char in _BIDI_CONTROLS or char in _LINE_BREAKS:
        return "\ufffd"
    if unicodedata.category(char) == "Cc":
        return " " if char in "\t\r\n" else "\ufffd"
    return char


def _defuse(text: str) -> str:
    return text.replace("=?", _DEFUSED_ENCODED_WORD)


def _duration(seconds: float | None, texts: _Texts) -> str:
    if seconds is None:
        return texts.unknown
    minutes, rest = divmod(round(seconds), 60)
    if minutes:
        return f"{minutes}:{rest:02d} {texts.minutes}"
    return f"{rest} {texts.seconds}"


def _who(name: str | None, number: str | None, texts: _Texts) -> str:
    if name and number:
        return f"{name} ({number})"
    return name or number or texts.unknown_caller


def _body(voicemail: Voicemail, user: User, texts: _Texts, name: str | None,
          number: str | None, local: datetime) -> str:
    rows = [
        (texts.caller, name or texts.no_name),
        (texts.number, number or texts.no_number),
        (texts.time, local.strftime(texts.time_format)),
        (texts.duration, _duration(voicemail.duration_s, texts)),
    ]
    if voicemail.incident_id is not None:
        rows.append((texts.incident, f"#{voicemail.incident_id}"))
    width = max(len(label) for label, _ in rows) + 3  # the colon and two spaces
    table = [f"{label + ':':<{width}}{value}" for label, value in rows]
    lines = [texts.greeting.format(name=user.name), "", texts.intro, "", *table, "",
             texts.attached, "", "-- ", "fsrouter", ""]
    return "\n".join(lines)


def attachment_name(voicemail: Voicemail, local: datetime) -> str:
    """The file name of the attached recording: time and row id only, never caller text."""
    return f"voicemail-{local:%Y%m%d-%H%M%S}-{voicemail.id}.wav"


def compose(voicemail: Voicemail, user: User, config: Config) -> EmailMessage:
    """The mail for one voicemail, the recording attached (``audio/wav``).

    Raises :class:`OSError` when the recording cannot be read and :class:`ValueError` when
    the user's address cannot be used.
    """
    if not user.email:
        raise ValueError("the user has no e-mail address")
    texts = _GERMAN if user.language.startswith("de") else _ENGLISH
    local = voicemail.created_at.astimezone(ZoneInfo(config.defaults.timezone))
    name = clean_caller_text(voicemail.caller_name, NAME_LIMIT, texts.cut)
    number = clean_caller_text(voicemail.caller_number, NUMBER_LIMIT, texts.cut)
    recording = Path(voicemail.path).read_bytes()
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = config.smtp.from_
    message["To"] = _recipient(user)
    message["Subject"] = _defuse(texts.subject.format(who=_who(name, number, texts)))
    message["Date"] = format_datetime(voicemail.created_at)
    message["Message-ID"] = _message_id(voicemail, config.smtp.from_)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    # quoted-printable: a 7-bit mail passes any relay, 8BITMIME or not.
    message.set_content(_body(voicemail, user, texts, name, number, local),
                        cte="quoted-printable")
    message.add_attachment(recording, maintype="audio", subtype="wav",
                           filename=attachment_name(voicemail, local))
    return message


def _recipient(user: User) -> Address:
    try:
        return Address(display_name=user.name, addr_spec=str(user.email))
    except (ValueError, IndexError) as exc:  # the email package's header defects
        raise ValueError(f"unusable e-mail address {user.email!r}: {exc}") from None


def _message_id(voicemail: Voicemail, sender: str) -> str:
    # Stable per voicemail: a mail sent twice (a crash between send and bookkeeping) has the
    # same Message-ID, so mail clients can drop the copy.
    domain = sender.rpartition("@")[2] or "localhost"
    stamp = voicemail.created_at.strftime("%Y%m%d%H%M%S")
    return f"<fsrouter-voicemail-{voicemail.id}-{stamp}@{domain}>"


# ---------------------------------------------------------------- sending


class _Failure(Exception):
    """One try failed. ``permanent``: park at once; ``limited``: park after ``max_attempts``
    tries (else retried for as long as it takes); ``server``: the mail server is the problem,
    so the other due rows wait too."""

    def __init__(self, reason: str, permanent: bool = False, server: bool = False,
                 limited: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.server = server
        self.limited = limited


class Mailer(Worker):
    """Sends voicemails by e-mail: :meth:`send_pending` is one pass, :meth:`start` runs passes
    in a greenlet, :meth:`kick` wakes it after a new voicemail."""

    name = "mailer"

    def __init__(
        self,
        config_source: Callable[[], Config],
        now: Callable[[], datetime] = utc_now,
        *,
        host: str | None = None,
        base_delay: float = 60.0,
        max_delay: float = 3600.0,
        max_attempts: int = 12,
        smtp_timeout: float = 30.0,
        deadline: float = 120.0,
        lease: timedelta = timedelta(minutes=10),
        poll_interval: float = 30.0,
        error_delay: float = 30.0,
        batch: int = 50,
        rng: random.Random | None = None,
    ) -> None:
        """``host``: send only voicemails recorded on this host (or on no particular host);
        None sends all. ``max_attempts``: tries before a voicemail whose recording cannot be
        read is parked (after 3-6 hours with the default delays). ``smtp_timeout``: seconds
        for each socket operation; ``deadline``: seconds for a whole session, which must end
        at least ``LEASE_MARGIN`` seconds before the ``lease`` (the claim) does.

        ``config_source`` must return the same object until the configuration is reloaded:
        a new object is taken as a reload, which gives parked voicemails one more try.
        """
        super().__init__(now, poll_interval, error_delay)
        if deadline + LEASE_MARGIN > lease.total_seconds():
            raise ValueError(f"the SMTP deadline ({deadline} s) must end {LEASE_MARGIN} s "
                             f"before the lease ({lease.total_seconds()} s)")
        self._config_source = config_source
        self.host = host
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.smtp_timeout = min(smtp_timeout, deadline)
        self.deadline = deadline
        self.lease = lease
        self.batch = batch
        self._rng = rng or random.Random()
        self._config_seen: Config | None = None
        self._helo: str | None = None

    def run_pass(self) -> int:
        return self.send_pending()

    def next_due(self) -> datetime | None:
        return queries.next_voicemail_due(self.host)

    def send_pending(self) -> int:
        """One pass over the due voicemails; returns how many were mailed."""
        config = self._config_source()
        if config is not self._config_seen:
            self._config_seen = config
            requeued = queries.requeue_parked_voicemails(self.host)
            if requeued:
                log.info("mailer.requeued", count=requeued, reason="configuration (re)loaded")
        sent = 0
        for row in queries.due_voicemails(self._now(), self.host, self.batch):
            outcome = self._send_one(row.id, config)
            if outcome == "sent":
                sent += 1
            elif outcome == "server_down":
                break  # the others were postponed to the same retry time
        return sent

    def _send_one(self, voicemail_id: int, config: Config) -> str:
        now = self._now()
        row = queries.claim_voicemail_email(voicemail_id, now, now + self.lease, self.host)
        if row is None:
            return "skipped"  # another sender took it, or it is no longer due
        try:
            self._deliver(row, config)
        except _Failure as failure:
            self._failed(row, failure)
            return "server_down" if failure.server and not failure.permanent else "failed"
        queries.mark_voicemail_emailed(row.id, self._now())
        log.info("mailer.sent", voicemail_id=row.id, user=row.user_id, attempts=row.email_attempts)
        return "sent"

    def _deliver(self, row: Voicemail, config: Config) -> None:
        user = config.users.get(row.user_id)
        if user is None:
            raise _Failure(f"user {row.user_id!r} is not in the configuration", permanent=True)
        if not user.email:
            raise _Failure(f"user {row.user_id!r} has no e-mail address in the configuration",
                           permanent=True)
        try:
            message = compose(row, user, config)
        except FileNotFoundError:
            raise _Failure(f"the recording {row.path} is missing", limited=True) from None
        except OSError as exc:
            raise _Failure(f"cannot read the recording {row.path}: {exc.strerror or exc}",
                           limited=True) from None
        except ValueError as exc:
            raise _Failure(f"cannot compose the mail: {exc}", permanent=True) from None
        self._smtp_send(config, message)

    def _smtp_send(self, config: Config, message: EmailMessage) -> None:
        settings = config.smtp
        password = _smtp_password(config)
        if settings.username and password is None:
            raise _Failure("smtp.username is set but no password is configured",
                           permanent=True, server=True)
        timer = gevent.Timeout(self.deadline)
        timer.start()
        try:
            self._session(settings, password, message, timer)
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            raise _Failure(f"SMTP server {settings.host}:{settings.port} did not finish the "
                           f"session within {self.deadline} s", server=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _classify(exc, settings.host, settings.port) from None
        finally:
            timer.close()

    def _session(self, settings: Smtp, password: str | None, message: EmailMessage,
                 timer: gevent.Timeout) -> None:
        """One SMTP session; cut off (the socket closed, no QUIT) by anything raised but an
        SMTP answer, so the deadline's timer ends it at once."""
        client = smtplib.SMTP(local_hostname=self._helo_name(), timeout=self.smtp_timeout)
        try:
            client.connect(settings.host, settings.port)
            if settings.starttls:
                client.starttls(context=ssl.create_default_context())
            if settings.username:
                client.login(settings.username, password or "")
            client.send_message(message)
        except smtplib.SMTPResponseException:
            _quit(client)
            raise
        except BaseException:
            client.close()
            raise
        try:
            _quit(client)
        except gevent.Timeout as fired:
            client.close()
            if fired is not timer:
                raise
            # The mail was accepted: a QUIT cut off by the deadline changes nothing.

    def _helo_name(self) -> str:
        if self._helo is None:
            self._helo = socket.getfqdn()
        return self._helo

    def _failed(self, row: Voicemail, failure: _Failure) -> None:
        now = self._now()
        fields = dict(voicemail_id=row.id, user=row.user_id, attempts=row.email_attempts,
                      error=failure.reason)
        if failure.permanent or (failure.limited and row.email_attempts >= self.max_attempts):
            queries.defer_voicemail_email(row.id, failure.reason, now, None)
            log.error("mailer.parked", **fields,
                      note="kept; tried again after a configuration reload or restart")
            return
        delay = backoff_seconds(row.email_attempts, self.base_delay, self.max_delay, self._rng)
        retry_at = now + timedelta(seconds=delay)
        queries.defer_voicemail_email(row.id, failure.reason, now, retry_at)
        if failure.server:
            queries.postpone_voicemail_emails(retry_at, self.host)
        log.warning("mailer.retry", **fields, retry_at=retry_at.isoformat())


def _quit(client: smtplib.SMTP) -> None:
    """End the session; once the server accepted the mail a failing QUIT changes nothing
    (raising here would send the mail again)."""
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _smtp_password(config: Config) -> str | None:
    try:
        return config.smtp.resolve_password()
    except ConfigError as exc:  # names the variable or file, never a value
        reason = "; ".join(issue.message for issue in exc.issues)
        raise _Failure(f"SMTP password: {reason}", permanent=True, server=True) from None


def _classify(exc: Exception, host: str, port: int) -> _Failure:
    """What an SMTP failure means for the row (see the module docstring)."""
    where = f"SMTP server {host}:{port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{code} {_text(msg)}" for code, msg in exc.recipients.values())
        return _Failure(f"{where} refused the recipient: {detail}",
                        permanent=all(code >= 500 for code in codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        reason = f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
        per_message = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code != 421
        return _Failure(reason, permanent=exc.smtp_code >= 500, server=not per_message)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _Failure(f"{where}: {exc}", permanent=True, server=True)
    if isinstance(exc, TimeoutError):
        return _Failure(f"{where} timed out", server=True)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _Failure(f"{where} unreachable: {text}", server=True)


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
