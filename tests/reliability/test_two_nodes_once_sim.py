"""Exactly once across nodes (issue 18.6): two daemons (``fsrouter run`` processes), each on
its own simulated switch, share one real PostgreSQL, one SMTP server (aiosmtpd) and one
webhook receiver on loopback.

What must hold: a voicemail left on node A is mailed once, each webhook event is delivered
once (both nodes' senders compete for the same rows), and a 2-way mapping learned on node A
routes node B's next call from that customer. And what happens when node A is SIGKILLed in
the middle of a webhook delivery (the request arrived, the success not yet recorded): node B
delivers it again once A's claim has expired, with the same delivery id: at-least-once with
an idempotency key, not exactly-once (no sender can know whether a receiver acted on a
request whose answer it never read).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fsrouter.sim import CallerScript, Press, Simulator
from fsrouter.sim.originate import OriginateRequest
from fsrouter.store import queries
from fsrouter.store.db import close_database, open_database
from fsrouter.testing.phones import phone_number
from fsrouter.testing.postgres import PostgresServer
from tests.e2e.daemon import Daemon
from tests.notify.servers import HookServer, SmtpServer
from tests.reliability.conftest import (
    AGENT_NUMBER,
    HOTLINE,
    PASSWORD,
    VOICEMAIL_NUMBER,
    full_config,
    sip,
    wait_for,
)
from tests.reliability.pgdaemon import fresh_database, pg_rows, pg_server  # noqa: F401

pytestmark = pytest.mark.multinode

CUSTOMER = phone_number("answer", 1500, 71)  # a customer bob calls from node A


class NodeDaemon(Daemon):
    """``fsrouter run`` under a host name of its own (a UTS namespace): two daemons on this
    machine are two hosts, as in production, so neither reconciles the other's records
    (fsrouter.recovery looks at this host's only)."""

    def __init__(self, name: str, *args: Any) -> None:
        super().__init__(*args)
        self.name = name

    def start(self, timeout: float = 60.0) -> None:
        if os.geteuid() != 0 or not shutil.which("unshare"):
            pytest.skip("two host names on one machine need root and unshare (util-linux)")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", f'hostname "{self.name}" && exec "$@"', "sh",
                 sys.executable, "-m", "fsrouter", "--log-format", "json", "--log-level",
                 "debug", "run", "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.wait_logged("daemon.ready", timeout)


@dataclass
class Node:
    sim: Simulator
    daemon: Daemon

    def call(self, number: str, caller: str = "+4915112345678",
             script: CallerScript | None = None) -> Any:
        return self.sim.place_call(("127.0.0.1", self.daemon.port), number, caller,
                                   "Jane Caller", script)


@dataclass
class Cluster:
    a: Node
    b: Node
    db_url: str
    smtp: SmtpServer
    hooks: HookServer

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return pg_rows(self.db_url, sql, *args)


def two_node_config(tmp_path: Path, smtp: SmtpServer, hooks: HookServer,
                    db_url: str) -> dict[str, Any]:
    people = {"olga": phone_number("answer", 100, 72)}
    config = full_config(tmp_path, people, agent_phone=sip("answer", 100, 73),
                         queue_phone=sip("answer", 100, 74),
                         smtp={"host": "127.0.0.1", "port": smtp.port,
                               "from": "fsr@example.test"},
                         webhooks=[{"url": hooks.url, "timeout": 1, "max_attempts": 5}])
    for number in config["numbers"]:
        if number["number"] == AGENT_NUMBER:
            number["two_way"] = True  # a customer bob called comes back to bob
    config["database"] = {"url": db_url}
    return config


@pytest.fixture
def cluster(tmp_path: Path, pg_server: PostgresServer) -> Iterator[Cluster]:  # noqa: F811
    smtp, hooks = SmtpServer().start(), HookServer().start()
    db_url = fresh_database(pg_server)
    config = two_node_config(tmp_path, smtp, hooks, db_url)
    nodes: list[Node] = []
    try:
        for name in ("a", "b"):
            sim = Simulator(speed=1.0, storage_dir=str(tmp_path / f"storage-{name}"),
                            password=PASSWORD)
            esl_port = sim.start_inbound()
            workdir = tmp_path / name
            workdir.mkdir()
            daemon = NodeDaemon(f"fsrouter-node-{name}", workdir, config,
                                ("127.0.0.1", esl_port, PASSWORD))
            nodes.append(Node(sim, daemon))
            daemon.start()
            daemon.wait_logged("agents.resynced", timeout=20)
        yield Cluster(nodes[0], nodes[1], db_url, smtp, hooks)
    finally:
        for node in nodes:
            node.daemon.stop()
            node.sim.stop_inbound()
        smtp.stop()
        hooks.stop()


def login(db_url: str, *users: str) -> None:
    db = open_database(db_url)
    try:
        for user in users:
            queries.set_presence(user, datetime.now(UTC), state="logged_in")
    finally:
        close_database(db)


def agent_calls_customer(sim: Simulator, user: str, customer: str, shown: str) -> str:
    """``user``'s own call to ``customer`` showing ``shown``, as the switch reports it."""
    request = OriginateRequest(variables={"origination_caller_id_number": shown,
                                          "fsr_agent": user, "fsr_kind": "outbound",
                                          "agent_talk_ms": "1500"},
                               dial=f"loopback/{customer}/agents", app="playback",
                               app_arg="silence_stream://1500")
    return sim.originate(request)


def test_mail_webhooks_and_a_mapping_cross_two_nodes_once(cluster: Cluster) -> None:
    login(cluster.db_url, "alice", "bob", "olga")
    # Node A: a hotline call (3 webhook events), a voicemail (1 event, 1 mail) and bob's call
    # to a customer (a 2-way mapping).
    hotline = cluster.a.call(HOTLINE, script=CallerScript(
        presses=[Press("1", 0.3, "menu")], hangup_in="bridged", hangup_delay_s=1.0))
    voicemail = cluster.a.call(VOICEMAIL_NUMBER, script=CallerScript(hangup_at_s=5.0))
    assert agent_calls_customer(cluster.a.sim, "bob", CUSTOMER, AGENT_NUMBER).startswith("+OK")
    wait_for(lambda: cluster.rows("SELECT user_id FROM two_way_mappings"), 20,
             "the mapping learned on node A")
    for record in (hotline, voicemail):
        assert cluster.a.sim.channels[record.caller_uuid].hungup.wait(30)
    # Node B: the customer calls our number back and reaches bob, not alice.
    callback = cluster.b.call(AGENT_NUMBER, caller=CUSTOMER)
    wait_for(lambda: callback.agent_legs or callback.bridged_to, 20, "the callback rung")
    cluster.b.sim.hangup(cluster.b.sim.channels[callback.caller_uuid], "NORMAL_CLEARING")
    [attempt] = wait_for(lambda: cluster.rows(
        "SELECT a.user_id FROM attempts a JOIN call_records c ON a.call_id = c.id "
        "WHERE c.call_uuid = ?", callback.caller_uuid), 20, "the callback's attempt")
    assert attempt["user_id"] == "bob"
    # Sent once, delivered once, though both nodes' senders look for work.
    wait_for(lambda: cluster.rows("SELECT id FROM voicemails WHERE emailed_at IS NOT NULL"), 30,
             "the mail sent")
    wait_for(lambda: len(cluster.hooks.received) >= 4 and not cluster.rows(
        "SELECT id FROM outbox WHERE state != 'delivered'"), 30, "every webhook delivered")
    for node in (cluster.a, cluster.b):
        node.daemon.stop()  # nothing can be sent after this: the counts are final
    assert len(cluster.smtp.handler.messages) == 1
    assert len(cluster.rows("SELECT id FROM voicemails")) == 1
    events = Counter(r.document["event"] for r in cluster.hooks.received)
    assert events == {"incident.created": 1, "incident.accepted": 1, "incident.resolved": 1,
                      "voicemail.left": 1}, events
    ids = [r.document["id"] for r in cluster.hooks.received]
    assert len(set(ids)) == len(ids) == len(cluster.rows("SELECT id FROM outbox"))
    assert len(cluster.rows("SELECT id FROM incidents")) == 1
    mapping = cluster.rows("SELECT user_id, our_number FROM two_way_mappings")
    assert mapping == [{"user_id": "bob", "our_number": AGENT_NUMBER}]


def test_a_node_killed_mid_delivery_leaves_it_to_the_other_at_least_once(
        cluster: Cluster) -> None:
    """The webhook request reached the receiver; its sender dies before it records success.
    The other node delivers it again once the dead one's claim (timeout + 30 s) expires: the
    receiver sees the same delivery id twice and must drop the copy (X-Fsrouter-Delivery,
    the body's ``id``)."""
    cluster.hooks.delay = 120.0  # the first request hangs until its sender is dead
    login(cluster.db_url, "olga")
    hotline = cluster.a.call(HOTLINE, script=CallerScript(
        presses=[Press("1", 0.3, "menu")], hangup_in="bridged", hangup_delay_s=1.0))
    wait_for(lambda: cluster.hooks.received, 20, "the first webhook request at the receiver")
    first = cluster.hooks.received[0].document["id"]
    # Both nodes' senders look for work: the sender is the node connected to the receiver.
    [sender] = wait_for(lambda: [n for n in (cluster.a, cluster.b)
                                 if connected_to(n.daemon.process.pid, cluster.hooks.port)],
                        10, "the sending node")
    survivor = cluster.b if sender is cluster.a else cluster.a
    sender.daemon.process.send_signal(signal.SIGKILL)
    sender.daemon.process.wait(10)
    cluster.hooks.delay = 0.0
    cluster.hooks.release.set()  # the hung request ends; its answer goes nowhere
    # The caller hangs up (whether the dead node left it in the park loop, where the
    # dialplan's fallback ends it, or already waiting in the queue, where it would wait on).
    caller = cluster.a.sim.channels[hotline.caller_uuid]
    if not caller.hungup.is_set():
        cluster.a.sim.hangup(caller, "NORMAL_CLEARING")
    assert caller.hungup.wait(30)
    again = wait_for(lambda: [r for r in cluster.hooks.received[1:]
                              if r.document["id"] == first], 90,
                     "the delivery retried by the surviving node")
    [row] = wait_for(lambda: cluster.rows("SELECT state, attempts FROM outbox WHERE "
                                          "delivery_id = ? AND state = 'delivered'", first),
                     30, "the row delivered")
    assert len(again) == 1 and row["attempts"] == 2
    assert survivor.daemon.process.poll() is None


def connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a TCP connection to 127.0.0.1:``port`` (from /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[9] in inodes:
            return True
    return False
