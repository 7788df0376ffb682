"""The Inbound routes tab: every number with its destination, one or many changed at once.

A thin layer over :mod:`fsrouter.commands.routes`: the page and the API call the same
functions as ``fsrouter routes list|set|reset`` (validation, the all-or-nothing write, the
audit entry), with ``web:<account>`` as the author. The daemon reads the assignments on every
call, so a change here applies to the next call.

Pages (work without JavaScript; ``static/routes.js`` adds live filter, sort and the pop-up):
``GET /routes``, ``GET|POST /routes/<number>`` (change one), ``POST /routes/assign``,
``GET|POST /routes/import``, ``POST /routes/reset``.
API (JSON): ``GET /api/v1/routes``, ``PUT|DELETE /api/v1/routes/<number>``,
``POST /api/v1/routes/assign``, ``POST /api/v1/routes/import`` (CSV body),
``POST /api/v1/routes/reset``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import flask
from werkzeug.wrappers import Response

from fsrouter.commands import EXIT_USAGE
from fsrouter.commands import routes as ops
from fsrouter.commands.common import (
    MAX_CSV_BYTES,
    Failure,
    decode_csv,
    is_agent,
    local_text,
    shown,
)
from fsrouter.config import Config
from fsrouter.web.auth import require
from fsrouter.web.context import config, db, now, who
from fsrouter.web.errors import ApiError

bp = flask.Blueprint("routes", __name__)

MAX_NUMBERS = 1000  # one assignment request; a CSV file has its own byte bound
MAX_FIELD = 300  # characters of one form or JSON value
SOURCES = ("yaml", "db")
CSV_NAME = "the CSV file"


# ---------------------------------------------------------------- what the page shows


def choices(cfg: Config) -> dict[str, list[tuple[str, str]]]:
    """(value, label) of every agent and queue a number can be sent to."""
    agents = [(uid, f"{user.name} ({uid})") for uid, user in sorted(cfg.users.items())
              if is_agent(user)]
    return {"agents": agents, "queues": [(name, name) for name in sorted(cfg.queues)]}


def shown_route(cfg: Config, route: dict[str, Any], target: str | None) -> dict[str, Any]:
    """A row of the table: the product page's columns on top of the command's route."""
    kind = route["type"]
    user = cfg.users.get(target) if kind == "agent" and target else None
    changed = route["changed_at"]
    return {**route, "target": target,
            "user": f"{user.name} ({target})" if user is not None else "",
            "changed_text": local_text(datetime.fromisoformat(changed),
                                       cfg.defaults.timezone) if changed else "",
            "kind_label": KIND_LABELS.get(kind or "", kind or "-"),
            "source_label": "database" if route["source"] == "db" else "YAML"}


KIND_LABELS = {"agent": "Agent", "queue": "Inbound queue", "unassigned": "Not assigned",
               "custom": "Custom", "call_routing": "On-call hotline"}


def table(cfg: Config, route_type: str | None = None, source: str | None = None,
          text: str | None = None) -> list[dict[str, Any]]:
    with db():
        routes, targets = ops.current_routes(cfg), ops.route_targets(cfg)
    return [shown_route(cfg, route, targets.get(route["number"]))
            for route in ops.select_routes(routes, route_type, source, text)]


def filters(args: Any) -> dict[str, str]:
    """The filter of the table from query parameters: unknown values are refused (422)."""
    kinds = (*ops.ROUTE_TYPES, "call_routing")
    wanted = {key: _text(args.get(key, ""), key) for key in ("type", "source", "q")}
    if wanted["type"] and wanted["type"] not in kinds:
        raise ApiError(422, f"type: one of {', '.join(kinds)}")
    if wanted["source"] and wanted["source"] not in SOURCES:
        raise ApiError(422, "source: yaml or db")
    return wanted


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise ApiError(422, f"{what}: text of at most {MAX_FIELD} characters")
    return value.strip()


def is_supervisor() -> bool:
    return getattr(flask.g.account, "role", None) == "supervisor"


# ---------------------------------------------------------------- the operations, as the web


def set_numbers(texts: list[str], route_type: str, target: str | None) -> list[str]:
    """Send numbers to one target (all or nothing, audited); the report lines."""
    cfg, by = config(), who()
    wanted = ops.routes_from_numbers(cfg, texts, route_type, target or None, by)
    with db():
        notes = ops.write_routes(cfg, wanted, by, now())
    return ops.set_lines(wanted, notes, by)


def import_csv(raw: bytes) -> list[str]:
    """Routes from CSV bytes (``number,type,target``): every bad line, or all written."""
    cfg, by = config(), who()
    text = decode_csv(raw, CSV_NAME)
    wanted = ops.routes_from_csv(cfg, text, CSV_NAME, by, where=lambda line: f"line {line}")
    with db():
        notes = ops.write_routes(cfg, wanted, by, now())
    return ops.set_lines(wanted, notes, by)


def reset_numbers(texts: list[str] | None) -> list[str]:
    """Back to the YAML (None: every number); the report lines."""
    cfg = config()
    numbers = None if texts is None else ops.parse_numbers(cfg, texts)
    if numbers == []:
        raise Failure(EXIT_USAGE, "no numbers given: nothing was changed")
    with db():
        return ops.reset_routes(cfg, numbers, who(), now())


def destination(value: str, custom: str = "") -> tuple[str, str | None]:
    """``agent:anna``, ``queue:sales``, ``unassigned:`` or ``custom:`` (with ``custom``) as
    (type, target): the choice of the page's one destination list."""
    kind, _, target = _text(value, "destination").partition(":")
    if kind == "custom":
        target = _text(custom, "custom target")
    return kind, target or None


