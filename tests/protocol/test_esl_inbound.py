"""InboundClient over real loopback TCP against a fake event socket."""

from __future__ import annotations

import gevent
import gevent.socket
import pytest

from fsrouter.esl import AuthError, ConnectionClosed, InboundClient, NotConnected
from tests.protocol.esl_peer import FakeInboundSwitch, answer_basic


@pytest.fixture
def switch():
    fake = FakeInboundSwitch()
    yield fake
    fake.stop()


def test_connect_api_bgapi_events(switch) -> None:
    client = InboundClient("127.0.0.1", switch.port, "s3cret", events=["BACKGROUND_JOB"])
    client.connect(timeout=2)
    try:
        assert "is ready" in client.api("status", timeout=2)
        job = client.bgapi("originate loopback/1/x &park()", timeout=2)
        assert job.wait(timeout=2) == "+OK 8355b685-55e7-4703-991e-c069910ad06e\n"
        assert job.event is not None and job.event.job_uuid == job.job_uuid
    finally:
        client.close()
    assert not client.connected
    with pytest.raises(NotConnected):
        client.api("status")


def test_wrong_password_is_clear_and_secret_free(switch) -> None:
    client = InboundClient("127.0.0.1", switch.port, "wrong-Pa55")
    with pytest.raises(AuthError) as info:
        client.connect(timeout=2)
    assert "refused the password" in str(info.value)
    assert "wrong-Pa55" not in str(info.value) and "wrong-Pa55" not in repr(client)
    assert not client.connected


def test_nothing_listening() -> None:
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionClosed, match="cannot connect"):
        InboundClient("127.0.0.1", port, "x").connect(timeout=1)


def test_rude_rejection(switch) -> None:
    def reject(sock, _addr) -> None:
        sock.sendall(
            b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
        )
        sock.close()

    switch.server.stop()
    server = gevent.server.StreamServer(("127.0.0.1", 0), reject)
    server.start()
    try:
        with pytest.raises(ConnectionClosed, match="rude-rejection"):
            InboundClient("127.0.0.1", server.server_port, "x").connect(timeout=2)
    finally:
        server.stop()


def test_reconnects_with_backoff_and_resubscribes(switch) -> None:
    subscriptions: list[str] = []

    def handle(peer, command) -> None:
        if command.name == "event":
            subscriptions.append(command.line)
        answer_basic(peer, command)

    switch.handle = handle
    reconnects: list[int] = []
    events: list[str] = []
    client = InboundClient(
        "127.0.0.1",
        switch.port,
        "s3cret",
        events=["CHANNEL_CREATE"],
        on_reconnect=lambda c: reconnects.append(c.connects),
        backoff_initial=0.2,
        backoff_max=0.5,
    )
    client.on_event(lambda event: events.append(event.name))
    client.start()
    try:
        first = switch.connected.get(timeout=2)
        assert client.wait_connected(2)  # logged in and subscribed
        first.event({"Event-Name": "CHANNEL_CREATE"})
        with gevent.Timeout(2):
            while not events:
                gevent.sleep(0.01)
        first.close()  # the switch restarts
        second = switch.connected.get(timeout=3)
        second.event({"Event-Name": "CHANNEL_HANGUP_COMPLETE"})
        with gevent.Timeout(2):
            while len(events) < 2 or len(reconnects) < 2:
                gevent.sleep(0.01)
        assert reconnects == [1, 2]
        assert subscriptions == ["event plain CHANNEL_CREATE"] * 2
        assert events == ["CHANNEL_CREATE", "CHANNEL_HANGUP_COMPLETE"]  # callback survives
        gap = switch.accept_times[1] - switch.accept_times[0]
        assert gap >= 0.2  # never straight back in
        assert "is ready" in client.api("status", timeout=2)
    finally:
        client.close()


def test_backoff_grows_with_jitter_and_cap() -> None:
    client = InboundClient("127.0.0.1", 1, "x", backoff_initial=1.0, backoff_max=30.0)
    delays = [[client.backoff_delay(n) for _ in range(50)] for n in range(1, 10)]
    assert all(1.0 <= d <= 1.5 for d in delays[0])
    assert all(2.0 <= d <= 3.0 for d in delays[1])
    assert all(d <= 30.0 for row in delays for d in row)
    assert min(delays[8]) == 30.0
    assert len(set(delays[2])) > 10  # jitter spreads reconnect storms


def test_failed_attempts_back_off() -> None:
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = InboundClient("127.0.0.1", port, "x", backoff_initial=0.05, backoff_max=0.2)
    attempts: list[float] = []
    original = client.connect

    def counting_connect(timeout=None) -> None:
        attempts.append(gevent.get_hub().loop.now())
        original(timeout)

    client.connect = counting_connect
    client.start()
    gevent.sleep(0.8)
    client.close()
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 3 <= len(attempts) <= 12
    assert all(g >= 0.045 for g in gaps)
    assert gaps[-1] >= 0.15  # grew towards the cap
