"""The database blinks (issue 18.5) on the REAL switch: ``fsrouter run`` on a real PostgreSQL,
which is stopped for ~10 s with hotline callers in the menu, with a phone ringing, and
talking; a new call arrives meanwhile.

What must hold: the three callers get what they would have got without the outage (the
menu caller picks an option during it and is bridged; the ringing caller's escalation goes
on to the next person; the talking caller is never cut), the new caller is refused at once
with NORMAL_TEMPORARY_FAILURE (``database.unavailable: reject``: SIP 503 on a SIP trunk), and
once PostgreSQL is back every row is there exactly once, counted against the legs the switch
created.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.postgres import PostgresServer
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.reliability.pgdaemon import fresh_database, pg_rows, pg_server  # noqa: F401

HOTLINE = "+493040007700"
CALLER = "+4915112345678"
MENU_TONE = "tone_stream://%(300,200,440);loops=2"
HOLD = "tone_stream://%(1000,0,350);loops=-1"
ANNA = phone_number("noanswer", 0, 81)  # rings out (8 s) across the outage's start
BOB = phone_number("answer", 100, 82)
CARL = phone_number("answer", 100, 83)
OUTAGE_S = 10.0


def blink_config(db_url: str, mode: str) -> dict[str, Any]:
    users = {uid: {"name": uid.title(), "phones": [{"type": "mobile", "number": number}]}
             for uid, number in (("anna", ANNA), ("bob", BOB), ("carl", CARL))}
    policies = {
        "escalate": {"levels": [{"targets": [{"user": "anna"}], "ring_timeout": 8},
                                {"targets": [{"user": "bob"}], "ring_timeout": 10}],
                     "press_to_accept": False},
        "direct": {"levels": [{"targets": [{"user": "carl"}], "ring_timeout": 10}],
                   "press_to_accept": False},
    }
    options = [{"digit": 1, "label": "Escalation", "prompt": MENU_TONE, "policy": "escalate",
                "hold_music": HOLD},
               {"digit": 2, "label": "Direct", "prompt": MENU_TONE, "policy": "direct",
                "hold_music": HOLD}]
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "database": {"url": db_url, "unavailable": mode},
        "users": users,
        "policies": policies,
        "numbers": [{"number": HOTLINE, "type": "call_routing", "skip_menu_if_single": False,
                     "menu": {"tries": 1, "timeout_s": 40, "invalid_prompt": MENU_TONE},
                     "options": options}],
    }


class Caller:
    """A hotline caller: the test's leg ``a`` and the leg the daemon drives ``b``."""

    def __init__(self, switch: Any, watcher: Watcher) -> None:
        self.switch = switch
        self.a = str(uuidlib.uuid4())
        switch.place_call(HOTLINE, CALLER, "Erika Mustermann", uuid=self.a)
        self.b = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=self.a).uuid

    def press(self, watcher: Watcher, digit: str) -> None:
        watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": self.b,
                                           "Application": "play_and_get_digits"})
        gevent.sleep(0.3)
        self.switch.send_dtmf(self.a, digit)


def phone_legs(watcher: Watcher, number: str) -> list[str]:
    """The legs the daemon originated to a phone (``loopback/<number>-a``)."""
    return [e.uuid for e in watcher.events if e.name == "CHANNEL_CREATE"
            and e.get("Channel-Name") == f"loopback/{number}-a"]


def bridged(watcher: Watcher, caller: Caller) -> bool:
    return any(e.name == "CHANNEL_BRIDGE" and caller.b in (e.uuid, e.get("Other-Leg-Unique-ID"))
               for e in watcher.events)


@pytest.fixture(params=["reject", "yaml"])
def blink(request: pytest.FixtureRequest, real_switch: Any, tmp_path: Path,
          pg_server: PostgresServer  # noqa: F811
          ) -> Iterator[tuple[Daemon, Watcher, str, str]]:
    db_url = fresh_database(pg_server)
    watcher = Watcher(real_switch.esl_endpoint())
    daemon = Daemon(tmp_path, blink_config(db_url, request.param), real_switch.esl_endpoint())
    try:
        daemon.start()
        real_switch.route_to(daemon.port)
        yield daemon, watcher, db_url, request.param
    finally:
        watcher.close()
        for row in real_switch.channels():
            real_switch.hangup(row["uuid"])
        daemon.stop()


