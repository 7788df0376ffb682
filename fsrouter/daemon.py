"""Composition root: configuration -> store -> switch connection -> listeners -> signals.

Everything the running daemon consists of is wired here with plain constructor arguments, so
a reader sees in one place what talks to what. The call flow itself lives in ``calls/``.

- the outbound listener takes calls (``calls.CallHandler``);
- one inbound connection to the switch's event socket feeds the agent watcher (busy agents,
  2-way VoIP) and tells the metrics whether the switch is reachable; it reconnects with
  backoff and resynchronises on every reconnect;
- the mailer and the webhook sender work through their outboxes in the database;
- the metrics/health endpoint, when enabled.

SIGHUP reloads the configuration (an invalid file is logged and ignored); calls in progress
keep the configuration they started with. SIGTERM stops taking calls, lets running calls
finish (up to the drain time) and exits 0.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import structlog

from fsrouter import systemd
from fsrouter.calls import CallHandler
from fsrouter.calls.services import CallServices, utc_now
from fsrouter.config import Config, ConfigError, load_config

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 30.0


@dataclass
class Daemon:
    """A running fsrouter: its parts, the configuration in force and the stop signal."""

    holder: dict[str, Config]
    config_path: Path
    database: Any
    server: Any
    services: CallServices
    parts: dict[str, Any] = field(default_factory=dict)
    listen_port: int | None = None
    switch_endpoint: tuple[str, int, str] | None = None
    stopping: gevent.event.Event = field(default_factory=gevent.event.Event)

    @property
    def config(self) -> Config:
        return self.holder["config"]

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            log.info("daemon.stopping", reason=reason)
            self.stopping.set()

    def wait(self) -> None:
        self.stopping.wait()

    def reload(self) -> bool:
        """Load the configuration again; keep the old one if the new one is invalid."""
        try:
            config = _with_port(load_config(self.config_path), self.listen_port)
        except ConfigError as error:
            for issue in error.issues:
                log.error("config.reload_rejected", problem=str(issue))
            return False
        except Exception:
            log.exception("config.reload_failed")
            return False
        ignored = _needs_restart(self.config, config)
        if ignored:
            log.warning("config.reload_needs_restart", sections=ignored)
        self.holder["config"] = config
        metrics = self.parts.get("metrics")
        if metrics is not None:
            metrics.reconfigure(config)
        for name in ("mailer", "webhooks"):
            if self.parts.get(name) is not None:
                self.parts[name].kick()
        log.info("config.reloaded", numbers=len(config.numbers), config=str(self.config_path))
        return True

    def shutdown(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop accepting calls, let running calls finish (up to the drain time), close."""
        self.server.stop(timeout=drain_seconds)
        for name in ("mailer", "webhooks"):
            part = self.parts.get(name)
            if part is not None:
                part.stop()
        watcher = self.parts.get("watcher")
        if watcher is not None:
            watcher.close()
        for name in ("switch", "metrics_server"):
            part = self.parts.get(name)
            if part is not None:
                part.stop() if name == "metrics_server" else part.close()
        self.database.close()
        log.info("daemon.stopped")


# Sections a reload cannot change in a running process (they are bound or connected once).
_RESTART_SECTIONS = ("listener", "switch", "database", "metrics")


def _needs_restart(old: Config, new: Config) -> list[str]:
    return [name for name in _RESTART_SECTIONS if getattr(old, name) != getattr(new, name)]


def _with_port(config: Config, port: int | None) -> Config:
    if port is None:
        return config
    listener = config.listener.model_copy(update={"port": port})
    return config.model_copy(update={"listener": listener})


def _open_store(url: str) -> Any:
    from fsrouter.store import migrations, open_database

    database = open_database(url)
    migrations.upgrade(database)  # logs what it applied
    return database


def _start_listener(config: Config, services: CallServices) -> Any:
    from fsrouter.esl.outbound import OutboundServer

    server = OutboundServer(
        config.listener.bind,
        config.listener.port,
        handler=CallHandler(services),
        max_calls=config.listener.max_calls,
        allow=config.listener.allow,
    )
    server.start()
    return server


def _start_switch_connection(daemon: Daemon) -> None:
    """The inbound event connection: agent presence, 2-way VoIP, switch health."""
    from fsrouter.calls.agents import AgentWatcher
    from fsrouter.esl import InboundClient

    config = daemon.config
    watcher = AgentWatcher(lambda: daemon.holder["config"], daemon.services.now)
    metrics = daemon.parts.get("metrics")

    def on_connect(client: Any) -> None:
        if metrics is not None:
            metrics.set_switch_connected(True)
            gevent.spawn(_report_loss, client.conn, metrics)
        watcher.resync(client)

    host, port, password = daemon.switch_endpoint or (
        config.switch.host, config.switch.port, config.switch.resolve_password())
    client = InboundClient(host, port, password, events=list(watcher.EVENTS),
                           on_reconnect=on_connect)
    client.on_event(watcher.handle)
    client.start()
    daemon.parts |= {"switch": client, "watcher": watcher}


