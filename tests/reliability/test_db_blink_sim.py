"""The database blinks (issue 18.5) on the simulator: PostgreSQL is stopped under a running
daemon with calls in every state, kept down ~10 s, and started again.

What must hold: every call in progress goes on (menu, queue with a leg ringing, bridged,
voicemail recording, a queue caller waiting for an agent); a new call gets the configured
behaviour (``database.unavailable``: reject = refused at once with NORMAL_TEMPORARY_FAILURE,
SIP 503, so the carrier fails over; yaml = routed from the YAML, rows written later); after
recovery no call record, incident, attempt, voicemail or webhook delivery is lost or doubled:
the rows are counted against what the switch saw.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import gevent
import pytest

from fsrouter.resilience.metrics import JournalCollector
from fsrouter.sim import CallerScript, Press
from fsrouter.store import queries
from fsrouter.testing.phones import phone_number
from tests.notify.servers import HookServer, SmtpServer
from tests.reliability.conftest import (
    AGENT_NUMBER,
    HOTLINE,
    QUEUE_NUMBER,
    VOICEMAIL_NUMBER,
    full_config,
    sip,
    wait_for,
)
from tests.reliability.pgdaemon import (  # noqa: F401
    PgSimDaemon,
    fresh_database,
    pg_server,
    start_pg_daemon,
)

OUTAGE_S = 10.0
FREEZE_S = 30.0  # the frozen server is thawed after this at the latest
FROZEN_CALL = "f0f0f0f0-2222-3333-4444-555555555555"


def blink_config(tmp_path, smtp: SmtpServer, hooks: HookServer, mode: str) -> dict:
    people = {"olga": phone_number("noanswer", 0, 61), "otto": phone_number("answer", 100, 62)}
    config = full_config(tmp_path, people, ring_timeout=6, agent_phone=sip("answer", 100, 63),
                         queue_phone=sip("answer", 100, 64),
                         smtp={"host": "127.0.0.1", "port": smtp.port, "from": "fsr@example.test"},
                         webhooks=[{"url": hooks.url, "timeout": 2}])
    if mode != "reject":  # reject is the default
        config["database"] = {"unavailable": mode}
    # The menu caller presses only once the database is down: a long menu.
    config["numbers"][0]["menu"]["timeout_s"] = 30
    return config


def duplicates(values: list) -> list:
    return [value for value, count in Counter(values).items() if count > 1]


@pytest.mark.parametrize("mode", ["reject", "yaml"])
def test_the_database_blinks_with_calls_in_every_state(pg_server, tmp_path, capture_logs,  # noqa: F811
                                                      mode):
    smtp, hooks = SmtpServer().start(), HookServer().start()
    run: PgSimDaemon | None = None
    try:
        run = start_pg_daemon(tmp_path, pg_server, blink_config(tmp_path, smtp, hooks, mode),
                              capture_logs)
        for name in ("mailer", "webhooks"):
            run.daemon.parts[name].base_delay = 0.3
        run.login("alice")
        # bob (the queue's agent) is logged out: the queue caller waits through the outage.
        # In the menu: presses 1 only after the database went down (see below).
        menu = run.call(HOTLINE, script=CallerScript(
            presses=[Press("1", 5.0, "menu")], hangup_in="bridged", hangup_delay_s=1.0))
        # On-call: olga's leg rings (6 s, no answer) through the outage start, then otto.
        ringing = run.call(HOTLINE, script=CallerScript(
            presses=[Press("2", 0.2, "menu")], hangup_in="bridged", hangup_delay_s=3.0))
        bridged = run.call(AGENT_NUMBER)  # the bridge app: hung up by hand, in the outage
        queued = run.call(QUEUE_NUMBER, script=CallerScript(hangup_in="bridged",
                                                            hangup_delay_s=1.0))
        wait_for(lambda: ringing.agent_legs and bridged.bridged_to, 15, "a leg ringing, a bridge")
        gevent.spawn_later(6.0, run.sim.hangup, run.caller(bridged), "NORMAL_CLEARING")
        voicemail = run.call(VOICEMAIL_NUMBER, script=CallerScript(hangup_at_s=7.0))
        in_progress = [menu, ringing, bridged, queued, voicemail]
        wait_for(lambda: len(run.rows("SELECT id FROM call_records")) == 5, 10,
                 "the five call records")
        halted_at = time.monotonic()
        pg_server.halt()
        # A new call while the database is down, once alice's first call has ended in the
        # outage: while she talks she is claimed (fsrouter/cluster) and a second call to her
        # gets the busy tone in either mode.
        wait_for(lambda: run.caller(bridged).hungup.is_set()
                 and run.daemon.services.claims.held() == 0, 10, "alice free again")
        newcomer = run.call(AGENT_NUMBER)
        new_caller = run.caller(newcomer)
        if mode == "reject":
            assert new_caller.hungup.wait(8), "the new caller was left waiting"
            assert new_caller.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
            assert not newcomer.bridged_to
        else:  # served from the YAML while the database is still away
            wait_for(lambda: newcomer.bridged_to, 8, "the new call routed from the YAML")
            run.sim.hangup(new_caller, "NORMAL_CLEARING")
        gevent.sleep(max(0.0, OUTAGE_S - (time.monotonic() - halted_at)))
        pg_server.resume()
        # Right after the restart: a new call is served (no dead pooled connection refuses it).
        after = run.call(AGENT_NUMBER)
        wait_for(lambda: after.bridged_to or run.caller(after).hungup.is_set(), 20,
                 "the first call after the restart routed")
        assert after.bridged_to, run.caller(after).hangup_cause
        run.sim.hangup(run.caller(after), "NORMAL_CLEARING")
        queries_login(run, "bob")  # now the queue caller gets an agent
        names = ["menu", "ringing", "bridged", "queued", "voicemail"]
        for record in in_progress:
            run.caller(record).hungup.wait(40)
        heard = {name: (run.caller(r).hangup_cause, bool(r.bridged_to))
                 for name, r in zip(names, in_progress, strict=True)}
        print("BLINK callers (hang-up cause, bridged):", heard)
        print("BLINK rows:", {table: len(run.rows(f"SELECT id FROM {table}")) for table in
                              ("call_records", "incidents", "attempts", "voicemails", "outbox")},
              "legs seen:", sum(len(r.agent_legs) for r in in_progress))
        assert heard == {name: ("NORMAL_CLEARING", name != "voicemail") for name in names}
        # After recovery: every row final, each exactly once.
        run.check_nothing_left(timeout=30)
        served = [*in_progress, after, *([newcomer] if mode == "yaml" else [])]
        calls = run.rows("SELECT call_uuid, outcome FROM call_records")
        assert sorted(r["call_uuid"] for r in calls) == sorted(r.caller_uuid for r in served)
        outcomes = {r["call_uuid"]: r["outcome"] for r in calls}
        assert outcomes[menu.caller_uuid] == "bridged"
        assert outcomes[ringing.caller_uuid] == "bridged"
        assert outcomes[bridged.caller_uuid] == "bridged"
        assert outcomes[queued.caller_uuid] == "bridged"
        assert outcomes[voicemail.caller_uuid] == "voicemail"
        incidents = run.rows("SELECT call_uuid, state, accepted_by FROM incidents")
        assert sorted(r["call_uuid"] for r in incidents) == sorted(
            [menu.caller_uuid, ringing.caller_uuid])
        assert {r["state"] for r in incidents} == {"resolved"}
        legs = [leg.uuid for record in served for leg in record.agent_legs]
        attempts = run.rows("SELECT leg_uuid, result FROM attempts")
        assert duplicates([a["leg_uuid"] for a in attempts]) == []
        assert sorted(a["leg_uuid"] for a in attempts) == sorted(legs)
        voicemails = run.rows("SELECT call_uuid FROM voicemails")
        assert [v["call_uuid"] for v in voicemails] == [voicemail.caller_uuid]
        # Sent once, delivered once: the mail and each webhook event.
        wait_for(lambda: run.rows("SELECT id FROM voicemails WHERE emailed_at IS NOT NULL"), 20,
                 "the mail sent")
        wait_for(lambda: not run.rows("SELECT id FROM outbox WHERE state != 'delivered'"), 20,
                 "every webhook delivered")
        assert len(smtp.handler.messages) == 1
        events = Counter(r.document["event"] for r in hooks.received)
        assert events == {"incident.created": 2, "incident.accepted": 2,
                          "incident.resolved": 2, "voicemail.left": 1}, events
        # Ids of rows written late were filled in before the events were stored.
        for received in hooks.received:
            data = received.document["data"]
            for key in ("incident_id", "voicemail_id"):
                assert isinstance(data.get(key, 0), int | None), (key, data)
            assert isinstance(data.get("incident_id", 0), int) or received.document[
                "event"] == "voicemail.left", data
        voicemail_events = [r.document["data"] for r in hooks.received
                            if r.document["event"] == "voicemail.left"]
        assert [d["voicemail_id"] for d in voicemail_events] == [
            v["id"] for v in run.rows("SELECT id FROM voicemails")]
        deliveries = [r.document["id"] for r in hooks.received]
        assert duplicates(deliveries) == []
        logged = run.log_events()
        assert "store.outage_started" in logged and "store.outage_ended" in logged
        figures = {family.name: family.samples[0].value
                   for family in JournalCollector().collect()}
        assert figures["fsrouter_store_journal_pending"] == 0
        assert figures["fsrouter_store_writes_replayed"] >= figures["fsrouter_store_outages"] > 0
    finally:
        if run is not None:
            run.stop()
        smtp.stop()
        hooks.stop()


def queries_login(run: PgSimDaemon, user: str) -> None:
    """Log ``user`` in once the store takes it (the pool may hand out a dead connection
    first)."""
    def attempt() -> bool:
        try:
            queries.set_presence(user, datetime.now(UTC), state="logged_in")
        except Exception:
            return False
        return True
    wait_for(attempt, 20, f"{user} logged in")


FROZEN_WRITE = """
import sys, time
import fsrouter.cli  # gevent's monkey-patching first, as in the daemon: psycopg2 waits on the hub
from datetime import UTC, datetime
from fsrouter.store import StoreError, queries
from fsrouter.store.db import open_database
open_database(sys.argv[1])
call, now = sys.argv[2], datetime.now(UTC)
queries.create_call_record(call, "+493040009000", "call_routing", None, None, now)
print("ready", flush=True)
sys.stdin.readline()  # the server is frozen now
started = time.monotonic()
try:
    queries.close_call(call, "bridged", None, now)
    outcome = "written"
