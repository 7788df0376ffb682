"""The Now page: who each hotline option rings now and next, the calls and the queues.

The page is rendered on the server (it works without JavaScript); ``static/now.js`` then asks
``/api/v1/now`` for the same data every few seconds and redraws it. Polling rather than
server-sent events: the console learns about calls only from the database (the daemons write
it), so it must poll the database anyway; a poll per open tab every few seconds is cheap (see
bench/console.py), needs no long-lived greenlet per viewer and passes any reverse proxy
without buffering settings.
"""

from __future__ import annotations

from typing import Any

import flask

from fsrouter.web.auth import require
from fsrouter.web.context import config, db, now
from fsrouter.web.live import now_data

bp = flask.Blueprint("now", __name__)

# Seconds between two polls of the page's script (in the page, for the script to read).
POLL_SECONDS = 3


def _data() -> dict[str, Any]:
    with db():
        return now_data(config(), now())


@bp.get("/now")
@require("viewer")
def page() -> str:
    return flask.render_template("now/now.html", data=_data(), poll_seconds=POLL_SECONDS)


@bp.get("/api/v1/now")
@require("viewer")
def api() -> flask.Response:
    response = flask.jsonify(_data())
    response.headers["Cache-Control"] = "no-store"
    return response
