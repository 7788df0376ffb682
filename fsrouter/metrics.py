"""Prometheus metrics and the health endpoint of the daemon.

:class:`Metrics` owns its own ``CollectorRegistry`` (never the process-global one, so tests and
a reload can build as many as they like) and offers plain methods the call layer calls:
``call_started()``, ``call_ended(number, outcome)``, ``menu_choice(number, digit)``... Label
values are bounded: numbers and queues must come from the configuration (anything else is
``unknown``/``other``), hang-up causes from FreeSWITCH's own list, so no caller and no
misbehaving peer can grow the number of time series.

:func:`serve` runs a small gevent WSGI server with ``/metrics`` (Prometheus text format) and
``/health`` (JSON, 200 when every check is true, 503 otherwise). :func:`database_ok` is the
database check: a short query on a fresh connection, false on any failure.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import gevent
import peewee
import structlog
from gevent import pywsgi
from gevent.pool import Pool
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fsrouter import __version__
from fsrouter.config import Config
from fsrouter.resilience.metrics import JournalCollector
from fsrouter.store.db import SqliteStore
from fsrouter.store.models import ATTEMPT_RESULTS, CALL_OUTCOMES

log = structlog.get_logger(__name__)

UNKNOWN_NUMBER = "unknown"
OTHER = "other"
MENU_DIGITS = frozenset("0123456789*#")
# Hang-up causes FreeSWITCH knows (CAUSE_CHART in src/switch_channel.c); anything else is
# "other", so a peer sending made-up causes cannot add time series.
HANGUP_CAUSES = frozenset("""
    NONE UNALLOCATED_NUMBER NO_ROUTE_TRANSIT_NET NO_ROUTE_DESTINATION CHANNEL_UNACCEPTABLE
    CALL_AWARDED_DELIVERED NORMAL_CLEARING USER_BUSY NO_USER_RESPONSE NO_ANSWER
    SUBSCRIBER_ABSENT CALL_REJECTED NUMBER_CHANGED REDIRECTION_TO_NEW_DESTINATION
    EXCHANGE_ROUTING_ERROR DESTINATION_OUT_OF_ORDER INVALID_NUMBER_FORMAT FACILITY_REJECTED
    RESPONSE_TO_STATUS_ENQUIRY NORMAL_UNSPECIFIED NORMAL_CIRCUIT_CONGESTION
    NETWORK_OUT_OF_ORDER NORMAL_TEMPORARY_FAILURE SWITCH_CONGESTION ACCESS_INFO_DISCARDED
    REQUESTED_CHAN_UNAVAIL PRE_EMPTED FACILITY_NOT_SUBSCRIBED OUTGOING_CALL_BARRED
    INCOMING_CALL_BARRED BEARERCAPABILITY_NOTAUTH BEARERCAPABILITY_NOTAVAIL
    SERVICE_UNAVAILABLE BEARERCAPABILITY_NOTIMPL CHAN_NOT_IMPLEMENTED FACILITY_NOT_IMPLEMENTED
    SERVICE_NOT_IMPLEMENTED INVALID_CALL_REFERENCE INCOMPATIBLE_DESTINATION
    INVALID_MSG_UNSPECIFIED MANDATORY_IE_MISSING MESSAGE_TYPE_NONEXIST WRONG_MESSAGE
    IE_NONEXIST INVALID_IE_CONTENTS WRONG_CALL_STATE RECOVERY_ON_TIMER_EXPIRE
    MANDATORY_IE_LENGTH_ERROR PROTOCOL_ERROR INTERWORKING SUCCESS ORIGINATOR_CANCEL CRASH
    SYSTEM_SHUTDOWN LOSE_RACE MANAGER_REQUEST BLIND_TRANSFER ATTENDED_TRANSFER
    ALLOTTED_TIMEOUT USER_CHALLENGE MEDIA_TIMEOUT PICKED_OFF USER_NOT_REGISTERED
    PROGRESS_TIMEOUT INVALID_GATEWAY GATEWAY_DOWN INVALID_URL INVALID_PROFILE NO_PICKUP
    SRTP_READ_ERROR BOWOUT BUSY_EVERYWHERE DECLINE DOES_NOT_EXIST_ANYWHERE NOT_ACCEPTABLE
    UNWANTED NO_IDENTITY BAD_IDENTITY_INFO UNSUPPORTED_CERTIFICATE INVALID_IDENTITY STALE_DATE
    REJECT_ALL
