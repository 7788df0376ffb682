"""Webhooks: business events (``incident.created``, ``incident.accepted``,
``incident.resolved``, ``voicemail.left``) POSTed as JSON to the configured URLs, through a
persistent outbox so that nothing is lost across failures and restarts.

:meth:`Webhooks.emit` writes one outbox row per matching webhook (the body as it will be
sent) and wakes the sender; the sender POSTs each row until it gets a 2xx::

    POST <url>
    Content-Type: application/json
    X-Fsrouter-Event: incident.created
    X-Fsrouter-Delivery: 0f8c...        (the same for every try of this row: deduplicate on it)
    X-Fsrouter-Signature: sha256=<hex HMAC-SHA256 of the body, key: the secret_env variable>

    {"event": "incident.created", "id": "0f8c...", "created_at": "2024-05-01T12:00:00Z",
     "data": {...the payload given to emit...}}

Each try has one deadline for the whole of it (connect, send, response): the webhook's
``timeout``. A receiver that answers one byte at a time cannot stretch a try past it, and the
row's lease (the claim that keeps other senders off it) is derived from that deadline, so
the try always ends before another node may take the row. Each receiver gets its own lane
(a greenlet) in a pass, so a slow one does not hold up deliveries to the others.

Any other status, a connection error or a timeout is a failed try: the row is tried again
after an exponential backoff with jitter (``base_delay`` doubling, capped at ``max_delay``)
until the webhook's ``max_attempts``; then it is marked failed, kept and logged. Redirects
are not followed (a 3xx is a failed try). When the receiver itself is in trouble (no
connection, timeout, 5xx, 429) its other due rows wait for the same moment, so they keep
their order and do not spend tries. A webhook with ``secret_env`` whose variable is unset is
never sent unsigned: that is a failed try with a clear error.

Delivery is at least once: a receiver may see a delivery id twice (a crash between the
response and the bookkeeping), and after retries events may arrive out of order; receivers
order by ``created_at``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.pool
import structlog

from fsrouter import __version__
from fsrouter.config import Config
from fsrouter.config.schema import Webhook
from fsrouter.notify.worker import Worker, backoff_seconds, utc_now
from fsrouter.resilience import journal
from fsrouter.store import queries, replay
from fsrouter.store.models import OutboxMessage

log = structlog.get_logger(__name__)

EVENTS = ("incident.created", "incident.accepted", "incident.resolved", "voicemail.left")
MAX_BODY = 1_000_000  # bytes of JSON; a payload larger than this is a bug in the caller
DEFAULT_TIMEOUT = 5  # for rows whose webhook is no longer configured
DEFAULT_MAX_ATTEMPTS = 12
_EVENT_NAME = re.compile(r"[a-z_]+(\.[a-z_]+)*")
_READ_LIMIT = 64 * 1024  # of a response body: read (so the connection ends cleanly), ignored
_PURGE_EVERY = timedelta(hours=1)
# A claim lasts the try's deadline plus this: the try has ended (the deadline closed its
# socket) well before another sender may take the row again.
LEASE_MARGIN = 30.0
LANES = 8  # receivers served at the same time in one pass


def attempt_lease(deadline: float) -> timedelta:
    """How long a try with this total ``deadline`` keeps its claim on the row."""
    return timedelta(seconds=deadline + LEASE_MARGIN)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx stays a 3xx (an error): a redirected POST would silently turn into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def matches(patterns: tuple[str, ...], event: str) -> bool:
    """Whether a webhook's ``events`` (names, ``*``, ``incident.*``) select ``event``."""
    return any(fnmatch.fnmatchcase(event, pattern) for pattern in patterns)


