"""Incidents and calls: what happened, with each incident's attempt timeline.

Pages ``/incidents``, ``/incidents/<id>``, ``/calls`` and the API under ``/api/v1/incidents``
and ``/api/v1/calls``; the filters are the commands' (``fsrouter incidents list``, ``calls
list``): the same checks, the same rows, the same JSON items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import flask

from fsrouter.commands.common import local_text
from fsrouter.commands.history import (
    call_item,
    call_query,
    events,
    incident_data,
    incident_item,
    incident_query,
    incident_timeline,
)
from fsrouter.store.models import INCIDENT_STATES
from fsrouter.web.auth import require
from fsrouter.web.context import config, db
from fsrouter.web.pages.listing import (
    Paging,
    answering,
    api_listing,
    api_window,
    filters,
    listing_or_errors,
    page_url,
    page_window,
    short_time,
    text_arg,
    trimmed,
)

bp = flask.Blueprint("history", __name__)

MAX_ID = 10**12  # ids in URLs: digits only (the converter), and bounded


def _incidents(paged: bool) -> tuple[list[dict[str, Any]], Paging]:
    cfg = config()
    wanted, paging = (page_window if paged else api_window)(cfg)
    query = incident_query(cfg, wanted, text_arg("number"), text_arg("option"),
                           text_arg("state"))
    with db():
        rows, paging = trimmed(query.rows(), paging)
    return [incident_item(row, cfg.defaults.timezone) for row in rows], paging


def _calls(paged: bool) -> tuple[list[dict[str, Any]], Paging]:
    cfg = config()
    wanted, paging = (page_window if paged else api_window)(cfg)
    query = call_query(cfg, wanted, text_arg("number"), text_arg("outcome"))
    with db():
        found, counts = query.rows()
        rows, paging = trimmed(found, paging)
    return [call_item(row, cfg.defaults.timezone, counts.get(row.id, 0)) for row in rows], \
        paging


# ---------------------------------------------------------------- pages


@bp.get("/incidents")
@require("viewer")
def incidents_page() -> str:
    items, paging, errors = listing_or_errors(lambda: _incidents(paged=True))
    return flask.render_template("incidents/list.html", items=items, paging=paging,
                                 errors=errors, filters=filters(),
                                 states=INCIDENT_STATES,
                                 page_url=page_url, when=short_time)


@dataclass(frozen=True)
class Bar:
    """One dial attempt on the timeline: who, when, how it ended, where its bar sits (0-1000
    of the incident's span)."""

    seq: int
    user: str
    phone: str
    phone_type: str
    started: str
    ended: str
    seconds: float | None
    result: str
    cause: str
    x: int
    width: int


def _bars(timeline: Any, zone: str) -> list[Bar]:
    moments: list[datetime] = [at for at, _ in events(timeline)]
    start, end = min(moments), max(moments)
    span = max((end - start).total_seconds(), 1.0)

    def place(moment: datetime) -> int:
        return round((moment - start).total_seconds() / span * 1000)

    bars = []
    for attempt in timeline.attempts:
        x = place(attempt.started_at)
        stop = place(attempt.ended_at) if attempt.ended_at is not None else 1000
        seconds = (attempt.ended_at - attempt.started_at).total_seconds() \
            if attempt.ended_at is not None else None
        bars.append(Bar(attempt.seq, attempt.user_id, attempt.phone,
                        attempt.phone_type or "", local_text(attempt.started_at, zone),
                        local_text(attempt.ended_at, zone), seconds,
                        attempt.result or ("ringing" if attempt.ended_at is None else "?"),
                        attempt.cause or "", x, max(stop - x, 4)))
    return bars


@bp.get("/incidents/<int(max=1000000000000):incident_id>")
@require("viewer")
def incident_page(incident_id: int) -> str:
    cfg = config()
    zone = cfg.defaults.timezone
    with answering(), db():
        timeline = incident_timeline(incident_id)
    data = incident_data(timeline, zone)
    return flask.render_template("incidents/show.html", incident=data,
                                 bars=_bars(timeline, zone), when=short_time)


@bp.get("/calls")
@require("viewer")
def calls_page() -> str:
    items, paging, errors = listing_or_errors(lambda: _calls(paged=True))
    return flask.render_template("calls/list.html", items=items, paging=paging,
                                 errors=errors, filters=filters(),
                                 page_url=page_url, when=short_time)


# ---------------------------------------------------------------- API


@bp.get("/api/v1/incidents")
@require("viewer")
def incidents_api() -> flask.Response:
    return api_listing(*_incidents(paged=False))


@bp.get("/api/v1/incidents/<int(max=1000000000000):incident_id>")
@require("viewer")
def incident_api(incident_id: int) -> flask.Response:
    with answering(), db():
        timeline = incident_timeline(incident_id)
    return flask.jsonify(incident_data(timeline, config().defaults.timezone))


@bp.get("/api/v1/calls")
@require("viewer")
def calls_api() -> flask.Response:
    return api_listing(*_calls(paged=False))