""".split())
# Outcomes and attempt results are words our own code picks (see store.models); a new one is
# accepted as it is, but only this many distinct ones, as a guard against a bug.
MAX_WORDS = 32
_WORD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Seconds; a caller waits up to max_wait (default 300 s, at most an hour).
QUEUE_WAIT_BUCKETS = (1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600)
# Seconds from the caller choosing an option to a person being connected (all escalation).
ANSWER_BUCKETS = (2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
HEALTH_TIMEOUT_S = 2.0
SQLITE_LOCK_WAIT_S = 0.5
HTTP_CONCURRENCY = 16


class WordLabel:
    """Snake_case words as label values: known ones always, at most ``limit`` new ones."""

    def __init__(self, known: Iterable[str], limit: int = MAX_WORDS) -> None:
        self._seen = set(known)
        self._extra = 0
        self._limit = limit

    def __call__(self, value: object) -> str:
        text = str(value)
        if text in self._seen:
            return text
        if self._extra >= self._limit or not _WORD.match(text):
            return OTHER
        self._extra += 1
        self._seen.add(text)
        return text


def configured_labels(config: Config) -> tuple[set[str], set[str]]:
    """The numbers (E.164) and queue names a configuration can produce."""
    # Imported here: the call layer imports this module, and queue_name lives there.
    from fsrouter.calls.call_routing import queue_name

    numbers: set[str] = set()
    queues: set[str] = set(config.queues)
    for entry in config.numbers:
        numbers.add(entry.number)
        for option in getattr(entry, "options", ()):
            queues.add(queue_name(entry, option))
    return numbers, queues


class Metrics:
    """Every metric of one daemon, in a registry of its own."""

    def __init__(self, numbers: Iterable[str] = (), queues: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._numbers: frozenset[str] = frozenset(numbers)
        self._queues: frozenset[str] = frozenset(queues)
        self._outcome = WordLabel(CALL_OUTCOMES)
        self._result = WordLabel(ATTEMPT_RESULTS)
        self.switch_connected = False
        self._waiting: dict[str, str] = {}  # call id -> queue label, while the caller waits
        self._define()
        self._zero_queues()

    @classmethod
    def for_config(cls, config: Config) -> Metrics:
        """Metrics whose number and queue labels are the ones ``config`` names."""
        numbers, queues = configured_labels(config)
        return cls(numbers, queues)

    def reconfigure(self, config: Config) -> None:
        """After a reload: new numbers and queues become labels; existing series stay."""
        numbers, queues = configured_labels(config)
        self._numbers = self._numbers | numbers
        self._queues = self._queues | queues
        self._zero_queues()

    def _zero_queues(self) -> None:
        """Every configured queue has a waiting-callers series (0) before its first caller."""
        for queue in self._queues:
            self.queue_callers.labels(queue)

    def _define(self) -> None:
        reg = self.registry
        reg.register(JournalCollector())  # writes waiting for the database (resilience)
        self.calls = Counter("fsrouter_calls", "Calls ended, by number dialled and outcome",
                             ["number", "outcome"], registry=reg)
        self.menu_choices = Counter("fsrouter_menu_choices", "Menu keys chosen, by number",
                                    ["number", "digit"], registry=reg)
        self.queue_wait = Histogram("fsrouter_queue_wait_seconds",
                                    "Seconds callers waited in a queue", ["queue"],
                                    buckets=QUEUE_WAIT_BUCKETS, registry=reg)
        self.attempts = Counter("fsrouter_attempts", "Calls to people ended, by result and cause",
                                ["result", "cause"], registry=reg)
        self.time_to_answer = Histogram("fsrouter_time_to_answer_seconds",
                                        "Seconds until a person was connected to the caller",
                                        buckets=ANSWER_BUCKETS, registry=reg)
        self.active_calls = Gauge("fsrouter_active_calls", "Calls in progress", registry=reg)
        self.switch_up = Gauge("fsrouter_switch_connected",
                               "1 while the inbound Event Socket is connected (several "
                               "switches: while any is)", registry=reg)
        self.switch_each = Gauge("fsrouter_switch_up",
                                 "1 while this switch's inbound Event Socket is connected",
                                 ["switch"], registry=reg)
        self.switch_changed = Gauge("fsrouter_switch_state_since_seconds",
                                    "Unix time this switch's connection last came or went",
                                    ["switch"], registry=reg)
        self.switch_losses = Counter("fsrouter_switch_losses",
                                     "Times this switch's inbound Event Socket was lost",
                                     ["switch"], registry=reg)
        self.db_errors = Counter("fsrouter_database_errors", "Database operations that failed",
                                 registry=reg)
        self.voicemails = Counter("fsrouter_voicemails", "Voicemail messages left, by number",
                                  ["number"], registry=reg)
        self.webhook_failures = Counter("fsrouter_webhook_failures",
                                        "Webhook deliveries that failed (each try)", registry=reg)
        self.mail_failures = Counter("fsrouter_mail_failures", "Mails that could not be sent",
                                     registry=reg)
        # Rendered at start and reload only: a call never adds to it (fsrouter.prompts).
        self.prompt_renders = Counter("fsrouter_prompts_rendered",
                                      "Spoken prompts rendered to sound files", registry=reg)
        self.queue_callers = Gauge("fsrouter_queue_callers",
                                   "Callers waiting in a queue right now (hold music, phones "
                                   "ringing)", ["queue"], registry=reg)
        self.build_info = Gauge("fsrouter_build_info", "Always 1: the running version",
                                ["version", "python"], registry=reg)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.reload_ok = Gauge("fsrouter_config_last_reload_success",
                               "1 if the last configuration reload (SIGHUP) was applied, 0 if "
                               "it was refused", registry=reg)
        self.reload_time = Gauge("fsrouter_config_last_reload_timestamp_seconds",
                                 "When the configuration was last loaded or reloaded (Unix time)",
                                 registry=reg)
        self.reload_ok.set(1)
        self.reload_time.set_to_current_time()

    # -- labels ---------------------------------------------------------------------------

    def number_label(self, number: object) -> str:
        text = str(number)
        return text if text in self._numbers else UNKNOWN_NUMBER

    def queue_label(self, queue: object) -> str:
        text = str(queue)
        return text if text in self._queues else OTHER

    # -- what the call layer reports ------------------------------------------------------

    def call_started(self) -> None:
        self.active_calls.inc()

    def call_ended(self, number: str, outcome: str) -> None:
        self.active_calls.dec()
        self.calls.labels(self.number_label(number), self._outcome(outcome)).inc()

    def menu_choice(self, number: str, digit: str) -> None:
        key = str(digit)
        self.menu_choices.labels(self.number_label(number),
                                 key if key in MENU_DIGITS else OTHER).inc()

    def queue_waited(self, queue: str, seconds: float) -> None:
        self.queue_wait.labels(self.queue_label(queue)).observe(max(0.0, float(seconds)))

    def attempt_ended(self, result: str, cause: str | None) -> None:
        label = str(cause) if cause in HANGUP_CAUSES else OTHER
        self.attempts.labels(self._result(result), label).inc()

    def answered_after(self, seconds: float) -> None:
        self.time_to_answer.observe(max(0.0, float(seconds)))

    def set_switch_connected(self, connected: bool) -> None:
        self.switch_connected = bool(connected)
        self.switch_up.set(1 if connected else 0)

    def set_switch_state(self, name: str, connected: bool, any_connected: bool) -> None:
        """One switch's connection came or went (names come from the configuration only)."""
        self.set_switch_connected(any_connected)
        self.switch_each.labels(name).set(1 if connected else 0)
        self.switch_changed.labels(name).set_to_current_time()
        if not connected:
            self.switch_losses.labels(name).inc()

    def db_error(self) -> None:
        self.db_errors.inc()

    def prompts_rendered(self, count: int) -> None:
        self.prompt_renders.inc(max(0, count))
    def queue_joined(self, queue: str, call_id: str) -> None:
        """A caller started waiting in ``queue`` (counted once per call)."""
        if call_id in self._waiting:
            return
        label = self._waiting[call_id] = self.queue_label(queue)
        self.queue_callers.labels(label).inc()

    def queue_left(self, call_id: str) -> None:
        """The caller stopped waiting: answered, out of the queue or gone (idempotent)."""
        label = self._waiting.pop(call_id, None)
        if label is not None:
            self.queue_callers.labels(label).dec()

    def reloaded(self, ok: bool) -> None:
        """The result of a reload (SIGHUP): applied, or refused (the old one stays)."""
        self.reload_ok.set(1 if ok else 0)
        self.reload_time.set_to_current_time()

    def watch(self, config: Callable[[], Config], now: Callable[[], datetime]) -> None:
        """Figures read when /metrics is scraped: agents per state (from the database) and
        hotline options with nobody to ring now (from the schedules)."""
        self.registry.register(_LiveFigures(config, now))

    def voicemail_left(self, number: str) -> None:
        self.voicemails.labels(self.number_label(number)).inc()

    def webhook_failed(self) -> None:
        self.webhook_failures.inc()

    def mail_failed(self) -> None:
        self.mail_failures.inc()


