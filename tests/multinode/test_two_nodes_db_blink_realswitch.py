"""The database blinks under two nodes (issue 18.5) on the issue's topology: two REAL switches,
daemons A and B each connected to both, one PostgreSQL, halted for ~10 s and started again.

Before the outage: a message left for vera on switch a (daemon A); a caller on switch a
talking with alice (an agent number, daemon A); a hotline caller on switch b talking with carl
(an incident, daemon B). During it: a's conversation ends, and a new caller on switch b is
refused at once (``database.unavailable: reject``, NORMAL_TEMPORARY_FAILURE: SIP 503 on a
trunk). What must hold: b's conversation goes on through the outage, both daemons live on,
and afterwards every call record, attempt, incident and voicemail is there exactly once,
counted against the legs the switches created (the single-node proof is
tests/reliability/test_db_blink_realswitch.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from fsrouter.testing.postgres import PostgresServer
from fsrouter.testing.switchpair import SwitchPair
from fsrouter.testing.waiting import wait_for
from tests.multinode.conftest import AGENT_A, ALICE_PHONE
from tests.multinode.test_two_nodes_once_realswitch import (
    Cluster,
    leave_voicemail,
    once_config,
    start_cluster,
)
from tests.multinode.test_two_switches_realswitch import closed, exists, logged_in
from tests.notify.servers import HookServer, SmtpServer
from tests.reliability.test_db_blink_realswitch import (
    CARL,
    HOLD,
    HOTLINE,
    MENU_TONE,
    Caller,
    bridged,
    phone_legs,
)

pytestmark = [pytest.mark.realswitch, pytest.mark.multinode]

OUTAGE_S = 10.0


def blink_config(tmp_path: Path, smtp: SmtpServer, hooks: HookServer) -> dict[str, Any]:
    """The once test's agents and voicemail, and a hotline whose option 2 rings carl."""
    settings = once_config(tmp_path, smtp, hooks)
    settings["users"]["carl"] = {"name": "Carl", "phones": [{"type": "mobile", "number": CARL}]}
    settings["policies"] = {"direct": {"levels": [{"targets": [{"user": "carl"}],
                                                   "ring_timeout": 10}],
                                       "press_to_accept": False}}
    settings["numbers"].append({
        "number": HOTLINE, "type": "call_routing", "skip_menu_if_single": False,
        "menu": {"tries": 1, "timeout_s": 40, "invalid_prompt": MENU_TONE},
        "options": [{"digit": 2, "label": "Direct", "prompt": MENU_TONE, "policy": "direct",
                     "hold_music": HOLD}]})
    return settings


@pytest.fixture
def cluster(switch_pair: SwitchPair, db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(switch_pair, db_url, tmp_path, blink_config)


def test_the_database_blinks_under_calls_on_two_real_switches(
        cluster: Cluster, postgres: PostgresServer) -> None:
    pair, watchers = cluster.pair, cluster.callers.watchers
    logged_in(cluster.a, "alice", "bob")
    vm_leg = leave_voicemail(cluster)
    assert closed(cluster.a, vm_leg, timeout=30)["outcome"] == "voicemail"
    caller_a, leg_a = cluster.callers.call("a", AGENT_A)
    cluster.callers.bridged("a", leg_a, timeout=40)
    hotline = Caller(pair["b"], watchers["b"])
    hotline.press(watchers["b"], "2")
    wait_for(lambda: bridged(watchers["b"], hotline), 40, "the hotline caller talking to carl")
    wait_for(lambda: len(cluster.rows("SELECT id FROM attempts")) == 2, 20, "both attempts")

    halted = time.monotonic()
    postgres.halt()
    try:
        pair["a"].hangup(caller_a)  # a's conversation ends while the database is away
        newcomer = Caller(pair["b"], watchers["b"])
        refused = watchers["b"].wait("CHANNEL_HANGUP_COMPLETE", timeout=20,
                                     **{"Unique-ID": newcomer.b})
        # The outage lasts its ten seconds whatever the machine's speed (the scenario, not a
        # wait for something to happen).
        gevent.sleep(max(0.0, OUTAGE_S - (time.monotonic() - halted)))
        assert exists(pair, "b", hotline.a), "the conversation on b was cut in the outage"
    finally:
        postgres.resume()
    assert refused.get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    for node in (cluster.a, cluster.b):
        assert node.process is not None and node.process.poll() is None, node.log()[-3000:]
    assert closed(cluster.a, leg_a, timeout=60)["outcome"] == "bridged"  # written afterwards
    assert exists(pair, "b", hotline.a)
    pair["b"].hangup(hotline.b)
    assert closed(cluster.b, hotline.b, timeout=30)["outcome"] == "bridged"
    wait_for(lambda: not cluster.rows("SELECT id FROM attempts WHERE ended_at IS NULL"), 30,
             "every attempt final")
    causes = [watchers[name].wait("CHANNEL_HANGUP_COMPLETE", timeout=20, **{"Unique-ID": leg})
              .get("Hangup-Cause") for name, leg in (("a", leg_a), ("b", hotline.b))]
    assert causes == ["NORMAL_CLEARING", "NORMAL_CLEARING"], causes

    # Every row once, against what the switches did.
    calls = cluster.rows("SELECT call_uuid, outcome FROM call_records")
    assert sorted(c["call_uuid"] for c in calls) == sorted([vm_leg, leg_a, hotline.b]), calls
    assert cluster.rows("SELECT id FROM call_records WHERE ended_at IS NULL") == []
    incidents = cluster.rows("SELECT call_uuid, state FROM incidents")
    assert incidents == [{"call_uuid": hotline.b, "state": "resolved"}], incidents
    legs = [e.uuid for e in watchers["a"].events if e.name == "CHANNEL_CREATE"
            and e.get("Channel-Name") == f"loopback/{ALICE_PHONE.split('/')[1]}-a"]
    legs += phone_legs(watchers["b"], CARL)
    attempts = cluster.rows("SELECT leg_uuid, user_id FROM attempts")
    assert [leg for leg, n in Counter(a["leg_uuid"] for a in attempts).items() if n > 1] == []
    assert sorted(a["leg_uuid"] for a in attempts) == sorted(legs), (attempts, legs)
    assert sorted(a["user_id"] for a in attempts) == ["alice", "carl"]
    assert len(cluster.rows("SELECT id FROM voicemails")) == 1
    codes = [node.stop() for node in (cluster.a, cluster.b)]
    assert codes == [0, 0], cluster.a.log()[-2000:] + cluster.b.log()[-2000:]
    print(f"BLINK two nodes: {len(calls)} calls, {len(incidents)} incident, "
          f"{len(attempts)} attempts for {len(legs)} legs, newcomer "
          f"{refused.get('Hangup-Cause')}")
