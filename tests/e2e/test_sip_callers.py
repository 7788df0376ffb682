"""Real SIP callers and agents (SIPp) through mod_sofia on the REAL switch, ``fsrouter run``
as a process (issue 11, points 2 and 3).

Every phone here is a SIPp process on 127.0.0.1 speaking SIP and RTP to the test switch's SIP
profile: callers send INVITEs with real SDP, press keys as RFC 2833 telephone-events (the
pcaps Debian's ``sip-tester`` ships) or SIP INFO, and talk (``g711a.pcap``); agents are
directory users who REGISTER with digest auth and are dialled as ``user/<id>@fsrouter.test``.
Each test checks what the SIP phones saw on the wire, what the switch did (events) and what
the daemon wrote (SQLite rows, the voicemail mail at a real SMTP server on loopback).
"""

from __future__ import annotations

import array
import os
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import gevent
import pytest

from fsrouter.store.queries import clean_caller_text
from fsrouter.testing.realswitch import (
    SIP_DIAL_TEMPLATE,
    SIP_EXTENSIONS,
    SIP_NUMBERS,
    SIP_PASSWORD,
    VOICEMAIL_DOMAIN,
    RealSwitch,
)
from fsrouter.testing.sipp import (
    Dtmf,
    InfoDtmf,
    Pause,
    SipPhone,
    SippRun,
    SippUnavailable,
    Speak,
    Step,
    caller_scenario,
    ensure_sipp,
    from_header,
    info_keys,
)
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.notify.servers import SmtpServer

pytestmark = pytest.mark.realswitch

ROUTING = "+493040001000"
AGENT_NUMBER = "+493040003000"
CUSTOMER = "+4915112345678"
CUSTOMER_NAME = "Erika Mustermann"
MENU_TONE = "tone_stream://%(300,200,440);loops=2"
HOLD = "tone_stream://%(1000,0,350);loops=-1"
GREETING = "tone_stream://%(300,0,500)"
BUSY_TONE = "%(480,480,425)"  # the German busy tone's cadence (config default)


@pytest.fixture(scope="session")
def sipp() -> Path:
    """SIPp, installed once from Debian's sip-tester when missing. Skipped only when this
    machine has no apt-get to install it with (a failure when CI is set); a failed install
    is an error."""
    try:
        return ensure_sipp()
    except SippUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"SIPp required when CI is set: {error}", pytrace=False)
        pytest.skip(str(error))


class Site:
    """The switch, its event watcher, the daemon and the SIP phones of one test."""

    def __init__(self, switch: RealSwitch, workdir: Path) -> None:
        self.switch = switch
        self.workdir = workdir
        self.watcher = Watcher(switch.esl_endpoint())
        self.daemon: Daemon | None = None
        self.runs: list[SippRun] = []
        self.phones: list[SipPhone] = []

    @property
    def sip_port(self) -> int:
        assert self.switch.ports is not None
        return self.switch.ports.sip

    def start_daemon(self, config: dict[str, Any]) -> Daemon:
        self.daemon = Daemon(self.workdir, config, self.switch.esl_endpoint())
        self.daemon.start()
        self.switch.route_to(self.daemon.port)
        return self.daemon

    def phone(self, name: str, user: str, answer: int = 200, talk_ms: int = 1500) -> SipPhone:
        """A registered SIP phone for directory user ``user``."""
        phone = SipPhone(name, self.workdir, self.sip_port, user, SIP_PASSWORD,
                         VOICEMAIL_DOMAIN, answer=answer, talk_ms=talk_ms)
        self.phones.append(phone)
        return phone.start()

    def caller(self, name: str, number: str, steps: list[Step], end: str,
               display_name: str = CUSTOMER_NAME, user: str = CUSTOMER,
               finals: tuple[int, ...] = (486,)) -> SippRun:
        """A SIP caller dialling ``number``; started, not waited for."""
        keys = {"fsr_from": from_header(display_name, user), **info_keys(steps)}
        run = SippRun(name, caller_scenario(steps, end, finals), self.workdir, self.sip_port,
                      service=number, keys=keys)
        self.runs.append(run)
        return run.start()

    def close(self) -> None:
        for run in self.runs:
            run.stop()
        for phone in self.phones:
            phone.close()
        self.watcher.close()


