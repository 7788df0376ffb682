"""The REAL switch dies mid-call and comes back (issue 11, point 5).

``fsrouter run`` serves three callers of an on-call hotline: one listening to the menu, one
waiting in the queue while a phone rings, one bridged to a person. Then FreeSWITCH is killed
(SIGKILL: no hang-up is sent, every socket just closes) and started again on the same ports
and folder, as a supervisor would. The test checks, from the daemon's log and database:

- it noticed: each call's socket was lost (``call.socket_lost``) and its inbound event
  connection too (``esl.inbound.lost``), and it tried to reconnect with backoff while the
  switch was away (attempts spaced by at least the base delay, growing);
- no call is lost: every record is closed and says what happened (outcome ``switch_lost``
  for the calls in the menu and the queue: the switch's event connection is gone too, so it
  is not a lost socket alone; ``bridged`` for the conversation), every dial attempt is
  closed, and the incidents keep their reason (``switch_lost``) or are resolved;
- it routes new calls as soon as the switch is back (measured from "switch ready" to the
  daemon's first app on a new call, and to the inbound connection being up again).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.realswitch import RealSwitch, SwitchError, find_freeswitch
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon

pytestmark = [pytest.mark.realswitch, pytest.mark.serial]  # serial: reconnect timings

ROUTING = "+493040007000"
CALLER = "+4915112345678"
MENU_TONE = "tone_stream://%(300,200,440);loops=2"
HOLD = "tone_stream://%(1000,0,350);loops=-1"
RINGING_PHONE = phone_number("noanswer", 0, 71)   # option 1: rings until the end
TALKING_PHONE = phone_number("answer", 200, 72)   # option 2: answers, talks until hung up
# The switch is back within this many seconds of its start, routing new calls.
ROUTED_WITHIN_S = 5.0


def config() -> dict[str, Any]:
    users = {"ringer": {"name": "Ringer", "phones": [{"type": "mobile",
                                                      "number": RINGING_PHONE}]},
             "talker": {"name": "Talker", "phones": [{"type": "mobile",
                                                      "number": TALKING_PHONE}]}}
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "users": users,
        "policies": {
            "ring": {"levels": [{"targets": [{"user": "ringer"}], "ring_timeout": 60}],
                     "press_to_accept": False},
            "talk": {"levels": [{"targets": [{"user": "talker"}], "ring_timeout": 20}],
                     "press_to_accept": False},
        },
        "numbers": [{
            "number": ROUTING, "type": "call_routing", "skip_menu_if_single": False,
            # A long menu: the first caller is still in it when the switch dies.
            "menu": {"tries": 1, "timeout_s": 30},
            "options": [
                {"digit": 1, "label": "Ring", "prompt": MENU_TONE, "policy": "ring",
                 "hold_music": HOLD},
                {"digit": 2, "label": "Talk", "prompt": MENU_TONE, "policy": "talk",
                 "hold_music": HOLD},
            ],
        }],
    }


@pytest.fixture
def own_switch(tmp_path: Path, real_switch: RealSwitch) -> Iterator[RealSwitch]:
    """A switch of this test only (the session's ``real_switch`` must not die): same build."""
    switch = RealSwitch(tmp_path / "fs", real_switch.freeswitch or find_freeswitch())
    try:
        switch.start()
    except (SwitchError, OSError) as error:
        switch.stop(grace=0)
        pytest.fail(f"FreeSWITCH did not start: {error}")
    try:
        yield switch
    finally:
        switch.stop(grace=0)


def stamp(line: dict[str, Any]) -> float:
    """A daemon log line's time, as a Unix timestamp."""
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [line for line in daemon.log_lines() if line.get("event") == name]


def wait_log(daemon: Daemon, name: str, count: int = 1, timeout: float = 20.0,
             **fields: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in events(daemon, name)
                 if all(line.get(key) == value for key, value in fields.items())]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count}x {name} {fields} in {timeout} s:\n"
                                 f"{daemon.log()[-3000:]}")
        gevent.sleep(0.05)


def call(switch: RealSwitch, watcher: Watcher, digit: str | None) -> str:
    """A caller into the hotline (pressing ``digit`` in the menu); the daemon's leg uuid."""
    caller = str(uuidlib.uuid4())
    switch.place_call(ROUTING, CALLER, "Erika Mustermann", uuid=caller)
    leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
    assert leg is not None
    watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": leg, "Application": "play_and_get_digits"})
    if digit is not None:
        gevent.sleep(0.3)
        switch.send_dtmf(caller, digit)
    return leg


