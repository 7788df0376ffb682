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
    suggestions,
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
                                 page_url=page_url, when=short_time,
                                 suggest=suggestions(config()))


@dataclass(frozen=True)
class Bar:
    """One dial attempt on the timeline: who, when, how it ended, and where its bar sits in
    the chart's :data:`CHART` units (x from the menu choice to the last attempt's end)."""

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
    y: int


CHART_LEFT, CHART_RIGHT, ROW = 160, 980, 30  # units of the SVG's 1000-wide view box


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    span_s: int  # seconds from the menu choice to the right edge
    height: int


def _chart(timeline: Any, zone: str) -> Chart:
    """The attempts as bars from the menu choice (x = 0 s) to the last attempt's end (or
    the acceptance): who was rung when, for how long, and how it ended."""
    incident = timeline.incident
    start = incident.created_at
    ends = [moment for a in timeline.attempts for moment in (a.started_at, a.ended_at)
            if moment is not None]
    if incident.accepted_at is not None:
        ends.append(incident.accepted_at)
    span = max([(moment - start).total_seconds() for moment in ends] + [10.0])
    scale = (CHART_RIGHT - CHART_LEFT) / span

    def place(moment: datetime) -> int:
        return CHART_LEFT + round(max((moment - start).total_seconds(), 0.0) * scale)

    bars = []
    for row, attempt in enumerate(timeline.attempts):
        x = place(attempt.started_at)
        stop = place(attempt.ended_at) if attempt.ended_at is not None else CHART_RIGHT
        seconds = (attempt.ended_at - attempt.started_at).total_seconds() \
            if attempt.ended_at is not None else None
        bars.append(Bar(attempt.seq, attempt.user_id, attempt.phone,
                        attempt.phone_type or "", local_text(attempt.started_at, zone),
                        local_text(attempt.ended_at, zone), seconds,
                        attempt.result or ("ringing" if attempt.ended_at is None else "?"),
                        attempt.cause or "", x, max(stop - x, 4), row * ROW))
    return Chart(bars, round(span), len(bars) * ROW + 24)


@bp.get("/incidents/<int(max=1000000000000):incident_id>")
@require("viewer")
def incident_page(incident_id: int) -> str:
    cfg = config()
    zone = cfg.defaults.timezone
    with answering(), db():
        timeline = incident_timeline(incident_id)
    data = incident_data(timeline, zone)
    return flask.render_template("incidents/show.html", incident=data,
                                 chart=_chart(timeline, zone), when=short_time)


@bp.get("/calls")
@require("viewer")
def calls_page() -> str:
    items, paging, errors = listing_or_errors(lambda: _calls(paged=True))
    return flask.render_template("calls/list.html", items=items, paging=paging,
                                 errors=errors, filters=filters(),
                                 page_url=page_url, when=short_time,
                                 suggest=suggestions(config()))


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
