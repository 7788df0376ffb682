"""Contact-center inbound routes end to end: ``fsrouter run`` as a process, on both switches.

Agent, queue, custom and unassigned numbers; busy tone versus voicemail by presence; 2-way
callbacks; run-time route changes; feature codes. Presence, assignments and 2-way mappings
are written into the daemon's database from the test (as the CLI and the event watcher do),
and every call is checked on the switch (events) and in the database (rows).
"""

from __future__ import annotations

import time
import uuid as uuidlib
import wave
from datetime import UTC, datetime, timedelta

import gevent
import pytest

from fsrouter.store.queries import Assignment
from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon

pytestmark = pytest.mark.realswitch

AGENT_NUMBER = "+493040003000"
QUEUE_NUMBER = "+493040003100"
CUSTOM_NUMBER = "+493040003200"
SPARE_NUMBER = "+493040003300"  # in no YAML entry: served only by a run-time assignment
CUSTOMER = "+4915112345678"
HOLD = "tone_stream://%(1000,0,350);loops=-1"
GREETING = "tone_stream://%(300,0,500)"
VOICE = "tone_stream://%(900,100,350);loops=-1"


def sip(behaviour: str, ms: int, n: int) -> dict[str, str]:
    """A SIP phone that is a scripted loopback phone of the test switch."""
    return {"type": "sip", "dial_string": f"loopback/{phone_number(behaviour, ms, n)}/agents"}


def inbound_config(tmp_path, agents: dict[str, dict[str, str]], **queue: object) -> dict:
    users = {uid: {"name": uid.title(), "phones": [phone], "email": f"{uid}@example.test",
                   "language": "en", "voicemail": {"greeting": GREETING}}
             for uid, phone in agents.items()}
    first = next(iter(agents))
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en", "country": "DE"},
        "voicemail": {"directory": str(tmp_path / "voicemail"), "silence_seconds": 3},
        "users": users,
        "queues": {"sales": {"hold_music": HOLD, "agents": list(agents), "ring_timeout": 5,
                             "max_wait": 10, **queue}},
        "numbers": [
            {"number": AGENT_NUMBER, "type": "agent", "agent": first, "ring_timeout": 5,
             "two_way": True},
            {"number": QUEUE_NUMBER, "type": "queue", "queue": "sales", "two_way": True},
            {"number": CUSTOM_NUMBER, "type": "custom",
             "dial_string": agents[first]["dial_string"]},
        ],
    }


@pytest.fixture(params=["real", "sim"])
def switch(request):
    return request.getfixturevalue("real_switch" if request.param == "real" else "sim_switch")


@pytest.fixture
def center(tmp_path, switch):
    daemons: list[Daemon] = []
    watcher = Watcher(switch.esl_endpoint())

    def start(config: dict) -> Daemon:
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
        assert daemon.rows("SELECT id FROM attempts WHERE ended_at IS NULL") == []
        assert daemon.stop() == 0, daemon.log()[-3000:]


def login(daemon: Daemon, *users: str, busy: bool = False) -> None:
    with daemon.store() as queries:
        for user in users:
            queries.set_presence(user, datetime.now(UTC), state="logged_in", busy=busy)


def call(switch, watcher, number: str, name: str = "Müller, Jörg",
         caller: str = CUSTOMER) -> tuple[str, str]:
    """Place a call; returns (caller uuid, the daemon's leg uuid)."""
    caller_uuid = str(uuidlib.uuid4())
    switch.place_call(number, caller, name, uuid=caller_uuid)
    b_leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller_uuid).uuid
    return caller_uuid, b_leg


def finished(daemon: Daemon, watcher: Watcher, b_leg: str, timeout: float = 40) -> dict:
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=timeout, **{"Unique-ID": b_leg})
    return daemon.wait_for("SELECT * FROM call_records WHERE call_uuid = ? AND ended_at "
                           "IS NOT NULL", b_leg)[0]


def played(watcher: Watcher, b_leg: str) -> list[str]:
    return [e.get("Application-Data") or "" for e in watcher.events
            if e.name == "CHANNEL_EXECUTE" and e.uuid == b_leg
            and e.get("Application") == "playback"]