# -- figures read at scrape time -------------------------------------------------------------

AGENT_STATES = ("free", "busy", "logged_out")


class _LiveFigures(Collector):
    """``fsrouter_agents{state}`` and ``fsrouter_oncall_gap{number,digit}``, computed per
    scrape; a failing part is left out of that scrape (and logged), never a failed scrape."""

    def __init__(self, config: Callable[[], Config], now: Callable[[], datetime]) -> None:
        self._config = config
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        config = self._config()
        for part in (self._agents, self._gaps):
            try:
                yield part(config)
            except Exception as exc:  # a database hiccup must not break /metrics
                log.warning("metrics.live_figure_failed", part=part.__name__,
                            error=_first_line(exc))

    def _agents(self, config: Config) -> GaugeMetricFamily:
        from fsrouter.routing.destinations import agent_dial_string
        from fsrouter.store import queries

        agents = [uid for uid, user in config.users.items() if agent_dial_string(user)]
        rows = queries.presence_of(agents)
        counts = dict.fromkeys(AGENT_STATES, 0)
        for uid in agents:
            row = rows.get(uid)
            state = "logged_out" if row is None or row.state != "logged_in" else (
                "busy" if row.busy else "free")
            counts[state] += 1
        family = GaugeMetricFamily("fsrouter_agents", "Agents by state (logged in and free, "
                                   "busy on a call, logged out)", labels=["state"])
        for state in AGENT_STATES:
            family.add_metric([state], counts[state])
        return family

    def _gaps(self, config: Config) -> GaugeMetricFamily:
        from fsrouter.config.schema import CallRoutingNumber
        from fsrouter.routing.coverage import option_state

        moment = self._now()
        family = GaugeMetricFamily("fsrouter_oncall_gap", "1 while a hotline option has "
                                   "nobody to ring (a gap in the schedules), else 0",
                                   labels=["number", "digit"])
        for number in config.numbers:
            if isinstance(number, CallRoutingNumber):
                for option in number.options:
                    gap = option_state(config, option, moment).gap
                    family.add_metric([number.number, str(option.digit)], 1 if gap else 0)
        return family