@pytest.fixture
def site(real_switch: RealSwitch, sipp: Path, tmp_path: Path) -> Iterator[Site]:
    setup = Site(real_switch, tmp_path)
    try:
        yield setup
    finally:
        setup.close()
        try:
            nothing_left_behind(real_switch, setup.daemon)
        finally:
            real_switch.route_to(1)  # back to the dead port, as before any route_to()
            code = setup.daemon.stop() if setup.daemon is not None else 0
    assert code == 0, setup.daemon.log()[-3000:] if setup.daemon else ""


def nothing_left_behind(switch: RealSwitch, daemon: Daemon | None) -> None:
    """No channel up (no phone left ringing), every call record and attempt final."""
    deadline = time.monotonic() + 5
    while switch.channels() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    assert switch.channels() == []
    if daemon is not None:
        assert daemon.rows("SELECT call_uuid FROM call_records WHERE ended_at IS NULL") == []
        assert daemon.rows("SELECT id FROM attempts WHERE ended_at IS NULL") == []


def hotline_config(user_number: str) -> dict[str, Any]:
    """One hotline, two options; the on-call person is a registered SIP phone whose
    directory id is their landline number (dialled through ``user/{number}@...``)."""
    return {
        "defaults": {"dial_template": SIP_DIAL_TEMPLATE, "language": "en",
                     "voicemail_domain": VOICEMAIL_DOMAIN},
        "users": {"anna": {"name": "Anna", "phones": [{"type": "landline",
                                                       "number": user_number}]}},
        "policies": {"db": {"levels": [{"targets": [{"user": "anna"}], "ring_timeout": 15}],
                            "press_to_accept": False}},
        "numbers": [{
            "number": ROUTING, "type": "call_routing", "skip_menu_if_single": False,
            "menu": {"tries": 2, "timeout_s": 4, "invalid_prompt": "tone_stream://%(200,0,300)"},
            "options": [
                {"digit": 1, "label": "Datenbank", "prompt": MENU_TONE, "policy": "db",
                 "hold_music": HOLD},
                {"digit": 2, "label": "Netzwerk", "prompt": MENU_TONE, "policy": "db",
                 "hold_music": HOLD},
            ],
        }],
    }


def agent_config(tmp_path: Path, extension: str, smtp_port: int | None = None
                 ) -> dict[str, Any]:
    """One agent number ringing ``bob``, a SIP phone (``user/<extension>@...``); when bob is
    logged out his voicemail takes the call and the mail goes to ``smtp_port``."""
    number = {"number": AGENT_NUMBER, "type": "agent", "agent": "bob", "ring_timeout": 10}
    config: dict[str, Any] = {
        "defaults": {"language": "en", "voicemail_domain": VOICEMAIL_DOMAIN},
        "voicemail": {"directory": str(tmp_path / "voicemail"), "silence_seconds": 3},
        "users": {"bob": {"name": "Bob", "email": "bob@example.test", "language": "en",
                          "voicemail": {"greeting": GREETING},
                          "phones": [{"type": "sip",
                                      "dial_string": f"user/{extension}@{VOICEMAIL_DOMAIN}"}]}},
        "numbers": [number],
    }
    if smtp_port is not None:
        config["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "from": "fsrouter@example.test"}
    return config


def login(daemon: Daemon, user: str) -> None:
    with daemon.store() as queries:
        queries.set_presence(user, datetime.now(UTC), state="logged_in", busy=False)


def user_part(header: str | None) -> str:
    """``+4930...`` from ``"name" <sip:+4930...@host>;tag=x``."""
    assert header is not None
    return header.split("<sip:", 1)[1].split("@", 1)[0]


def sofia_leg(site: Site, number: str) -> str:
    """The uuid of the switch's leg of the SIP caller who dialled ``number``."""
    event = site.watcher.wait("CHANNEL_CREATE", timeout=20, **{
        "Caller-Destination-Number": number, "Call-Direction": "inbound"})
    assert (event.get("Channel-Name") or "").startswith("sofia/fsrouter-test/")
    return event.uuid or ""


def finished_call(site: Site, call_uuid: str) -> dict[str, Any]:
    """The call's record once the switch and the daemon are both done with the call."""
    site.watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=30, **{"Unique-ID": call_uuid})
    daemon = site.daemon
    assert daemon is not None
    return daemon.wait_for("SELECT * FROM call_records WHERE call_uuid = ? AND ended_at "
                           "IS NOT NULL", call_uuid)[0]


