"""Errors as the console answers them: JSON ``{"errors": [lines]}`` under ``/api/``, a flash
message (and back to the page) or an error page elsewhere.

A :class:`fsrouter.commands.common.Failure` raised by an operation (the same functions the
commands call) becomes 422 when it is the input's fault (exit 2: validation), 503 when the
database is unavailable (exit 3), 400 otherwise.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import flask
import structlog
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from fsrouter.commands import EXIT_STORE, EXIT_USAGE
from fsrouter.commands.common import Failure
from fsrouter.store.errors import StoreError

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """Answer ``status`` with these lines (raised by a handler)."""

    def __init__(self, status: int, *lines: str) -> None:
        super().__init__(*lines)
        self.status = status
        self.lines = list(lines)


def wants_json() -> bool:
    return flask.request.path.startswith("/api/")


def answer(status: int, lines: list[str]) -> Response:
    """The error as JSON (API), a flash and a redirect (a page's form), or a small page."""
    if wants_json():
        response = flask.jsonify({"errors": lines})
        response.status_code = status
        return response
    if flask.request.method not in ("GET", "HEAD") and status in (400, 409, 422, 503):
        for line in lines:
            flask.flash(line, "error")
        return flask.redirect(_back())
    body = flask.render_template("error.html", status=status, lines=lines)
    return flask.make_response(body, status)


def _back() -> str:
    """Where a refused form goes back to: the page it came from (same site only)."""
    referrer = flask.request.referrer or ""
    parts = urlsplit(referrer)
    if parts.netloc == flask.request.host and parts.path.startswith("/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"


def failure_status(failure: Failure) -> int:
    return {EXIT_USAGE: 422, EXIT_STORE: 503}.get(failure.code, 400)


def register(app: flask.Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return answer(error.status, error.lines)

    @app.errorhandler(Failure)
    def _failure(failure: Failure) -> Response:
        return answer(failure_status(failure), [str(line) for line in failure.lines])

    @app.errorhandler(StoreError)
    def _store(error: StoreError) -> Response:
        log.error("web.store_error", error=str(error), path=flask.request.path)
        return answer(503, [f"database: {error}"])

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        if error.code is None or error.code < 400:  # redirects raised by routing
            return error.get_response()
        response = answer(error.code, [error.description or error.name])
        if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _bug(error: Exception) -> Response:
        log.exception("web.unexpected_error", path=flask.request.path)
        return answer(500, ["unexpected error (a bug): the console's log has the details"])
