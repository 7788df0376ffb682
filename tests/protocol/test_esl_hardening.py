"""Whatever connects (issue 22.1, 22.3, 22.6): identifiers, buffered bytes, malformed input.

Every test plays the switch on a real loopback TCP socket against the real connection code.
The modules new with the issue (fsrouter.esl.ids, .buffers) are imported where used, so the
other tests run (and fail for what they check) on the code before it.
"""

from __future__ import annotations

import json
import urllib.parse

import gevent
import gevent.socket
import pytest
from structlog.testing import capture_logs

from fsrouter.esl import Connection, OutboundServer, OutboundSession
from fsrouter.esl.protocol import encode_frame
from fsrouter.testing.waiting import wait_for
from tests.protocol.esl_peer import CALLER_UUID, Peer, recorded_connect_reply, socket_pair

TRAVERSAL = "abe/../../../tmp/x"  # sent as abe%2F..%2F..%2F..%2Ftmp%2Fx (issue 22.1)


def dial(server: OutboundServer) -> Peer:
    sock = gevent.socket.create_connection(("127.0.0.1", server.port), timeout=2)
    sock.settimeout(None)
    return Peer(sock)


def connect_reply_with(uuid: str) -> bytes:
    """The recorded connect reply with its channel renamed (every header that names it)."""
    encoded = urllib.parse.quote(uuid, safe="")
    return recorded_connect_reply().replace(CALLER_UUID.encode(), encoded.encode())


@pytest.fixture
def server():
    handled: list[OutboundSession] = []
    srv = OutboundServer("127.0.0.1", 0, handled.append, setup_timeout=5)
    srv.start()
    srv.handled = handled  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    srv.close_all()


# -- 22.1 identifiers ------------------------------------------------------------------------

@pytest.mark.parametrize("uuid", [TRAVERSAL, "abe", f"{CALLER_UUID} x", f"{CALLER_UUID}\n",
                                  "1733efbb-1105-4fc4-a8af-6c950f354d6g", ""])
def test_a_connect_reply_naming_no_uuid_ends_the_call_socket(server, uuid):
    peer = dial(server)
    assert peer.recv().line == "connect"
    with capture_logs() as logs:
        peer.send(connect_reply_with(uuid))
        # No command carrying the name is sent (the subscriptions went with `connect`, in
        # one write); the socket closes at once.
        assert peer.at_eof(timeout=5), "the call socket stayed open"
        wait_for(lambda: any(e.get("event") == "esl.outbound.setup_failed" for e in logs), 5,
                 "the setup failure logged")
    closed = [e for e in logs if e.get("event") == "esl.closed"]
    assert closed and "protocol error" in closed[0]["reason"]
    assert "non-UUID" in closed[0]["reason"] or "no channel" in closed[0]["reason"]
    assert server.handled == []


def test_a_real_connect_reply_is_served(server):
    peer = dial(server)
    assert peer.recv().line == "connect"
    peer.send(recorded_connect_reply())
    assert peer.recv().line == "myevents"