# -- 1: a caller picks an option by DTMF and is bridged to a registered SIP phone ------------


def test_sip_caller_picks_an_option_by_rfc2833_and_reaches_the_registered_phone(site):
    daemon = site.start_daemon(hotline_config(SIP_NUMBERS[0]))
    phone = site.phone("anna", SIP_NUMBERS[0], answer=200, talk_ms=4000)
    # The menu starts right after the answer; the key is pressed in it (again later, in case
    # a loaded machine started the menu late: a second press in the queue does nothing).
    # The phone talks longer than the caller's steps take: SIPp cannot take a BYE mid-pause.
    caller = site.caller("caller", ROUTING, [Pause(1200), Dtmf("2"), Pause(1500), Dtmf("2")],
                         end="wait_bye")
    leg = sofia_leg(site, ROUTING)
    caller.check()
    phone.call.check()

    record = finished_call(site, leg)
    assert (record["route_type"], record["outcome"], record["bridged_to_user"]) == (
        "call_routing", "bridged", "anna")
    assert (record["caller_number"], record["caller_name"]) == (CUSTOMER, CUSTOMER_NAME)
    incident = daemon.rows("SELECT * FROM incidents")[0]
    assert (incident["option_digit"], incident["state"], incident["accepted_by"]) == (
        "2", "resolved", "anna")
    attempts = daemon.rows("SELECT user_id, phone, result FROM attempts")
    assert attempts == [{"user_id": "anna", "phone": SIP_NUMBERS[0], "result": "answered"}]
    # The key travelled in the RTP stream (RFC 2833): the caller sent no SIP INFO.
    assert [m.method for m in caller.messages if m.direction == "sent"] == [
        "INVITE", "ACK", None]  # None: our 200 to the switch's BYE
    # The phone rang with the routing number as caller ID, the option and caller as name.
    [invite] = phone.invites()
    assert user_part(invite.header("From")) == ROUTING
    assert (invite.header("From") or "").startswith(f'"Netzwerk - {CUSTOMER_NAME}" <sip:')
    # The caller was answered (menu) and hung up by the switch when the phone hung up.
    assert caller.received_statuses()[-1] == 200 and len(caller.received("BYE")) == 1


# -- 2: the agent's phone is registered but busy (486): the caller hears the busy tone -------


@pytest.mark.parametrize(("answer", "result", "cause", "extension"), [
    (486, "busy", "USER_BUSY", SIP_EXTENSIONS[0]),
    (480, "no_answer", "NO_USER_RESPONSE", SIP_EXTENSIONS[2]),
])
def test_a_busy_sip_phone_gives_the_sip_caller_the_busy_tone(site, tmp_path, answer, result,
                                                             cause, extension):
    daemon = site.start_daemon(agent_config(tmp_path, extension))
    login(daemon, "bob")
    phone = site.phone("bob", extension, answer=answer)
    caller = site.caller("caller", AGENT_NUMBER, [], end="rejected", finals=(answer, 486))
    leg = sofia_leg(site, AGENT_NUMBER)
    caller.check()
    phone.call.check()

    # The phone rang with the customer's number and name (contact center: who calls).
    [invite] = phone.invites()
    assert user_part(invite.header("From")) == CUSTOMER
    assert (invite.header("From") or "").startswith(f'"{CUSTOMER_NAME}" <sip:')
    # The caller got early media (183 with SDP: the tone, no answer, no charge), then 486.
    statuses = caller.received_statuses()
    assert 183 in statuses and 200 not in statuses and statuses[-1] == 486
    early = caller.received(183)[0]
    assert early.header("Content-Type") == "application/sdp" and "m=audio" in early.body
    record = finished_call(site, leg)
    busy = [e for e in site.watcher.events if e.name == "CHANNEL_EXECUTE" and e.uuid == leg
            and e.get("Application") == "playback"]
    assert busy and BUSY_TONE in (busy[0].get("Application-Data") or "")
    assert (record["route_type"], record["outcome"], record["hangup_cause"]) == (
        "agent", "busy_tone", "USER_BUSY")
    assert daemon.rows("SELECT user_id, result, cause FROM attempts") == [
        {"user_id": "bob", "result": result, "cause": cause}]