def test_the_database_blinks_under_calls_on_the_real_switch(blink, real_switch, pg_server):  # noqa: F811
    daemon, watcher, db_url, mode = blink
    rows = lambda sql, *args: pg_rows(db_url, sql, *args)  # noqa: E731
    talking = Caller(real_switch, watcher)
    talking.press(watcher, "2")
    ringing = Caller(real_switch, watcher)
    ringing.press(watcher, "1")
    menu = Caller(real_switch, watcher)
    watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": menu.b, "Application": "play_and_get_digits"})
    wait = time.monotonic() + 20
    while not (bridged(watcher, talking) and phone_legs(watcher, ANNA)):
        assert time.monotonic() < wait, "carl not talking or anna not ringing"
        gevent.sleep(0.05)
    assert len(rows("SELECT id FROM call_records")) == 3
    halted = time.monotonic()
    pg_server.halt()
    menu.switch.send_dtmf(menu.a, "2")  # the menu caller chooses while the database is away
    newcomer = Caller(real_switch, watcher)  # a new call while the database is away
    if mode == "reject":
        refused = watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=15,
                               **{"Unique-ID": newcomer.b})
        refused_after = time.monotonic() - halted
    else:  # routed from the YAML: the menu, then carl
        newcomer.press(watcher, "2")
    gevent.sleep(3.0)
    real_switch.hangup(talking.b)  # the conversation ends during the outage
    gevent.sleep(max(0.0, OUTAGE_S - (time.monotonic() - halted)))
    pg_server.resume()
    served = [talking, ringing, menu] + ([newcomer] if mode == "yaml" else [])
    deadline = time.monotonic() + 40
    while not all(bridged(watcher, caller) for caller in served[1:]):
        assert time.monotonic() < deadline, f"not bridged:\n{daemon.log()[-3000:]}"
        gevent.sleep(0.1)
    for caller in served[1:]:
        real_switch.hangup(caller.b)
    causes = [watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=20,
                           **{"Unique-ID": caller.b}).get("Hangup-Cause") for caller in served]
    print(f"BLINK real switch ({mode}): callers", causes)
    assert set(causes) == {"NORMAL_CLEARING"}
    if mode == "reject":
        print(f"BLINK real switch: new caller {refused.get('Hangup-Cause')} "
              f"after {refused_after:.1f} s")
        assert refused.get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    # Every row final, each once: against what the switch saw.
    deadline = time.monotonic() + 30
    while rows("SELECT id FROM call_records WHERE ended_at IS NULL") or rows(
            "SELECT id FROM attempts WHERE ended_at IS NULL"):
        assert time.monotonic() < deadline, "rows still open"
        gevent.sleep(0.2)
    calls = rows("SELECT call_uuid, outcome FROM call_records")
    assert sorted(c["call_uuid"] for c in calls) == sorted(caller.b for caller in served)
    assert {c["outcome"] for c in calls} == {"bridged"}
    incidents = rows("SELECT call_uuid, state FROM incidents")
    assert sorted(i["call_uuid"] for i in incidents) == sorted(caller.b for caller in served)
    assert {i["state"] for i in incidents} == {"resolved"}
    legs = phone_legs(watcher, ANNA) + phone_legs(watcher, BOB) + phone_legs(watcher, CARL)
    attempts = rows("SELECT leg_uuid, user_id, result FROM attempts")
    assert [leg for leg, n in Counter(a["leg_uuid"] for a in attempts).items() if n > 1] == []
    assert sorted(a["leg_uuid"] for a in attempts) == sorted(legs)
    print("BLINK real switch rows:", len(calls), "calls,", len(incidents), "incidents,",
          len(attempts), "attempts for", len(legs), "legs")
