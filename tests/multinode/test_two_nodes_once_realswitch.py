"""Exactly once across nodes (issue 18.6) on the issue's topology: two REAL switches (a, b),
daemon A and daemon B each connected to both (each under a host name of its own), one real
PostgreSQL, one SMTP server (aiosmtpd) and one webhook receiver on loopback. Each switch
offers its calls to its own daemon first (``route_failover``).

What must hold: a voicemail left on switch a (served by daemon A) is mailed once and its
webhook delivered once, though both daemons run a mailer and a webhook sender; bob's own call
to a customer on switch a teaches one 2-way mapping (both daemons watch switch a's events),
and the customer's call back on switch b, served by daemon B, rings bob there, not alice.
The tests/reliability/test_two_nodes_once_sim.py proof, on real switches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fsrouter.testing.phones import phone_number
from fsrouter.testing.switchpair import SwitchPair
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import WATCHED, Watcher
from tests.multinode.conftest import AGENT_A, NodeDaemon, config
from tests.multinode.test_two_switches_realswitch import (
    Callers,
    closed,
    exists,
    logged_in,
    started,
)
from tests.notify.servers import HookServer, SmtpServer

pytestmark = [pytest.mark.realswitch, pytest.mark.multinode]

VOICEMAIL_NUMBER = "+493040008300"  # vera's: she is logged out, callers leave a message
CUSTOMER = phone_number("answer", 0, 71)  # answers bob's call at once, and calls back later
# Two seconds of tone, the message.
VOICE = "tone_stream://%(900,100,350);loops=2"


def once_config(tmp_path: Path, smtp: SmtpServer, hooks: HookServer) -> dict[str, Any]:
    settings = config()
    settings["defaults"]["voicemail_domain"] = "fsrouter.test"
    settings["users"]["vera"] = {
        "name": "Vera", "extension": "1003", "email": "vera@example.test",
        "voicemail": {"greeting": "silence_stream://200"},
        "phones": [{"type": "sip", "dial_string": f"loopback/{phone_number('answer', 100, 84)}"
                                                  "/agents"}]}
    for number in settings["numbers"]:
        if number["number"] == AGENT_A:
            number["two_way"] = True  # a customer bob called comes back to bob
    settings["numbers"].append({"number": VOICEMAIL_NUMBER, "type": "agent", "agent": "vera",
                                "ring_timeout": 5})
    # One folder, as a shared mount would be: the mail is sent by the recording host anyway.
    settings["voicemail"] = {"directory": str(tmp_path / "voicemail"), "silence_seconds": 2,
                             "min_seconds": 0}
    settings["smtp"] = {"host": "127.0.0.1", "port": smtp.port, "from": "fsr@example.test"}
    settings["webhooks"] = [{"url": hooks.url, "timeout": 1, "max_attempts": 5}]
    return settings


@dataclass
class Cluster:
    pair: SwitchPair
    a: NodeDaemon
    b: NodeDaemon
    callers: Callers
    smtp: SmtpServer
    hooks: HookServer

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return self.a.rows(sql, *args)


def start_cluster(switch_pair: SwitchPair, db_url: str, tmp_path: Path,
                  settings_of: Callable[[Path, SmtpServer, HookServer], dict[str, Any]]
                  ) -> Iterator[Cluster]:
    """The cluster of a test (a fixture's body): daemons A and B, each on both switches,
    with the configuration ``settings_of(tmp_path, smtp, hooks)``; everything ended after."""
    smtp, hooks = SmtpServer().start(), HookServer().start()
    settings = settings_of(tmp_path, smtp, hooks)
    nodes: list[NodeDaemon] = []
    callers = None
    try:
        for name in ("a", "b"):
            node = NodeDaemon(tmp_path / f"node-{name}", switch_pair, db_url, settings)
            nodes.append(node.as_host(f"fsrouter-node-{name}"))
            started(node)
        switch_pair.route_failover({"a": nodes[0].port, "b": nodes[1].port})
        callers = Callers(switch_pair)
        yield Cluster(switch_pair, nodes[0], nodes[1], callers, smtp, hooks)
    finally:
        if callers is not None:
            callers.close()
        for _, switch in switch_pair:
            for row in switch.channels():
                switch.hangup(row["uuid"])
        for node in nodes:
            node.stop()
        smtp.stop()
        hooks.stop()


@pytest.fixture
def cluster(switch_pair: SwitchPair, db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(switch_pair, db_url, tmp_path, once_config)


def leave_voicemail(cluster: Cluster) -> str:
    """A caller on switch a leaves vera a two-second message; the daemon's leg."""
    watcher = cluster.callers.watchers["a"]
    caller, leg = cluster.callers.call("a", VOICEMAIL_NUMBER)
    watcher.wait("CHANNEL_EXECUTE", timeout=30, Application="record", **{"Unique-ID": leg})
    played = Watcher(cluster.pair["a"].esl_endpoint(), [*WATCHED, "CHANNEL_EXECUTE_COMPLETE"])
    try:
        reply = cluster.pair["a"].api(f"uuid_broadcast {caller} {VOICE} aleg")
        assert reply.startswith("+OK"), reply
        # The caller hangs up once the tone was played into the recording.
        played.wait("CHANNEL_EXECUTE_COMPLETE", timeout=40, Application="playback",
                    **{"Unique-ID": caller})
    finally:
        played.close()
    cluster.pair["a"].hangup(caller)
    return leg


def bob_calls_the_customer(cluster: Cluster) -> None:
    """bob's own call on switch a, showing alice's number (2-way): it reaches the customer."""
    call = cluster.pair["a"].originate(f"loopback/{CUSTOMER}/agents", "&park()",
                                       {"origination_caller_id_number": AGENT_A,
                                        "fsr_agent": "bob"})
    assert call.result(30).startswith("+OK")
    wait_for(lambda: cluster.rows("SELECT user_id FROM two_way_mappings"), 30,
             "the mapping learned from switch a")
    cluster.pair["a"].hangup(call.uuid)
    wait_for(lambda: cluster.rows("SELECT busy FROM agent_presence WHERE user_id = 'bob' "
                                  "AND NOT busy"), 30, "bob free again")


def test_voicemail_webhook_and_mapping_once_across_two_real_switches(cluster: Cluster) -> None:
    logged_in(cluster.a, "alice", "bob")
    vm_leg = leave_voicemail(cluster)
    assert closed(cluster.a, vm_leg, timeout=30)["outcome"] == "voicemail"
    bob_calls_the_customer(cluster)

    # The customer calls alice's number back on switch b: daemon B serves it, bob rings there.
    caller, leg = cluster.callers.call("b", AGENT_A, caller_number=CUSTOMER)
    agent = cluster.callers.bridged("b", leg, timeout=40)
    assert exists(cluster.pair, "b", agent) and not exists(cluster.pair, "a", agent)
    [attempt] = wait_for(lambda: cluster.rows(
        "SELECT a.user_id FROM attempts a JOIN call_records c ON a.call_id = c.id "
        "WHERE c.call_uuid = ?", leg), 30, "the callback's attempt")
    assert attempt["user_id"] == "bob"
    cluster.pair["b"].hangup(caller)
    assert closed(cluster.b, leg)["outcome"] == "bridged"
    assert cluster.b.first_seen(leg) is not None and cluster.a.first_seen(leg) is None
    assert cluster.a.first_seen(vm_leg) is not None and cluster.b.first_seen(vm_leg) is None

    # Sent once, delivered once, though both daemons' senders look for work.
    wait_for(lambda: cluster.rows("SELECT id FROM voicemails WHERE emailed_at IS NOT NULL"), 60,
             "the mail sent")
    wait_for(lambda: cluster.hooks.received and not cluster.rows(
        "SELECT id FROM outbox WHERE state != 'delivered'"), 60, "every webhook delivered")
    codes = [node.stop() for node in (cluster.a, cluster.b)]  # the counts are final now
    assert codes == [0, 0], cluster.a.log()[-2000:] + cluster.b.log()[-2000:]
    assert len(cluster.smtp.handler.messages) == 1
    assert len(cluster.rows("SELECT id FROM voicemails")) == 1
    events = Counter(r.document["event"] for r in cluster.hooks.received)
    assert events == {"voicemail.left": 1}, events
    ids = [r.document["id"] for r in cluster.hooks.received]
    assert len(set(ids)) == len(ids) == len(cluster.rows("SELECT id FROM outbox"))
    mapping = cluster.rows("SELECT user_id, our_number FROM two_way_mappings")
    assert mapping == [{"user_id": "bob", "our_number": AGENT_A}]
