"""A tiny fake switch for tests: real TCP sockets on 127.0.0.1, port 0, the real wire format.

It reads commands with ``CommandParser`` and answers with frames shaped like the recorded
FreeSWITCH 1.11.1 traffic, so the code under test meets the same bytes it meets in production.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.queue
import gevent.server
import gevent.socket

from fsrouter.esl.protocol import Command, CommandParser, encode_event, encode_frame

TRACE = Path("/work/shared/esl-traces/ivr_queue_escalation.jsonl")


def recorded_connect_reply() -> bytes:
    """The real switch's reply to ``connect`` (URL-encoded channel data), byte-exact."""
    for line in TRACE.read_text().splitlines()[1:]:
        rec = json.loads(line)
        if rec["conn"] == "outbound" and rec["dir"] == "fs->app":
            return rec["data"].encode()
    raise AssertionError("no connect reply in the trace")


CALLER_UUID = "19a44db4-d9a9-4c97-bc57-1027a1ffaea8"


class Peer:
    """The switch's side of one connection."""

    def __init__(self, sock: gevent.socket.socket) -> None:
        self.sock = sock
        self.parser = CommandParser()
        self.commands: gevent.queue.Queue = gevent.queue.Queue()
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.commands.put(None)
                return
            for command in self.parser.feed(data):
                self.commands.put(command)

    def recv(self, timeout: float = 2.0) -> Command:
        command = self.commands.get(timeout=timeout)
        assert command is not None, "the client closed the connection"
        return command

    def at_eof(self, timeout: float = 2.0) -> bool:
        """True if the client closed the socket (after any commands still queued)."""
        with gevent.Timeout(timeout, False):
            while True:
                if self.commands.get() is None:
                    return True
        return False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, text: str = "+OK", **extra: str) -> None:
        self.send(encode_frame({"Content-Type": "command/reply", "Reply-Text": text, **extra}))

    def api_response(self, body: str) -> None:
        self.send(encode_frame({"Content-Type": "api/response"}, body))

    def event(self, headers: dict[str, str], body: str = "") -> None:
        self.send(encode_event(headers, body))

    def complete(self, command: Command, response: str = "FILE PLAYED", **extra: str) -> None:
        """The CHANNEL_EXECUTE_COMPLETE the switch sends for a sendmsg execute."""
        self.event(
            {
                "Event-Name": "CHANNEL_EXECUTE_COMPLETE",
                "Unique-ID": CALLER_UUID,
                "Application": command.headers["execute-app-name"],
                "Application-Data": command.headers.get("execute-app-arg", ""),
                "Application-Response": response,
                "Application-UUID": command.headers["Event-UUID"],
                **extra,
            }
        )

    def job_done(self, job_uuid: str, result: str) -> None:
        self.event(
            {"Event-Name": "BACKGROUND_JOB", "Job-UUID": job_uuid, "Job-Command": "originate"},
            result,
        )

    def close(self) -> None:
        self.sock.close()
        self._reader.kill()


def socket_pair() -> tuple[gevent.socket.socket, Peer]:
    """A connected (client socket, fake switch peer) pair over real loopback TCP."""
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gevent.socket.create_connection(listener.getsockname(), timeout=2)
    client.settimeout(None)
    server_sock, _ = listener.accept()
    listener.close()
    return client, Peer(server_sock)


class FakeInboundSwitch:
    """A fake event socket (port 8021 side): auth, then ``handle(peer, command)``."""

    def __init__(
        self, password: str = "s3cret", handle: Callable[[Peer, Command], None] | None = None
    ) -> None:
        self.password = password
        self.handle = handle or answer_basic
        self.peers: list[Peer] = []
        self.accept_times: list[float] = []
        self.connected: gevent.queue.Queue = gevent.queue.Queue()
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._serve)
        self.server.start()

    @property
    def port(self) -> int:
        return self.server.server_port

    def _serve(self, sock: gevent.socket.socket, _addr: tuple) -> None:
        self.accept_times.append(time.monotonic())
        peer = Peer(sock)
        self.peers.append(peer)
        peer.send(b"Content-Type: auth/request\n\n")
        auth = peer.commands.get()
        if auth is None:
            return
        if auth.line != f"auth {self.password}":
            peer.reply("-ERR invalid")
            peer.send(encode_frame({"Content-Type": "text/disconnect-notice"}, "Disconnected.\n"))
            peer.close()
            return
        peer.reply("+OK accepted")
        self.connected.put(peer)
        while (command := peer.commands.get()) is not None:
            self.handle(peer, command)

    def stop(self) -> None:
        self.server.stop(timeout=1)
        for peer in self.peers:
            peer.close()


def answer_basic(peer: Peer, command: Command) -> None:
    """Answers like the real switch for the commands these tests use."""
    if command.line == "api status":
        peer.api_response("UP 0 years, 0 days\nFreeSWITCH (Version 1.11.1) is ready\n")
    elif command.name == "bgapi":
        job = command.headers["Job-UUID"]
        peer.reply(f"+OK Job-UUID: {job}", **{"Job-UUID": job})
        peer.job_done(job, "+OK 8355b685-55e7-4703-991e-c069910ad06e\n")
    elif command.name == "event":
        peer.reply("+OK event listener enabled plain")
    elif command.line == "exit":
        peer.reply("+OK bye")
        peer.close()
    else:
        peer.reply("-ERR command not found")
