"""The Agents page: each agent's presence (logged in or out), busy or free, since when; a
supervisor logs agents in and out here. The same functions as ``fsrouter agents``
(:mod:`fsrouter.commands.agents`): the same checks, audited as ``web:<account>``."""

from __future__ import annotations

from typing import Any

import flask
from werkzeug.wrappers import Response

from fsrouter.commands import agents
from fsrouter.web.auth import require
from fsrouter.web.context import config, db, now, who
from fsrouter.web.errors import ApiError

bp = flask.Blueprint("agents", __name__)

ACTIONS = {"login": "logged_in", "logout": "logged_out"}
MAX_NAMES = 1000  # one request changes at most this many agents


def _listed() -> list[dict[str, Any]]:
    with db():
        return agents.agents(config())


def _change(names: list[str], action: str) -> list[str]:
    state = ACTIONS.get(action)
    if state is None:
        flask.abort(404)
    current = config()
    agents.check_agents(current, names)  # every name first: nothing written on a bad one
    with db():
        return agents.change(current, names, state, who(), now())


@bp.get("/agents")
@require("viewer")
def page() -> str:
    return flask.render_template("agents/agents.html", agents=_listed(),
                                 zone=config().defaults.timezone)


@bp.post("/agents/<string(maxlength=128):user>/<action>")
@require("supervisor")
def change(user: str, action: str) -> Response:
    for line in _change([user], action):
        flask.flash(line, "info")
    return flask.redirect(flask.url_for("agents.page"))


@bp.get("/api/v1/agents")
@require("viewer")
def api_list() -> Response:
    return flask.jsonify(_listed())


@bp.post("/api/v1/agents/<action>")
@require("supervisor")
def api_change(action: str) -> Response:
    """``{"agents": ["anna", ...]}``: all of them change, or (any unknown) none."""
    body = flask.request.get_json(silent=True)
    names = body.get("agents") if isinstance(body, dict) else None
    if not isinstance(names, list) or not names or len(names) > MAX_NAMES \
            or not all(isinstance(name, str) and 0 < len(name) <= 128 for name in names):
        raise ApiError(422, f'a JSON body {{"agents": ["user id", ...]}} with 1-{MAX_NAMES} '
                            "user ids is needed")
    lines = _change(names, action)
    return flask.jsonify({"changes": lines, "agents": _listed()})
