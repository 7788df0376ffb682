"""Composition root: configuration -> store -> listeners -> signals.

Everything the running daemon consists of is wired here with plain constructor arguments, so
a reader sees in one place what talks to what. The call flow itself lives in ``calls/``.
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
    """A running fsrouter: the listener, the store and the stop signal."""

    config: Config
    config_path: Path
    database: Any
    server: Any
    stopping: gevent.event.Event = field(default_factory=gevent.event.Event)

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            log.info("daemon.stopping", reason=reason)
            self.stopping.set()

    def wait(self) -> None:
        self.stopping.wait()

    def shutdown(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop accepting calls, let running calls finish (up to the drain time), close."""
        self.server.stop(timeout=drain_seconds)
        self.database.close()
        log.info("daemon.stopped")


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


def start_daemon(config_path: Path, database_url: str | None = None,
                 listen_port: int | None = None,
                 now: Callable[[], datetime] | None = None) -> Daemon:
    """Load, open and bind everything; raises on the first part that cannot start.

    ``listen_port`` overrides the configured listener port (0 picks a free one: demo, tests);
    ``now`` replaces the clock calls are routed by (tests of schedules, the demo).
    """
    config = load_config(config_path)
    if listen_port is not None:
        listener = config.listener.model_copy(update={"port": listen_port})
        config = config.model_copy(update={"listener": listener})
    database = _open_store(database_url or config.database.url)
    holder = {"config": config}
    services = CallServices(config_source=lambda: holder["config"], now=now or utc_now)
    try:
        server = _start_listener(config, services)
    except OSError:
        database.close()
        raise
    log.info(
        "daemon.ready",
        listen=f"{config.listener.bind}:{server.port}",
        numbers=len(config.numbers),
        config=str(config_path),
    )
    return Daemon(config=config, config_path=config_path, database=database, server=server)


def run_daemon(config_path: Path, database_url: str | None = None) -> int:
    """Run until SIGTERM or SIGINT; return the process exit code."""
    from fsrouter.cli import EXIT_BIND, EXIT_OK, EXIT_STORE, EXIT_USAGE
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
    systemd.notify("READY=1")
    watchdog = systemd.start_watchdog()
    daemon.wait()
    systemd.notify("STOPPING=1")
    daemon.shutdown()
    if watchdog is not None:
        watchdog.kill()
    return EXIT_OK