# -- database check ---------------------------------------------------------------------------


def database_ok(db: Any, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when ``db`` (a database or the bound proxy) answers a query within ``timeout``."""
    real = db.obj if isinstance(db, peewee.DatabaseProxy) else db
    if real is None:
        return False  # closed: the proxy was unbound by close_database()
    timer = gevent.Timeout(timeout)
    try:
        with timer:
            if isinstance(real, SqliteStore) and not real.in_memory:
                _check_sqlite_file(real.database, timeout)
            else:
                _select_one(real, timeout)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise  # someone else's timeout: not ours to swallow
        log.warning("health.database_failed", error=f"no answer within {timeout} s")
        return False
    except Exception as exc:  # any failure at all means "not healthy"
        log.warning("health.database_failed", error=_first_line(exc))
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_sqlite_file(path: str, timeout: float) -> None:
    # A connection of its own, opened read-write without create: peewee would silently create
    # an empty database where the file was removed. PRAGMA schema_version reads the header,
    # so a file that is not a database fails too.
    # SQLite blocks the whole process while it waits for a lock: wait briefly (in WAL mode a
    # reader is hardly ever blocked, so a lock held this long is worth reporting anyway).
    uri = f"file:{quote(path)}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=min(timeout, SQLITE_LOCK_WAIT_S),
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    finally:
        conn.close()


def _select_one(db: peewee.Database, timeout: float) -> None:
    with db.connection_context():
        if isinstance(db, peewee.PostgresqlDatabase):
            with db.atomic():
                # The server gives up too, not only our gevent.Timeout around the wait.
                db.execute_sql(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
                db.execute_sql("SELECT 1").fetchone()
        else:
            db.execute_sql("SELECT 1").fetchone()


def standard_health(metrics: Metrics, db: Any,
                    switches: Callable[[], dict[str, Any]] | None = None
                    ) -> Callable[[], dict[str, Any]]:
    """The daemon's health checks: the switch connection (as last reported: with several
    switches, whether any is connected, so the daemon can take calls) and the database; and
    each switch's state (``switches``: connected, since, last error) as detail, which does
    not decide the status by itself: one switch of two down is a degraded daemon, not a
    dead one (the per-switch metrics alert on it)."""

    def checks() -> dict[str, Any]:
        result: dict[str, Any] = {"switch": metrics.switch_connected,
                                  "database": database_ok(db)}
        if switches is not None:
            result["switches"] = switches()
        return result

    return checks


# -- HTTP ------------------------------------------------------------------------------------


class MetricsServer(pywsgi.WSGIServer):
    """The WSGI server of :func:`serve`; ``port`` is the bound port (useful with port 0)."""

    @property
    def port(self) -> int:
        return int(self.server_port)


class _ErrorLog:
    """gevent's error log (tracebacks of failing requests) into structlog."""

    def write(self, text: str) -> None:
        if text.strip():
            log.error("metrics.http_error", detail=text.rstrip())

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