def test_the_switch_killed_mid_call_loses_nothing_and_routes_again(own_switch, tmp_path,
                                                                   record_property):
    switch = own_switch
    daemon = Daemon(tmp_path, config(), switch.esl_endpoint())
    daemon.start()
    try:
        switch.route_to(daemon.port)  # kept across the restart, like a vars.xml setting
        watcher = Watcher(switch.esl_endpoint())
        in_menu = call(switch, watcher, None)
        in_queue = call(switch, watcher, "1")
        watcher.wait("CHANNEL_CREATE", timeout=20,
                     **{"Channel-Name": f"loopback/{RINGING_PHONE}-a"})
        bridged = call(switch, watcher, "2")
        watcher.wait("CHANNEL_BRIDGE", timeout=20, **{"Bridge-B-Unique-ID": bridged})
        daemon.wait_for("SELECT id FROM call_records WHERE bridged_to_user = 'talker'")
        watcher.close()

        killed = time.time()
        switch.kill()
        lost = wait_log(daemon, "call.socket_lost", count=3)
        assert {line["call_uuid"] for line in lost} == {in_menu, in_queue, bridged}
        wait_log(daemon, "esl.inbound.lost")
        daemon.wait_for("SELECT COUNT(*) AS n FROM call_records WHERE ended_at IS NOT NULL "
                        "HAVING n = 3")
        gevent.sleep(2.5)  # the switch stays away a while: the daemon keeps trying

        began = time.monotonic()
        switch.start()
        ready_after = time.monotonic() - began
        back = time.time()
        watcher = Watcher(switch.esl_endpoint())
        fresh = call(switch, watcher, "2")
        watcher.wait("CHANNEL_BRIDGE", timeout=20, **{"Bridge-B-Unique-ID": fresh})
        switch.hangup(fresh)
        reconnected = wait_log(daemon, "esl.inbound.connected", count=2)[1]
        watcher.wait("CHANNEL_HANGUP_COMPLETE", **{"Unique-ID": fresh})
        daemon.wait_for("SELECT id FROM call_records WHERE call_uuid = ? AND ended_at IS NOT "
                        "NULL", fresh)
        watcher.close()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()[-3000:]

    # Measured: the switch's own start, then how soon the daemon served it again (a new
    # call is placed as soon as the switch is ready; the daemon's first line about it).
    taken = min(stamp(line) for line in daemon.log_lines() if line.get("call_uuid") == fresh)
    figures = {"switch_down_s": round(back - killed, 2),
               "switch_start_s": round(ready_after, 2),
               "new_call_taken_after_ready_s": round(taken - back, 2),
               "inbound_reconnected_after_ready_s": round(stamp(reconnected) - back, 2)}
    for name, value in figures.items():
        record_property(name, value)
    print("switch death figures:", figures)
    assert figures["new_call_taken_after_ready_s"] < ROUTED_WITHIN_S
    assert figures["inbound_reconnected_after_ready_s"] < 35  # backoff is capped at 30 s

    # Reconnecting with backoff: the failed attempts while the switch was away are spaced by
    # at least the base delay (1 s), never a tight loop.
    tries = [stamp(line) for line in events(daemon, "esl.inbound.connect_failed")]
    assert tries, "the daemon never tried to reconnect while the switch was away"
    gaps = [later - earlier for earlier, later in zip(tries, tries[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps), gaps

    # Nothing lost, every row says what happened.
    rows = {r["call_uuid"]: r for r in daemon.rows("SELECT * FROM call_records")}
    assert set(rows) == {in_menu, in_queue, bridged, fresh}
    assert all(r["ended_at"] is not None for r in rows.values())
    assert rows[in_menu]["outcome"] == "switch_lost"
    assert rows[in_menu]["incident_id"] is None  # no choice made: no incident
    assert rows[in_queue]["outcome"] == "switch_lost"
    assert (rows[bridged]["outcome"], rows[bridged]["bridged_to_user"]) == ("bridged", "talker")
    # The conversation was cut by the crash, out of our sight: the cause says so.
    assert {rows[u]["hangup_cause"] for u in (in_menu, in_queue, bridged)} == {"SWITCH_LOST"}
    assert (rows[fresh]["outcome"], rows[fresh]["bridged_to_user"]) == ("bridged", "talker")
    incidents = {r["id"]: r for r in daemon.rows("SELECT * FROM incidents")}
    queued = incidents[rows[in_queue]["incident_id"]]
    assert (queued["state"], queued["outcome_reason"]) == ("open", "switch_lost")
    talked = incidents[rows[bridged]["incident_id"]]
    assert (talked["state"], talked["accepted_by"]) == ("resolved", "talker")
    attempts = daemon.rows("SELECT call_id, user_id, result, ended_at FROM attempts")
    assert all(a["ended_at"] is not None for a in attempts), attempts
    assert daemon.rows("SELECT id FROM incidents WHERE state = 'open' AND outcome_reason IS "
                       "NULL") == []
