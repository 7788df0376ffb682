"""Voicemails: the list with each message's mail state, a player, and a supervisor's "send
the mail again" (``fsrouter deliveries retry mail:N``: the same function, audited).

The recording is served from the voicemail row's stored path, and only when that resolves
to a file inside the configured ``voicemail.directory`` (commands.history.voicemail_file):
the URL names the voicemail's id, never a path. Werkzeug's conditional responses answer
Range requests (206), so the browser's player can seek.
"""

from __future__ import annotations

from typing import Any

import flask
from werkzeug.wrappers import Response

from fsrouter.commands.deliveries import failed, parse_ids, retry
from fsrouter.commands.history import (
    voicemail_file,
    voicemail_item,
    voicemail_query,
)
from fsrouter.store.history import MAIL_STATES
from fsrouter.web.auth import require
from fsrouter.web.context import config, db, now, who
from fsrouter.web.errors import ApiError
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

bp = flask.Blueprint("voicemails", __name__)

ID = "<int(max=1000000000000):voicemail_id>"
MAX_RETRY_IDS = 1000


def _voicemails(paged: bool) -> tuple[list[dict[str, Any]], Paging]:
    cfg = config()
    wanted, paging = (page_window if paged else api_window)(cfg)
    query = voicemail_query(wanted, text_arg("user"), text_arg("mail"))
    with db():
        rows, paging = trimmed(query.rows(), paging)
    return [voicemail_item(row, cfg.defaults.timezone) for row in rows], paging


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A voicemail as the console shows it: the file's path stays on the server."""
    return {key: value for key, value in item.items() if key != "path"}


def _recording(voicemail_id: int) -> Response:
    cfg = config()
    with answering(), db():
        path = voicemail_file(cfg, voicemail_id)
    response = flask.send_file(path, mimetype="audio/wav", conditional=True,
                               download_name=f"voicemail-{voicemail_id}.wav", max_age=0)
    response.headers["Content-Disposition"] = \
        f'inline; filename="voicemail-{voicemail_id}.wav"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _retry_mail(voicemail_id: int) -> list[str]:
    with db(immediate=True):  # a write: SQLite's lock at BEGIN
        return retry([voicemail_id], [], who(), now())


# ---------------------------------------------------------------- pages


@bp.get("/voicemails")
@require("viewer")
def voicemails_page() -> str:
    items, paging, errors = listing_or_errors(lambda: _voicemails(paged=True))
    supervisor = flask.g.account.role == "supervisor"
    return flask.render_template("voicemails/list.html", items=items, paging=paging,
                                 errors=errors, filters=filters(),
                                 mail_states=MAIL_STATES,
                                 supervisor=supervisor, page_url=page_url, when=short_time,
                                 suggest=suggestions(config()))


@bp.get(f"/voicemails/{ID}/audio")
@require("viewer")
def voicemail_audio(voicemail_id: int) -> Response:
    return _recording(voicemail_id)


@bp.post(f"/voicemails/{ID}/retry")
@require("supervisor")
def voicemail_retry(voicemail_id: int) -> Response:
    done = _retry_mail(voicemail_id)
    flask.flash(f"{', '.join(done)}: the mail is due again; the daemon sends it on its next "
                "poll", "info")
    return flask.redirect(flask.url_for("voicemails.voicemails_page"))


# ---------------------------------------------------------------- API


@bp.get("/api/v1/voicemails")
@require("viewer")
def voicemails_api() -> Response:
    items, paging = _voicemails(paged=False)
    return api_listing([_public(item) for item in items], paging)


@bp.get(f"/api/v1/voicemails/{ID}/audio")
@require("viewer")
def voicemail_audio_api(voicemail_id: int) -> Response:
    return _recording(voicemail_id)


@bp.post(f"/api/v1/voicemails/{ID}/retry")
@require("supervisor")
def voicemail_retry_api(voicemail_id: int) -> Response:
    return flask.jsonify({"retried": _retry_mail(voicemail_id)})


@bp.get("/api/v1/deliveries")
@require("viewer")
def deliveries_api() -> Response:
    """``fsrouter deliveries list``: mails and webhooks given up on (``offset`` counts in
    each kind: they are two tables)."""
    cfg = config()
    wanted, paging = api_window(cfg)
    with db():
        items = failed(wanted, cfg.defaults.timezone)
    return api_listing(*trimmed(items, paging))


@bp.post("/api/v1/deliveries/retry")
@require("supervisor")
def deliveries_retry_api() -> Response:
    """``fsrouter deliveries retry``: body ``{"ids": ["mail:12", "webhook:7"]}``."""
    body = flask.request.get_json(silent=True)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > MAX_RETRY_IDS \
            or not all(isinstance(one, str) for one in ids):
        raise ApiError(422, f'the body must be {{"ids": ["mail:N", "webhook:N", ...]}} '
                       f"(1-{MAX_RETRY_IDS} ids)")
    mails, hooks = parse_ids(ids)
    with db(immediate=True):
        return flask.jsonify({"retried": retry(mails, hooks, who(), now())})
