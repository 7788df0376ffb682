"""Fixtures shared by the connection tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fsrouter.esl import Connection, OutboundServer
from tests.protocol.esl_peer import Peer, socket_pair


@pytest.fixture
def pair() -> Iterator[tuple[Connection, Peer]]:
    """A started Connection on one end of a real loopback TCP pair; the test plays the switch
    on the other end."""
    sock, peer = socket_pair()
    conn = Connection(sock, name="test")
    conn.start()
    yield conn, peer
    conn.close("test over")
    peer.close()


@pytest.fixture
def make_server() -> Iterator:
    """Starts OutboundServers on loopback port 0 (``make(handler, **kwargs)``); all are
    stopped and their sessions closed after the test."""
    servers: list[OutboundServer] = []

    def make(handler, **kwargs) -> OutboundServer:
        server = OutboundServer("127.0.0.1", 0, handler, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.close_all()
