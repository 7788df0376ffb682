"""Fixtures shared by the connection tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fsrouter.esl import Connection
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