def _health_response(health: Callable[[], dict[str, Any]]) -> tuple[str, bytes]:
    try:
        # A dict is detail (each switch's state), shown as it is; the rest are checks.
        checks = {str(name): ok if isinstance(ok, dict) else bool(ok)
                  for name, ok in health().items()}
    except Exception as exc:  # a broken check must read as "unhealthy", never as a 500
        log.warning("health.check_failed", error=_first_line(exc))
        checks = {"health_check": False}
    verdicts = [ok for ok in checks.values() if not isinstance(ok, dict)]
    status = "200 OK" if verdicts and all(verdicts) else "503 Service Unavailable"
    return status, json.dumps(checks, sort_keys=True).encode("utf-8")


def make_app(metrics: Metrics, health: Callable[[], dict[str, bool]]) -> Callable[..., Any]:
    """The WSGI application: ``/metrics`` and ``/health``, GET or HEAD only."""
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in ("/metrics", "/health"):
            return _plain(start_response, "404 Not Found", b"not found: try /metrics or /health\n")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"GET or HEAD only\n",
                          [("Allow", "GET, HEAD")])
        if path == "/metrics":
            return exposition(environ, start_response)
        status, body = _health_response(health)
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return iter([b"" if method == "HEAD" else body])

    return app


def _plain(start_response: Callable[..., Any], status: str, body: bytes,
           extra: list[tuple[str, str]] | None = None) -> Iterator[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *(extra or [])])
    return iter([body])


def serve(metrics: Metrics, bind: str, port: int,
          health: Callable[[], dict[str, bool]]) -> MetricsServer:
    """Start serving ``/metrics`` and ``/health`` on ``bind``:``port`` (0: any free port).

    Returns the running server: ``server.port`` is the bound port, ``server.stop()`` ends it.
    Raises OSError when the address cannot be bound.
    """
    server = MetricsServer((bind, port), make_app(metrics, health),
                           spawn=Pool(HTTP_CONCURRENCY), log=None, error_log=_ErrorLog())
    server.start()
    log.info("metrics.listening", bind=bind, port=server.port, pid=os.getpid())
    return server
