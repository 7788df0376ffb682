"""Voicemail on the real switch: ``voicemail default fsrouter.test 1000`` run over the socket.

A caller reaches a tiny outbound-socket app that answers and runs the voicemail app; the
caller presses ``#`` to skip the greeting, talks (a tone) for a few seconds and hangs up. On
a real 1.11.1 (measured with this test, see freeswitch_conf/README.md):

- the greeting starts ~0.1 s after the app, ``#`` stops it, the 1 s beep (tone-spec) follows,
  then the recording: min-record-len is 3 s, and 2 s of silence (record-silence-hits) end it,
  so a silent or short caller leaves nothing;
- after the hangup: ``CUSTOM vm::maintenance`` ``VM-Action: leave-message`` (with the
  channel's headers, ``Unique-ID`` = the voicemail leg), then ``MESSAGE_WAITING`` and
  ``CUSTOM vm::maintenance`` ``VM-Action: mwi-update`` (no channel), the mail (mailer-app),
  then the app's CHANNEL_EXECUTE_COMPLETE carrying ``variable_voicemail_file_path``.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Callable, Iterator
from email import message_from_bytes
from pathlib import Path

import gevent
import gevent.event
import pytest

from fsrouter.esl import Event, InboundClient
from fsrouter.esl.outbound import OutboundServer, OutboundSession
from fsrouter.testing.realswitch import VOICEMAIL_BOX, VOICEMAIL_DOMAIN, RealSwitch

CALLER_NAME = "O'Brien, Jörg"  # a quote and a comma: the app puts it into SQL and a mail
CALLER_NUMBER = "+4915112345678"
# The caller "talks": a tone with short gaps, sent from the caller leg to the voicemail leg.
VOICE = "tone_stream://%(900,100,350);loops=-1"
TALK_SECONDS = 5.0  # after #: ~0.2 s + beep (1 s) + more than min-record-len (3 s)


class VoicemailApp:
    """The outbound-socket side: answer, then ``voicemail default <domain> <box>``."""

    def __init__(self) -> None:
        self.started = gevent.event.Event()
        self.session_events: list[Event] = []
        self.completion: Event | None = None
        self.server = OutboundServer("127.0.0.1", 0, self.handle)

    def handle(self, session: OutboundSession) -> None:
        session.on_event(self.session_events.append)
        # What a daemon would subscribe to for voicemail: myevents covers only channel events.
        session.events(["BACKGROUND_JOB", "CUSTOM", "fifo::info", "vm::maintenance"])
        session.execute("answer").wait(5)
        run = session.execute("voicemail", f"default {VOICEMAIL_DOMAIN} {VOICEMAIL_BOX}")
        self.started.set()
        self.completion = run.wait(30)


@pytest.fixture
def watcher(real_switch: RealSwitch) -> Iterator[list[Event]]:
    """Every voicemail event on the switch, seen from a separate inbound connection."""
    host, port, password = real_switch.esl_endpoint()
    # Subclasses follow CUSTOM: every later word is read as a subclass, so plain names first.
    events = ["MESSAGE_WAITING", "CUSTOM", "vm::maintenance"]
    client = InboundClient(host, port, password, events=events)
    seen: list[Event] = []
    client.on_event(seen.append)
    client.connect()
    try:
        yield seen
    finally:
        client.close()


def _wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.05)


def _leave_message(real_switch: RealSwitch, app: VoicemailApp, number: str) -> str:
    """Place the caller; skip the greeting with #, talk, hang up. Returns the caller uuid."""
    caller = real_switch.place_call(number, CALLER_NUMBER, CALLER_NAME)
    assert app.started.wait(10), "the voicemail app never started"
    gevent.sleep(0.4)  # inside the greeting (0.4 s a prompt: vm-person, 1 0 0 0, ...)
    real_switch.send_dtmf(caller, "#")
    reply = real_switch.api(f"uuid_broadcast {caller} {VOICE} aleg")
    assert reply.startswith("+OK"), reply
    gevent.sleep(TALK_SECONDS)
    assert real_switch.hangup(caller).startswith("+OK")
    return caller


def _number(prefix: str, fresh_id: str) -> str:
    """A number of this test only (the dialplan wants digits; fresh_id has hex)."""
    return prefix + str(int(fresh_id.split("x")[-1], 16) % 10**8).zfill(8)


def _by_action(events: list[Event], action: str) -> list[Event]:
    return [e for e in events if e.subclass == "vm::maintenance" and e.get("VM-Action") == action]