except StoreError as error:
    outcome = "StoreError"
print(outcome, round(time.monotonic() - started, 1), flush=True)
"""


def test_a_frozen_database_is_a_refusal_within_seconds_not_a_hang(pg_server, tmp_path):  # noqa: F811
    """PostgreSQL stops answering without closing anything (SIGSTOP: a frozen VM, a stalled
    disk): a store call must give up with StoreError after the answer deadline, so the
    journal takes the write and the call goes on, instead of waiting as long as the freeze
    lasts (the kernel still acknowledges every byte: no TCP timeout ever fires). The store
    runs in a process of its own, monkey-patched first as the daemon is."""
    from fsrouter.store.db import close_database, open_database
    from fsrouter.store.migrations import upgrade

    url = fresh_database(pg_server)
    close_database(upgrade_only(url, open_database, upgrade))
    script = tmp_path / "frozen_write.py"
    script.write_text(FROZEN_WRITE)
    writer = subprocess.Popen([sys.executable, str(script), url, FROZEN_CALL],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []  # the writer's stdout (its log, "ready", the outcome)
    reader = threading.Thread(target=lambda: lines.extend(line.strip() for line in writer.stdout),
                              daemon=True)
    reader.start()
    pids: list[int] = []
    try:
        assert writer.stdin is not None
        wait_for(lambda: "ready" in lines, 30, "the writer ready")
        pids = pg_server.freeze()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        wait_for(lambda: outcome(lines), FREEZE_S, "the outcome", quiet=True)
    finally:
        pg_server.thaw(pids)
    try:
        answer = wait_for(lambda: outcome(lines), 30, "the outcome after the thaw")
    finally:
        writer.kill()
        writer.wait()
        reader.join(10)
        for stream in (writer.stdin, writer.stdout):
            stream.close()
    print("BLINK frozen database:", answer)
    result, seconds = answer.split()
    assert result == "StoreError" and float(seconds) < FREEZE_S


def outcome(lines: list[str]) -> str:
    """The writer's outcome line ("StoreError 10.0" / "written 30.0") once printed."""
    return next((line for line in lines if line.startswith(("StoreError", "written"))), "")


def upgrade_only(url: str, opener, upgrade):
    db = opener(url, bind=False)
    upgrade(db)
    return db
