"""The switch's inbound event socket (port 8021): auth, api/bgapi, event subscriptions.

Reply texts were observed on FreeSWITCH 1.11.1 (mod_event_socket): a command before ``auth``
gets ``-ERR command not found`` and the connection stays; a wrong password gets
``-ERR invalid``, a disconnect notice, and the socket closes; ``linger``/``nolinger`` without a
controlled session get ``-ERR not controlling a session``; ``myevents`` without a uuid gets
``-ERR command not found``; ``exit`` gets ``+OK bye`` and the goodbye notice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent
import gevent.server
import structlog
from gevent import socket

from fsrouter.sim import wire
from fsrouter.sim.outbound import Connection, EventFilter
from fsrouter.sim.wire import Command, Headers

if TYPE_CHECKING:
    from fsrouter.sim.switch import Simulator

log = structlog.get_logger(__name__)


class InboundConnection(Connection):
    """One client of the event socket: every subscribed event of every channel goes to it."""

    def __init__(self, sim: Simulator, sock: socket.socket) -> None:
        super().__init__(sim, sock)
        self.authed = False

    def offer(self, headers: Headers, head: dict[str, str], body: str | None) -> None:
        if self.filter.wants(head):
            self.send(wire.event_plain(headers, body))

    def serve(self) -> None:
        self.send(wire.auth_request())
        reader = wire.CommandReader()
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    break
                if self.sim.faults.slow_read_s:
                    gevent.sleep(self.sim.faults.slow_read_s)
                for cmd in reader.feed(data):
                    self.handle(cmd)
                    if self.closed:
                        break
        except (OSError, wire.FrameError) as exc:
            log.info("sim.inbound_read_error", error=str(exc))
        self.detach()

    def detach(self) -> None:
        if self.offer in self.sim.listeners:
            self.sim.listeners.remove(self.offer)
        self.close()

    def goodbye(self) -> None:
        self.send(wire.goodbye_notice())
        self.detach()

    def handle(self, cmd: Command) -> None:
        word = cmd.line.split(" ", 1)[0]
        if not self.authed:
            self.login(cmd, word)
            return
        handler = getattr(self, "cmd_" + word, None)
        if handler is None:
            self.send(wire.command_reply("-ERR command not found"))
            return
        handler(cmd)

    def login(self, cmd: Command, word: str) -> None:
        if word != "auth":
            self.send(wire.command_reply("-ERR command not found"))
            return
        if cmd.line[5:].strip() != self.sim.password:
            log.warning("sim.inbound_auth_failed")  # never log what was sent
            self.send(wire.command_reply("-ERR invalid"))
            self.goodbye()
            return
        self.authed = True
        self.sim.listeners.append(self.offer)
        self.send(wire.command_reply("+OK accepted"))

    def cmd_api(self, cmd: Command) -> None:
        self.api_reply(cmd, "")

    def cmd_bgapi(self, cmd: Command) -> None:
        self.bgapi(cmd, "")

    def cmd_event(self, cmd: Command) -> None:
        words = cmd.line.split()[1:]
        self.filter.subscribe(words)
        self.send(wire.command_reply("+OK event listener enabled plain"))

    def cmd_nixevent(self, cmd: Command) -> None:
        self.filter.unsubscribe(cmd.line.split()[1:])
        self.send(wire.command_reply("+OK events nixed"))

    def cmd_noevents(self, cmd: Command) -> None:
        filters = self.filter.filters
        self.filter = EventFilter()
        self.filter.filters = filters  # noevents drops subscriptions, not filters
        self.send(wire.command_reply("+OK no longer listening for events"))

    def cmd_filter(self, cmd: Command) -> None:
        words = cmd.line.split(" ", 3)[1:]
        if words[:1] == ["delete"] and len(words) >= 2:
            header, value = words[1], " ".join(words[2:])
            self.filter.filters = [f for f in self.filter.filters
                                   if f[0] != header or (value and f[1] != value)]
            self.send(wire.command_reply(f"+OK filter deleted. [{header}][{value}]"))
            return
        if words[:1] == ["add"]:
            words = " ".join(words[1:]).split(" ", 1)
        else:
            words = " ".join(words).split(" ", 1)
        if len(words) < 2 or not words[0] or not words[1]:
            self.send(wire.command_reply("-ERR invalid syntax"))
            return
        self.filter.filters.append((words[0], words[1]))
        self.send(wire.command_reply(f"+OK filter added. [{words[0]}]=[{words[1]}]"))

    def cmd_linger(self, cmd: Command) -> None:
        self.send(wire.command_reply("-ERR not controlling a session"))

    cmd_nolinger = cmd_linger

    def cmd_exit(self, cmd: Command) -> None:
        self.send(wire.command_reply("+OK bye"))
        self.goodbye()


class InboundServer:
    """Accepts event-socket clients on a loopback address; ``port`` is the bound port."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.connections: set[InboundConnection] = set()
        self._server = gevent.server.StreamServer((host, port), self._accept)
        self._server.init_socket()
        self.port: int = self._server.address[1]

    def start(self) -> None:
        self._server.start()
        log.info("sim.inbound_listening", host=self.host, port=self.port)

    def _accept(self, sock: socket.socket, address: tuple[str, int]) -> None:
        conn = InboundConnection(self.sim, sock)
        self.connections.add(conn)
        try:
            conn.serve()
        finally:
            self.connections.discard(conn)
            conn.writer.join(timeout=1)

    def stop(self) -> None:
        """Close the listener and drop every client, as a switch that stops does."""
        self._server.stop(timeout=0)
        for conn in list(self.connections):
            conn.detach()
            conn.abort()