def test_a_free_agent_is_rung_and_sees_the_caller_intact(center, tmp_path):
    start, switch, watcher = center
    agents = {"alice": sip("hangup", 1500, 1)}
    daemon = start(inbound_config(tmp_path, agents))
    login(daemon, "alice")
    _, b_leg = call(switch, watcher, AGENT_NUMBER, name="Müller, Jörg")
    record = finished(daemon, watcher, b_leg)
    assert (record["route_type"], record["outcome"], record["bridged_to_user"]) == (
        "agent", "bridged", "alice")
    legs = watcher.legs_to(phone_number("hangup", 1500, 1))
    assert len(legs) == 1
    assert legs[0].get("Caller-Caller-ID-Name") == "Müller, Jörg"
    assert legs[0].get("Caller-Caller-ID-Number") == CUSTOMER
    attempts = daemon.rows("SELECT user_id, result FROM attempts")
    assert attempts == [{"user_id": "alice", "result": "answered"}]


def test_an_agent_who_does_not_answer_gives_the_busy_tone(center, tmp_path):
    start, switch, watcher = center
    daemon = start(inbound_config(tmp_path, {"alice": sip("noanswer", 0, 2)}))
    login(daemon, "alice")
    _, b_leg = call(switch, watcher, AGENT_NUMBER)
    record = finished(daemon, watcher, b_leg)
    assert (record["outcome"], record["hangup_cause"]) == ("busy_tone", "USER_BUSY")
    assert any("%(480,480,425)" in data for data in played(watcher, b_leg))
    assert daemon.rows("SELECT result FROM attempts") == [{"result": "no_answer"}]


def test_a_busy_agent_gives_the_busy_tone_without_ringing(center, tmp_path):
    start, switch, watcher = center
    daemon = start(inbound_config(tmp_path, {"alice": sip("answer", 100, 3)}))
    # The daemon's agent watcher owns the busy flags: it clears stale ones when it (re)syncs
    # with the switch, so mark alice busy only after that first sync.
    daemon.wait_logged("agents.resynced")
    login(daemon, "alice", busy=True)
    _, b_leg = call(switch, watcher, AGENT_NUMBER)
    record = finished(daemon, watcher, b_leg)
    assert record["outcome"] == "busy_tone"
    assert watcher.legs_to(phone_number("answer", 100, 3)) == []
    assert daemon.rows("SELECT id FROM attempts") == []


def test_a_logged_out_agent_gets_a_voicemail(center, tmp_path):
    start, switch, watcher = center
    daemon = start(inbound_config(tmp_path, {"alice": sip("answer", 100, 4)}))
    caller, b_leg = call(switch, watcher, AGENT_NUMBER, name="O'Brien & Söhne")
    watcher.wait("CHANNEL_EXECUTE", timeout=10, Application="record", **{"Unique-ID": b_leg})
    reply = switch.api(f"uuid_broadcast {caller} {VOICE} aleg")
    assert reply.startswith("+OK"), reply
    gevent.sleep(2.5)
    switch.hangup(caller)
    record = finished(daemon, watcher, b_leg)
    assert record["outcome"] == "voicemail"
    [message] = daemon.wait_for("SELECT * FROM voicemails")
    assert (message["user_id"], message["caller_name"], message["call_uuid"]) == (
        "alice", "O'Brien & Söhne", b_leg)
    assert message["path"].startswith(str(tmp_path / "voicemail" / "alice"))
    with wave.open(message["path"], "rb") as audio:
        assert audio.getnframes() > 0
    assert message["duration_s"] >= 1
    assert GREETING in played(watcher, b_leg)


def test_the_queue_rings_the_longest_idle_agent_first(center, tmp_path):
    start, switch, watcher = center
    agents = {"bob": sip("hangup", 1500, 5), "anna": sip("noanswer", 0, 6)}
    daemon = start(inbound_config(tmp_path, agents))
    login(daemon, "anna")
    gevent.sleep(0.05)
    login(daemon, "bob")  # bob logged in later: anna has been idle longer
    _, b_leg = call(switch, watcher, QUEUE_NUMBER, name="Wood's Homes")
    record = finished(daemon, watcher, b_leg)
    assert (record["route_type"], record["outcome"], record["bridged_to_user"]) == (
        "queue", "bridged", "bob")
    attempts = daemon.rows("SELECT user_id, result FROM attempts ORDER BY seq")
    assert attempts == [{"user_id": "anna", "result": "no_answer"},
                        {"user_id": "bob", "result": "answered"}]
    bob_leg = watcher.legs_to(phone_number("hangup", 1500, 5))[0]
    assert bob_leg.get("Caller-Caller-ID-Name") == "Wood's Homes"
    assert bob_leg.get("Caller-Caller-ID-Number") == CUSTOMER
    fifo = watcher.first("CHANNEL_EXECUTE", Application="fifo", **{"Unique-ID": b_leg})
    assert fifo is not None and fifo.get("Application-Data") == f"sales in undef {HOLD}"


