"""Audit: every change made through fsrouter (the commands, the phones' feature codes, the
console), who made it, before and after; filterable like ``fsrouter audit``."""

from __future__ import annotations

from typing import Any

import flask
from werkzeug.wrappers import Response

from fsrouter.commands.audit import audit_filter, item
from fsrouter.store import audit
from fsrouter.store.audit import AuditFilter
from fsrouter.web.auth import require
from fsrouter.web.context import config, db
from fsrouter.web.pages.listing import (
    Paging,
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

bp = flask.Blueprint("audit", __name__)

KINDS = ("route.", "agent.", "override.", "two_way.", "reload.", "delivery.", "web_user.",
         "web_token.")


def _entries(paged: bool) -> tuple[list[dict[str, Any]], Paging]:
    cfg = config()
    wanted, paging = (page_window if paged else api_window)(cfg)
    query: AuditFilter = audit_filter(cfg, wanted, text_arg("kind"), text_arg("subject"),
                                      text_arg("who"))
    with db():
        rows, paging = trimmed(audit.entries(query), paging)
    return [item(row, cfg.defaults.timezone) for row in rows], paging


def side(value: Any) -> list[tuple[str, str]]:
    """One side of a change as (key, value) pairs to show; [] for nothing."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [(str(key), "-" if one is None else str(one)) for key, one in value.items()]
    return [("", str(value))]


@bp.get("/audit")
@require("viewer")
def audit_page() -> str:
    items, paging, errors = listing_or_errors(lambda: _entries(paged=True))
    return flask.render_template("audit/list.html", items=items, paging=paging,
                                 errors=errors, filters=filters(),
                                 kinds=KINDS, side=side,
                                 page_url=page_url, when=short_time)


@bp.get("/api/v1/audit")
@require("viewer")
def audit_api() -> Response:
    return api_listing(*_entries(paged=False))
