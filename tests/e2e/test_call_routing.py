"""The on-call hotline end to end: ``fsrouter run`` as a process, on both switches.

Each test places a caller into the switch, which hands the call to the daemon over a real
outbound socket; the daemon plays the menu, queues the caller in mod_fifo and rings phones.
The test then checks what the switch saw (events on its own event connection) and what the
daemon's SQLite database holds.
"""

from __future__ import annotations

import time
import uuid as uuidlib

import gevent
import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon

pytestmark = pytest.mark.realswitch

ROUTING = "+493040001000"
MENU_TONE = "tone_stream://%(300,200,440);loops=2"
HOLD = "tone_stream://%(1000,0,350);loops=-1"


def hotline_config(phones: dict[str, str], ring_timeout: int = 5,
                   press_to_accept: bool = False) -> dict:
    accept = {"accept_prompt": "tone_stream://%(200,0,800)", "accept_timeout": 2}
    users = {
        uid: {"name": uid.title(), "phones": [{"type": "mobile", "number": number}]}
        for uid, number in phones.items()
    }
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en",
                     "voicemail_domain": "fsrouter.test"},
        "users": users,
        "policies": {"db": {"levels": [{"targets": [{"user": u} for u in phones],
                                        "ring_timeout": ring_timeout}],
                            "press_to_accept": press_to_accept, **accept}},
        "numbers": [{
            "number": ROUTING, "type": "call_routing", "skip_menu_if_single": False,
            "menu": {"tries": 2, "timeout_s": 2, "invalid_prompt": "tone_stream://%(200,0,300)"},
            "options": [
                {"digit": 1, "label": "Datenbank", "prompt": MENU_TONE, "policy": "db",
                 "hold_music": HOLD},
                {"digit": 2, "label": "Netzwerk", "prompt": MENU_TONE, "policy": "db",
                 "hold_music": HOLD},
            ],
        }],
    }


@pytest.fixture(params=["real", "sim"])
def switch(request):
    return request.getfixturevalue("real_switch" if request.param == "real" else "sim_switch")


@pytest.fixture
def hotline(tmp_path, switch):
    daemons = []
    watcher = Watcher(switch.esl_endpoint())

    def start(config):
        daemon = Daemon(tmp_path, config, switch.esl_endpoint())
        daemon.start()
        daemons.append(daemon)
        switch.route_to(daemon.port)
        return daemon

    yield start, switch, watcher
    watcher.client.close()
    # Nothing left behind: no channel still up (no leg ringing), every call record final.
    deadline = time.monotonic() + 5
    while switch.channels() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    assert switch.channels() == []
    for daemon in daemons:
        assert daemon.rows("SELECT call_uuid FROM call_records WHERE ended_at IS NULL") == []
        assert daemon.rows("SELECT id FROM attempts WHERE ended_at IS NULL") == []
        assert daemon.stop() == 0, daemon.log()[-3000:]


def call_in(switch, watcher, digit=None, caller_name="Erika Mustermann"):
    caller = str(uuidlib.uuid4())
    switch.place_call(ROUTING, "+4915112345678", caller_name, uuid=caller)
    b_leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
    if digit is not None:
        watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": b_leg,
                                           "Application": "play_and_get_digits"})
        gevent.sleep(0.3)
        switch.send_dtmf(caller, digit)
    return caller, b_leg


def test_escalation_to_the_third_person(hotline):
    start, switch, watcher = hotline
    phones = {"anna": phone_number("noanswer", 0, 1), "bernd": phone_number("busy", 0, 2),
              "carla": phone_number("hangup", 1500, 3)}
    daemon = start(hotline_config(phones))
    caller, b_leg = call_in(switch, watcher, digit="1")
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=40, **{"Unique-ID": b_leg})
    call = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert call["outcome"] == "bridged"
    assert call["bridged_to_user"] == "carla"
    incident = daemon.rows("SELECT * FROM incidents")[0]
    assert (incident["state"], incident["accepted_by"], incident["option_digit"]) == (
        "resolved", "carla", "1")
    attempts = daemon.rows("SELECT user_id, result, cause FROM attempts ORDER BY seq")
    assert [(a["user_id"], a["result"]) for a in attempts] == [
        ("anna", "no_answer"), ("bernd", "busy"), ("carla", "answered")]
    for number in phones.values():
        legs = watcher.legs_to(number)
        assert legs, f"no leg to {number}"
        assert legs[0].get("Caller-Caller-ID-Number") == ROUTING
    fifo = watcher.first("CHANNEL_EXECUTE", **{"Unique-ID": b_leg, "Application": "fifo"})
    assert fifo.get("Application-Data").endswith(f"in undef {HOLD}")


