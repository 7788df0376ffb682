"""Log-in, log-out, and where ``/`` leads."""

from __future__ import annotations

import flask
import structlog
from werkzeug.wrappers import Response

from fsrouter.web import accounts
from fsrouter.web.auth import start_session
from fsrouter.web.context import now

log = structlog.get_logger(__name__)

bp = flask.Blueprint("login", __name__)

MAX_FIELD = 1024


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    wanted = _safe_next(flask.request.values.get("next", ""))
    if flask.request.method == "GET":
        if flask.g.account is not None and flask.g.account.via == "session":
            return flask.redirect(wanted)
        return flask.render_template("login.html", next=wanted)
    name = flask.request.form.get("name", "")[:MAX_FIELD]
    password = flask.request.form.get("password", "")[:MAX_FIELD + 1]
    address = flask.request.remote_addr or "?"
    try:
        account = accounts.log_in(name, password, address, now())
    except accounts.LockedOut as locked:
        log.warning("web.login_locked", name=name[:64], address=address)
        message = (f"Too many failed log-ins: wait up to {locked.minutes} minutes, "
                   "then try again.")
        return flask.render_template("login.html", next=wanted, error=message, name=name), 429
    if account is None:
        log.warning("web.login_failed", name=name[:64], address=address)
        return flask.render_template("login.html", next=wanted, name=name,
                                     error="Wrong name or password."), 401
    start_session(account)
    log.info("web.login", account=account.name, role=account.role, address=address)
    return flask.redirect(wanted)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    account = flask.g.account
    if account is not None and account.via == "session":
        accounts.log_out(account.name, now())
        log.info("web.logout", account=account.name)
    flask.session.clear()
    return flask.redirect(flask.url_for("login.login"))


@bp.route("/")
def home() -> Response:
    """The first page of the navigation (the Now page once it is there)."""
    from fsrouter.web.app import nav_items

    items = nav_items()
    return flask.redirect(items[0][0] if items else flask.url_for("login.account"))


@bp.route("/account")
def account() -> str:
    return flask.render_template("account.html")


def _safe_next(target: str) -> str:
    """Only a path on this site ("/routes?x=1"), never another host ("//evil", "/\\evil")."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(ch) < 32 for ch in target) or len(target) > 2000:
        return "/"
    return target