# -- 3: the agent is logged out: the caller talks to the voicemail, the mail arrives ---------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_sip_caller_leaves_a_voicemail_that_arrives_by_mail(site, tmp_path, smtp):
    daemon = site.start_daemon(agent_config(tmp_path, SIP_EXTENSIONS[1], smtp.port))
    # bob is not logged in: his phone is never rung, the caller gets his voicemail.
    caller = site.caller("caller", AGENT_NUMBER, [Pause(800), Speak(), Pause(7500)], end="bye",
                         display_name="O'Brien, Jörg")
    leg = sofia_leg(site, AGENT_NUMBER)
    caller.check()

    record = finished_call(site, leg)
    assert (record["outcome"], record["route_type"]) == ("voicemail", "agent")
    [message] = daemon.wait_for("SELECT * FROM voicemails")
    assert (message["user_id"], message["call_uuid"], message["caller_name"]) == (
        "bob", leg, "O'Brien, Jörg")
    recording = Path(message["path"])
    seconds, loudness = audio_of(recording)
    assert seconds >= 2 and message["duration_s"] >= 2
    assert loudness > 300, f"the recording is silence (RMS {loudness:.0f})"

    wait_for(lambda: smtp.handler.messages, 30, "the mail")
    assert smtp.handler.recipients == [["bob@example.test"]]
    mail = message_from_bytes(smtp.handler.messages[0], policy=policy.default)
    attachments = [part for part in mail.walk() if part.get_filename()]
    assert len(attachments) == 1 and attachments[0].get_content_type() == "audio/wav"
    assert attachments[0].get_payload(decode=True) == recording.read_bytes()
    assert "O'Brien, Jörg" in str(mail["Subject"])


def audio_of(path: Path) -> tuple[float, float]:
    """(seconds, RMS of the 16-bit samples) of a WAV recording."""
    with wave.open(str(path), "rb") as audio:
        assert audio.getsampwidth() == 2
        frames = audio.readframes(audio.getnframes())
        seconds = audio.getnframes() / audio.getframerate()
    samples = array.array("h", frames)
    if not samples:
        return seconds, 0.0
    return seconds, (sum(s * s for s in samples) / len(samples)) ** 0.5


# -- 4: hostile SIP callers (issue 11 point 3) ------------------------------------------------


def hostile_text(marker: Path) -> str:
    """Everything at once: an expansion that would run a command, a lone brace, the
    separators of originate blocks and arrays, quotes, a backslash and a line break."""
    return (f"${{system(touch {marker})}} }} a,b 'O'Brien' ^^:x \"q\" back\\slash\n"
            "next line")


