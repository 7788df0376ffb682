"""OutboundServer over real loopback TCP; the test plays the switch dialling in."""

from __future__ import annotations

import ipaddress
import time

import gevent
import gevent.event
import gevent.socket
import pytest

from fsrouter.esl import OutboundServer, OutboundSession
from fsrouter.esl.outbound import CALL_EVENTS
from tests.protocol.esl_peer import CALLER_UUID, Peer, recorded_connect_reply


def dial(server: OutboundServer) -> Peer:
    """Connect like FreeSWITCH's ``socket`` app does."""
    sock = gevent.socket.create_connection(("127.0.0.1", server.port), timeout=2)
    sock.settimeout(None)
    return Peer(sock)


def switch_side_setup(peer: Peer) -> list[str]:
    """Answer the session start exactly as the recorded switch did."""
    lines = []
    connect = peer.recv()
    lines.append(connect.line)
    peer.send(recorded_connect_reply())
    for reply in (
        "+OK Events Enabled",
        "+OK event listener enabled plain",
        "+OK will linger 10 seconds",
    ):
        lines.append(peer.recv().line)
        peer.reply(reply)
    return lines


def answering_handler(seen: list) -> callable:
    def handler(session: OutboundSession) -> None:
        seen.append(dict(session.channel))
        done = session.execute("answer", timeout=2).wait(timeout=5)
        seen.append(done.get("Application-Response"))
        session.hangup("NORMAL_CLEARING", timeout=2)

    return handler


def run_switch_call(peer: Peer) -> list[str]:
    lines = switch_side_setup(peer)
    answer = peer.recv()
    peer.reply("+OK")
    peer.complete(answer, response="_none_")
    hangup = peer.recv()
    peer.reply("+OK")
    return lines + [answer.headers["execute-app-name"], hangup.headers["call-command"]]


def test_session_start_and_handler(make_server) -> None:
    seen: list = []
    server = make_server(answering_handler(seen))
    assert server.port > 0
    peer = dial(server)
    assert run_switch_call(peer) == [
        "connect",
        "myevents",
        "event plain BACKGROUND_JOB CUSTOM fifo::info",
        "linger 10",
        "answer",
        "hangup",
    ]
    assert peer.at_eof()  # the server closes the socket when the handler returns
    channel, response = seen
    assert channel["Unique-ID"] == CALLER_UUID
    assert channel["Caller-Caller-ID-Number"] == "+4915112345678"
    assert channel["Socket-Mode"] == "async" and channel["Control"] == "full"
    assert response == "_none_"


def test_read_events_replace_myevents_list_in_one_write(make_server) -> None:
    """The whole start is written before any reply (one write, one wake-up; the switch
    answers in order), and with ``read_events`` myevents' list is replaced by what a call
    reads (``nixevent ALL`` keeps myevents' own-channel restriction)."""
    seen: list = []
    server = make_server(answering_handler(seen), read_events=CALL_EVENTS)
    peer = dial(server)
    lines = [peer.recv().line for _ in range(5)]  # no reply sent yet
    assert lines == ["connect", "myevents", "nixevent ALL",
                     "event plain " + " ".join(CALL_EVENTS) + " BACKGROUND_JOB CUSTOM fifo::info",
                     "linger 10"]
    peer.send(recorded_connect_reply())
    for reply in ("+OK Events Enabled", "+OK events nixed", "+OK event listener enabled plain",
                  "+OK will linger 10 seconds"):
        peer.reply(reply)
    assert peer.recv().line == "sendmsg"  # the handler's answer
    assert set(CALL_EVENTS) == {"CHANNEL_EXECUTE_COMPLETE", "CHANNEL_BRIDGE", "CHANNEL_HANGUP",
                                "CHANNEL_HANGUP_COMPLETE"}


def test_a_refused_setup_command_ends_the_session(make_server) -> None:
    seen: list = []
    server = make_server(answering_handler(seen), read_events=CALL_EVENTS)
    peer = dial(server)
    for _ in range(5):
        peer.recv()
    peer.send(recorded_connect_reply())
    for reply in ("+OK Events Enabled", "-ERR no keywords supplied",
                  "+OK event listener enabled plain", "+OK will linger 10 seconds"):
        peer.reply(reply)
    assert peer.at_eof()  # closed without running the handler
    assert seen == []


def test_accept_is_immediate(make_server) -> None:
    server = make_server(lambda session: None)
    start = time.monotonic()
    peer = dial(server)
    peer.recv()  # "connect" arrives without a polling delay
    assert time.monotonic() - start < 0.05
    peer.close()


def test_garbage_ends_only_that_connection(make_server) -> None:
    seen: list = []
    server = make_server(answering_handler(seen))
    bad, good = dial(server), dial(server)
    bad.recv()
    bad.send(b"\x00\x01 garbage without colon\n\n")
    assert bad.at_eof()
    assert run_switch_call(good)[-1] == "hangup"
    assert good.at_eof()
    assert seen[-1] == "_none_"
    third = dial(server)  # and it keeps accepting
    assert third.recv().line == "connect"
    third.close()


def test_allow_list_refuses(make_server) -> None:
    called = []
    server = make_server(called.append, allow=[ipaddress.ip_network("10.0.0.0/8")])
    peer = dial(server)
    assert peer.at_eof(timeout=1)  # closed at once, never sent "connect"
    assert peer.commands.empty()
    assert server.refused == 1 and called == []


def test_max_calls_refuses_the_extra_call(make_server) -> None:
    release = gevent.event.Event()
    server = make_server(lambda session: release.wait(5), max_calls=1)
    first = dial(server)
    switch_side_setup(first)
    with gevent.Timeout(2):
        while server.active_calls < 1:
            gevent.sleep(0.01)
    second = dial(server)
    assert second.at_eof(timeout=1)
    assert server.refused == 1
    release.set()
    assert first.at_eof()
    third = dial(server)  # capacity is back
    assert third.recv().line == "connect"
    third.close()


def test_stop_drains_running_calls(make_server) -> None:
    release = gevent.event.Event()
    server = make_server(lambda session: release.wait(5))
    peer = dial(server)
    switch_side_setup(peer)
    with gevent.Timeout(2):
        while server.active_calls < 1:
            gevent.sleep(0.01)
    assert server.stop(timeout=0.1) is False  # still running: not drained
    with pytest.raises(OSError):
        gevent.socket.create_connection(("127.0.0.1", server.port), timeout=1)
    gevent.spawn_later(0.1, release.set)
    assert server.stop(timeout=2) is True
    assert server.active_calls == 0


def test_peer_hangs_up_during_setup(make_server) -> None:
    called = []
    server = make_server(called.append)
    peer = dial(server)
    peer.recv()
    peer.close()
    with gevent.Timeout(2):
        while server.active_calls:
            gevent.sleep(0.01)
    assert called == []
