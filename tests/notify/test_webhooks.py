"""Webhooks against a real HTTP receiver on loopback (it checks the HMAC signature) and a
real SQLite file: signed delivery, retries with backoff, the receiver down across a restart
with nothing lost, giving up after the configured tries."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from fsrouter.notify.webhooks import Webhooks, encode_body, matches
from fsrouter.store import queries
from fsrouter.store.models import OutboxMessage
from fsrouter.testing.waiting import wait_for
from tests.notify.servers import T0, HookServer, make_config, store

SECRET = "wh-secret-8d1f"
REPO = Path(__file__).resolve().parents[2]


def config_for(*hooks: dict[str, object]):
    return make_config(webhooks=list(hooks))


def hook(server: HookServer, **extra: object) -> dict[str, object]:
    return {"url": server.url, **extra}


def test_signed_delivery_is_verified_by_the_receiver(db, clock, monkeypatch):
    monkeypatch.setenv("FSROUTER_WEBHOOK_SECRET", SECRET)
    server = HookServer(secret=SECRET).start()
    try:
        config = config_for(hook(server, secret_env="FSROUTER_WEBHOOK_SECRET"))
        webhooks = Webhooks(lambda: config, now=clock)
        [row_id] = webhooks.enqueue("incident.created",
                                    {"incident_id": 7, "caller_name": "Müller, Jörg",
                                     "at": T0})
        assert webhooks.deliver_pending() == 1
    finally:
        server.stop()
    [request] = server.received  # the receiver answered 200: the signature was right
    row = queries.get_outbox(row_id)
    assert (row.state, row.last_status, row.attempts) == ("delivered", 200, 1)
    assert request.path == "/hooks/fsrouter"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Fsrouter-Event"] == "incident.created"
    assert request.headers["X-Fsrouter-Delivery"] == row.delivery_id
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Fsrouter-Signature"] == f"sha256={expected}"
    assert request.document == {
        "event": "incident.created", "id": row.delivery_id, "created_at": "2024-05-01T12:00:00Z",
        "data": {"incident_id": 7, "caller_name": "Müller, Jörg",
                 "at": "2024-05-01T12:00:00+00:00"}}


def test_wrong_secret_is_refused_by_the_receiver_and_retried(db, clock, monkeypatch):
    monkeypatch.setenv("FSROUTER_WEBHOOK_SECRET", "not-" + SECRET)
    server = HookServer(secret=SECRET).start()
    try:
        config = config_for(hook(server, secret_env="FSROUTER_WEBHOOK_SECRET"))
        webhooks = Webhooks(lambda: config, now=clock)
        [row_id] = webhooks.enqueue("incident.accepted", {"incident_id": 7})
        assert webhooks.deliver_pending() == 0
    finally:
        server.stop()
    row = queries.get_outbox(row_id)
    assert (row.state, row.last_status, row.attempts) == ("pending", 401, 1)
    assert row.last_error.startswith("HTTP 401") and row.next_at > T0


def test_without_secret_there_is_no_signature(db, clock, hooks):
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock)
    webhooks.enqueue("voicemail.left", {"voicemail_id": 3})
    assert webhooks.deliver_pending() == 1
    assert "X-Fsrouter-Signature" not in hooks.received[0].headers


def test_unset_secret_variable_is_never_sent_unsigned(db, clock, hooks, monkeypatch):
    monkeypatch.delenv("FSROUTER_WEBHOOK_SECRET", raising=False)
    hooks.start()
    config = config_for(hook(hooks, secret_env="FSROUTER_WEBHOOK_SECRET"))
    webhooks = Webhooks(lambda: config, now=clock)
    [row_id] = webhooks.enqueue("incident.created", {"incident_id": 1})
    assert webhooks.deliver_pending() == 0
    assert hooks.received == []
    row = queries.get_outbox(row_id)
    assert "FSROUTER_WEBHOOK_SECRET" in row.last_error and row.state == "pending"
    monkeypatch.setenv("FSROUTER_WEBHOOK_SECRET", SECRET)  # the operator fixes it
    clock.current = row.next_at
    assert webhooks.deliver_pending() == 1


def test_500_then_200_is_retried_after_the_backoff(db, clock, hooks):
    hooks.statuses = [500]
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock, base_delay=5,
                        rng=random.Random(4))
    [row_id] = webhooks.enqueue("incident.resolved", {"incident_id": 9})
    assert webhooks.deliver_pending() == 0
    row = queries.get_outbox(row_id)
    assert (row.state, row.last_status, row.attempts, row.last_error) == (
        "pending", 500, 1, "HTTP 500 Internal Server Error")
    wait = (row.next_at - T0).total_seconds()
    assert 2.5 <= wait <= 5  # base 5 s with 50-100 % jitter
    assert webhooks.deliver_pending() == 0 and len(hooks.received) == 1  # not due yet
    retry_at = clock.current = row.next_at
    assert webhooks.deliver_pending() == 1
    first, second = hooks.received
    assert first.body == second.body  # a retry is the same delivery, byte for byte
    assert first.headers["X-Fsrouter-Delivery"] == second.headers["X-Fsrouter-Delivery"]
    row = queries.get_outbox(row_id)
    assert (row.state, row.attempts, row.last_error, row.delivered_at) == (
        "delivered", 2, None, retry_at)


def test_receiver_down_process_restarted_nothing_lost(db_path, clock, hooks):
    config = config_for(hook(hooks))
    with store(db_path):  # the first process: the receiver is down
        webhooks = Webhooks(lambda: config, now=clock, rng=random.Random(5))
        webhooks.enqueue("incident.created", {"incident_id": 1})
        clock.advance(1)
        webhooks.enqueue("incident.accepted", {"incident_id": 1})
        assert webhooks.deliver_pending() == 0
        first, second = queries.list_outbox()
        assert first.attempts == 1 and "cannot connect" in first.last_error
        assert "refused" in first.last_error.lower()
        # The receiver is down: the second waits for the same moment without spending a try.
        assert (second.attempts, second.next_at) == (0, first.next_at)
    hooks.start()
    with store(db_path):  # "restarted": new objects, the same database file
        clock.current = first.next_at
        webhooks = Webhooks(lambda: config, now=clock)
        assert webhooks.deliver_pending() == 2
        assert webhooks.deliver_pending() == 0
        assert [row.state for row in queries.list_outbox()] == ["delivered", "delivered"]
    assert [r.document["event"] for r in hooks.received] == ["incident.created",
                                                             "incident.accepted"]
    assert [r.headers["X-Fsrouter-Delivery"] for r in hooks.received] == [
        first.delivery_id, second.delivery_id]


def test_gives_up_after_max_attempts_and_keeps_the_row(db, clock, hooks):
    hooks.statuses = [503] * 10
    hooks.start()
    config = config_for(hook(hooks, max_attempts=3))
    webhooks = Webhooks(lambda: config, now=clock, base_delay=1, max_delay=2)
    [row_id] = webhooks.enqueue("incident.created", {"incident_id": 1})
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            webhooks.deliver_pending()
            clock.advance(10)
    row = queries.get_outbox(row_id)
    assert (row.state, row.attempts, row.last_status) == ("failed", 3, 503)
    assert row.failed_at is not None and len(hooks.received) == 3
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["webhooks.failed"]
    assert queries.next_outbox_due() is None


def test_backoff_doubles_and_is_capped(db, clock, hooks):
    hooks.statuses = [500] * 6
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock, base_delay=2,
                        max_delay=10, rng=random.Random(6))
    [row_id] = webhooks.enqueue("incident.created", {})
    waits = []
    for _ in range(6):
        webhooks.deliver_pending()
        row = queries.get_outbox(row_id)
        waits.append((row.next_at - clock()).total_seconds())
        clock.current = row.next_at
    caps = [2, 4, 8, 10, 10, 10]
    assert all(cap / 2 <= wait <= cap for wait, cap in zip(waits, caps, strict=True)), waits


def test_timeout_is_a_failed_try(db, clock, hooks):
    hooks.delay = 10.0  # released at teardown
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks, timeout=1)), now=clock)
    [row_id] = webhooks.enqueue("incident.created", {})
    assert webhooks.deliver_pending() == 0
    row = queries.get_outbox(row_id)
    assert row.state == "pending" and row.last_status is None
    # The try's deadline and the socket's timeout are both 1 s: either may fire first.
    assert re.fullmatch(r"no (complete )?response within 1 s", row.last_error), row.last_error


def test_redirect_is_not_followed(db, clock, hooks):
    hooks.statuses = [307]
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock)
    [row_id] = webhooks.enqueue("incident.created", {})
    assert webhooks.deliver_pending() == 0
    assert len(hooks.received) == 1
    assert queries.get_outbox(row_id).last_status == 307


def test_events_select_webhooks(db, clock):
    config = config_for({"url": "http://127.0.0.1:9/all"},
                        {"url": "http://127.0.0.1:9/incidents", "events": ["incident.*"]},
                        {"url": "http://127.0.0.1:9/vm", "events": ["voicemail.left"]})
    webhooks = Webhooks(lambda: config, now=clock)
    assert len(webhooks.enqueue("incident.created", {})) == 2
    assert len(webhooks.enqueue("voicemail.left", {})) == 2
    rows = queries.list_outbox()
    assert [(r.event, r.url.rsplit("/", 1)[1]) for r in rows] == [
        ("incident.created", "all"), ("incident.created", "incidents"),
        ("voicemail.left", "all"), ("voicemail.left", "vm")]
    assert len({r.delivery_id for r in rows}) == 4
    assert Webhooks(lambda: config_for(), now=clock).enqueue("incident.created", {}) == []
    assert matches(("*",), "x.y") and not matches(("incident.*",), "voicemail.left")


def test_emit_never_raises(db, clock, hooks):
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock)
    with structlog.testing.capture_logs() as logs:
        webhooks.emit("incident.created", {"thing": object()})
        webhooks.emit("Bad Event\r\n", {})
    assert [e["event"] for e in logs] == ["webhooks.emit_failed"] * 2
    assert OutboxMessage.select().count() == 0
    with pytest.raises(TypeError):
        webhooks.enqueue("incident.created", {"thing": object()})


def test_hostile_text_in_the_payload_is_plain_json(db, clock, hooks):
    hooks.start()
    name = "Evil\r\nX-Injected: 1\x00 \udc80 =?utf-8?q?x?="
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock)
    webhooks.enqueue("voicemail.left", {"caller_name": name})
    assert webhooks.deliver_pending() == 1
    [request] = hooks.received
    assert request.body.isascii() and "X-Injected" not in request.headers
    assert request.document["data"]["caller_name"] == name


def test_sender_greenlet_delivers_on_emit_and_retries(db, hooks):
    hooks.statuses = [500]
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks)), base_delay=0.1, poll_interval=600)
    webhooks.start()
    try:
        webhooks.emit("incident.created", {"incident_id": 5})  # wakes the sender at once
        wait_for(lambda: queries.list_outbox("delivered"), what="the delivery")
    finally:
        webhooks.stop()
    assert not webhooks.running
    assert len(hooks.received) == 2


def test_delivered_rows_are_purged_after_the_retention(db, clock, hooks):
    hooks.start()
    webhooks = Webhooks(lambda: config_for(hook(hooks)), now=clock,
                        retention=timedelta(days=1))
    webhooks.enqueue("incident.created", {})
    assert webhooks.deliver_pending() == 1
    clock.advance(2 * 86400)
    webhooks.deliver_pending()
    assert queries.list_outbox() == []


def test_body_is_stable_and_ascii():
    body = encode_body("incident.created", "d-1", T0, {"name": "Jörg"})
    assert body.isascii()
    assert json.loads(body)["data"]["name"] == "Jörg"
    with pytest.raises(ValueError):
        encode_body("incident.created", "d-1", T0, {"nan": float("nan")})


_GEVENT_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, sys, time
import gevent
from gevent.pywsgi import WSGIServer
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from fsrouter.config import Config
from fsrouter.notify.webhooks import Webhooks
from fsrouter.store import queries
from fsrouter.store.db import open_database
from fsrouter.store.migrations import upgrade

received = []

def app(environ, start_response):
    received.append(environ["HTTP_X_FSROUTER_DELIVERY"])
    gevent.sleep(0.3)  # a slow receiver: the hub must keep running meanwhile
    start_response("204 No Content", [])
    return [b""]

server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
url = f"http://127.0.0.1:{server.server_port}/hook"
config = Config.model_validate({"switch": {"password": "s3cret-esl"},
                                "webhooks": [{"url": url}]})
upgrade(open_database(sys.argv[1]))
ticks = []
def ticker():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)
tick = gevent.spawn(ticker)
webhooks = Webhooks(lambda: config)
webhooks.start()
start = time.monotonic()
for n in range(3):
    webhooks.emit("incident.created", {"n": n})
deadline = time.monotonic() + 20
while len(queries.list_outbox("delivered")) < 3 and time.monotonic() < deadline:
    gevent.sleep(0.02)
elapsed = time.monotonic() - start
webhooks.stop()
tick.kill()
server.stop()
print(json.dumps({"delivered": len(queries.list_outbox("delivered")),
                  "received": len(received), "ticks": len(ticks), "elapsed": elapsed}))
"""


def test_sender_is_cooperative_under_gevent_monkey_patching(tmp_path):
    """As the daemon runs it: urllib on gevent's sockets, the hub free while a receiver is
    slow (in a fresh process: monkey-patching cannot be undone inside pytest)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", textwrap.dedent(_GEVENT_SCRIPT), f"sqlite:///{tmp_path}/g.db"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["delivered"], result["received"]) == (3, 3)
    # Three 0.3 s answers one after another; a ticker every 10 ms ran meanwhile (a blocked
    # hub would have let it tick a few times at most).
    assert result["elapsed"] >= 0.9 and result["ticks"] >= 20, result