def test_events_naming_a_channel_by_no_uuid_are_dropped_with_a_reason():
    sock, peer = socket_pair()
    conn = Connection(sock, name="test")
    conn.start()
    seen: list[str] = []
    conn.on_event(lambda event: seen.append(event.get("Event-Name") or ""), inline=True)
    with capture_logs() as logs:
        peer.event({"Event-Name": "CHANNEL_HANGUP", "Unique-ID": TRAVERSAL})
        peer.event({"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": CALLER_UUID,
                    "Other-Leg-Unique-ID": "x;uuid_kill all"})
        peer.event({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": CALLER_UUID.upper()})
        wait_for(lambda: seen, 5, "the good event")
    assert seen == ["CHANNEL_ANSWER"]
    assert conn.dropped_events == 2 and conn.bad_identifiers == 2 and not conn.closed
    # The first is logged, then the 10th, 100th...: a sendevent flood does not flood the log.
    reasons = [e["header"] for e in logs if e.get("event") == "esl.bad_identifier"]
    assert reasons == [f"Unique-ID: {TRAVERSAL!r}"]
    conn.close("test over")
    peer.close()


def test_what_counts_as_a_uuid():
    from fsrouter.esl.ids import bad_identifier, check_uuid, is_uuid

    assert is_uuid(CALLER_UUID) and is_uuid(CALLER_UUID.upper())
    for bad in ("", TRAVERSAL, CALLER_UUID + "\n", CALLER_UUID[:-1], "{" + CALLER_UUID + "}",
                CALLER_UUID.replace("-", ""), "١" * 8 + CALLER_UUID[8:], None, 5):
        assert not is_uuid(bad), bad
    assert check_uuid(CALLER_UUID, "Unique-ID") == CALLER_UUID
    with pytest.raises(Exception, match="Unique-ID is not a UUID"):
        check_uuid(TRAVERSAL, "Unique-ID")
    assert bad_identifier({"Unique-ID": CALLER_UUID, "Job-UUID": "any"}.get) is None


# -- 22.6 malformed input is a protocol error --------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MALFORMED = {
    "event-json nested 100,000 deep": encode_frame(
        {"Content-Type": "text/event-json"}, '{"Event-Name": "X", "a": ' + nested(100_000) + "}"),
    "event-json body nested": encode_frame(
        {"Content-Type": "text/event-json"},
        json.dumps({"Event-Name": "X"})[:-1] + ', "_body": ' + nested(100_000) + "}"),
    "event-json lone surrogate": encode_frame(
        {"Content-Type": "text/event-json"}, '{"Event-Name": "\\ud800"}'),
    "event-json not an object": encode_frame({"Content-Type": "text/event-json"}, "[1]"),
    "Linger-Time ²": encode_frame({"Content-Type": "text/disconnect-notice",
                                   "Content-Disposition": "linger", "Linger-Time": "²"}),
    "Linger-Time Arabic-Indic 5": encode_frame({"Content-Type": "text/disconnect-notice",
                                                "Content-Disposition": "linger",
                                                "Linger-Time": "\u0665"}),
    "Content-Length ²": b"Content-Type: api/response\nContent-Length: \xc2\xb2\n\nxx",
    "event Content-Length ²": encode_frame(
        {"Content-Type": "text/event-plain"}, "Event-Name: X\nContent-Length: %C2%B2\n\nxx"),
    "header not UTF-8": b"Content-Type: command/reply\nReply-Text: \xff\xfe\n\n",
    "event line without a name": encode_frame({"Content-Type": "text/event-plain"},
                                              "Event-Name: X\n: y\n\n"),
    "reply nobody asked for": encode_frame({"Content-Type": "command/reply",
                                            "Reply-Text": "+OK"}),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_ends_the_connection_as_a_protocol_error(name):
    sock, peer = socket_pair()
    conn = Connection(sock, name="test")
    conn.start()
    conn.on_event(lambda event: (event.headers, event.body), inline=True)
    peer.send(MALFORMED[name])
    assert conn.wait_closed(10), "the connection took the input"
    assert (conn.close_reason or "").startswith("protocol error"), conn.close_reason
    peer.close()


def test_bad_percent_encoding_and_latin1_values_are_read_not_refused():
    sock, peer = socket_pair()
    conn = Connection(sock, name="test")
    conn.start()
    peer.send(encode_frame({"Content-Type": "text/event-plain"},
                           "Event-Name: X\nCaller-Caller-ID-Name: %zz%4%FF%E9t%C3\n\n"))
    event = conn.next_event(5)
    assert event.get("Caller-Caller-ID-Name") == "%zz%4\ufffd\ufffdt\ufffd"
    assert not conn.closed
    conn.close("test over")
    peer.close()


def test_a_plain_linger_without_seconds_is_no_error():
    sock, peer = socket_pair()
    conn = Connection(sock, name="test")
    conn.start()
    peer.send(encode_frame({"Content-Type": "text/disconnect-notice",
                            "Content-Disposition": "linger", "Linger-Time": "-1"}))
    wait_for(lambda: conn.lingering, 5, "the linger notice")
    assert conn.linger_time is None and not conn.closed
    conn.close("test over")
    peer.close()


# -- 22.3 bytes buffered ------------------------------------------------------------------------

def flood_event(index: int, size: int) -> bytes:
    return encode_frame({"Content-Type": "text/event-plain"},
                        f"Event-Name: CUSTOM\nUnique-ID: {CALLER_UUID}\nSeq: {index}\n"
                        f"Content-Length: {size}\n\n" + "x" * size)


def test_events_before_the_connect_reply_are_bounded_in_bytes(server):
    """Events sent before the connect reply queue for next_event (nobody reads them): past
    the connection's byte cap it is ended with a logged reason, its bytes returned."""
    peer = dial(server)
    assert peer.recv().line == "connect"
    with capture_logs() as logs:
        sent = 0
        try:
            # 64 KB each: 300 would be ~19 MB, over the 16 MB cap; the old count cap (10,000)
            # would have kept them all.
            for index in range(300):
                peer.send(flood_event(index, 64 * 1024))
                sent += 1
        except OSError:
            pass  # closed under us: what we want
        assert peer.at_eof(timeout=10), "the flooding connection was not closed"
        wait_for(lambda: not server.sessions, 10, "the session gone")
    closed = [e for e in logs if e.get("event") == "esl.closed"]
    assert closed and "over its cap" in closed[0]["reason"], closed
    assert sent < 300 or closed
    from fsrouter.esl import buffers as buffers_module

    # Its ~16 MB given back (what other tests' open connections hold is a few KB).
    assert buffers_module.SHARED.used < 1024 * 1024
    assert server.handled == []


def test_all_connections_together_are_bounded(monkeypatch):
    """A budget shared by every connection: the one that would take it over is ended; the
    others keep what they have and carry on."""
    from fsrouter.esl import buffers as buffers_module
    from fsrouter.esl.buffers import ByteBudget

    budget = ByteBudget(3 * 1024 * 1024)
    monkeypatch.setattr(buffers_module, "SHARED", budget)
    pairs = [socket_pair() for _ in range(3)]
    conns = [Connection(sock, name=f"c{i}") for i, (sock, _) in enumerate(pairs)]
    for conn in conns:
        conn.start()
    for index, (_, peer) in enumerate(pairs[:2]):
        for seq in range(10):  # ~1.3 MB each, queued (nobody reads)
            peer.send(flood_event(seq, 128 * 1024))
        wait_for(lambda i=index: conns[i].buffers.used > 1_200_000, 10, "queued")
    assert not any(conn.closed for conn in conns)
    for seq in range(10):
        try:
            pairs[2][1].send(flood_event(seq, 128 * 1024))
        except OSError:
            break
    assert conns[2].wait_closed(10)
    assert "all connections together" in (conns[2].close_reason or "")
    assert not conns[0].closed and not conns[1].closed
    assert conns[0].next_event(1).get("Seq") == "0"  # still served
    for conn in conns:
        conn.close("test over")
    for _, peer in pairs:
        peer.close()
    assert budget.used == 0


def test_a_partial_frame_counts_against_the_cap():
    sock, peer = socket_pair()
    conn = Connection(sock, name="test", max_buffer_bytes=1024 * 1024)
    conn.start()
    peer.send(b"Content-Type: api/response\nContent-Length: 4000000\n\n")
    try:
        for _ in range(40):
            peer.send(b"y" * 65536)
    except OSError:
        pass
    assert conn.wait_closed(10)
    assert "a partial frame" in (conn.close_reason or ""), conn.close_reason
    peer.close()


# -- 22.6 a stall during the resync ---------------------------------------------------------------

def test_a_reply_held_back_during_the_resync_is_noticed_as_a_stall():
    """The switch holds back the reply to the resync's first command (the daemon's
    on_reconnect lists the channels): the keepalive notices within keepalive_s +
    keepalive_timeout (4.5 s; bound 10 s here for a busy machine), not after that command's
    own timeout (30 s here; 15.6 s measured with the daemon's), and the client reconnects."""
    import time

    from fsrouter.esl import InboundClient
    from tests.protocol.esl_peer import FakeInboundSwitch, answer_basic

    held: list[float] = []

    def handle(peer: Peer, command) -> None:
        if command.line == "api show channels as json" and not held:
            held.append(time.monotonic())  # never answered
            return
        if command.line == "api show channels as json":
            peer.api_response('{"row_count": 0}')
            return
        answer_basic(peer, command)

    def resync(client: InboundClient) -> None:
        client.api("show channels as json", timeout=30)

    switch = FakeInboundSwitch(handle=handle)
    client = InboundClient("127.0.0.1", switch.port, "s3cret", events=["CHANNEL_CREATE"],
                           on_reconnect=resync, keepalive_s=1.5, keepalive_timeout=3.0,
                           backoff_initial=0.2, backoff_max=0.5)
    client.start()
    try:
        wait_for(lambda: held, 10, "the resync's command")
        first = client.conn
        assert first is not None
        assert first.wait_closed(20), "the stall was not noticed"
        noticed = time.monotonic() - held[0]
        assert noticed < 10, f"noticed after {noticed:.1f} s"
        assert "keepalive" in (first.close_reason or ""), first.close_reason
        wait_for(lambda: client.connects >= 2 and client.connected, 10, "a new connection")
    finally:
        client.close()
        switch.stop()
