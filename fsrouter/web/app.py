"""The console's Flask application: :func:`create_app` wires settings, pages and security.

Pages are blueprints in the modules named in :data:`PAGES` (each exposing ``bp``); their
links appear in the navigation (:data:`NAV`) once their URL is registered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from importlib import import_module
from typing import Any

import flask
import structlog
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response

from fsrouter.store.db import database_proxy, open_database
from fsrouter.web import auth, errors
from fsrouter.web.context import ConfigHolder, config_problem
from fsrouter.web.nav import NAV, nav_items
from fsrouter.web.settings import WebSettings, secret_key

log = structlog.get_logger(__name__)

__all__ = ["NAV", "PAGES", "create_app", "nav_items"]

# One line per page module (each has ``bp: flask.Blueprint``).
PAGES: tuple[str, ...] = (
    "fsrouter.web.pages.now",
    "fsrouter.web.pages.agents",
    "fsrouter.web.pages.oncall",
    "fsrouter.web.pages.routes",
    "fsrouter.web.pages.history",
    "fsrouter.web.pages.voicemails",
    "fsrouter.web.pages.audit",
)

MAX_REQUEST_BYTES = 11 * 1024 * 1024  # a 10 MB CSV import (commands.common.MAX_CSV_BYTES)

# No inline script or style, nothing from elsewhere, never in a frame.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure when configured or when the request came over TLS
    (through the trusted proxy: X-Forwarded-Proto https)."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        settings: WebSettings = app.extensions["fsrouter.settings"]
        return settings.secure_cookies or flask.request.is_secure


class TrustedProxy:
    """Believe X-Forwarded-For (its last address) and X-Forwarded-Proto only from the
    configured proxy's address; from anybody else they are dropped."""

    def __init__(self, app: Callable[..., Any], proxy: str | None) -> None:
        self.app = app
        self.proxy = proxy

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        forwarded_for = environ.pop("HTTP_X_FORWARDED_FOR", "")
        proto = environ.pop("HTTP_X_FORWARDED_PROTO", "")
        if self.proxy is not None and environ.get("REMOTE_ADDR") == self.proxy:
            client = forwarded_for.split(",")[-1].strip()
            if client:
                environ["REMOTE_ADDR"] = client[:64]
            if proto.strip().lower() in ("http", "https"):
                environ["wsgi.url_scheme"] = proto.strip().lower()
        return self.app(environ, start_response)


def create_app(settings: WebSettings, clock: Callable[[], datetime] | None = None,
               pages: Iterable[str] = PAGES) -> flask.Flask:
    """The console for ``settings`` (``clock``: the time source, for tests)."""
    app = flask.Flask("fsrouter.web")
    app.config.update(
        SECRET_KEY=secret_key(_key_path(settings)),
        SESSION_COOKIE_NAME="fsrouter_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=settings.session_idle,
        SESSION_REFRESH_EACH_REQUEST=True,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        TEMPLATES_AUTO_RELOAD=False,
        JSON_SORT_KEYS=False,
    )
    app.session_interface = SessionCookies()
    app.extensions["fsrouter.settings"] = settings
    holder = ConfigHolder.load(settings.config_path)
    app.extensions["fsrouter.config"] = holder
    if database_proxy.obj is None:  # `fsrouter web` opened it (and checked the schema)
        open_database(settings.database_url or holder.config.database.url)
    if clock is not None:
        app.extensions["fsrouter.clock"] = clock
    app.wsgi_app = TrustedProxy(app.wsgi_app, settings.trusted_proxy)  # type: ignore[method-assign]
    errors.register(app)
    app.before_request(_started)
    app.before_request(auth.before_request)
    app.after_request(_headers)
    app.jinja_env.globals.update(csrf_token=auth.csrf_token, nav_items=nav_items,
                                 config_problem=config_problem)
    from fsrouter.web.login import bp as login_bp

    app.register_blueprint(login_bp)
    for module in pages:
        app.register_blueprint(import_module(module).bp)
    return app


def _key_path(settings: WebSettings) -> Any:
    if settings.secret_key_file is not None:
        return settings.secret_key_file
    raise ValueError("WebSettings.secret_key_file is not set")


def _started() -> None:
    flask.g.started = time.monotonic()


def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if flask.request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    account = flask.g.get("account")
    took = time.monotonic() - flask.g.get("started", time.monotonic())
    log.info("web.request", method=flask.request.method, path=flask.request.path,
             status=response.status_code, account=account.name if account else None,
             ms=round(took * 1000, 1))
    return response