def numbers_of(values: object) -> list[str]:
    if not isinstance(values, list) or not values or len(values) > MAX_NUMBERS:
        raise ApiError(422, f"numbers: a list of 1 to {MAX_NUMBERS} numbers")
    return [_text(value, "number") for value in values]


# ---------------------------------------------------------------- pages


@bp.get("/routes")
@require("viewer")
def index() -> str:
    cfg = config()
    wanted = filters(flask.request.args)
    rows = table(cfg, wanted["type"] or None, wanted["source"] or None, wanted["q"])
    return flask.render_template("routes/index.html", routes=rows, choices=choices(cfg),
                                 wanted=wanted, kinds=KIND_LABELS,
                                 can_change=is_supervisor())


@bp.route("/routes/<number>", methods=["GET", "POST"])
@require("supervisor")
def change(number: str) -> str | Response:
    cfg = config()
    errors: list[str] = []
    if flask.request.method == "POST":
        form = flask.request.form
        try:
            kind, target = destination(form.get("destination", ""), form.get("custom", ""))
            return _done(set_numbers([number], kind, target))
        except Failure as failure:
            errors = list(failure.lines)
    try:
        route = _one(cfg, number)
    except Failure as failure:
        route, errors = None, errors or list(failure.lines)
    return flask.render_template("routes/change.html", route=route, number=number,
                                 choices=choices(cfg), errors=errors)


def _one(cfg: Config, text: str) -> dict[str, Any] | None:
    """The table row of a number as typed (None: in no route; Failure: not a number)."""
    number = ops.parse_numbers(cfg, [text])[0]
    return next((row for row in table(cfg) if row["number"] == number), None)


@bp.post("/routes/assign")
@require("supervisor")
def assign() -> Response:
    form = flask.request.form
    try:
        kind, target = destination(form.get("destination", ""), form.get("custom", ""))
        return _done(set_numbers(form.getlist("numbers"), kind, target))
    except Failure as failure:
        return _failed(failure)


@bp.post("/routes/reset")
@require("supervisor")
def reset() -> Response:
    form = flask.request.form
    try:
        return _done(reset_numbers(None if form.get("all") == "yes"
                                   else form.getlist("numbers")))
    except Failure as failure:
        return _failed(failure)


@bp.route("/routes/import", methods=["GET", "POST"])
@require("supervisor")
def upload() -> str | Response:
    errors: list[str] = []
    if flask.request.method == "POST":
        upload = flask.request.files.get("file")
        try:
            if upload is None:
                raise Failure(EXIT_USAGE, "choose a CSV file")
            return _done(import_csv(upload.stream.read(MAX_CSV_BYTES + 1)))
        except Failure as failure:
            errors = list(failure.lines)
    return flask.render_template("routes/import.html", errors=errors)


def _done(lines: list[str]) -> Response:
    for line in lines:
        flask.flash(shown(line, 300), "info")
    return flask.redirect(flask.url_for("routes.index"), 303)


def _failed(failure: Failure) -> Response:
    for line in failure.lines:
        flask.flash(shown(line, 300), "error")
    return flask.redirect(flask.url_for("routes.index"), 303)


# ---------------------------------------------------------------- API


@bp.get("/api/v1/routes")
@require("viewer")
def api_list() -> Response:
    wanted = filters(flask.request.args)
    rows = table(config(), wanted["type"] or None, wanted["source"] or None, wanted["q"])
    return flask.jsonify({"routes": [_api_row(row) for row in rows]})


@bp.get("/api/v1/routes/destinations")
@require("viewer")
def api_destinations() -> Response:
    """Where a number can be sent: [value, label] of every agent and queue."""
    return flask.jsonify(choices(config()))


def _api_row(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("number", "name", "type", "destination", "target", "two_way", "source",
            "yaml_type", "yaml_destination", "changed_by", "changed_at", "note")
    return {key: row[key] for key in keep}


def _body() -> dict[str, Any]:
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    return body


@bp.put("/api/v1/routes/<number>")
@require("supervisor")
def api_set(number: str) -> Response:
    body = _body()
    target = body.get("target")
    if target is not None:
        target = _text(target, "target")
    lines = set_numbers([number], _text(body.get("type", ""), "type"), target)
    return flask.jsonify({"done": lines})


@bp.post("/api/v1/routes/assign")
@require("supervisor")
def api_assign() -> Response:
    body = _body()
    target = body.get("target")
    if target is not None:
        target = _text(target, "target")
    kind = _text(body.get("type", "agent"), "type")
    return flask.jsonify({"done": set_numbers(numbers_of(body.get("numbers")), kind, target)})


@bp.post("/api/v1/routes/import")
@require("supervisor")
def api_import() -> Response:
    return flask.jsonify({"done": import_csv(flask.request.stream.read(MAX_CSV_BYTES + 1))})


@bp.delete("/api/v1/routes/<number>")
@require("supervisor")
def api_reset(number: str) -> Response:
    return flask.jsonify({"done": reset_numbers([number])})


@bp.post("/api/v1/routes/reset")
@require("supervisor")
def api_reset_many() -> Response:
    body = _body()
    if body.get("all") is True:
        return flask.jsonify({"done": reset_numbers(None)})
    return flask.jsonify({"done": reset_numbers(numbers_of(body.get("numbers")))})
