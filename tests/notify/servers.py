"""Real servers on loopback for the notify tests: an SMTP server (aiosmtpd) and an HTTP
receiver that checks webhook signatures, plus a clock and a store for the tests to drive.

"Server down, then up" uses a socket bound to 127.0.0.1 port 0 that does not listen yet:
connections to it are refused (the server is down) and the same port starts serving when the
server is started on that socket, with no window in which another process could take it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from fsrouter.config import Config
from fsrouter.store.db import close_database, open_database
from fsrouter.store.migrations import upgrade

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # 14:00 in Berlin (CEST)


class Clock:
    """A hand-moved clock for ``now=``."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


def make_config(**sections: Any) -> Config:
    data = {"switch": {"password": "s3cret-esl"}, **sections}
    return Config.model_validate(data, context={"region": "DE"})


@contextmanager
def store(path: Path) -> Iterator[Any]:
    """The SQLite database file at ``path``, opened, bound and upgraded (a "process")."""
    db = open_database(f"sqlite:///{path}")
    upgrade(db)
    try:
        yield db
    finally:
        close_database(db)


def refusing_socket() -> socket.socket:
    """Bound to a free loopback port but not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# ---------------------------------------------------------------- SMTP


@dataclass
class SmtpHandler:
    """Keeps what arrives; ``replies`` are answered to DATA in order (then 250)."""

    replies: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    password: bytes | None = None  # AUTH is offered when set

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(envelope.original_content)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == self.password, handled=False)


class _SocketController(Controller):
    """aiosmtpd on a socket we bound ourselves (port 0 read back, or the refusing socket)."""

    def __init__(self, handler: SmtpHandler, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class SmtpServer:
    def __init__(self, sock: socket.socket | None = None, password: bytes | None = None) -> None:
        self.sock = sock or refusing_socket()
        self.port = self.sock.getsockname()[1]
        self.handler = SmtpHandler(password=password)
        extra: dict[str, Any] = {}
        if password is not None:
            extra = {"authenticator": self.handler.authenticate, "auth_require_tls": False}
        self._controller = _SocketController(self.handler, self.sock, **extra)
        self.started = False

    def start(self) -> SmtpServer:
        self._controller.start()
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self._controller.stop()
            self.started = False
        self.sock.close()


# ---------------------------------------------------------------- HTTP


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


class HookServer:
    """Receives webhook POSTs; answers 401 to a bad or missing signature when it has a
    ``secret``, else the next of ``statuses`` (then 200). ``delay`` holds each answer."""

    def __init__(self, secret: str | None = None, sock: socket.socket | None = None) -> None:
        self.secret = secret
        self.statuses: list[int] = []
        self.delay = 0.0
        self.received: list[Received] = []
        self.release = threading.Event()  # ends a delayed answer early (teardown)
        self.sock = sock or refusing_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/fsrouter"
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HookServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                owner.received.append(Received(self.path, dict(self.headers.items()), body))
                if owner.delay:
                    owner.release.wait(owner.delay)
                status = owner.answer(self.headers.get("X-Fsrouter-Signature"), body)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", owner.url + "/moved")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler,
                                                 bind_and_activate=False)
        server.socket.close()
        server.socket = self.sock
        server.server_address = self.sock.getsockname()
        server.server_activate()  # listen(): from now on the port answers
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def answer(self, signature_header: str | None, body: bytes) -> int:
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not signature_header or not hmac.compare_digest(signature_header, expected):
                return 401
        return self.statuses.pop(0) if self.statuses else 200

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None
        self.sock.close()
