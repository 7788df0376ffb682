"""Issue 19: with the switch unreachable the log says so once and then at growing intervals,
not on every attempt (the trial's log had a warning every 4 s). A real closed port on
loopback; the client retries as fast as it is told, the test counts the warnings."""

from __future__ import annotations

import gevent.server
import gevent.socket
import structlog

from fsrouter.esl import InboundClient
from fsrouter.esl.inbound import LOG_FAILURES_CAP, should_log_failure
from fsrouter.testing.waiting import wait_for
from tests.protocol.esl_peer import FakeInboundSwitch


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_warnings_come_at_growing_intervals_with_a_cap():
    logged = [n for n in range(1, 1001) if should_log_failure(n)]
    assert logged[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    gaps = [b - a for a, b in zip(logged, logged[1:], strict=False)]
    assert gaps == sorted(gaps) and max(gaps) == LOG_FAILURES_CAP


def test_an_unreachable_switch_is_logged_once_then_rarely():
    client = InboundClient("127.0.0.1", closed_port(), "s3cret", backoff_initial=0.001,
                           backoff_max=0.001, connect_timeout=1)
    with structlog.testing.capture_logs() as logs:
        client.start()
        try:
            wait_for(lambda: client.failed_attempts >= 300, 60, "300 failed attempts")
        finally:
            client.close()
    attempts = client.failed_attempts
    warnings = [e for e in logs if e["event"] == "esl.inbound.connect_failed"
                and e["log_level"] == "warning"]
    # 300 or more attempts: warnings at 1, 2, 4, ..., 256 (and 384 if it got that far).
    assert [e["failures"] for e in warnings] == [
        n for n in range(1, attempts + 1) if should_log_failure(n)]
    assert 9 <= len(warnings) <= 10 < attempts
    assert "cannot connect to 127.0.0.1" in warnings[0]["error"]
    assert warnings[0]["next_warning_at"] == 2 and warnings[-1]["next_warning_at"] > attempts


def test_coming_back_says_after_how_many_failed_attempts():
    # A bound socket that does not listen refuses connections; listening later is the
    # switch coming back on the same port (no race for the port with anyone else).
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake = FakeInboundSwitch()
    fake.server.stop()
    client = InboundClient("127.0.0.1", sock.getsockname()[1], "s3cret", backoff_initial=0.01,
                           backoff_max=0.01)
    with structlog.testing.capture_logs() as logs:
        client.start()
        try:
            wait_for(lambda: client.failed_attempts >= 5, 30, "5 failed attempts")
            sock.listen(16)
            fake.server = gevent.server.StreamServer(sock, fake._serve)
            fake.server.start()
            assert client.wait_connected(10)
        finally:
            client.close()
            fake.stop()
    back = [e for e in logs if e["event"] == "esl.inbound.reachable_again"]
    assert len(back) == 1 and back[0]["failed_attempts"] >= 5