def test_hangup_in_menu_writes_a_call_record_and_no_incident(hotline):
    start, switch, watcher = hotline
    daemon = start(hotline_config({"anna": phone_number("answer", 200, 1)}))
    caller, b_leg = call_in(switch, watcher)
    watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": b_leg, "Application": "play_and_get_digits"})
    switch.hangup(b_leg)  # as a SIP BYE: the routed leg itself (see scenario._drive_caller)
    call = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert call["outcome"] == "hangup_in_menu"
    assert call["incident_id"] is None
    assert daemon.rows("SELECT * FROM incidents") == []


def test_caller_hangs_up_while_a_phone_rings(hotline):
    start, switch, watcher = hotline
    ringing = phone_number("noanswer", 0, 1)
    daemon = start(hotline_config({"anna": ringing}, ring_timeout=30))
    caller, b_leg = call_in(switch, watcher, digit="2")
    leg = watcher.wait("CHANNEL_CREATE", timeout=20, **{"Channel-Name": f"loopback/{ringing}-a"})
    switch.hangup(b_leg)
    # The ringing leg is killed at once, not after its 30 s ring timeout.
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=5, **{"Unique-ID": leg.uuid})
    call = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert call["outcome"] == "abandoned_in_queue"
    incident = daemon.rows("SELECT * FROM incidents")[0]
    # Marked caller-abandoned; it stays open for follow-up (the option does not resolve it).
    assert (incident["state"], incident["outcome_reason"]) == ("open", "caller_abandoned")
    attempt = daemon.rows("SELECT * FROM attempts")[0]
    assert attempt["result"] == "cancelled" and attempt["ended_at"] is not None


def test_nobody_answers_then_the_fallback_plays(hotline):
    start, switch, watcher = hotline
    daemon = start(hotline_config({"anna": phone_number("busy", 0, 1),
                                   "bernd": phone_number("gone", 0, 2)}))
    caller, b_leg = call_in(switch, watcher, digit="1")
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=40, **{"Unique-ID": b_leg})
    call = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert call["outcome"] == "no_answer_fallback"
    incident = daemon.rows("SELECT * FROM incidents")[0]
    assert (incident["state"], incident["outcome_reason"]) == ("open", "nobody_answered")
    results = [a["result"] for a in daemon.rows("SELECT result FROM attempts ORDER BY seq")]
    assert results == ["busy", "unreachable"]
    assert watcher.first("CHANNEL_EXECUTE", **{"Unique-ID": b_leg, "Application": "playback"})


def test_press_to_accept_skips_a_phone_that_only_answers(hotline):
    start, switch, watcher = hotline
    phones = {"anna": phone_number("answer", 200, 1), "bernd": phone_number("press", 200, 2)}
    daemon = start(hotline_config(phones, ring_timeout=6, press_to_accept=True))
    caller, b_leg = call_in(switch, watcher, digit="1")
    watcher.wait("CHANNEL_BRIDGE", timeout=30, **{"Bridge-B-Unique-ID": b_leg})
    switch.hangup(b_leg)
    call = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert (call["outcome"], call["bridged_to_user"]) == ("bridged", "bernd")
    attempts = daemon.rows("SELECT user_id, result FROM attempts ORDER BY seq")
    # Answering without the key is no answer: the switch lets that leg ring out (NO_ANSWER).
    assert [(a["user_id"], a["result"]) for a in attempts] == [
        ("anna", "no_answer"), ("bernd", "accepted")]
    incident = daemon.rows("SELECT * FROM incidents")[0]
    assert (incident["state"], incident["accepted_by"]) == ("resolved", "bernd")


def test_hostile_caller_name_reaches_the_phone_inert(hotline, tmp_path):
    start, switch, watcher = hotline
    marker = tmp_path / "pwned"
    name = f"${{system(touch {marker})}} O'Brien, Jörg ^^:x"
    phones = {"anna": phone_number("hangup", 800, 1)}
    daemon = start(hotline_config(phones))
    caller, b_leg = call_in(switch, watcher, digit="1", caller_name=name)
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=30, **{"Unique-ID": b_leg})
    call = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert call["outcome"] == "bridged"
    assert call["caller_name"] == name
    leg = watcher.legs_to(phones["anna"])[0]
    shown = leg.get("Caller-Caller-ID-Name")
    # The phone shows the option and the caller's name; ${ is defused (a full-width dollar),
    # everything else arrives as the caller sent it.
    assert shown == "Datenbank - " + name.replace("${", "\uff04{")
    assert not marker.exists()
