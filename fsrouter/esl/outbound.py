"""The outbound ESL server: FreeSWITCH's ``socket`` app connects here once per call.

Built on ``gevent.server.StreamServer``, which accepts as soon as a connection arrives
(greenswitch polls its listening socket every 100 ms). Each accepted call gets its own
greenlet: address check, call limits, ``connect`` (the reply is the channel's data),
``myevents`` (then ``nixevent ALL`` and ``event plain`` of ``read_events``, the daemon's
:data:`CALL_EVENTS`, and of BACKGROUND_JOB and fifo::info), ``linger``, all in one write,
then ``handler(session)``.
When the handler returns, the socket is closed.

Sockets that connect and never answer must not hold the call slots hostage (issue 22.4):

- the whole session start has one deadline: ``setup_timeout`` (2 s; the switch answers in
  ~0.3 ms) for a peer that is not the switch, ``switch_setup_timeout`` (10 s) for the
  switch's own addresses, because the time also counts this process's own delays (measured:
  28 calls at once on a loaded 2-core test machine took over 2 s), and refusing the switch's
  call would not protect anything;
- ``switch_addresses`` are the switch's own: a peer that is allowed but not one of them may
  have at most ``max_setups_per_peer`` connections in setup at once (an IPv6 peer counts by
  its /64), and all of them together at most ``max_calls - reserved_calls`` calls, so the
  reserve is the switch's alone (``switch_addresses=None``: every allowed peer is a switch);
- refusals, and setups that fail for a peer that is not a switch, are logged as a summary
  every ``REFUSAL_SUMMARY_S`` (count per peer and per reason), not one line each;
- an allowed peer that is not a switch, refused for a limit, is closed after ``TARPIT_S``
  (at most ``TARPIT_MAX`` sockets wait so): a peer that reconnects as soon as it is closed
  would otherwise make the listener refuse thousands a second (measured: 2,400/s from 500
  sockets, enough CPU to push a real call's setup past 2 s). The switch is refused at once
  (its dialplan's fallback should not wait), and so is a peer that is not allowed at all.

Example::

    def handler(session: OutboundSession) -> None:
        session.execute("answer").wait(timeout=5)
        session.hangup("NORMAL_CLEARING")

    server = OutboundServer("127.0.0.1", 8084, handler, max_calls=200)
    server.start()
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.server
import structlog

from fsrouter.esl.commands import events_command
from fsrouter.esl.connection import Connection, ESLError
from fsrouter.esl.ids import bad_identifier, is_uuid
from fsrouter.esl.pending import CommandError
from fsrouter.esl.protocol import Frame

log = structlog.get_logger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
SESSION_EVENTS = ["BACKGROUND_JOB", "CUSTOM", "fifo::info"]
# ``myevents`` subscribes every channel event of the call (23 types, 3-7 KB each on a real
# switch: each one the switch builds, serialises and sends, and we parse). A call's socket
# in the daemon reads only CHANNEL_EXECUTE_COMPLETE (Connection), CHANNEL_BRIDGE,
# CHANNEL_HANGUP and CHANNEL_HANGUP_COMPLETE (calls/call.py) besides SESSION_EVENTS, so the
# daemon's server passes these as ``read_events``: ``nixevent ALL`` then drops myevents'
# list (keeping its own-channel restriction: mod_event_socket clears only the event list)
# and ``event plain`` names what is read. Measured with bench/events.py: 36 -> 23 frames,
# 97 -> 56 KB per call from the switch. (Before, a ``nixevent`` of the 22 unread types: 331
# bytes, which the switch reads one recv() per byte.) CHANNEL_HANGUP stays: when we hang the
# caller up ourselves, CHANNEL_HANGUP_COMPLETE comes after the flow has closed the record,
# which would then miss its cause (tests/e2e/test_sip_callers.py showed it on the switch).
CALL_EVENTS = ["CHANNEL_EXECUTE_COMPLETE", "CHANNEL_BRIDGE", "CHANNEL_HANGUP",
               "CHANNEL_HANGUP_COMPLETE"]


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
        return self._take_channel(self.send("connect", timeout=timeout))

    def _take_channel(self, reply: Frame) -> dict[str, str]:
        if "Unique-ID" not in reply.headers:
            raise ESLError(f"connect reply carries no channel: {reply.reply_text[:80]!r}")
        uuid = reply.headers["Unique-ID"]
        bad = bad_identifier(reply.headers.get) or (
            None if is_uuid(uuid) else f"Unique-ID: {uuid[:80]!r}")
        if bad is not None:
            # The channel's name goes into commands: not a UUID, no call (esl/ids.py).
            self.close(f"protocol error: connect reply names a channel by a non-UUID {bad}")
            raise ESLError(f"{self.name}: {self.close_reason}")
        self.channel = dict(reply.headers)
        self._log = self._log.bind(call_uuid=self.uuid)
        return self.channel

    def setup(self, linger_seconds: int | None = 10, timeout: float = 10.0,
              read_events: Sequence[str] | None = None) -> None:
        """The standard start (:func:`setup_commands`) in one write, all answered within
        ``timeout`` seconds together (a peer answering each just in time would hold its slot
        five times as long)."""
        replies = self.send_many(setup_commands(linger_seconds, read_events), timeout)
        self._take_channel(next(replies))  # a bad channel closes the socket at once
        for reply in replies:
            if reply.reply_text.startswith(("-ERR", "-USAGE")):
                raise CommandError(f"setup refused: {reply.reply_text[:80]}")


def setup_commands(linger_seconds: int | None = 10,
                   read_events: Sequence[str] | None = None) -> list[str]:
    """A call socket's start: connect, myevents (only ``read_events`` of it when given:
    ``nixevent ALL`` keeps myevents' own-channel restriction), BACKGROUND_JOB and fifo::info,
    linger."""
    subscribe = ["nixevent ALL"] if read_events is not None else []
    subscribe.append(events_command([*(read_events or ()), *SESSION_EVENTS]))
    linger = "linger" if linger_seconds is None else f"linger {int(linger_seconds)}"
    return ["connect", "myevents", *subscribe, linger]


def _allowed(address: str, allow: Iterable[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in allow)


def peer_key(address: str) -> str:
    """What the per-peer limit counts by: the address, or for IPv6 its /64 (one host may
    hold a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def host_networks(host: str, allow: Iterable[IPNetwork]) -> list[IPNetwork] | None:
    """``switch.host`` as the default ``switch_addresses``: itself when it is an address the
    listener allows; else None (every allowed peer counts as the switch, as before issue 22.4:
    a host name is not resolved here, set ``listener.switch_addresses`` then)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not _allowed(str(ip), allow):
        return None
    if ip.is_loopback:  # the dialplan may say localhost: 127.0.0.1 or ::1
        return list(dict.fromkeys(ipaddress.ip_network(a) for a in (ip, "127.0.0.1", "::1")))
    return [ipaddress.ip_network(ip)]


LISTEN_BACKLOG = 1024  # capped by net.core.somaxconn
SETUP_TIMEOUT = 2.0
SWITCH_SETUP_TIMEOUT = 10.0
REFUSAL_SUMMARY_S = 10.0
TARPIT_S = 2.0
TARPIT_MAX = 1000  # held sockets (file descriptors; the unit allows 65536)
_SUMMARY_PEERS = 20  # the most frequent peers named in a summary line
_TRACKED_PEERS = 10_000  # distinct peers counted per interval; the rest count as "other"


class RefusalLog:
    """Turned-away connections as a log summary: the first of a quiet spell logged at once,
    then one line per ``interval`` while they go on (2,691 lines in 30 s before, issue 22.4)."""

    def __init__(self, interval: float = REFUSAL_SUMMARY_S) -> None:
        self.interval = interval
        self.by_peer: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self._timer: gevent.Greenlet | None = None
        self.stopped = False  # the listener closed: its sessions' ends are not news

    def add(self, peer: str, reason: str) -> None:
        if self._timer is None and not self.stopped:  # quiet until now: say so at once
            log.warning("esl.outbound.refused", peer=peer, reason=reason)
            self._timer = gevent.spawn_later(self.interval, self._flush)
            return
        key = peer if peer in self.by_peer or len(self.by_peer) < _TRACKED_PEERS else "other"
        self.by_peer[key] += 1
        self.by_reason[reason] += 1

    def _flush(self) -> None:
        # A quiet interval ends the spell: the next refusal is logged at once again.
        self._timer = gevent.spawn_later(self.interval, self._flush) if self._summary() else None

    def _summary(self) -> bool:
        if not self.by_peer:
            return False
        log.warning("esl.outbound.refused_summary", seconds=self.interval,
                    total=sum(self.by_peer.values()), peers=len(self.by_peer),
                    by_peer=dict(self.by_peer.most_common(_SUMMARY_PEERS)),
                    by_reason=dict(self.by_reason))
        self.by_peer.clear()
        self.by_reason.clear()
        return True

    def stop(self) -> None:
        self.stopped = True
        if self._timer is not None:
            self._timer.kill()
            self._timer = None
        self._summary()


class OutboundServer:
    """Accepts the switch's outbound connections and runs ``handler(session)`` for each."""

    def __init__(
        self,
        bind: str,
        port: int,
        handler: Callable[[OutboundSession], Any],
        max_calls: int = 100,
        allow: Iterable[IPNetwork] | None = None,
        setup_timeout: float = SETUP_TIMEOUT,
        linger_seconds: int | None = 10,
        switch_addresses: Iterable[IPNetwork] | None = None,
        reserved_calls: int = 0,
        max_setups_per_peer: int = 10,
        switch_setup_timeout: float = SWITCH_SETUP_TIMEOUT,
        read_events: Sequence[str] | None = None,
    ) -> None:
        self.bind = bind
        self.handler = handler
        self.max_calls = max_calls
        self.allow = list(allow) if allow is not None else list(LOOPBACK)
        self.setup_timeout = setup_timeout
        self.switch_setup_timeout = switch_setup_timeout
        self.linger_seconds = linger_seconds
        self.switches = list(switch_addresses) if switch_addresses is not None else None
        self.reserved_calls = reserved_calls
        self.max_setups_per_peer = max_setups_per_peer
        self.read_events = None if read_events is None else list(read_events)
        self.sessions: set[OutboundSession] = set()
        self.others = 0  # sessions of peers that are not a switch
        self.in_setup: Counter[str] = Counter()  # by peer_key, peers that are not a switch
        self.refused = 0
        self.refusals = RefusalLog()
        self._tarpit: deque[tuple[float, Any]] = deque()  # (close at, socket), oldest first
        self._tarpit_closer: gevent.Greenlet | None = None
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
        self.refusals.stop()
        while self._tarpit:
            self._tarpit.popleft()[1].close()
        drained = self._idle.wait(timeout) if timeout > 0 else not self.sessions
        log.info("esl.outbound.stopped", running_calls=len(self.sessions), drained=drained)
        return drained

    def close_all(self, reason: str = "server shutting down") -> None:
        for session in list(self.sessions):
            session.close(reason)

    def _accept(self, sock: Any, address: tuple[str, int]) -> None:
        peer = (str(address[0]), int(address[1]))
        if not _allowed(peer[0], self.allow):
            # At once: such a peer gets nothing, not even a held descriptor (test_security).
            self._refuse(sock, peer, "address not allowed", at_once=True)
            return
        switch = self.switches is None or _allowed(peer[0], self.switches)
        reason = self._no_room(switch, peer_key(peer[0]))
        if reason:
            self._refuse(sock, peer, reason, at_once=switch)
            return
        session = OutboundSession(sock, peer)
        self.sessions.add(session)
        self._idle.clear()
        self.others += not switch
        try:
            self._run(session, switch)
        finally:
            session.close("call handler finished")
            self.sessions.discard(session)
            self.others -= not switch
            if not self.sessions:
                self._idle.set()

    def _no_room(self, switch: bool, key: str) -> str | None:
        """Why a new connection cannot have a slot (None: it can)."""
        if len(self.sessions) >= self.max_calls:
            return f"max_calls {self.max_calls} reached"
        if switch:
            return None
        if self.others >= self.max_calls - self.reserved_calls:
            return f"the last {self.reserved_calls} calls are kept for the switch"
        if self.in_setup[key] >= self.max_setups_per_peer:
            return f"max_setups_per_peer {self.max_setups_per_peer} reached"
        return None

    def _refuse(self, sock: Any, peer: tuple[str, int], reason: str,
                at_once: bool = False) -> None:
        self.refused += 1
        self.refusals.add(peer[0], reason)
        if at_once:
            sock.close()
            return
        # A copy of the descriptor: StreamServer closes ``sock`` when _accept returns.
        self._tarpit.append((time.monotonic() + TARPIT_S, sock.dup()))
        if len(self._tarpit) > TARPIT_MAX:
            self._tarpit.popleft()[1].close()
        if self._tarpit_closer is None:
            self._tarpit_closer = gevent.spawn(self._close_tarpit)

    def _close_tarpit(self) -> None:
        """Close each held socket when its time is up; ends when none is left."""
        while self._tarpit:
            wait = self._tarpit[0][0] - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
                continue
            self._tarpit.popleft()[1].close()
        self._tarpit_closer = None

    def _run(self, session: OutboundSession, switch: bool) -> None:
        session.start()
        key = peer_key(session.peer[0])
        if not switch:
            self.in_setup[key] += 1
            session.quiet = True  # its close is summarised below, not logged on its own
        try:
            session.setup(self.linger_seconds,
                          self.switch_setup_timeout if switch else self.setup_timeout,
                          self.read_events)
        except ESLError as exc:
            if switch:
                log.warning("esl.outbound.setup_failed", peer=session.peer[0], error=str(exc))
            else:
                self.refusals.add(session.peer[0], f"setup failed: {type(exc).__name__}")
            return
        finally:
            if not switch:
                self._setup_over(key)
        session.quiet = False
        try:
            self.handler(session)
        except ESLError as exc:
            # Usually the caller hung up and the socket closed under the handler.
            log.info("esl.outbound.handler_ended", call_uuid=session.uuid, error=str(exc))
        except Exception:
            log.exception("esl.outbound.handler_failed", call_uuid=session.uuid)

    def _setup_over(self, key: str) -> None:
        self.in_setup[key] -= 1
        if not self.in_setup[key]:
            del self.in_setup[key]  # the counter holds only peers in setup now
