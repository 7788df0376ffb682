"""``fsrouter deliveries list|retry``: voicemail mails and webhooks that were given up on.

The senders (fsrouter.notify) retry on their own for a while, then stop and keep the row:
a voicemail's mail is "failed" (parked), a webhook delivery is ``failed``. ``list`` shows
them with their last error; ``retry ID...`` (``mail:12``, ``webhook:7``) makes them due again
at once, all or none, audited. The running daemon picks them up on its next poll.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import Any

from fsrouter.commands import EXIT_OK, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    by_of,
    emit,
    emit_listing,
    iso,
    load,
    local_text,
    shown,
    store,
    table,
    utc_now,
)
from fsrouter.commands.history import window
from fsrouter.store import NotFound, history, session
from fsrouter.store.models import OutboxMessage, Voicemail

COLUMNS = ("id", "kind", "created_at", "target", "attempts", "status", "error", "failed_at")
_ID = re.compile(r"(mail|webhook):([0-9]{1,12})")


def run_list(args: argparse.Namespace) -> int:
    config = load(args.config)
    zone = config.defaults.timezone
    wanted = window(args, config)
    with store(config, args.database, must_exist=True):
        mails = history.failed_mails(wanted)
        hooks = history.failed_webhooks(wanted)
    items = sorted([*(_mail(row, zone) for row in mails), *(_hook(row, zone) for row in hooks)],
                   key=lambda item: (item["created_at"], item["id"]))
    emit_listing(args, items, COLUMNS, lambda: _text(items, zone))
    return EXIT_OK


def _mail(row: Voicemail, zone: str) -> dict[str, Any]:
    return {"id": f"mail:{row.id}", "kind": "mail", "created_at": iso(row.created_at, zone),
            "target": f"voicemail of {row.user_id}", "attempts": row.email_attempts,
            "status": None, "error": row.email_error,
            "failed_at": iso(row.email_gave_up_at, zone)}


def _hook(row: OutboxMessage, zone: str) -> dict[str, Any]:
    return {"id": f"webhook:{row.id}", "kind": "webhook",
            "created_at": iso(row.created_at, zone), "target": f"{row.event} -> {row.url}",
            "attempts": row.attempts, "status": row.last_status, "error": row.last_error,
            "failed_at": iso(row.failed_at, zone)}


def _text(items: list[dict[str, Any]], zone: str) -> list[str]:
    if not items:
        return ["no failed deliveries"]
    rows = [[item["id"], local_text(datetime.fromisoformat(item["created_at"]), zone),
             shown(item["target"], 50), str(item["attempts"]),
             shown(item["error"] or "-", 60)] for item in items]
    return [*table(("id", "created", "to", "tries", "last error"), rows),
            f"{len(items)} failed deliver(ies); retry with: fsrouter deliveries retry ID..."]


def run_retry(args: argparse.Namespace) -> int:
    config = load(args.config)
    by = by_of(args)
    mails, hooks, errors = [], [], []
    for text in dict.fromkeys(args.ids):
        match = _ID.fullmatch(text)
        if match is None:
            errors.append(f"{shown(text, 40)!r}: an id is mail:N or webhook:N (see "
                          "fsrouter deliveries list)")
        else:
            (mails if match[1] == "mail" else hooks).append(int(match[2]))
    if errors:
        raise Failure(EXIT_USAGE, *errors, "nothing was changed")
    now = utc_now()
    with store(config, args.database, must_exist=True), session(immediate=True):
        try:
            done = [f"mail:{row.id}" for row in history.retry_mails(mails, by, now)] + \
                [f"webhook:{row.id}" for row in history.retry_webhooks(hooks, by, now)]
        except NotFound as error:
            raise Failure(EXIT_USAGE, f"{error}: nothing was changed") from None
    emit(f"{item}: due again" for item in done)
    emit([f"{len(done)} deliver(ies) queued again by {shown(by, 40)}; the daemon sends them "
          "on its next poll"])
    return EXIT_OK
