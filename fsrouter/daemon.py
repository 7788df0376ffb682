"""Composition root: configuration -> store -> switch connection -> listeners -> signals.

Everything the running daemon consists of is wired here with plain constructor arguments, so
a reader sees in one place what talks to what. The call flow itself lives in ``calls/``.

- the outbound listener takes calls (``calls.CallHandler``) from every switch; each call is
  matched to its switch (``fsrouter.switches``: the connect reply's Core-UUID) and whatever
  goes over an event connection for it goes to that switch;
- one inbound connection per switch's event socket (``switches:``, or the single
  ``switch:``) feeds the one agent watcher (busy agents, merged over the switches; 2-way VoIP)
  and tells /health and the metrics whether that switch is reachable; each reconnects with
  backoff and resynchronises on every reconnect; a switch that stays away is forgotten by the
  watcher (its calls ended with it) until it returns;
- the mailer and the webhook sender work through their outboxes in the database;
- the metrics/health endpoint, when enabled.

Lifecycle:

- **SIGHUP** reloads the configuration. An invalid file is logged (``config.reload_rejected``,
  one line per problem) and the old configuration stays. Each call keeps the configuration in
  force when it arrived (its services are pinned to it), so a reload applies to the next call
  only. Sections bound or connected once (the listener address, the switch, the database, the
  metrics endpoint) keep their running values until a restart (``config.reload_needs_restart``).
- **SIGTERM/SIGINT** drains: the listener closes at once (the dialplan's fallback after
  ``socket`` answers new callers), calls in progress finish, and the process exits 0 when the
  last one ends or ``listener.drain_seconds`` pass, whichever is first; a second signal ends
  the drain at once. Calls still running then stay on the switch: the next start adopts them.
- **Start and every reconnect** of the inbound connection: :mod:`fsrouter.recovery` reconciles
  the records a previous process left open with the switch, once the listener accepts calls.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.lock
import structlog

from fsrouter import systemd
from fsrouter.calls import CallHandler, pending
from fsrouter.calls.services import CallServices, utc_now
from fsrouter.config import Config, ConfigError, load_config
from fsrouter.config.schema import Listener
from fsrouter.store import StoreError, audit
from fsrouter.switches.wiring import close_switches

log = structlog.get_logger(__name__)

# Seconds between looks at the number of calls still running while draining.
DRAIN_POLL = 0.1
# The default of listener.drain_seconds (systemd's TimeoutStopSec must be longer).
DRAIN_SECONDS = Listener.model_fields["drain_seconds"].default
# A silent event connection (stalled, half-open, hung switch) is replaced within 5 s.
KEEPALIVE_S = 1.5
KEEPALIVE_TIMEOUT = 3.0
# Reconnect attempts back off from 1 s (jittered) to at most this far apart: a switch that
# comes back after a long outage is reconnected within a few seconds.
BACKOFF_MAX_S = 4.0


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
    switches: Any = None  # fsrouter.switches.SwitchSet, once connecting
    # Settings given on the command line / by a test, re-applied on every reload.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopping: gevent.event.Event = field(default_factory=gevent.event.Event)
    # Set while the listener takes calls (recovery adopts callers only then).
    accepting: gevent.event.Event = field(default_factory=gevent.event.Event)
    # A second stop signal: end the drain at once.
    drain_cut: gevent.event.Event = field(default_factory=gevent.event.Event)
    _reloading: gevent.lock.Semaphore = field(default_factory=gevent.lock.Semaphore)

    @property
    def config(self) -> Config:
        return self.holder["config"]

    def live_calls(self) -> set[str]:
        """The uuids of the calls this process is handling right now."""
        if self.server is None:
            return set()
        # A call whose closing writes wait for the store (calls.pending) is still ours.
        return {session.uuid for session in list(self.server.sessions) if session.uuid} | \
            pending.calls()

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            log.info("daemon.stopping", reason=reason)
            self.stopping.set()
        elif not self.drain_cut.is_set():
            log.warning("daemon.drain_cut", reason=reason)
            self.drain_cut.set()

    def wait(self) -> None:
        self.stopping.wait()

    def reload(self) -> bool:
        """Load the configuration again; keep the old one if the new one is invalid."""
        with self._reloading:
            return self._reload()

    def _reload(self) -> bool:
        try:
            config = _with_overrides(load_config(self.config_path), self.overrides)
        except ConfigError as error:
            for issue in error.issues:
                log.error("config.reload_rejected", problem=str(issue))
            _audit_reload(self, "reload.refused", {"problems": [str(i) for i in error.issues]})
            self._reload_result(False)
            return False
        except Exception:
            log.exception("config.reload_failed")
            self._reload_result(False)
            return False
        try:
            _render_prompts(config, self.parts.get("metrics"))  # only what changed
        except ConfigError as error:
            for issue in error.issues:
                log.error("config.reload_rejected", problem=str(issue))
            _audit_reload(self, "reload.refused", {"problems": [str(i) for i in error.issues]})
            self._reload_result(False)
            return False
        config, kept = _keep_running_sections(self.config, config)
        if kept:
            log.warning("config.reload_needs_restart", sections=kept)
        self.holder["config"] = config
        metrics = self.parts.get("metrics")
        if metrics is not None:
            metrics.reconfigure(config)
        self._reload_result(True)
        for name in ("mailer", "webhooks"):
            if self.parts.get(name) is not None:
                self.parts[name].kick()
        log.info("config.reloaded", numbers=len(config.numbers), config=str(self.config_path))
        _audit_reload(self, "reload.accepted", {"numbers": len(config.numbers),
                                                "needs_restart": sorted(kept)})
        return True

    def _reload_result(self, ok: bool) -> None:
        metrics = self.parts.get("metrics")
        if metrics is not None:
            metrics.reloaded(ok)

    def shutdown(self, drain_seconds: float | None = None) -> bool:
        """Stop accepting calls, let running calls finish (up to ``listener.drain_seconds``
        unless given), close everything; True when no call was left running."""
        limit = self.config.listener.drain_seconds if drain_seconds is None else drain_seconds
        self.accepting.clear()
        drained = self.drain(limit)
        recovery = self.parts.get("recovery")
        if recovery is not None:
            recovery.stop()
        for name in ("mailer", "webhooks"):
            part = self.parts.get(name)
            if part is not None:
                part.stop()
        watcher = self.parts.get("watcher")
        if watcher is not None:
            watcher.close()
        close_switches(self)
        if self.parts.get("metrics_server") is not None:
            self.parts["metrics_server"].stop()
        _stop_cluster(self)
        _close_store(self.database)
        log.info("daemon.stopped", drained=drained)
        return drained

    def drain(self, limit: float) -> bool:
        """Close the listener (new callers get the dialplan's fallback) and wait until the
        calls in progress end, ``limit`` seconds pass or a second signal comes."""
        began = time.monotonic()
        self.server.stop(timeout=0)
        log.info("daemon.draining", calls=self.server.active_calls, limit=limit)
        deadline = began + limit
        while self.server.active_calls and not self.drain_cut.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.drain_cut.wait(min(DRAIN_POLL, left))
        running = self.server.active_calls
        seconds = round(time.monotonic() - began, 3)
        if running:
            log.warning("daemon.drain_timeout", calls_left=running, seconds=seconds)
        else:
            log.info("daemon.drained", seconds=seconds)
        return running == 0


def _audit_reload(daemon: Daemon, kind: str, after: dict[str, Any]) -> None:
    """Keep the reload in the audit trail; a store that is down costs the entry, not the
    reload."""
    if daemon.database is None:
        return
    try:
        audit.record(kind, str(daemon.config_path), "daemon", daemon.services.now(), None,
                     after)
    except StoreError as error:
        log.warning("audit.unavailable", kind=kind, error=str(error))


# Sections a reload cannot change in a running process (they are bound or connected once);
# the listener's drain time is the exception, it applies to the next stop.
_RESTART_SECTIONS = ("listener", "switch", "switches", "database", "metrics", "cluster")
_RELOADABLE = {"listener": ("drain_seconds",)}


def _keep_running_sections(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the sections a restart would change kept as they run; and their names."""
    kept: dict[str, Any] = {}
    for name in _RESTART_SECTIONS:
        before, after = getattr(old, name), getattr(new, name)
        if not hasattr(before, "model_copy") or not hasattr(after, "model_copy"):
            if _dump(before) != _dump(after):  # switches: a tuple; switch: None with them
                kept[name] = before
            continue
        reloadable = {key: getattr(after, key) for key in _RELOADABLE.get(name, ())}
        if before.model_copy(update=reloadable).model_dump() != after.model_dump():
            kept[name] = before.model_copy(update=reloadable)
    return (new.model_copy(update=kept) if kept else new), list(kept)


def _dump(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_dump(item) for item in value]
    return value.model_dump() if hasattr(value, "model_dump") else value


def _with_overrides(config: Config, overrides: dict[str, dict[str, Any]]) -> Config:
    """``config`` with some sections' values replaced (``{"listener": {"port": 0}}``)."""
    update = {name: getattr(config, name).model_copy(update=values)
              for name, values in overrides.items() if values}
    return config.model_copy(update=update) if update else config


def _open_store(url: str) -> Any:
    from fsrouter.store import migrations, open_database, owner
    from fsrouter.store.db import SqliteTarget, parse_url

    target = parse_url(url)
    database = open_database(url)  # makes the folder; reads and writes nothing yet
    lock = None
    try:
        # Before the migrations: a second daemon on one SQLite file must not touch it at all.
        lock = owner.claim(target.path) if isinstance(target, SqliteTarget) else None
        migrations.upgrade(database)  # logs what it applied
    except BaseException:
        if lock is not None:
            lock.release()
        _close_store(database)
        raise
    database.daemon_lock = lock  # released by _close_store
    return database


def _call_handler(services: CallServices, switches: Any = None) -> Callable[[Any], None]:
    """Runs each call with the configuration in force when it arrived: a reload during the
    call changes nothing for it (tones, fallbacks, queues it reads later); and with its own
    switch's event connection (fsrouter.switches) for what goes over one."""

    def handle(session: Any) -> None:
        config = services.config
        switch = switches.identify(session.channel) if switches is not None else None
        if switch is None and switches is not None:
            log.warning("call.switch_unknown", call_uuid=session.uuid,
                        core_uuid=str(session.channel.get("Core-UUID", ""))[:64])
        pinned = dataclasses.replace(
            services, config_source=lambda: config, switch=switch,
            switch_api=switch.api if switch is not None else services.switch_api)
        CallHandler(pinned)(session)

    return handle


def _start_listener(config: Config, services: CallServices, switches: Any = None) -> Any:
    from fsrouter.esl.outbound import CALL_EVENTS, OutboundServer
    from fsrouter.switches.wiring import switch_networks

    listener = config.listener
    server = OutboundServer(
        config.listener.bind,
        config.listener.port,
        handler=_call_handler(services, switches),
        max_calls=config.listener.max_calls,
        allow=config.listener.allow,
        setup_timeout=listener.setup_timeout,
        switch_addresses=(switch_networks(config) if listener.switch_addresses is None
                          else listener.switch_addresses),
        reserved_calls=listener.reserve,
        max_setups_per_peer=listener.max_setups_per_peer,
        read_events=CALL_EVENTS,  # a call reads few of myevents' events (bench/events.py)
    )
    server.start()
    return server


def _start_switch_connection(daemon: Daemon) -> None:
    """One inbound event connection per switch (fsrouter.switches.wiring): agent presence,
    2-way VoIP, switch health, and the reconciliation of records left open."""
    from fsrouter.switches.wiring import connect_switches

    # Read here, not there: tests change them on this module.
    connect_switches(daemon, keepalive_s=KEEPALIVE_S, keepalive_timeout=KEEPALIVE_TIMEOUT,
                     backoff_max=BACKOFF_MAX_S)
    lease = daemon.parts.get("lease")
    if lease is not None:  # every heartbeat: a dead node's callers to take over?
        _watch_dead_nodes(daemon, lease)


def _watch_dead_nodes(daemon: Daemon, lease: Any) -> None:
    """fsrouter/cluster/takeover.py: a recovery pass once another node's lease is over."""
    from fsrouter.cluster.takeover import Takeover

    def schedule() -> gevent.Greenlet | None:
        if not daemon.switches.any_connected():  # a reconnect schedules a pass anyway
            return None
        return daemon.parts["recovery"].schedule(daemon.parts["anywhere"], ready=daemon.accepting)

    lease.renewed.append(Takeover(lease.node, schedule).check)


def _start_cluster(daemon: Daemon) -> None:
    """This node's lease (heartbeat greenlet) and its agent claims (fsrouter/cluster)."""
    from fsrouter.cluster import Claims, Lease, node_id
    from fsrouter.store.db import SqliteStore

    settings = daemon.config.cluster
    # SQLite: one node (a second daemon on the file is refused), see cluster/claims.py.
    single = isinstance(daemon.database, SqliteStore)
    lease = Lease(node_id(daemon.services.host), daemon.services.host,
                  settings.heartbeat_seconds, settings.lease_seconds)
    lease.start(only_node=single)
    daemon.services.claims = Claims(
        lease, single_node=single,
        local_when_down=daemon.config.database.unavailable == "yaml")
    daemon.parts["lease"] = lease


def _stop_cluster(daemon: Daemon) -> None:
    if daemon.services.claims is not None:
        daemon.services.claims.close()
    lease = daemon.parts.get("lease")
    if lease is not None:
        lease.stop()  # this node's claims are free at once


def _start_notify(daemon: Daemon) -> None:
    from fsrouter.notify import Mailer, Webhooks
    from fsrouter.resilience import journal

    source = lambda: daemon.holder["config"]  # noqa: E731
    mailer = Mailer(source, now=utc_now, host=daemon.services.host)
    webhooks = Webhooks(source, now=utc_now)
    mailer.start()
    webhooks.start()
    for worker in (mailer, webhooks):  # rows written late by the journal: send them at once
        journal.when_caught_up(worker.kick)
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


def _render_prompts(config: Config, metrics: Any) -> None:
    """Every spoken prompt as files before a call can need them (ConfigError names a prompt
    that cannot be rendered); missing recordings are logged."""
    from fsrouter import prompts

    report = prompts.render_prompts(config)
    if metrics is not None:
        metrics.prompts_rendered(report.rendered)
    log.info("prompts.ready", prompts=report.prompts, rendered=report.rendered,
             seconds=round(report.seconds, 3), directory=config.prompts.directory)
    for issue in prompts.check_files(config):
        log.warning("prompts.file_missing", problem=str(issue))


def _start_metrics(daemon: Daemon) -> None:
    from fsrouter.metrics import Metrics, serve, standard_health
    from fsrouter.store.db import database_proxy
    from fsrouter.switches.wiring import switch_status

    config = daemon.config
    metrics = Metrics.for_config(config)
    daemon.parts["metrics"] = metrics
    daemon.services.metrics = metrics
    metrics.watch(lambda: daemon.holder["config"], daemon.services.now)
    if config.metrics.enabled:
        daemon.parts["metrics_server"] = serve(
            metrics, str(config.metrics.bind), config.metrics.port,
            standard_health(metrics, database_proxy, lambda: switch_status(daemon)))


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
    if metrics_port is None and listen_port == 0:
        metrics_port = 0
    overrides = {"listener": {} if listen_port is None else {"port": listen_port},
                 "metrics": {} if metrics_port is None else {"port": metrics_port}}
    config = _with_overrides(load_config(config_path), overrides)
    database = _open_store(database_url or config.database.url)
    holder = {"config": config}
    services = CallServices(config_source=lambda: holder["config"], now=now or utc_now)
    daemon = Daemon(holder=holder, config_path=config_path, database=database, server=None,
                    services=services, listen_port=listen_port, switch_endpoint=switch_endpoint,
                    overrides=overrides)
    services.notify = _notifier(daemon)
    try:
        _start_metrics(daemon)
        _render_prompts(config, daemon.parts.get("metrics"))
        _start_notify(daemon)
        _start_cluster(daemon)
        _start_switch_connection(daemon)
        daemon.server = _start_listener(config, services, daemon.switches)
    except (OSError, ConfigError, StoreError):
        _abort(daemon)
        raise
    daemon.accepting.set()
    log.info("daemon.ready", listen=f"{config.listener.bind}:{daemon.server.port}",
             numbers=len(config.numbers), config=str(config_path))
    return daemon


def _abort(daemon: Daemon) -> None:
    if daemon.parts.get("recovery") is not None:
        daemon.parts["recovery"].stop()
    for name in ("mailer", "webhooks"):
        if daemon.parts.get(name) is not None:
            daemon.parts[name].stop()
    close_switches(daemon)
    if daemon.parts.get("metrics_server") is not None:
        daemon.parts["metrics_server"].stop()
    _stop_cluster(daemon)
    _close_store(daemon.database)


def _close_store(database: Any) -> None:
    """Close every pooled connection (``close()`` closes only this greenlet's: the others
    would keep their file descriptors, and the database file busy, after the stop)."""
    from fsrouter.resilience import journal
    from fsrouter.store.db import close_database

    journal.close()  # a last try for writes still waiting for the database
    close_database(database)
    lock = getattr(database, "daemon_lock", None)
    if lock is not None:
        lock.release()


def run_daemon(config_path: Path, database_url: str | None = None) -> int:
    """Run until SIGTERM or SIGINT; return the process exit code."""
    from fsrouter.commands import EXIT_BIND, EXIT_OK, EXIT_STORE, EXIT_USAGE
    from fsrouter.store import StoreError

    # Handlers first: a SIGTERM that arrives while the daemon starts (after its listener is
    # bound and "daemon.ready" is logged, before it would otherwise be handled) is kept and
    # acted on once the start is done, instead of killing the process with signal 15.
    early: list[str] = []
    watchers = [gevent.signal_handler(number, early.append, name)
                for number, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT"))]
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
    for watcher in watchers:
        watcher.cancel()
    gevent.signal_handler(signal.SIGTERM, daemon.request_stop, "SIGTERM")
    gevent.signal_handler(signal.SIGINT, daemon.request_stop, "SIGINT")
    for name in early:
        daemon.request_stop(name)
    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(daemon.reload))
    systemd.notify("READY=1")
    watchdog = systemd.start_watchdog()
    daemon.wait()
    systemd.notify("STOPPING=1")
    daemon.shutdown()
    if watchdog is not None:
        watchdog.kill()
    return EXIT_OK