def test_ring_all_rings_every_free_agent_at_once(center, tmp_path):
    start, switch, watcher = center
    agents = {"anna": sip("noanswer", 0, 7), "bob": sip("hangup", 1500, 8),
              "carl": sip("answer", 100, 9)}
    daemon = start(inbound_config(tmp_path, agents, strategy="ring_all"))
    login(daemon, "anna", "bob")  # carl is logged out: not rung
    _, b_leg = call(switch, watcher, QUEUE_NUMBER)
    record = finished(daemon, watcher, b_leg)
    assert (record["outcome"], record["bridged_to_user"]) == ("bridged", "bob")
    results = {r["user_id"]: r["result"] for r in daemon.rows("SELECT * FROM attempts")}
    assert results == {"anna": "cancelled", "bob": "answered"}
    assert watcher.legs_to(phone_number("answer", 100, 9)) == []


def test_a_queue_without_free_agents_ends_in_its_fallback(center, tmp_path):
    start, switch, watcher = center
    agents = {"anna": sip("answer", 100, 10)}
    daemon = start(inbound_config(tmp_path, agents, fallback="message:" + GREETING))
    started = time.monotonic()
    _, b_leg = call(switch, watcher, QUEUE_NUMBER)
    record = finished(daemon, watcher, b_leg)
    assert record["outcome"] == "queue_timeout"
    assert time.monotonic() - started >= 9  # max_wait 10 s
    assert GREETING in played(watcher, b_leg)
    assert daemon.rows("SELECT id FROM attempts") == []


def test_a_callback_reaches_the_newest_agent_who_called(center, tmp_path):
    start, switch, watcher = center
    agents = {"anna": sip("noanswer", 0, 11), "bob": sip("hangup", 1000, 12),
              "carl": sip("noanswer", 0, 13)}
    daemon = start(inbound_config(tmp_path, agents))
    login(daemon, "anna", "bob", "carl")
    now = datetime.now(UTC)
    with daemon.store() as queries:
        queries.remember_two_way(CUSTOMER, "carl", AGENT_NUMBER, now - timedelta(hours=1),
                                 timedelta(days=30))
        queries.remember_two_way(CUSTOMER, "bob", QUEUE_NUMBER, now, timedelta(days=30))
    # The queue number would ring anna first; the customer goes to bob, who called last.
    _, b_leg = call(switch, watcher, QUEUE_NUMBER, caller="015112345678")
    record = finished(daemon, watcher, b_leg)
    assert (record["outcome"], record["bridged_to_user"]) == ("bridged", "bob")
    assert [r["user_id"] for r in daemon.rows("SELECT user_id FROM attempts")] == ["bob"]


def test_a_route_change_applies_to_the_next_call_without_restart(center, tmp_path):
    start, switch, watcher = center
    agents = {"anna": sip("hangup", 1000, 14), "bob": sip("hangup", 1000, 15)}
    daemon = start(inbound_config(tmp_path, agents))
    login(daemon, "anna", "bob")
    with daemon.store() as queries:
        queries.set_assignments([Assignment(AGENT_NUMBER, "agent", "bob"),
                                 Assignment(SPARE_NUMBER, "unassigned")], "test",
                                datetime.now(UTC))
    _, b_leg = call(switch, watcher, AGENT_NUMBER)
    assert finished(daemon, watcher, b_leg)["bridged_to_user"] == "bob"
    _, spare = call(switch, watcher, SPARE_NUMBER)
    assert finished(daemon, watcher, spare)["outcome"] == "unassigned"
    with daemon.store() as queries:
        queries.reset_assignments([AGENT_NUMBER])
        queries.set_assignments([Assignment(SPARE_NUMBER, "agent", "anna")], "test",
                                datetime.now(UTC))
    _, again = call(switch, watcher, AGENT_NUMBER)
    assert finished(daemon, watcher, again)["bridged_to_user"] == "anna"
    # Anna is free again once the watcher has seen her leg end (it may trail the record).
    daemon.wait_for("SELECT id FROM agent_presence WHERE user_id = 'anna' AND NOT busy")
    _, spare = call(switch, watcher, SPARE_NUMBER)
    assert finished(daemon, watcher, spare)["bridged_to_user"] == "anna"


def test_a_custom_dial_string_is_bridged(center, tmp_path):
    start, switch, watcher = center
    daemon = start(inbound_config(tmp_path, {"anna": sip("hangup", 1000, 16)}))
    _, b_leg = call(switch, watcher, CUSTOM_NUMBER)
    record = finished(daemon, watcher, b_leg)
    assert (record["route_type"], record["outcome"]) == ("custom", "bridged")
    assert len(watcher.legs_to(phone_number("hangup", 1000, 16))) == 1
