"""Voicemail end to end: recorded by the daemon on the switch, stored, mailed to the agent.

``fsrouter run`` as a process on both switches, a real SMTP server (aiosmtpd) on loopback: a
logged-out agent's caller leaves a message that arrives as a mail with the recording attached
byte for byte; an on-call option whose people do not answer falls back to a voicemail that is
linked to the (still open) incident and mailed too.
"""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import gevent
import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.e2e.test_inbound_routes import AGENT_NUMBER, GREETING, VOICE, call, finished, sip
from tests.notify.servers import SmtpServer

pytestmark = pytest.mark.realswitch

HOTLINE = "+493040004000"
MENU_TONE = "tone_stream://%(300,200,440);loops=2"


@pytest.fixture(params=["real", "sim"])
def switch(request):
    return request.getfixturevalue("real_switch" if request.param == "real" else "sim_switch")


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def running(tmp_path, switch, smtp):
    daemons: list[Daemon] = []
    watcher = Watcher(switch.esl_endpoint())

    def start(config: dict) -> Daemon:
        config = {**config, "smtp": {"host": "127.0.0.1", "port": smtp.port,
                                     "from": "fsrouter@example.test"},
                  "voicemail": {"directory": str(tmp_path / "voicemail"),
                                "silence_seconds": 3}}
        daemon = Daemon(tmp_path, config, switch.esl_endpoint())
        daemon.start()
        daemons.append(daemon)
        switch.route_to(daemon.port)
        return daemon

    yield start, switch, watcher
    watcher.close()
    deadline = time.monotonic() + 5
    while switch.channels() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    assert switch.channels() == []
    for daemon in daemons:
        assert daemon.rows("SELECT call_uuid FROM call_records WHERE ended_at IS NULL") == []
        assert daemon.stop() == 0, daemon.log()[-3000:]


def users(agent_phone: dict[str, str]) -> dict:
    return {"greta": {"name": "Greta Neumann", "phones": [agent_phone],
                      "email": "greta@example.test", "language": "de",
                      "voicemail": {"greeting": GREETING}}}


def wait_mail(smtp: SmtpServer, timeout: float = 20) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while not smtp.handler.messages:
        if time.monotonic() > deadline:
            raise AssertionError("no mail arrived")
        gevent.sleep(0.1)
    mail = message_from_bytes(smtp.handler.messages[0], policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return mail


def attachment(mail: EmailMessage) -> bytes:
    parts = [p for p in mail.walk() if p.get_content_type() == "audio/wav"]
    assert len(parts) == 1, [p.get_content_type() for p in mail.walk()]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def body(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return part.get_content()


def talk_then_hang_up(switch, watcher, caller: str, b_leg: str) -> None:
    watcher.wait("CHANNEL_EXECUTE", timeout=30, Application="record", **{"Unique-ID": b_leg})
    reply = switch.api(f"uuid_broadcast {caller} {VOICE} aleg")
    assert reply.startswith("+OK"), reply
    gevent.sleep(2.5)
    switch.hangup(caller)


def test_a_logged_out_agents_voicemail_arrives_by_mail(running, smtp):
    start, switch, watcher = running
    daemon = start({"defaults": {"dial_template": TEST_DIAL_TEMPLATE},
                    "users": users(sip("answer", 100, 40)),
                    "numbers": [{"number": AGENT_NUMBER, "type": "agent", "agent": "greta"}]})
    caller, b_leg = call(switch, watcher, AGENT_NUMBER, name="Müller, Jörg")
    talk_then_hang_up(switch, watcher, caller, b_leg)
    assert finished(daemon, watcher, b_leg)["outcome"] == "voicemail"
    mail = wait_mail(smtp)
    [row] = daemon.wait_for("SELECT * FROM voicemails WHERE emailed_at IS NOT NULL")
    assert smtp.handler.recipients == [["greta@example.test"]]
    assert "Müller, Jörg" in str(mail["Subject"]) + body(mail)
    assert attachment(mail) == Path(row["path"]).read_bytes()
    assert row["email_error"] is None and row["incident_id"] is None


def test_an_unanswered_hotline_falls_back_to_a_voicemail_linked_to_the_incident(running, smtp):
    start, switch, watcher = running
    nobody = phone_number("noanswer", 0, 41)
    config = {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "users": {**users(sip("answer", 100, 42)),
                  "otto": {"name": "Otto", "phones": [{"type": "mobile", "number": nobody}]}},
        "policies": {"ops": {"levels": [{"targets": [{"user": "otto"}], "ring_timeout": 5}],
                             "press_to_accept": False}},
        "numbers": [{"number": HOTLINE, "type": "call_routing", "options": [
            {"digit": 1, "label": "Ops", "prompt": MENU_TONE, "policy": "ops",
             "hold_music": "tone_stream://%(1000,0,350);loops=-1",
             "fallback": "voicemail:greta"}]}],
    }
    daemon = start(config)
    caller, b_leg = call(switch, watcher, HOTLINE, name="Wood's Homes")
    talk_then_hang_up(switch, watcher, caller, b_leg)
    record = finished(daemon, watcher, b_leg)
    assert record["outcome"] == "no_answer_fallback"
    [incident] = daemon.rows("SELECT * FROM incidents")
    assert incident["state"] == "open" and "nobody_answered" in (incident["outcome_reason"] or "")
    [row] = daemon.wait_for("SELECT * FROM voicemails WHERE emailed_at IS NOT NULL")
    assert (row["user_id"], row["incident_id"], row["caller_name"]) == (
        "greta", incident["id"], "Wood's Homes")
    mail = wait_mail(smtp)
    assert attachment(mail) == Path(row["path"]).read_bytes()
    assert str(incident["id"]) in body(mail)