def test_caller_leaves_a_message_after_skipping_the_greeting(
    real_switch: RealSwitch, fresh_id: str, watcher: list[Event]
) -> None:
    app = VoicemailApp()
    app.server.start()
    try:
        real_switch.route_to(app.server.port)
        before = set(real_switch.voicemail_messages())
        began = time.monotonic()
        _leave_message(real_switch, app, _number("4930", fresh_id))
        _wait_for(lambda: app.completion is not None, 10, "the voicemail app to end")
        _wait_for(lambda: _by_action(watcher, "mwi-update"), 5, "the mwi-update event")
        elapsed = time.monotonic() - began
    finally:
        app.server.stop()
        real_switch.route_to(1)  # back to the dead port, as before any route_to()

    # The message file: new, non-empty, a real WAV of about the time the caller talked.
    new = sorted(set(real_switch.voicemail_messages()) - before)
    assert len(new) == 1, real_switch.log_tail(40)
    message = new[0]
    assert message.name.startswith("msg_") and message.suffix == ".wav"
    with wave.open(str(message)) as recording:
        seconds = recording.getnframes() / recording.getframerate()
    assert 3.0 <= seconds <= TALK_SECONDS, seconds

    # leave-message: the box, the caller as sent (byte-exact), the file, the voicemail leg.
    (left,) = _by_action(watcher, "leave-message")
    assert left.name == "CUSTOM"
    assert left.get("VM-User") == VOICEMAIL_BOX
    assert left.get("VM-Domain") == VOICEMAIL_DOMAIN
    assert left.get("VM-Caller-ID-Name") == CALLER_NAME
    assert left.get("VM-Caller-ID-Number") == CALLER_NUMBER
    assert left.get("VM-File-Path") == str(message)
    assert left.get("VM-Folder") == "inbox"
    assert left.get("VM-Flags") == "B_NORMAL"
    assert int(left.get("VM-Message-Len") or 0) == int(seconds)
    assert left.get("VM-UUID") == left.uuid == app.completion.uuid  # type: ignore[union-attr]
    assert left.get("Event-Calling-Function") == "deliver_vm"

    # Then the mailbox counters: MESSAGE_WAITING and mwi-update (no channel headers).
    (mwi,) = [e for e in watcher if e.name == "MESSAGE_WAITING"]
    assert mwi.get("MWI-Messages-Waiting") == "yes"
    assert mwi.get("MWI-Message-Account") == f"{VOICEMAIL_BOX}@{VOICEMAIL_DOMAIN}"
    assert mwi.get("Update-Reason") == "NEW"
    (update,) = _by_action(watcher, "mwi-update")
    # Nobody listens to messages here: every message in the box is new.
    assert update.get("VM-Total-New") == str(len(real_switch.voicemail_messages()))
    assert update.get("VM-Total-Saved") == "0"
    assert update.uuid is None

    # The outbound socket sees leave-message (it carries the channel) before the app ends.
    names = [(e.name, e.get("VM-Action") or e.get("Application")) for e in app.session_events]
    assert [e.get("DTMF-Digit") for e in app.session_events if e.name == "DTMF"] == ["#"]
    assert names.index(("CUSTOM", "leave-message")) < names.index(
        ("CHANNEL_EXECUTE_COMPLETE", "voicemail")
    )
    done = app.completion
    assert done is not None and done.get("Application") == "voicemail"
    assert done.get("variable_voicemail_file_path") == str(message)
    assert done.get("variable_voicemail_message_len") == f"00:00:{int(seconds):02d}"

    _check_mail(real_switch, message)
    assert elapsed < 15, elapsed


def _check_mail(real_switch: RealSwitch, message: Path) -> None:
    """The agent's mail, kept by the test switch's mailer: addressed, with the recording."""
    _wait_for(lambda: real_switch.mails(), 5, "the voicemail mail")
    raw = real_switch.mails()[-1].read_bytes()
    mail = message_from_bytes(raw)
    # The recipient travels only on the mailer's command line; 1.11.1's default headers
    # (no template) have no To: and carry the caller's name raw in Subject.
    args = (mail.get("X-Test-Mailer-Args") or "").split()
    assert args[-1] == "agent@fsrouter.test" and args[:2] == ["-f", "1000@fsrouter.test"]
    subject = f"\nSubject: Voicemail from {CALLER_NAME} {CALLER_NUMBER}\n".encode()
    assert subject in raw  # raw UTF-8, not RFC 2047 encoded
    attachments = [part for part in mail.walk() if part.get_filename()]
    assert [part.get_filename() for part in attachments] == [message.name]
    assert attachments[0].get_payload(decode=True) == message.read_bytes()


def test_silent_caller_leaves_no_message(
    real_switch: RealSwitch, fresh_id: str, watcher: list[Event]
) -> None:
    """A message shorter than min-record-len (3 s) is deleted and announces nothing."""
    app = VoicemailApp()
    app.server.start()
    try:
        real_switch.route_to(app.server.port)
        before = set(real_switch.voicemail_messages())
        caller = real_switch.place_call(_number("4931", fresh_id), CALLER_NUMBER)
        assert app.started.wait(10)
        gevent.sleep(0.4)
        real_switch.send_dtmf(caller, "#")
        gevent.sleep(2.5)  # beep 1 s + 1.5 s of silence: hung up before the silence cut-off
        real_switch.hangup(caller)
        _wait_for(lambda: app.completion is not None, 10, "the voicemail app to end")
    finally:
        app.server.stop()
        real_switch.route_to(1)
    assert set(real_switch.voicemail_messages()) == before
    assert _by_action(watcher, "leave-message") == []
