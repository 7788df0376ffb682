"""The listener's limits against sockets that hold slots hostage (issue 22.4), over real
loopback TCP from chosen source addresses (127.0.0.1 plays the switch, 127.0.0.x others)."""

from __future__ import annotations

import ipaddress
import time

import gevent
import gevent.event
import gevent.socket
from structlog.testing import capture_logs

from fsrouter.esl import OutboundServer
from fsrouter.esl.outbound import TARPIT_S, RefusalLog, peer_key
from fsrouter.testing.waiting import wait_for
from tests.protocol.esl_peer import Peer, recorded_connect_reply

LOOPBACK_NET = [ipaddress.ip_network("127.0.0.0/8")]
SWITCH = [ipaddress.ip_network("127.0.0.1/32")]


def dial_from(server: OutboundServer, source: str) -> Peer:
    sock = gevent.socket.socket()
    sock.bind((source, 0))
    sock.settimeout(2)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(None)
    return Peer(sock)


def test_the_whole_session_start_has_one_deadline(make_server) -> None:
    """A peer answering each of the four commands just in time held its slot 4 x 10 s."""
    called = []
    server = make_server(called.append, setup_timeout=1.0, switch_setup_timeout=1.0)
    peer = dial_from(server, "127.0.0.1")
    start = time.monotonic()
    peer.recv()  # connect
    gevent.sleep(0.4)
    peer.send(recorded_connect_reply())
    try:
        for text in ("+OK Events Enabled", "+OK will linger 10 seconds"):
            peer.recv()
            gevent.sleep(0.4)
            peer.reply(text)
    except AssertionError:
        pass  # closed on us: the deadline passed
    assert peer.at_eof(timeout=3)
    assert time.monotonic() - start < 1.8
    assert called == [] and server.active_calls == 0


def test_a_peer_that_is_not_the_switch_has_few_setups_and_the_switch_is_not_limited(
        make_server) -> None:
    server = make_server(lambda s: None, allow=LOOPBACK_NET, switch_addresses=SWITCH,
                         max_setups_per_peer=2)
    hostile = [dial_from(server, "127.0.0.5") for _ in range(3)]
    assert [p.recv().line for p in hostile[:2]] == ["connect", "connect"]
    third = hostile[2]
    # Refused, and held (not closed at once) so that it cannot reconnect in a tight loop.
    wait_for(lambda: server.refused == 1, 5, "the third connection refused")
    assert not third.at_eof(timeout=0.5) and third.commands.empty()
    assert third.at_eof(timeout=TARPIT_S + 2)
    # Another address, and the switch as often as it likes, still get in.
    assert dial_from(server, "127.0.0.6").recv().line == "connect"
    switch = [dial_from(server, "127.0.0.1") for _ in range(5)]
    assert [p.recv().line for p in switch] == ["connect"] * 5
    for peer in hostile + switch:
        peer.close()


def test_the_reserve_is_kept_for_the_switch(make_server) -> None:
    server = make_server(lambda s: None, allow=LOOPBACK_NET, switch_addresses=SWITCH,
                         max_calls=4, reserved_calls=2)
    others = [dial_from(server, f"127.0.0.{i}") for i in (5, 6, 7)]
    assert [p.recv().line for p in others[:2]] == ["connect", "connect"]
    wait_for(lambda: server.refused == 1, 5, "the third peer refused")
    assert others[2].commands.empty()
    switch = [dial_from(server, "127.0.0.1") for _ in range(3)]
    assert [p.recv().line for p in switch[:2]] == ["connect", "connect"]
    assert switch[2].at_eof(timeout=1)  # max_calls: the switch is refused at once
    for peer in others + switch:
        peer.close()


def test_refusals_are_logged_as_a_summary() -> None:
    refusals = RefusalLog(interval=0.2)
    with capture_logs() as logs:
        for i in range(1000):
            refusals.add(f"127.0.0.{5 + i % 2}", "max_setups_per_peer 10 reached")
        gevent.sleep(0.3)
        refusals.add("127.0.0.5", "setup failed: ESLTimeout")
        gevent.sleep(0.5)  # that interval's summary, then a quiet one ends the spell
        refusals.add("127.0.0.7", "address not allowed")
        refusals.stop()
    events = [(e["event"], e.get("total")) for e in logs]
    assert events == [("esl.outbound.refused", None), ("esl.outbound.refused_summary", 999),
                      ("esl.outbound.refused_summary", 1), ("esl.outbound.refused", None)]
    assert logs[1]["by_peer"] == {"127.0.0.6": 500, "127.0.0.5": 499}


def test_peer_key_counts_an_ipv6_host_by_its_64() -> None:
    assert peer_key("2001:db8:1:2::5") == peer_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert peer_key("::ffff:10.0.0.5") == "10.0.0.5"
    assert peer_key("10.0.0.5") == "10.0.0.5"