def user_part_of(text: str) -> str:
    """``text`` as a SIP user part: what the grammar does not allow is %-escaped."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "-_.!~*'()&=+$,;?/")
    return "".join(c if c in allowed else "".join(f"%{b:02X}" for b in c.encode())
                   for c in text)


HOSTILE_CASES = ["display_name", "user_part", "two_kilobytes", "display_name_hotline"]


def hostile_caller(case: str, marker: Path) -> tuple[str, str]:
    """(display name, user part) of the caller of ``case``."""
    if case.startswith("display_name"):
        return hostile_text(marker), CUSTOMER
    if case == "user_part":
        return CUSTOMER_NAME, user_part_of(hostile_text(marker).replace("\n", " "))
    return (hostile_text(marker) * 40)[:2048], CUSTOMER


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_a_hostile_sip_caller_is_routed_as_usual_and_nothing_runs(site, tmp_path, case):
    marker = tmp_path / f"pwned-{case}"
    display, user = hostile_caller(case, marker)
    if case.endswith("hotline"):  # the on-call flow: the name goes into an originate
        user_id, phone_user, number = "anna", SIP_NUMBERS[2], ROUTING
        daemon = site.start_daemon(hotline_config(phone_user))
        steps: list[Step] = [Pause(1200), Dtmf("1"), Pause(1500), Dtmf("1")]
        talk_ms, route_type = 4000, "call_routing"
    else:  # an agent number: the switch copies the caller's ID to the bridged leg
        user_id, phone_user, number = "bob", SIP_EXTENSIONS[3 + HOSTILE_CASES.index(case)], \
            AGENT_NUMBER
        daemon = site.start_daemon(agent_config(tmp_path, phone_user))
        login(daemon, "bob")
        steps, talk_ms, route_type = [], 800, "agent"
    phone = site.phone(user_id, phone_user, answer=200, talk_ms=talk_ms)
    caller = site.caller("caller", number, steps, end="wait_bye", display_name=display,
                         user=user)
    leg = sofia_leg(site, number)
    caller.check()
    phone.call.check()

    record = finished_call(site, leg)
    assert (record["route_type"], record["outcome"], record["bridged_to_user"]) == (
        route_type, "bridged", user_id)
    [invite] = phone.invites()
    assert invite.header("From")  # the phone rang, with whatever the switch made of it
    assert not marker.exists()
    # What the switch read from the SIP headers reached the database as text (cleaned:
    # one line, at most 128 characters).
    event = site.watcher.first("CHANNEL_CREATE", **{"Unique-ID": leg})
    assert event is not None
    shown = (event.get("Caller-Caller-ID-Name"), event.get("Caller-Caller-ID-Number"))
    assert (record["caller_name"], record["caller_number"]) == tuple(
        clean_caller_text(text) for text in shown)
    if case.startswith("display_name"):
        # mod_sofia itself turns ${ from SIP into %{; quoted-pairs and the line break stay.
        assert (shown[0] or "").startswith("%{system(touch")
        assert "\r\n" in (shown[0] or "")


def test_hostile_digits_by_sip_info_are_only_keys(site, tmp_path):
    """SIP INFO carries any text after ``Signal=``; the switch makes one key of it (atoi or
    the first of ``*#A-D``): the menu sees ``0`` (invalid) and then ``1``."""
    marker = tmp_path / "pwned-info"
    daemon = site.start_daemon(hotline_config(SIP_NUMBERS[1]))
    phone = site.phone("anna", SIP_NUMBERS[1], answer=200, talk_ms=4000)
    steps: list[Step] = [Pause(2000), InfoDtmf(f"${{system(touch {marker})}}"), Pause(1500),
                         InfoDtmf(f"1${{system(touch {marker})}}'}}^^:,")]
    caller = site.caller("caller", ROUTING, steps, end="wait_bye")
    leg = sofia_leg(site, ROUTING)
    caller.check()
    phone.call.check()

    record = finished_call(site, leg)
    assert (record["outcome"], record["bridged_to_user"]) == ("bridged", "anna")
    incident = daemon.rows("SELECT option_digit, state FROM incidents")
    assert incident == [{"option_digit": "1", "state": "resolved"}]
    assert len(caller.received(200)) == 3  # the INVITE and both INFOs were accepted
    answers = [(line["action"], line["reason"]) for line in daemon.log_lines()
               if line.get("event") == "menu.answered"]
    assert answers == [("repeat", "invalid key"), ("choose", "key 1")]
    assert not marker.exists()


def test_a_hostile_dialled_number_is_refused_cleanly(site, tmp_path):
    """Text where the number goes (Request-URI user part) matches no dialplan extension."""
    marker = tmp_path / "pwned-number"
    site.start_daemon(agent_config(tmp_path, SIP_EXTENSIONS[6]))
    number = user_part_of(f"${{system(touch {marker})}}'^^:,")
    caller = site.caller("caller", number, [], end="rejected", finals=(404, 484, 403))
    caller.check()
    assert caller.received_statuses()[-1] in (404, 484, 403)
    assert not marker.exists()
