"""The fault matrix (issue 7.1) on the simulator, with the daemon running in this process.

Every case places real calls over loopback TCP, injects one fault at a chosen moment, and
then checks the three things that matter: what the caller got (never silence, never a
queue nobody serves), what the database holds (every call record and attempt final, every
incident closed or open with its reason, nothing written before the fault lost), and that no
leg is left ringing on the switch.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import time

import gevent
import pytest

from fsrouter.calls import dialer
from fsrouter.sim import CallerScript, Faults, Press
from fsrouter.store import StoreError
from fsrouter.testing.phones import phone_number
from tests.notify.servers import HookServer, SmtpServer
from tests.reliability.conftest import (
    AGENT_NUMBER,
    HOTLINE,
    QUEUE_NUMBER,
    VOICEMAIL_NUMBER,
    SimDaemon,
    fill,
    full_config,
    remount,
    sip,
    wait_for,
)

MENU_KEY = [Press("1", 0.3, "menu")]
# (number, step, phone behaviour): where the switch drops the call's socket. "noanswer" keeps
# the leg ringing for the whole ring timeout (5 s), so a leg still up after the drop would
# show; "answer" phones talk until the caller hangs up (2 s after the bridge).
DROPS = [
    (HOTLINE, "after_connect", "noanswer"),
    (HOTLINE, "in_menu", "noanswer"),
    (HOTLINE, "in_queue", "noanswer"),
    (HOTLINE, "agent_ringing", "noanswer"),
    (HOTLINE, "bridged", "answer"),
    (QUEUE_NUMBER, "in_queue", "noanswer"),
    (QUEUE_NUMBER, "agent_ringing", "noanswer"),
    (QUEUE_NUMBER, "bridged", "answer"),
    (AGENT_NUMBER, "agent_ringing", "noanswer"),
    (AGENT_NUMBER, "bridged", "answer"),
]
TALK_S = 2.0


def drop_config(tmp_path, behaviour: str) -> dict:
    ms = 200 if behaviour == "answer" else 0
    return full_config(tmp_path, {"olga": phone_number(behaviour, ms, 21)},
                       agent_phone=sip(behaviour, ms, 22), queue_phone=sip(behaviour, ms, 23))


@pytest.mark.parametrize(("number", "step", "phone"), DROPS,
                         ids=[f"{n[-4:]}-{s}" for n, s, _ in DROPS])
def test_the_switch_drops_the_call_socket(sim_daemon, tmp_path, number, step, phone):
    # The simulator drops at a step; the ``bridge`` app has no such step: drop it by hand.
    by_hand = number == AGENT_NUMBER and step == "bridged"
    run: SimDaemon = sim_daemon(drop_config(tmp_path, phone), speed=1.0,
                                faults=None if by_hand else Faults(drop_outbound_at=step))
    run.login("alice", "bob")
    script = CallerScript(presses=MENU_KEY, hangup_in="bridged", hangup_delay_s=TALK_S)
    record = run.call(number, script=script)
    if by_hand:
        wait_for(lambda: record.bridged_to, 10, "the bridge")
        script.hangup_in = ""
        gevent.spawn_later(TALK_S, run.sim.hangup, run.caller(record), "NORMAL_CLEARING")
        run.caller(record).session.abort()
        record.faults.append("drop_outbound:bridged")
    wait_for(lambda: record.faults, 10, "the socket drop")
    dropped = time.monotonic()
    caller = run.caller(record)
    if step == "bridged":
        # The conversation goes on without us: the caller hangs up when the script says so.
        assert caller.hungup.wait(10)
        assert caller.hangup_cause == "NORMAL_CLEARING"
        assert time.monotonic() - dropped >= TALK_S - 0.2
        assert record.bridged_to
    else:
        # The dialplan's fallback, or the daemon ends a caller left in a queue: at once,
        # long before any ring timeout (5 s) could.
        assert caller.hungup.wait(2.0), "the caller was left waiting"
        assert caller.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
        run.check_nothing_left(timeout=1.0)
    run.check_nothing_left()
    calls = run.rows("SELECT * FROM call_records")
    if step == "after_connect":
        assert calls == []  # the call never reached a flow: the switch's fallback took it
        return
    [call] = calls
    allowed = {"socket_lost", "bridged"} if step == "bridged" else {"socket_lost"}
    assert call["outcome"] in allowed, call
    for incident in run.rows("SELECT * FROM incidents"):
        assert incident["call_uuid"] == call["call_uuid"]
        assert incident["state"] == "resolved" or incident["outcome_reason"] == "socket_lost"
    assert "call.socket_lost" in run.log_events()


def test_a_dropped_socket_cancels_every_ringing_leg_at_once(sim_daemon, tmp_path):
    """All at once: three phones ring when the switch drops the socket; none rings on."""
    people = {f"p{i}": phone_number("noanswer", 0, 30 + i) for i in range(3)}
    config = full_config(tmp_path, people, ring_timeout=20)
    config["policies"]["ops"]["levels"][0]["strategy"] = "all_at_once"
    run = sim_daemon(config, speed=1.0, faults=Faults(drop_outbound_at="agent_ringing"))
    record = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY))
    wait_for(lambda: record.faults, 10, "the socket drop")
    gevent.sleep(0.3)  # all three originates are under way by now
    run.check_nothing_left(timeout=2.0)
    results = [r["result"] for r in run.rows("SELECT result FROM attempts")]
    assert len(results) == 3 and set(results) <= {"failed", "cancelled"}, results


def test_the_event_connection_drops_and_comes_back(sim_daemon, tmp_path):
    """Calls in progress carry on; the daemon reconnects with backoff, subscribes again and
    reconciles: a hang-up it missed while disconnected frees the agent."""
    run = sim_daemon(full_config(tmp_path, agent_phone=sip("answer", 100, 40)), speed=1.0)
    run.login("alice")
    client = run.daemon.parts["switch"]
    talking = run.call(AGENT_NUMBER)
    wait_for(lambda: talking.bridged_to and queries_busy(run, "alice"), 5, "alice busy")
    lost_at = time.monotonic()
    port = run.sim.inbound.port
    run.sim.stop_inbound()
    run.sim.hangup(run.caller(talking))  # while the daemon cannot hear it
    gevent.sleep(0.5)
    run.sim.start_inbound(port=port)
    assert wait_for(lambda: client.connects == 2, 10, "the reconnect")
    assert time.monotonic() - lost_at >= client.backoff_initial  # not hammering the switch
    assert run.wait_ended(talking)["outcome"] == "bridged"  # the call itself was unharmed
    wait_for(lambda: not queries_busy(run, "alice"), 5, "alice free again (resync)")
    # Subscribed again: a new call's events reach the watcher (alice busy, then free).
    second = run.call(AGENT_NUMBER)
    wait_for(lambda: second.bridged_to and queries_busy(run, "alice"), 5,
             "alice busy after the reconnect")
    run.sim.hangup(run.caller(second))
    assert run.wait_ended(second)["outcome"] == "bridged"
    wait_for(lambda: not queries_busy(run, "alice"), 5, "alice free after the reconnect")
    run.check_nothing_left()


def queries_busy(run: SimDaemon, user: str) -> bool:
    rows = run.rows("SELECT busy FROM agent_presence WHERE user_id = ?", user)
    return bool(rows and rows[0]["busy"])


def test_the_switch_restarts(sim_daemon, tmp_path):
    """Calls in the menu, in the queue while a phone rings, and bridged when the switch dies;
    every record is closed, and a call after the restart is routed within 5 s."""
    people = {"olga": phone_number("noanswer", 0, 41)}
    run = sim_daemon(full_config(tmp_path, people, ring_timeout=30,
                                 queue_phone=sip("answer", 100, 42)), speed=1.0)
    run.login("bob")
    in_menu = run.call(HOTLINE)  # never presses a key
    ringing = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY))
    bridged = run.call(QUEUE_NUMBER)
    wait_for(lambda: bridged.bridged_to and ringing.agent_legs, 10, "calls in every state")
    port = run.crash_switch()
    gevent.sleep(1.0)
    run.start_switch(port)
    restarted = time.monotonic()
    outcomes = {r["call_uuid"]: r["outcome"] for r in run.wait_rows(
        "SELECT * FROM call_records WHERE ended_at IS NOT NULL", timeout=10)}
    wait_for(lambda: len(run.rows("SELECT id FROM call_records WHERE ended_at IS NOT NULL"))
             == 3, 10, "every record closed")
    outcomes = {r["call_uuid"]: r["outcome"] for r in run.rows("SELECT * FROM call_records")}
    # The switch itself is gone (its event connection too): switch_lost, not socket_lost.
    assert outcomes[in_menu.caller_uuid] == "switch_lost"
    assert outcomes[ringing.caller_uuid] == "switch_lost"
    assert outcomes[bridged.caller_uuid] in ("bridged", "switch_lost")
    assert run.open_rows() == []
    # Routed again once the switch is back: the event connection is up and calls flow.
    after = run.call(QUEUE_NUMBER, script=CallerScript(hangup_in="bridged",
                                                       hangup_delay_s=0.5))
    assert run.wait_ended(after)["outcome"] == "bridged"
    assert run.caller(after).hangup_cause == "NORMAL_CLEARING"
    wait_for(lambda: run.daemon.parts["switch"].connected, 5, "event connection back")
    assert time.monotonic() - restarted < 5
    run.check_nothing_left()


@pytest.fixture
def short_job_grace(monkeypatch):
    """A missing BACKGROUND_JOB counts as failed 1 s after the ring timeout (not 15 s)."""
    monkeypatch.setattr(dialer, "JOB_GRACE", 1.0)


def test_a_background_job_that_never_comes_fails_the_attempt_and_rings_on(
        sim_daemon, tmp_path, short_job_grace):
    people = {"first": phone_number("noanswer", 0, 43), "second": phone_number("noanswer", 0, 44)}
    run = sim_daemon(full_config(tmp_path, people), speed=10.0,
                     faults=Faults(swallow_background_job=True))
    record = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY))
    call = run.wait_ended(record, timeout=40)
    assert "swallow_background_job" in run.sim.faults.fired
    attempts = run.rows("SELECT user_id, result, cause FROM attempts ORDER BY seq")
    assert [(a["user_id"], a["result"]) for a in attempts] == [("first", "failed"),
                                                               ("second", "failed")]
    assert call["outcome"] == "no_answer_fallback"
    [incident] = run.rows("SELECT * FROM incidents")
    assert incident["outcome_reason"] == "nobody_answered"
    run.check_nothing_left()


def test_a_lost_background_job_does_not_cut_an_answered_call(sim_daemon, tmp_path,
                                                             short_job_grace):
    """The phone answered and mod_fifo bridged it, but the job result never came."""
    run = sim_daemon(full_config(tmp_path, {"olga": phone_number("answer", 100, 45)},
                                 ring_timeout=5), speed=1.0,
                     faults=Faults(swallow_background_job=True))
    record = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY, hangup_in="bridged",
                                                   hangup_delay_s=7.0))
    call = run.wait_ended(record, timeout=20)
    # The caller hung up after talking 7 s, longer than ring timeout + grace (6 s): the
    # phone's leg was never cancelled under the conversation.
    assert [leg.hangup_cause for leg in record.agent_legs] == ["NORMAL_CLEARING"]
    assert call["outcome"] == "bridged" and call["bridged_to_user"] == "olga"
    assert [a["result"] for a in run.rows("SELECT result FROM attempts")] == ["answered"]
    [incident] = run.rows("SELECT * FROM incidents")
    assert incident["state"] == "resolved" and incident["accepted_by"] == "olga"
    run.check_nothing_left()


# -- the store --------------------------------------------------------------------------------

LOCK_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_the_database_locked_for_5_s_delays_calls_but_loses_nothing(sim_daemon, tmp_path):
    """Another process holds SQLite's write lock for 5 s (the busy timeout): calls wait for
    it (the whole daemon does: the busy handler blocks the hub) and then go through."""
    run = sim_daemon(full_config(tmp_path), speed=10.0)
    run.login("bob")
    before = run.call(QUEUE_NUMBER)
    run.wait_ended(before)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run.db_path), "5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        calls = [run.call(HOTLINE, script=CallerScript(presses=MENU_KEY)),
                 run.call(QUEUE_NUMBER)]
        records = [run.wait_ended(record, timeout=30) for record in calls]
    finally:
        assert holder.wait(timeout=30) == 0
    assert time.monotonic() - locked_at >= 4.5  # they really waited for the lock
    assert [r["outcome"] for r in records] == ["bridged", "bridged"]
    assert len(run.rows("SELECT id FROM call_records")) == 3
    run.check_nothing_left()


def test_a_full_disk_refuses_new_calls_and_finishes_the_rows_later(sim_daemon, tmp_path,
                                                                  tiny_fs):
    """Full disk: a call in progress keeps its (deferred) closing writes, which land once
    space is back; a new call is refused at once with 503, never left in silence."""
    people = {"olga": phone_number("noanswer", 0, 52), "otto": phone_number("answer", 100, 53)}
    run = sim_daemon(full_config(tmp_path, people), speed=10.0, db_dir=tiny_fs)
    run.login("bob")
    done = run.call(QUEUE_NUMBER)
    run.wait_ended(done)
    ringing = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY, hangup_in="bridged",
                                                    hangup_delay_s=2.0))
    wait_for(lambda: ringing.agent_legs, 10, "the first phone ringing")
    filler = fill(tiny_fs)
    refused = run.call(QUEUE_NUMBER)
    assert run.caller(refused).hungup.wait(5)
    assert run.caller(refused).hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert run.caller(ringing).hungup.wait(20)  # the call in progress went on to otto
    assert run.caller(ringing).hangup_cause == "NORMAL_CLEARING"
    assert [leg.result.split()[0] for leg in ringing.agent_legs] == ["-ERR", "+OK"]
    assert "store.write_deferred" in run.log_events()
    assert "call.refused_store_unavailable" in run.log_events()
    filler.unlink()
    run.check_nothing_left(timeout=10)  # the deferred writes landed: every row is final
    rows = {r["call_uuid"]: r for r in run.rows("SELECT * FROM call_records")}
    assert rows[done.caller_uuid]["outcome"] == "bridged"  # written before: still there
    assert rows[ringing.caller_uuid]["outcome"] == "bridged"
    assert refused.caller_uuid not in rows
    attempts = run.rows("SELECT user_id, result FROM attempts WHERE call_id = ? ORDER BY seq",
                        rows[ringing.caller_uuid]["id"])
    assert attempts == [{"user_id": "olga", "result": "no_answer"},
                        {"user_id": "otto", "result": "answered"}]
    after = run.call(QUEUE_NUMBER)
    assert run.wait_ended(after)["outcome"] == "bridged"


def test_a_read_only_database_stops_a_start_and_keeps_its_data(sim_daemon, tmp_path,
                                                                tiny_fs):
    """The file system holding the database is read-only (remounted after an error, say):
    the daemon does not start with it (``fsrouter run`` exits 3 with the reason) and the
    rows already there are intact once it is writable again."""
    run = sim_daemon(full_config(tmp_path), speed=10.0, db_dir=tiny_fs)
    run.login("bob")
    before = run.call(QUEUE_NUMBER)
    run.wait_ended(before)
    run.stop()
    remount(tiny_fs, "ro")
    try:
        with pytest.raises(StoreError, match="writable"):
            run.start_daemon(run.sim.start_inbound())
    finally:
        run.sim.stop_inbound()
        remount(tiny_fs, "rw")
    run.start()
    run.login("bob")
    after = run.call(QUEUE_NUMBER)
    assert run.wait_ended(after)["outcome"] == "bridged"
    uuids = [r["call_uuid"] for r in run.rows("SELECT call_uuid FROM call_records "
                                              "ORDER BY id")]
    assert uuids == [before.caller_uuid, after.caller_uuid]
    run.check_nothing_left()


# -- mail and webhook receivers down ----------------------------------------------------------


def test_mail_and_webhook_receivers_down_then_back_lose_nothing(sim_daemon, tmp_path):
    """Both receivers refuse connections while a hotline call and a voicemail happen; the
    mail and every webhook event arrive once they are back, each exactly once."""
    smtp, hooks = SmtpServer(), HookServer()
    try:
        config = full_config(
            tmp_path, smtp={"host": "127.0.0.1", "port": smtp.port, "from": "fsr@example.test"},
            webhooks=[{"url": hooks.url, "timeout": 2}])
        run = sim_daemon(config, speed=10.0)
        for name in ("mailer", "webhooks"):
            run.daemon.parts[name].base_delay = 0.3  # retry within the test, not minutes
        hotline = run.call(HOTLINE, name="O'Brien & Söhne",
                           script=CallerScript(presses=MENU_KEY))
        voicemail = run.call(VOICEMAIL_NUMBER, name="Müller, Jörg",
                             script=CallerScript(hangup_at_s=10.0))
        assert run.wait_ended(hotline)["outcome"] == "bridged"
        assert run.wait_ended(voicemail)["outcome"] == "voicemail"
        wait_for(lambda: run.rows("SELECT id FROM voicemails WHERE email_attempts > 0"), 10,
                 "a failed mail try")
        wait_for(lambda: run.rows("SELECT id FROM outbox WHERE attempts > 0"), 10,
                 "a failed webhook try")
        assert run.rows("SELECT id FROM voicemails WHERE emailed_at IS NOT NULL") == []
        smtp.start()
        hooks.start()
        wait_for(lambda: run.rows("SELECT id FROM voicemails WHERE emailed_at IS NOT NULL"), 20,
                 "the mail sent")
        wait_for(lambda: not run.rows("SELECT id FROM outbox WHERE state != 'delivered'"), 20,
                 "every webhook delivered")
        assert len(smtp.handler.messages) == 1
        assert "Müller, Jörg" in message_text(smtp.handler.messages[0])
        events = sorted(r.document["event"] for r in hooks.received)
        assert events == ["incident.accepted", "incident.created", "incident.resolved",
                          "voicemail.left"], events
        names = [r.document["data"].get("caller_name") for r in hooks.received]
        assert "O'Brien & Söhne" in names and "Müller, Jörg" in names
        run.check_nothing_left()
    finally:
        smtp.stop()
        hooks.stop()


def message_text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(("plain",))
    return (body.get_content() if body is not None else "") + str(message["Subject"])
