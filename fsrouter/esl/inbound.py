"""The inbound ESL client: fsrouter connects to the switch's event socket (port 8021).

Simple use::

    client = InboundClient("127.0.0.1", 8021, password, events=["CHANNEL_HANGUP_COMPLETE"])
    client.connect()
    print(client.api("status"))

Long-running use: ``client.start()`` keeps a connection up in a background greenlet,
reconnecting with exponential backoff and jitter (at most one attempt per ``backoff_initial``
seconds at first, at most ``backoff_max`` seconds apart), re-subscribing, and calling
``on_reconnect(client)`` after every successful (re)connection so the daemon can reconcile
its state with the switch. With ``keepalive_s`` it also notices a connection that went
silent (no reply to ``api status``) and replaces it, from the moment it is logged in: also
while ``on_reconnect`` resynchronises (a reply held back there used to go unnoticed until
that command's own timeout, 15.6 s measured; issue 22.6).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket
import structlog

from fsrouter.esl.buffers import MAX_EVENT_CONNECTION_BYTES
from fsrouter.esl.connection import (
    Connection,
    ConnectionClosed,
    ESLError,
    ESLTimeout,
    EventCallback,
    Execution,
    Job,
)
from fsrouter.esl.protocol import UnsafeCommand

log = structlog.get_logger(__name__)
# A switch that stays unreachable is retried every few seconds, but said so in the log only
# at failed attempts 1, 2, 4, 8, ... and then every LOG_FAILURES_CAP-th (about every 8 min
# at the daemon's 4 s): the log stays readable through a long outage. Every attempt is
# logged at debug level.
LOG_FAILURES_CAP = 128


class AuthError(ESLError):
    """The switch refused our password (the message never contains the password)."""


class NotConnected(ESLError):
    """No connection to the switch right now."""


class InboundClient:
    """A client of the switch's event socket; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        events: list[str] | None = None,
        *,
        on_reconnect: Callable[[InboundClient], Any] | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        connect_timeout: float = 5.0,
        keepalive_s: float | None = None,
        keepalive_timeout: float = 3.0,
    ) -> None:
        if any(c in password for c in "\r\n\x00"):
            raise UnsafeCommand("the ESL password contains a line break or NUL")
        self.host = host
        self.port = port
        self._password = password
        self.events = list(events or [])
        self.on_reconnect = on_reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.keepalive_timeout = keepalive_timeout
        self.conn: Connection | None = None
        self.connects = 0
        self._callbacks: list[EventCallback] = []
        self._runner: gevent.Greenlet | None = None
        self._stopping = False
        self._connected = gevent.event.Event()
        self.failed_attempts = 0  # connection attempts that failed, ever
        self._log = log.bind(host=host, port=port)

    def __repr__(self) -> str:  # never show the password
        return f"InboundClient({self.host!r}, {self.port})"

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def connect(self, timeout: float | None = None) -> None:
        """Open, authenticate and subscribe; raises AuthError, ESLTimeout, ConnectionClosed."""
        timeout = self.connect_timeout if timeout is None else timeout
        if self.conn is not None:
            self.conn.close("replaced by a new connection")
        try:
            sock = gevent.socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise ConnectionClosed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        sock.settimeout(None)  # the reader blocks; every wait has its own timeout
        # Every channel's events: its dispatch queue needs more room than a call's socket.
        conn = Connection(sock, name=f"inbound {self.host}:{self.port}",
                          max_buffer_bytes=MAX_EVENT_CONNECTION_BYTES)
        for callback in self._callbacks:
            conn.on_event(callback)
        conn.start()
        try:
            self._login(conn, timeout)
        except BaseException:
            conn.close("login failed")
            raise
        self.conn = conn
        self.connects += 1
        self._connected.set()
        self._log.info("esl.inbound.connected", connects=self.connects)

    def _login(self, conn: Connection, timeout: float | None) -> None:
        conn.wait_auth_request(timeout)
        reply = conn.send(f"auth {self._password}", timeout=timeout)
        if not reply.reply_text.startswith("+OK"):
            # Reply-Text is the switch's own text ("-ERR invalid"); it never echoes the password.
            raise AuthError(f"{self.host}:{self.port} refused the password: {reply.reply_text}")
        if self.events:
            conn.events(self.events, timeout)

    def _live(self) -> Connection:
        conn = self.conn
        if conn is None or conn.closed:
            raise NotConnected(f"not connected to {self.host}:{self.port}")
        return conn

    def api(self, cmd: str, timeout: float | None = 10.0) -> str:
        return self._live().api(cmd, timeout)

    def bgapi(self, cmd: str, job_uuid: str | None = None, timeout: float | None = 10.0) -> Job:
        """Start a background job; subscribe to BACKGROUND_JOB to receive its result."""
        return self._live().bgapi(cmd, job_uuid, timeout)

    def execute(
        self, uuid: str, app: str, arg: str | None = None, timeout: float | None = 10.0
    ) -> Execution:
        """``sendmsg <uuid>`` execute; needs CHANNEL_EXECUTE_COMPLETE in the subscription."""
        return self._live().execute(app, arg, uuid=uuid, timeout=timeout)

    def subscribe(self, events: list[str], timeout: float | None = 10.0) -> None:
        """Add event names; they are subscribed now (if connected) and after reconnects."""
        for name in events:
            if name not in self.events:
                self.events.append(name)
        if self.connected:
            self._live().events(self.events, timeout)

    def on_event(self, callback: EventCallback) -> None:
        """``callback(event)`` for every event, on this and every later connection."""
        self._callbacks.append(callback)
        if self.conn is not None and not self.conn.closed:
            self.conn.on_event(callback)

    def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._stopping = True
        if self.conn is not None:
            self.conn.close("client closed")
        runner = self._runner
        if runner is not None and runner is not gevent.getcurrent():
            runner.kill(block=True, timeout=5)

    def start(self) -> None:
        """Run ``run_forever`` in a background greenlet."""
        self._stopping = False
        self._runner = gevent.spawn(self.run_forever)

    def wait_connected(self, timeout: float | None) -> bool:
        return self._connected.wait(timeout)

    def run_forever(self) -> None:
        """Keep a connection up until ``close()``; back off between failed attempts."""
        failures = 0
        while not self._stopping:
            try:
                self.connect()
            except ESLError as exc:
                failures += 1
                self.failed_attempts += 1
                self._log_failure(exc, failures)
                gevent.sleep(self.backoff_delay(failures))
                continue
            if failures:
                self._log.info("esl.inbound.reachable_again", failed_attempts=failures)
            failures = 0
            assert self.conn is not None
            # Before the resync: a reply held back while it runs is a stall like any other.
            keeper = gevent.spawn(self._keep_alive, self.conn) if self.keepalive_s else None
            self._after_connect()
            self.conn.wait_closed(None)
            self.conn.discard_events()  # stale now: the next connection resynchronises
            if keeper is not None:
                keeper.kill(block=False)
            self._connected.clear()
            if not self._stopping:
                self._log.warning("esl.inbound.lost", reason=self.conn.close_reason)
                # Even after a clean session, never hammer the switch faster than the base rate.
                gevent.sleep(self.backoff_delay(1))

    def _keep_alive(self, conn: Connection) -> None:
        """``api status`` every ``keepalive_s``: no reply within ``keepalive_timeout`` means
        the connection is dead for us (a half-open TCP connection, a hung switch, or our own
        reader stalled until the switch dropped us): close it, so run_forever reconnects,
        subscribes again and reconciles, within keepalive_s + keepalive_timeout seconds."""
        assert self.keepalive_s is not None
        while not conn.closed:
            gevent.sleep(self.keepalive_s)
            try:
                conn.api("status", timeout=self.keepalive_timeout)
            except ESLTimeout:
                self._log.warning("esl.inbound.stalled", timeout=self.keepalive_timeout)
                conn.close(f"no reply to the keepalive within {self.keepalive_timeout} s")
                return
            except ESLError:
                return

    def _after_connect(self) -> None:
        if self.on_reconnect is None:
            return
        try:
            self.on_reconnect(self)
        except ESLError as exc:  # e.g. the keepalive found the connection stalled meanwhile
            self._log.warning("esl.inbound.on_reconnect_failed", error=str(exc))
        except Exception:
            self._log.exception("esl.inbound.on_reconnect_failed")

    def backoff_delay(self, failures: int) -> float:
        """Exponential backoff with jitter, never below ``backoff_initial`` nor above the cap."""
        base = self.backoff_initial * (2 ** min(max(failures - 1, 0), 30))
        jittered = base * random.uniform(1.0, 1.5)
        return min(self.backoff_max, max(self.backoff_initial, jittered))

    def _log_failure(self, exc: ESLError, failures: int) -> None:
        """Warn at growing intervals (see LOG_FAILURES_CAP), debug on every attempt."""
        if should_log_failure(failures):
            self._log.warning("esl.inbound.connect_failed", error=str(exc), failures=failures,
                              next_warning_at=next_logged_failure(failures))
        else:
            self._log.debug("esl.inbound.connect_failed", error=str(exc), failures=failures)


def should_log_failure(failures: int) -> bool:
    """Failed attempt 1, 2, 4, ... up to the cap, then every LOG_FAILURES_CAP-th."""
    if failures < LOG_FAILURES_CAP:
        return failures & (failures - 1) == 0
    return failures % LOG_FAILURES_CAP == 0


def next_logged_failure(failures: int) -> int:
    following = failures + 1
    while not should_log_failure(following):
        following += 1
    return following
