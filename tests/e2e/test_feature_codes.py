"""Agent feature codes end to end: ``*21`` logs in, ``*22`` logs out, ``*23`` records a greeting.

The agent's phone is identified by ``user_name`` (what FreeSWITCH sets for an authenticated
phone); a caller who only claims the agent's extension as caller ID changes nothing. On both
switches, with ``fsrouter run`` as a process; then a call to the agent's number shows that the
presence changed (rung when logged in, voicemail with the recorded greeting when logged out).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from pathlib import Path

import gevent
import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.e2e.test_inbound_routes import AGENT_NUMBER, VOICE, call, finished, sip

pytestmark = pytest.mark.realswitch

CONFIRM = "%(150,50,600)"
REFUSE = "%(150,50,1000)"


@pytest.fixture(params=["real", "sim"])
def switch(request):
    return request.getfixturevalue("real_switch" if request.param == "real" else "sim_switch")


@pytest.fixture
def agent_line(tmp_path, switch):
    watcher = Watcher(switch.esl_endpoint())
    config = {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE},
        "voicemail": {"directory": str(tmp_path / "voicemail"), "silence_seconds": 3},
        "users": {"eva": {"name": "Eva", "extension": "1001", "email": "eva@example.test",
                          "phones": [sip("hangup", 1000, 60)]}},
        "numbers": [{"number": AGENT_NUMBER, "type": "agent", "agent": "eva"}],
    }
    daemon = Daemon(tmp_path, config, switch.esl_endpoint())
    daemon.start()
    switch.route_to(daemon.port)
    yield daemon, switch, watcher
    watcher.close()
    deadline = time.monotonic() + 5
    while switch.channels() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    assert switch.channels() == []
    assert daemon.stop() == 0, daemon.log()[-3000:]


def dial_code(switch, watcher, code: str, **identity: str) -> tuple[str, str]:
    """The agent's phone dials ``code``; returns (phone leg, the daemon's leg)."""
    phone = str(uuidlib.uuid4())
    variables = {"origination_caller_id_number": "1001", **identity}
    switch.originate(f"loopback/{code}/public", variables=variables, uuid=phone)
    b_leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=phone).uuid
    return phone, b_leg


def tones(watcher: Watcher, b_leg: str) -> str:
    return " ".join(e.get("Application-Data") or "" for e in watcher.events
                    if e.name == "CHANNEL_EXECUTE" and e.uuid == b_leg
                    and e.get("Application") == "playback")


def presence(daemon: Daemon) -> str | None:
    rows = daemon.rows("SELECT state FROM agent_presence WHERE user_id = 'eva'")
    return rows[0]["state"] if rows else None


def test_login_and_logout_by_phone_change_where_calls_go(agent_line):
    daemon, switch, watcher = agent_line
    _, b_leg = dial_code(switch, watcher, "*21", user_name="1001")
    watcher.wait("CHANNEL_HANGUP_COMPLETE", **{"Unique-ID": b_leg})
    assert CONFIRM in tones(watcher, b_leg)
    assert presence(daemon) == "logged_in"
    # The code was dialled from eva's own phone: she is free again once the daemon's watcher
    # has seen that call end (it may trail the hang-up this test saw on its own connection).
    daemon.wait_for("SELECT id FROM agent_presence WHERE user_id = 'eva' AND NOT busy")
    _, first = call(switch, watcher, AGENT_NUMBER)
    assert finished(daemon, watcher, first)["outcome"] == "bridged"

    _, b_leg = dial_code(switch, watcher, "*22", user_name="1001")
    watcher.wait("CHANNEL_HANGUP_COMPLETE", **{"Unique-ID": b_leg})
    assert presence(daemon) == "logged_out"
    # Both changes are in the audit trail as the agent's own, with before and after.
    trail = daemon.rows("SELECT kind, who, subject, before, after FROM audit_log ORDER BY id")
    assert [(e["kind"], e["who"], e["subject"], e["before"], e["after"]) for e in trail] == [
        ("agent.login", "phone:eva", "eva", '{"state": "logged_out"}',
         '{"state": "logged_in"}'),
        ("agent.logout", "phone:eva", "eva", '{"state": "logged_in"}',
         '{"state": "logged_out"}')]


def test_a_caller_id_claiming_the_extension_is_refused(agent_line):
    daemon, switch, watcher = agent_line
    _, b_leg = dial_code(switch, watcher, "*21")  # caller ID 1001, but no authenticated user
    watcher.wait("CHANNEL_HANGUP_COMPLETE", **{"Unique-ID": b_leg})
    assert REFUSE in tones(watcher, b_leg)
    assert presence(daemon) in (None, "logged_out")  # the watcher may have made the row


def test_a_greeting_recorded_by_phone_is_played_to_callers(agent_line, tmp_path):
    daemon, switch, watcher = agent_line
    phone, b_leg = dial_code(switch, watcher, "*23", user_name="1001")
    watcher.wait("CHANNEL_EXECUTE", Application="record", **{"Unique-ID": b_leg})
    assert switch.api(f"uuid_broadcast {phone} {VOICE} aleg").startswith("+OK")
    gevent.sleep(2.0)
    switch.send_dtmf(phone, "#")  # ends the recording
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=20, **{"Unique-ID": b_leg})
    greeting = tmp_path / "voicemail" / "greetings" / "eva.wav"
    assert greeting.is_file() and greeting.stat().st_size > 1000
    assert CONFIRM in tones(watcher, b_leg)
    # Eva is logged out: her callers hear the greeting she recorded.
    caller, second = call(switch, watcher, AGENT_NUMBER)
    watcher.wait("CHANNEL_EXECUTE", timeout=20, Application="record", **{"Unique-ID": second})
    switch.hangup(caller)
    finished(daemon, watcher, second)
    assert str(Path(greeting)) in tones(watcher, second)