def _report_loss(conn: Any, metrics: Any) -> None:
    conn.wait_closed(None)
    metrics.set_switch_connected(False)


def _start_notify(daemon: Daemon) -> None:
    from fsrouter.notify import Mailer, Webhooks

    source = lambda: daemon.holder["config"]  # noqa: E731
    mailer = Mailer(source, now=utc_now, host=daemon.services.host)
    webhooks = Webhooks(source, now=utc_now)
    mailer.start()
    webhooks.start()
    daemon.parts |= {"mailer": mailer, "webhooks": webhooks}


def _notifier(daemon: Daemon) -> Callable[[str, dict[str, Any]], None]:
    """What the call flows report: webhooks, the mailer and the metrics hear about it."""

    def notify(event: str, data: dict[str, Any]) -> None:
        webhooks = daemon.parts.get("webhooks")
        if webhooks is not None:
            webhooks.emit(event, data)
        if event == "voicemail.left":
            mailer = daemon.parts.get("mailer")
            if mailer is not None:
                mailer.kick()
            metrics = daemon.parts.get("metrics")
            if metrics is not None:
                metrics.voicemail_left(str(data.get("number", "")))

    return notify


def _start_metrics(daemon: Daemon) -> None:
    from fsrouter.metrics import Metrics, serve, standard_health
    from fsrouter.store.db import database_proxy

    config = daemon.config
    metrics = Metrics.for_config(config)
    daemon.parts["metrics"] = metrics
    daemon.services.metrics = metrics
    if config.metrics.enabled:
        daemon.parts["metrics_server"] = serve(
            metrics, str(config.metrics.bind), config.metrics.port,
            standard_health(metrics, database_proxy))


def start_daemon(config_path: Path, database_url: str | None = None,
                 listen_port: int | None = None,
                 now: Callable[[], datetime] | None = None,
                 switch_endpoint: tuple[str, int, str] | None = None,
                 metrics_port: int | None = None) -> Daemon:
    """Load, open and bind everything; raises on the first part that cannot start.

    ``listen_port`` overrides the configured listener port (0 picks a free one: demo, tests;
    the metrics endpoint then takes a free port too); ``now`` replaces the clock calls are
    routed by (tests of schedules, the demo); ``switch_endpoint`` (host, port, password)
    replaces the configured event socket (the demo's simulator).
    """
    config = _with_port(load_config(config_path), listen_port)
    if metrics_port is None and listen_port == 0:
        metrics_port = 0
    if metrics_port is not None:
        config = config.model_copy(update={"metrics": config.metrics.model_copy(
            update={"port": metrics_port})})
    database = _open_store(database_url or config.database.url)
    holder = {"config": config}
    services = CallServices(config_source=lambda: holder["config"], now=now or utc_now)
    daemon = Daemon(holder=holder, config_path=config_path, database=database, server=None,
                    services=services, listen_port=listen_port, switch_endpoint=switch_endpoint)
    services.notify = _notifier(daemon)
    try:
        _start_metrics(daemon)
        _start_notify(daemon)
        _start_switch_connection(daemon)
        daemon.server = _start_listener(config, services)
    except (OSError, ConfigError):
        _abort(daemon)
        raise
    log.info("daemon.ready", listen=f"{config.listener.bind}:{daemon.server.port}",
             numbers=len(config.numbers), config=str(config_path))
    return daemon


def _abort(daemon: Daemon) -> None:
    for name in ("mailer", "webhooks"):
        if daemon.parts.get(name) is not None:
            daemon.parts[name].stop()
    if daemon.parts.get("switch") is not None:
        daemon.parts["switch"].close()
    if daemon.parts.get("metrics_server") is not None:
        daemon.parts["metrics_server"].stop()
    daemon.database.close()


def run_daemon(config_path: Path, database_url: str | None = None) -> int:
    """Run until SIGTERM or SIGINT; return the process exit code."""
    from fsrouter.commands import EXIT_BIND, EXIT_OK, EXIT_STORE, EXIT_USAGE
    from fsrouter.store import StoreError

    try:
        daemon = start_daemon(config_path, database_url)
    except ConfigError as error:
        for issue in error.issues:
            log.error("config.invalid", problem=str(issue))
        return EXIT_USAGE
    except StoreError as error:
        log.error("store.unavailable", error=str(error))
        return EXIT_STORE
    except OSError as error:
        log.error("listener.bind_failed", error=str(error))
        return EXIT_BIND
    gevent.signal_handler(signal.SIGTERM, daemon.request_stop, "SIGTERM")
    gevent.signal_handler(signal.SIGINT, daemon.request_stop, "SIGINT")
    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(daemon.reload))
    systemd.notify("READY=1")
    watchdog = systemd.start_watchdog()
    daemon.wait()
    systemd.notify("STOPPING=1")
    daemon.shutdown()
    if watchdog is not None:
        watchdog.kill()
    return EXIT_OK
