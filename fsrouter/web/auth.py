"""Who may do what: every request is authenticated before its handler runs.

Order, for every request except the log-in page and static files (:data:`PUBLIC`):
1. ``Authorization: Bearer <token>`` (an API token) or else the session cookie names the
   account (``flask.g.account``); neither: pages redirect to /login, ``/api/`` answers 401.
2. A change (any method but GET, HEAD, OPTIONS) made with the session cookie must carry the
   session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf_token``): 403 without.
   Token-authenticated calls are exempt: a browser never sends a bearer token by itself.
3. A change needs the supervisor role, whatever the handler says: 403 for a viewer (except
   logging out, :data:`ANY_ROLE`).
   :func:`require` adds a role check per view (``@require("supervisor")`` on a GET).

So a page added without a decorator is still closed to anonymous callers and to viewers'
changes. The session cookie is Flask's (signed with itsdangerous, HttpOnly, SameSite=Lax,
Secure when the settings or the trusted TLS proxy say so); it holds the account name, when it
was issued, and the CSRF token.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import flask
from werkzeug.wrappers import Response

from fsrouter.store.models import WEB_ROLES
from fsrouter.web import accounts
from fsrouter.web.accounts import Account
from fsrouter.web.context import now
from fsrouter.web.errors import answer

F = TypeVar("F", bound=Callable[..., Any])

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({"login.login", "static"})  # reachable without an account
ANY_ROLE = frozenset({"login.logout"})  # changes of one's own session: viewers too


def require(role: str) -> Callable[[F], F]:
    """Only for accounts with ``role`` or above (a supervisor may do what a viewer may)."""
    if role not in WEB_ROLES:
        raise ValueError(f"role must be one of {WEB_ROLES}, got {role!r}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            account: Account | None = flask.g.get("account")
            if account is None:
                return _unauthenticated()
            if not account.may(role):
                return answer(403, [f"{role}s only: you are logged in as a {account.role}"])
            return view(*args, **kwargs)
        return wrapped  # type: ignore[return-value]
    return decorate


def csrf_token() -> str:
    """The session's CSRF token (made on first use); the Jinja global of the same name."""
    token = flask.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        flask.session["csrf"] = token
    return token


def start_session(account: Account) -> None:
    """After a good log-in: a fresh session (new CSRF token) for the account."""
    flask.session.clear()
    flask.session.permanent = True  # the cookie gets an expiry; the idle limit is signed in
    flask.session["account"] = account.name
    flask.session["issued"] = now().timestamp()
    csrf_token()


def before_request() -> Response | None:
    """Authenticate, then refuse what the account may not do (see the module docstring)."""
    flask.g.account = _authenticate()
    if flask.request.endpoint in PUBLIC:
        return _check_csrf() if flask.request.method not in SAFE_METHODS else None
    account: Account | None = flask.g.account
    if account is None:
        return _unauthenticated()
    if flask.request.method in SAFE_METHODS:
        return None
    refused = _check_csrf() if account.via == "session" else None
    if refused is not None:
        return refused
    if not account.may("supervisor") and flask.request.endpoint not in ANY_ROLE:
        return answer(403, [f"viewers cannot change anything: {account.name} is a viewer"])
    return None


def _authenticate() -> Account | None:
    header = flask.request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return accounts.token_account(token.strip(), now())
    name = flask.session.get("account")
    issued = flask.session.get("issued")
    if not isinstance(name, str) or not isinstance(issued, (int, float)):
        return None
    settings = flask.current_app.extensions["fsrouter.settings"]
    issued_at = datetime.fromtimestamp(issued, UTC)
    if now() - issued_at > settings.session_max:
        flask.session.clear()
        return None
    account = accounts.session_account(name, issued_at)
    if account is None:
        flask.session.clear()
    return account


def _check_csrf() -> Response | None:
    expected = flask.session.get("csrf")
    given = flask.request.headers.get("X-CSRF-Token") or flask.request.form.get("csrf_token")
    if isinstance(expected, str) and isinstance(given, str) \
            and hmac.compare_digest(expected.encode(), given.encode()):
        return None
    return answer(403, ["CSRF token missing or wrong: reload the page and try again"])


def _unauthenticated() -> Response:
    if flask.request.path.startswith("/api/"):
        response = answer(401, ["log in first: a session cookie or an API token "
                                "(Authorization: Bearer ...) is needed"])
        response.headers["WWW-Authenticate"] = 'Bearer realm="fsrouter"'
        return response
    wanted = flask.request.full_path if flask.request.method == "GET" else "/"
    return flask.redirect(flask.url_for("login.login", next=wanted.rstrip("?")))
