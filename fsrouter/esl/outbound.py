"""The outbound ESL server: FreeSWITCH's ``socket`` app connects here once per call.

Built on ``gevent.server.StreamServer``, which accepts as soon as a connection arrives
(greenswitch polls its listening socket every 100 ms). Each accepted call gets its own
greenlet: address check, call limit, ``connect`` (the reply is the channel's data),
``myevents`` (then ``nixevent`` of ``unread_events``, the daemon's :data:`UNREAD_EVENTS`),
``linger``, ``event plain BACKGROUND_JOB CUSTOM fifo::info``, then ``handler(session)``.
When the handler returns, the socket is closed.

Example::

    def handler(session: OutboundSession) -> None:
        session.execute("answer").wait(timeout=5)
        session.hangup("NORMAL_CLEARING")

    server = OutboundServer("127.0.0.1", 8084, handler, max_calls=200)
    server.start()
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.server
import structlog

from fsrouter.esl.connection import Connection, ESLError

log = structlog.get_logger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
SESSION_EVENTS = ["BACKGROUND_JOB", "CUSTOM", "fifo::info"]
# ``myevents`` subscribes every channel event of the call (23 types, 3-7 KB each on a real
# switch: each one the switch builds, serialises and sends, and we parse). A call's socket
# in the daemon reads only CHANNEL_EXECUTE_COMPLETE (Connection), CHANNEL_BRIDGE,
# CHANNEL_HANGUP and CHANNEL_HANGUP_COMPLETE (calls/call.py) besides SESSION_EVENTS, so the
# daemon's server passes the rest (below) as ``unread_events``: ``nixevent`` drops them and
# keeps myevents' own-channel restriction (mod_event_socket clears only the event list).
# Measured with bench/events.py: 36 -> 25 frames, 97 -> 60 KB per call from the switch.
UNREAD_EVENTS = [
    "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER",
    "CHANNEL_APPLICATION", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_UNBRIDGE",
    "CHANNEL_EXECUTE", "CHANNEL_OUTGOING", "CHANNEL_ORIGINATE", "CHANNEL_PARK",
    "CHANNEL_UNPARK", "CHANNEL_DATA", "CHANNEL_UUID", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "DTMF",
    "TALK", "NOTALK", "DETECTED_SPEECH"]


class OutboundSession(Connection):
    """One call's outbound socket; after ``connect()`` it knows its channel."""

    def __init__(self, sock: Any, peer: tuple[str, int], **kwargs: Any) -> None:
        super().__init__(sock, name=f"outbound {peer[0]}:{peer[1]}", **kwargs)
        self.peer = peer
        self.channel: dict[str, str] = {}

    @property
    def uuid(self) -> str:
        return self.channel.get("Unique-ID", "")

    def connect(self, timeout: float | None = 10.0) -> dict[str, str]:
        """Send ``connect``; the reply's headers are the channel data (URL-decoded)."""
        reply = self.send("connect", timeout=timeout)
        if "Unique-ID" not in reply.headers:
            raise ESLError(f"connect reply carries no channel: {reply.reply_text[:80]!r}")
        self.channel = dict(reply.headers)
        self._log = self._log.bind(call_uuid=self.uuid)
        return self.channel

    def setup(self, linger_seconds: int | None = 10, timeout: float | None = 10.0,
              unread_events: Sequence[str] = ()) -> None:
        """The standard start: connect, myevents (less ``unread_events``), linger,
        BACKGROUND_JOB and fifo::info."""
        self.connect(timeout)
        self.myevents(timeout)
        if unread_events:
            self.command("nixevent " + " ".join(unread_events), timeout)
        self.linger(linger_seconds, timeout)
        self.events(SESSION_EVENTS, timeout)


def _allowed(address: str, allow: Iterable[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in allow)


LISTEN_BACKLOG = 1024  # capped by net.core.somaxconn


class OutboundServer:
    """Accepts the switch's outbound connections and runs ``handler(session)`` for each."""

    def __init__(
        self,
        bind: str,
        port: int,
        handler: Callable[[OutboundSession], Any],
        max_calls: int = 100,
        allow: Iterable[IPNetwork] | None = None,
        setup_timeout: float = 10.0,
        linger_seconds: int | None = 10,
        unread_events: Sequence[str] = (),
    ) -> None:
        self.bind = bind
        self.handler = handler
        self.max_calls = max_calls
        self.allow = list(allow) if allow is not None else list(LOOPBACK)
        self.setup_timeout = setup_timeout
        self.linger_seconds = linger_seconds
        self.unread_events = list(unread_events)
        self.sessions: set[OutboundSession] = set()
        self.refused = 0
        self._idle = gevent.event.Event()
        self._idle.set()
        # A burst of new calls while the process is busy must wait in the kernel's queue, not
        # be dropped: gevent's default backlog (128) overflowed at 500 calls/s in the soak test.
        self._server = gevent.server.StreamServer((bind, port), self._accept,
                                                  backlog=LISTEN_BACKLOG)

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        return self._server.server_port

    @property
    def active_calls(self) -> int:
        return len(self.sessions)

    def start(self) -> None:
        self._server.start()
        log.info("esl.outbound.listening", bind=self.bind, port=self.port)

    def stop(self, timeout: float = 0.0) -> bool:
        """Stop accepting; wait up to ``timeout`` s for running calls (drain).

        Returns True when no call is left. Calls still running are not cut off; use
        ``close_all()`` for that.
        """
        self._server.close()
        drained = self._idle.wait(timeout) if timeout > 0 else not self.sessions
        log.info("esl.outbound.stopped", running_calls=len(self.sessions), drained=drained)
        return drained

    def close_all(self, reason: str = "server shutting down") -> None:
        for session in list(self.sessions):
            session.close(reason)

    def _accept(self, sock: Any, address: tuple[str, int]) -> None:
        peer = (str(address[0]), int(address[1]))
        if not _allowed(peer[0], self.allow):
            self._refuse(sock, peer, "address not allowed")
            return
        if len(self.sessions) >= self.max_calls:
            self._refuse(sock, peer, f"max_calls {self.max_calls} reached")
            return
        session = OutboundSession(sock, peer)
        self.sessions.add(session)
        self._idle.clear()
        try:
            self._run(session)
        finally:
            session.close("call handler finished")
            self.sessions.discard(session)
            if not self.sessions:
                self._idle.set()

    def _refuse(self, sock: Any, peer: tuple[str, int], reason: str) -> None:
        self.refused += 1
        log.warning("esl.outbound.refused", peer=peer[0], port=peer[1], reason=reason)
        sock.close()

    def _run(self, session: OutboundSession) -> None:
        session.start()
        try:
            session.setup(self.linger_seconds, self.setup_timeout, self.unread_events)
        except ESLError as exc:
            log.warning("esl.outbound.setup_failed", peer=session.peer[0], error=str(exc))
            return
        try:
            self.handler(session)
        except ESLError as exc:
            # Usually the caller hung up and the socket closed under the handler.
            log.info("esl.outbound.handler_ended", call_uuid=session.uuid, error=str(exc))
        except Exception:
            log.exception("esl.outbound.handler_failed", call_uuid=session.uuid)