def encode_body(event: str, delivery_id: str, created_at: datetime,
                payload: Mapping[str, Any]) -> str:
    """The JSON document POSTed for one delivery (ASCII, compact)."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"a webhook payload must be a dict, got {type(payload).__name__}")
    stamp = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    document = {"event": event, "id": delivery_id, "created_at": stamp, "data": dict(payload)}
    body = json.dumps(document, ensure_ascii=True, separators=(",", ":"), allow_nan=False,
                      default=_json_default)
    if len(body) > MAX_BODY:
        raise ValueError(f"webhook body for {event} is {len(body)} bytes (at most {MAX_BODY})")
    return body


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} in a webhook payload")


def signature(secret: str, body: bytes) -> str:
    """The ``X-Fsrouter-Signature`` value for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def shown_url(url: str) -> str:
    """The URL for logs: without query string (it may carry a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _Failure(Exception):
    """One try failed; ``server``: the receiver is in trouble (its other rows wait too)."""

    def __init__(self, reason: str, status: int | None, server: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.server = server


class Webhooks(Worker):
    """The webhook outbox: :meth:`emit` stores, the sender greenlet (:meth:`start`) delivers;
    :meth:`deliver_pending` is one pass."""

    name = "webhooks"

    def __init__(
        self,
        config_source: Callable[[], Config],
        now: Callable[[], datetime] = utc_now,
        *,
        base_delay: float = 5.0,
        max_delay: float = 3600.0,
        poll_interval: float = 30.0,
        error_delay: float = 10.0,
        retention: timedelta = timedelta(days=30),
        batch: int = 100,
        rng: random.Random | None = None,
    ) -> None:
        """``retention``: delivered rows older than this are deleted (failed ones stay)."""
        super().__init__(now, poll_interval, error_delay)
        self._config_source = config_source
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retention = retention
        self.batch = batch
        self._rng = rng or random.Random()
        self._purged_at: datetime | None = None

    # ------------------------------------------------------------ writing

    def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        """Queue ``event`` for every webhook that wants it and wake the sender.

        Never raises (the call flow calls it): a failure is logged as ``webhooks.emit_failed``.
        """
        try:
            self._emit(event, payload)
        except Exception as exc:
            log.error("webhooks.emit_failed", webhook_event=event, error=str(exc),
                      error_type=type(exc).__name__)

    def _emit(self, event: str, payload: Mapping[str, Any]) -> None:
        """The deliveries get their ids and time now; they are stored now, or by the journal
        of writes waiting for the database (in order, once each: by delivery id), with the
        ids of rows written late (a Ref in the payload) filled in by then."""
        if not _EVENT_NAME.fullmatch(event) or len(event) > 64:
            raise ValueError(f"not an event name: {event[:80]!r}")
        hooks = [hook for hook in self._config_source().webhooks if matches(hook.events, event)]
        if not hooks:
            return
        deliveries = tuple((str(uuid.uuid4()), hook.url, hook.secret_env) for hook in hooks)
        journal.settle(self._store, event, dict(payload), deliveries, self._now())

    def _store(self, event: str, payload: dict[str, Any],
               deliveries: tuple[tuple[str, str, str | None], ...], now: datetime) -> None:
        items = [queries.OutboxItem(delivery_id, event, url,
                                    encode_body(event, delivery_id, now, payload), secret_env)
                 for delivery_id, url, secret_env in deliveries]
        rows = replay.enqueue_outbox_once(items, now)
        log.info("webhooks.queued", webhook_event=event, deliveries=len(rows))
        self.kick()

    def enqueue(self, event: str, payload: Mapping[str, Any]) -> list[int]:
        """Like :meth:`emit` but raises (bad event name, payload not JSON, store down);
        returns the outbox row ids written (none when no webhook wants the event)."""
        if not _EVENT_NAME.fullmatch(event) or len(event) > 64:
            raise ValueError(f"not an event name: {event[:80]!r}")
        hooks = [hook for hook in self._config_source().webhooks if matches(hook.events, event)]
        if not hooks:
            return []
        now = self._now()
        items = []
        for hook in hooks:
            delivery_id = str(uuid.uuid4())
            body = encode_body(event, delivery_id, now, payload)
            items.append(queries.OutboxItem(delivery_id, event, hook.url, body, hook.secret_env))
        rows = queries.enqueue_outbox(items, now)
        log.info("webhooks.queued", webhook_event=event, deliveries=len(rows))
        self.kick()
        return [row.id for row in rows]

    # ------------------------------------------------------------ sending

    def run_pass(self) -> int:
        return self.deliver_pending()

    def next_due(self) -> datetime | None:
        return queries.next_outbox_due()

    def deliver_pending(self) -> int:
        """One pass over the due deliveries; returns how many succeeded. Each receiver (URL)
        is a lane of its own, its rows in order; the lanes run side by side."""
        config = self._config_source()
        self._purge(self._now())
        lanes: dict[str, list[int]] = {}
        for row in queries.due_outbox(self._now(), self.batch):
            lanes.setdefault(row.url, []).append(row.id)
        if not lanes:
            return 0
        pool = gevent.pool.Pool(min(LANES, len(lanes)))
        jobs = [pool.spawn(self._deliver_lane, ids, _webhook_for(config, url))
                for url, ids in lanes.items()]
        try:
            gevent.joinall(jobs)  # every lane ends within its rows' deadlines
        finally:
            pool.kill(timeout=1.0)  # only when this pass itself was cut off (Worker.stop)
        for job in jobs:
            if job.exception is not None:
                raise job.exception  # the store is down: the loop logs and waits
        return sum(job.value for job in jobs)

    def _deliver_lane(self, message_ids: list[int], hook: Webhook | None) -> int:
        """The due rows of one receiver in order; stops at the first sign that the receiver
        itself is in trouble (its other rows wait for the same retry time)."""
        delivered = 0
        for message_id in message_ids:
            outcome = self._deliver_one(message_id, hook)
            if outcome == "delivered":
                delivered += 1
            elif outcome == "server_trouble":
                break
        return delivered

    def _deliver_one(self, message_id: int, hook: Webhook | None) -> str:
        deadline = hook.timeout if hook else DEFAULT_TIMEOUT
        now = self._now()
        row = queries.claim_outbox(message_id, now, now + attempt_lease(deadline))
        if row is None:
            return "skipped"  # another sender took it, or it is no longer due
        try:
            status = _post_within(row, deadline)
        except _Failure as failure:
            max_attempts = hook.max_attempts if hook else DEFAULT_MAX_ATTEMPTS
            self._failed(row, failure, max_attempts)
            return "server_trouble" if failure.server else "failed"
        queries.outbox_delivered(row.id, status, self._now())
        log.info("webhooks.delivered", webhook_event=row.event, delivery=row.delivery_id,
                 url=shown_url(row.url), status=status, attempts=row.attempts)
        return "delivered"

    def _failed(self, row: OutboxMessage, failure: _Failure, max_attempts: int) -> None:
        now = self._now()
        fields = dict(webhook_event=row.event, delivery=row.delivery_id, url=shown_url(row.url),
                      attempts=row.attempts, status=failure.status, error=failure.reason)
        if row.attempts >= max_attempts:
            queries.outbox_retry(row.id, failure.reason, failure.status, now, None)
            log.error("webhooks.failed", **fields, note="gave up; the delivery is kept")
            return
        delay = backoff_seconds(row.attempts, self.base_delay, self.max_delay, self._rng)
        retry_at = now + timedelta(seconds=delay)
        queries.outbox_retry(row.id, failure.reason, failure.status, now, retry_at)
        if failure.server:
            queries.postpone_outbox(row.url, retry_at)
        log.warning("webhooks.retry", **fields, retry_at=retry_at.isoformat())

    def _purge(self, now: datetime) -> None:
        if self._purged_at is not None and now - self._purged_at < _PURGE_EVERY:
            return
        self._purged_at = now
        purged = queries.purge_delivered_outbox(now - self.retention)
        if purged:
            log.info("webhooks.purged", deliveries=purged, older_than=str(self.retention))


def _webhook_for(config: Config, url: str) -> Webhook | None:
    """The configured webhook of a row (for timeout and attempts); None if it was removed:
    the row is still delivered, with the defaults."""
    return next((hook for hook in config.webhooks if hook.url == url), None)


def _post_within(row: OutboxMessage, deadline: float) -> int:
    """:func:`_post` with one deadline for the whole try. Each socket operation waits at
    most ``deadline`` too, and under gevent (as the daemon runs) the timer cuts the try off
    at the deadline however the receiver drips; unwinding closes the connection."""
    timer = gevent.Timeout(deadline)
    timer.start()
    try:
        return _post(row, deadline)
    except gevent.Timeout as fired:
        if fired is not timer:
            raise
        raise _Failure(f"no complete response within {deadline} s", None,
                       server=True) from None
    finally:
        timer.close()


def _post(row: OutboxMessage, timeout: float) -> int:
    """POST one delivery; its 2xx status, or :class:`_Failure`."""
    body = row.body.encode("ascii")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"fsrouter/{__version__}",
        "X-Fsrouter-Event": row.event,
        "X-Fsrouter-Delivery": row.delivery_id,
    }
    if row.secret_env:
        secret = os.environ.get(row.secret_env, "")
        if not secret:
            raise _Failure(f"environment variable {row.secret_env} (the webhook secret) is "
                           "not set or empty; not sent unsigned", None, server=True)
        headers["X-Fsrouter-Signature"] = signature(secret, body)
    request = urllib.request.Request(row.url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(_READ_LIMIT)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        trouble = exc.code >= 500 or exc.code == 429
        raise _Failure(f"HTTP {exc.code} {exc.reason}", exc.code, server=trouble) from None
    except urllib.error.URLError as exc:
        raise _Failure(f"cannot connect: {_reason(exc.reason)}", None, server=True) from None
    except TimeoutError:
        raise _Failure(f"no response within {timeout} s", None, server=True) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _Failure(f"{type(exc).__name__}: {exc}", None, server=True) from None
    if not 200 <= status < 300:
        raise _Failure(f"HTTP {status}", status, server=False)
    return status


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(getattr(reason, "strerror", None) or reason)
