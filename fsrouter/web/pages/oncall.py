"""The On call page: two weeks per hotline option as a timeline, and the run-time overrides,
added and removed here by supervisors.

The same functions as ``fsrouter oncall`` and ``fsrouter oncall override add|list|remove``
(:mod:`fsrouter.commands.oncall`, :mod:`fsrouter.commands.overrides`): the same checks (user,
schedule, times, overlaps), the same audit entries, ``web:<account>`` as who.

The timeline is inline SVG (one ``rect`` per segment, placed by its instants; colours from
app CSS classes): no JavaScript, no inline styles, and it scales to a phone's width. Under
each bar the same segments are listed as text (for screen readers and exact times).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import flask
from werkzeug.wrappers import Response

from fsrouter.commands import EXIT_USAGE, overrides
from fsrouter.commands.common import Failure, iso, parse_moment
from fsrouter.commands.oncall import on_call, option_data, origins_text, who, with_overrides
from fsrouter.config import Config
from fsrouter.config.schema import CallRoutingNumber
from fsrouter.routing.coverage import OptionCoverage, Segment
from fsrouter.web.auth import require
from fsrouter.web.context import config, db, now
from fsrouter.web.context import who as account
from fsrouter.web.errors import ApiError

bp = flask.Blueprint("oncall", __name__)

DAYS = 14
MAX_API_DAYS = 31
PALETTE = 6  # colour classes on-0 .. on-5 for the people on call
FIELDS = ("schedule", "user", "from", "to")
MAX_ALL = 5  # up to this many hotline numbers, all are drawn at once


@dataclass(frozen=True)
class Bar:
    x: float  # percent of the timeline's width
    width: float
    css: str  # gap, off (out of hours to an action), on-N
    who: str
    start: datetime
    end: datetime
    origins: str
    first: str  # who the first level rings (what the colour stands for)


def _start_of_today(moment: datetime, zone: str) -> datetime:
    local = moment.astimezone(ZoneInfo(zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _legend(bars: list[Bar]) -> list[tuple[str, str]]:
    """(colour class, who) of the people an option's bar shows, once each, in order."""
    return list(dict.fromkeys((bar.css, bar.first) for bar in bars
                              if bar.css.startswith("on-")))


def _timeline(options: list[OptionCoverage], start: datetime, end: datetime
              ) -> list[tuple[OptionCoverage, list[Bar]]]:
    total = (end - start).total_seconds()
    colours: dict[str, int] = {}
    result = []
    for option in options:
        bars = []
        for segment in option.segments:
            bars.append(Bar(x=round((segment.start - start).total_seconds() / total * 100, 3),
                            width=round((segment.end - segment.start).total_seconds()
                                        / total * 100, 3),
                            css=_css(segment, colours), who=who(segment.state),
                            start=segment.start, end=segment.end,
                            origins=origins_text(segment.state).strip(" []"),
                            first=", ".join(segment.state.first_level)))
        result.append((option, bars))
    return result


def _css(segment: Segment, colours: dict[str, int]) -> str:
    if segment.state.gap:
        return "gap"
    if segment.state.policy is None:
        return "off"
    key = ",".join(segment.state.first_level)
    return f"on-{colours.setdefault(key, len(colours) % PALETTE)}"


def _days(start: datetime) -> list[datetime]:
    return [start + timedelta(days=day) for day in range(DAYS)]


@bp.get("/oncall")
@require("viewer")
def page() -> str:
    current, moment = config(), now()
    zone = current.defaults.timezone
    start = _start_of_today(moment, zone)
    end = start + timedelta(days=DAYS)
    hotlines = [(n.number, n.name) for n in current.numbers if isinstance(n, CallRoutingNumber)]
    shown_numbers = _chosen(hotlines)
    with db():
        with_db, _ = with_overrides(current, start, end)
        rows = overrides.listed(moment)
    options = on_call(with_db, start, end, shown_numbers)
    now_x = round((moment - start).total_seconds() / (end - start).total_seconds() * 100, 3)
    default_from = (moment.astimezone(ZoneInfo(zone)) + timedelta(hours=1)).replace(
        minute=0, second=0, microsecond=0)
    return flask.render_template(
        "oncall/oncall.html", zone=zone, start=start, end=end, now_x=now_x,
        timeline=_timeline(options, start, end), days=_days(start), legend=_legend,
        overrides=[overrides.item(row, zone, moment) for row in rows],
        schedules=sorted(current.schedules), users=sorted(current.users),
        hotlines=hotlines, chosen=flask.request.args.get("number", ""),
        all_allowed=len(hotlines) <= MAX_ALL,
        default_from=f"{default_from:%Y-%m-%dT%H:%M}",
        default_to=f"{default_from + timedelta(days=1):%Y-%m-%dT%H:%M}")


