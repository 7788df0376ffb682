"""``fsrouter deliveries list|retry``: voicemail mails and webhooks that were given up on.

The senders (fsrouter.notify) retry on their own for a while, then stop and keep the row:
a voicemail's mail is "failed" (parked), a webhook delivery is ``failed``. ``list`` shows
them with their last error; ``retry ID...`` (``mail:12``, ``webhook:7``) makes them due again
at once, all or none, audited. The running daemon picks them up on its next poll.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
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
        items = failed(wanted, zone)
    emit_listing(args, items, COLUMNS, lambda: _text(items, zone))
    return EXIT_OK


def parse_ids(texts: Sequence[str]) -> tuple[list[int], list[int]]:
    """``mail:N``/``webhook:N`` ids as (mail ids, webhook ids); :class:`Failure` listing every
    bad one."""
    mails: list[int] = []
    hooks: list[int] = []
    errors = []
    for text in dict.fromkeys(texts):
        match = _ID.fullmatch(text)
        if match is None:
            errors.append(f"{shown(text, 40)!r}: an id is mail:N or webhook:N (see "
                          "fsrouter deliveries list)")
        else:
            (mails if match[1] == "mail" else hooks).append(int(match[2]))
    if errors:
        raise Failure(EXIT_USAGE, *errors, "nothing was changed")
    return mails, hooks


def retry(mails: Sequence[int], hooks: Sequence[int], who: str, now: datetime) -> list[str]:
    """Make these failed deliveries due again, all or none, audited as ``who`` (store bound);
    the ids done, or :class:`Failure` (exit 2) when one is missing or not failed."""
    with session(immediate=True):
        try:
            return [f"mail:{row.id}" for row in history.retry_mails(mails, who, now)] + \
                [f"webhook:{row.id}" for row in history.retry_webhooks(hooks, who, now)]
        except NotFound as error:
            raise Failure(EXIT_USAGE, f"{error}: nothing was changed") from None


def failed(wanted: history.Window, zone: str) -> list[dict[str, Any]]:
    """Every delivery given up on in ``wanted``, oldest first (store bound)."""
    mails = history.failed_mails(wanted)
    hooks = history.failed_webhooks(wanted)
    return sorted([*(_mail(row, zone) for row in mails), *(_hook(row, zone) for row in hooks)],
                  key=lambda item: (item["created_at"], item["id"]))


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
    mails, hooks = parse_ids(args.ids)
    with store(config, args.database, must_exist=True):
        done = retry(mails, hooks, by, utc_now())
    emit(f"{item}: due again" for item in done)
    emit([f"{len(done)} deliver(ies) queued again by {shown(by, 40)}; the daemon sends them "
          "on its next poll"])
    return EXIT_OK
