"""Serve the console on gevent's WSGI server until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
from typing import Any

import gevent
import structlog
from gevent.event import Event
from gevent.pywsgi import WSGIHandler, WSGIServer

from fsrouter import systemd
from fsrouter.web.settings import WebSettings

log = structlog.get_logger(__name__)

STOP_GRACE_S = 10  # requests under way may finish this long after SIGTERM


class QuietHandler(WSGIHandler):
    """No access lines from gevent: the app logs each request (structured, with the
    account) in ``web.request``."""

    def log_request(self) -> None:
        return None


def start(app: Any, settings: WebSettings) -> WSGIServer:
    """Bind (OSError if the address is taken) and start serving; logs ``web.ready`` with
    the port really bound (``port=0``: the kernel's pick)."""
    server = WSGIServer((settings.host, settings.port), app, handler_class=QuietHandler,
                        log=None, error_log=_ErrorLog())
    server.start()
    host, port = server.address[:2]
    log.info("web.ready", url=f"http://{_url_host(host)}:{port}/", host=host, port=port,
             config=str(settings.config_path))
    return server


def run(app: Any, settings: WebSettings) -> None:
    """Serve until SIGTERM/SIGINT; requests under way get :data:`STOP_GRACE_S` to finish."""
    stop = Event()
    watchers = [gevent.signal_handler(number, stop.set)
                for number in (signal.SIGTERM, signal.SIGINT)]
    server = start(app, settings)
    systemd.notify("READY=1")
    watchdog = systemd.start_watchdog()
    stop.wait()
    systemd.notify("STOPPING=1")
    if watchdog is not None:
        watchdog.kill()
    log.info("web.stopping")
    server.stop(timeout=STOP_GRACE_S)
    for watcher in watchers:
        watcher.cancel()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _ErrorLog:
    """gevent's error output (a broken client connection, a handler crash) as log lines."""

    def write(self, text: str) -> None:
        text = text.strip()
        if text:
            log.warning("web.server_error", detail=text[:2000])

    def flush(self) -> None:
        return None
