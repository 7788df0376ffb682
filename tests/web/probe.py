"""A page module for the security tests only: views WITHOUT any decorator (a page author who
forgot ``require``), so the tests show the frame itself closes them: no account, no CSRF
token, or a viewer's change -> refused before the view runs."""

from __future__ import annotations

import flask

from fsrouter.web.context import who

bp = flask.Blueprint("probe", __name__)

CHANGES: list[str] = []  # what the views below were let through to do


@bp.route("/probe", methods=["GET", "POST"])
def page() -> str:
    if flask.request.method == "POST":
        CHANGES.append(who())
    return f"probe {flask.request.method} by {who()}"


@bp.route("/api/v1/probe/<int:item>", methods=["GET", "PUT", "DELETE"])
def api(item: int) -> flask.Response:
    if flask.request.method != "GET":
        CHANGES.append(who())
    return flask.jsonify({"item": item, "method": flask.request.method, "who": who()})
