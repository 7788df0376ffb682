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


def when(moment: str, at: str) -> str:
    """``16:00`` on the day of ``at``, else ``12-06 16:00`` (ISO texts in the configured
    zone); static/now.js formats the same way."""
    return moment[11:16] if moment[:10] == at[:10] else f"{moment[5:10]} {moment[11:16]}"


def duration(seconds: int) -> str:
    """``2:05``, ``1:02:05``."""
    minutes, second = divmod(seconds, 60)
    if minutes >= 60:
        return f"{minutes // 60}:{minutes % 60:02d}:{second:02d}"
    return f"{minutes}:{second:02d}"


@bp.get("/now")
@require("viewer")
def page() -> str:
    # Plain functions, not Jinja macros: a row per option, and macros cost ten times more.
    return flask.render_template("now/now.html", data=_data(), poll_seconds=POLL_SECONDS,
                                 when=when, duration=duration)


@bp.get("/api/v1/now")
@require("viewer")
def api() -> flask.Response:
    response = flask.jsonify(_data())
    response.headers["Cache-Control"] = "no-store"
    return response