def _chosen(hotlines: list[tuple[str, str | None]]) -> set[str]:
    """The hotline numbers to draw: ``?number=`` (one, or ``all`` for up to :data:`MAX_ALL`
    numbers), else the first. Two weeks of a large configuration's options take seconds to
    work out: one number at a time keeps the page fast (and under 100 KB)."""
    numbers = [number for number, _ in hotlines]
    wanted = flask.request.args.get("number", "")
    if wanted == "all" and len(numbers) <= MAX_ALL:
        return set(numbers)
    if wanted in numbers:
        return {wanted}
    return set(numbers[:1] if len(numbers) > MAX_ALL else numbers)


def _add(values: dict[str, Any]) -> dict[str, Any]:
    """Check and store one override from form or JSON values (all strings)."""
    current, moment = config(), now()
    missing = [name for name in FIELDS if not values.get(name)]
    if missing:
        raise Failure(EXIT_USAGE, *(f"{name}: required" for name in missing),
                      "nothing was changed")
    reason = values.get("reason") or None
    start, end = overrides.checked(current, values["schedule"], values["user"], reason,
                                   values["from"], values["to"], moment)
    with db():
        row = overrides.add(current, values["schedule"], values["user"], start, end, reason,
                            account(), moment)
    return overrides.item(row, current.defaults.timezone, moment)


def _remove(override_id: int) -> list[dict[str, Any]]:
    current, moment = config(), now()
    with db():
        rows = overrides.remove([override_id], account(), moment)
    return [overrides.item(row, current.defaults.timezone, moment) for row in rows]


@bp.post("/oncall/overrides")
@require("supervisor")
def add() -> Response:
    form = flask.request.form
    item = _add({name: form.get(name, "").strip() for name in (*FIELDS, "reason")})
    flask.flash(f"override #{item['id']}: {item['user']} is on call for {item['schedule']} "
                f"from {item['from'][:16].replace('T', ' ')} to "
                f"{item['to'][:16].replace('T', ' ')}; it applies to the next call", "info")
    return flask.redirect(flask.url_for("oncall.page"))


@bp.post("/oncall/overrides/<int:override_id>/remove")
@require("supervisor")
def remove(override_id: int) -> Response:
    for item in _remove(override_id):
        flask.flash(f"removed override #{item['id']}: {item['user']} for {item['schedule']}",
                    "info")
    return flask.redirect(flask.url_for("oncall.page"))


@bp.get("/api/v1/oncall")
@require("viewer")
def api_oncall() -> Response:
    """Like ``fsrouter oncall --json``: ``?from=ISO`` (default now), ``?days=N`` (1-31)."""
    current, moment = config(), now()
    zone = current.defaults.timezone
    start, days = _api_range(current, moment)
    end = start + timedelta(days=days)
    with db():
        with_db, rows = with_overrides(current, start, end)
    options = on_call(with_db, start, end)
    return flask.jsonify({"from": iso(start, zone), "to": iso(end, zone),
                          "options": [option_data(option, zone) for option in options],
                          "gaps": sum(len(option.gaps) for option in options),
                          "overrides": [overrides.item(row, zone, moment) for row in rows]})


def _api_range(current: Config, moment: datetime) -> tuple[datetime, int]:
    args = flask.request.args
    errors = []
    days = DAYS
    text = args.get("days", "")
    if text:
        if not text.isdigit() or not 1 <= int(text) <= MAX_API_DAYS:
            errors.append(f"days: a whole number 1-{MAX_API_DAYS}")
        else:
            days = int(text)
    start = moment
    if args.get("from"):
        try:
            start = parse_moment(args["from"], current.defaults.timezone)
        except ValueError as error:
            errors.append(f"from: {error}")
    if errors:
        raise ApiError(422, *errors)
    return start, days


@bp.get("/api/v1/oncall/overrides")
@require("viewer")
def api_list() -> Response:
    """The overrides not yet over (``?all=1``: every one), like ``override list --json``."""
    current, moment = config(), now()
    with db():
        rows = overrides.listed(None if flask.request.args.get("all") else moment,
                                flask.request.args.get("schedule") or None)
    return flask.jsonify([overrides.item(row, current.defaults.timezone, moment)
                          for row in rows])


@bp.post("/api/v1/oncall/overrides")
@require("supervisor")
def api_add() -> tuple[Response, int]:
    """``{"schedule", "user", "from", "to", "reason"?}`` (times ISO; without an offset in
    the configured time zone)."""
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict) or not all(
            isinstance(body.get(name), str) for name in FIELDS) \
            or not isinstance(body.get("reason", ""), str | None):
        raise ApiError(422, 'a JSON object {"schedule", "user", "from", "to"} of strings '
                            '(and "reason", a string) is needed')
    return flask.jsonify(_add(body)), 201


@bp.delete("/api/v1/oncall/overrides/<int:override_id>")
@require("supervisor")
def api_remove(override_id: int) -> Response:
    return flask.jsonify({"removed": _remove(override_id)})
