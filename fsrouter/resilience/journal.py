"""The journal of store writes waiting for the database (issue 18.5: the database blinks).

When PostgreSQL restarts or refuses connections, calls in progress must go on and their rows
must still be written, once each, in the order the calls made them. Every write a call makes
while the store refuses it goes into this journal: an ordered, bounded, in-memory list of
entries, each with a sequence number, replayed oldest first every :data:`RETRY_S` seconds
until the store takes them all.

Why a journal and not retries with a deadline inside the call flow: a caller must never wait
in silence for the database (a retry loop inside the flow would hold the menu caller or the
ringing leg), and the writes of one call depend on each other (the incident before its
attempts, the call record before everything). An ordered journal keeps that order across all
calls and lets the flow go on at once.

Idempotency: an entry may be replayed after a try that did reach the database (the commit
went through, its answer was lost with the connection). Every journaled write is therefore
safe to run twice: closing updates check the row is still open (``WHERE ended_at IS NULL``),
creates look for their natural key first (the call uuid, the leg uuid, the recording path,
the delivery id; see :mod:`fsrouter.store.replay`).

A create whose row does not exist yet gives the flow a :class:`Ref` instead of the row's id.
Later entries may take the Ref as an argument (or as a value of a dict argument): it is
replaced by the id once the create has been replayed, which is always before them.

What the journal does not do (said plainly): it lives in the daemon's memory. A daemon that
dies during an outage loses the writes it had not replayed (logged as they are journaled, with
``store.write_deferred``); reconciliation after its restart closes the call records it left
open. The bound (:data:`MAX_PENDING`) drops the oldest entry, with an error log carrying
everything it would have written.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import structlog

from fsrouter.store import StoreError

log = structlog.get_logger("fsrouter.resilience")

RETRY_S = 2.0  # seconds between replays while writes are waiting
MAX_PENDING = 10_000

_ids = itertools.count(1)


class Ref:
    """The id of a row whose create is still in the journal."""

    __slots__ = ("entry_id", "value", "failed")

    def __init__(self, entry_id: int) -> None:
        self.entry_id = entry_id
        self.value: Any = None
        self.failed = False

    @property
    def ready(self) -> bool:
        return self.value is not None

    def __repr__(self) -> str:
        return f"pending#{self.entry_id}" if self.value is None else repr(self.value)


class Unresolved(Exception):
    """An entry refers to a create that never reached the store (dropped or refused)."""


@dataclass
class Entry:
    entry_id: int
    write: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ref: Ref | None = None
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return getattr(self.write, "__qualname__", getattr(self.write, "__name__", "write"))


@dataclass
class Outage:
    """Counters the logs and metrics show: what the journal has done since start."""

    started: float | None = None  # monotonic; None while the store takes writes
    outages: int = 0
    deferred: int = 0
    replayed: int = 0
    dropped: int = 0
    failed: int = 0
    longest_s: float = 0.0


_pending: deque[Entry] = deque()
_listeners: list[weakref.WeakMethod[Any]] = []
_worker: list[gevent.Greenlet] = []
state = Outage()


# ------------------------------------------------------------------------- the flow's side


def settle(write: Callable[..., Any], *args: Any, later: Callable[..., Any] | None = None,
           **kwargs: Any) -> Any:
    """``write(*args, **kwargs)`` now, or later (in order, then None) if the store refuses
    it or writes are already waiting (a later write must not overtake an earlier one).
    ``later``: what the journal runs instead of ``write`` (same arguments)."""
    if not _pending and not _has_refs(args, kwargs):
        try:
            return _call(write, args, kwargs)
        except StoreError as error:
            _note_refusal(write, error)
    _keep(Entry(next(_ids), later or write, args, kwargs))
    return None


def create(write: Callable[..., Any], *args: Any, later: Callable[..., Any] | None = None,
           **kwargs: Any) -> Any:
    """A write that creates a row and returns it: the row now, or a :class:`Ref` to its id
    that the journal fills in once it has written the row with ``later`` (same arguments,
    safe to run twice: the first try may have committed before its answer was lost;
    default ``write`` itself)."""
    if not _pending and not _has_refs(args, kwargs):
        try:
            return _call(write, args, kwargs)
        except StoreError as error:
            _note_refusal(write, error)
    entry = Entry(next(_ids), later or write, args, kwargs)
    entry.ref = Ref(entry.entry_id)
    _keep(entry)
    return entry.ref


def defer(write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Journal ``write`` without trying it now (the caller already saw the store refuse)."""
    _keep(Entry(next(_ids), write, args, kwargs))


def when_caught_up(kick: Callable[[], None]) -> None:
    """Call ``kick`` (a bound method: held weakly) each time the journal has written every
    waiting entry: the mailer sends the voicemails whose rows were written late."""
    _listeners.append(weakref.WeakMethod(kick))  # type: ignore[arg-type]


def waiting() -> int:
    """How many writes are waiting for the store."""
    return len(_pending)


def busy() -> bool:
    """Writes are waiting: a new write must queue behind them (see :func:`settle`)."""
    return bool(_pending)


def calls() -> set[str]:
    """The calls whose rows still have a write waiting (call writes take the call's uuid
    first): reconciliation must leave them to these writes."""
    return {entry.args[0] for entry in list(_pending)
            if entry.args and isinstance(entry.args[0], str)}


def resolved(value: Any) -> Any:
    """``value`` with a ready :class:`Ref` replaced by its id (a Ref not ready stays)."""
    if isinstance(value, Ref):
        return value.value if value.ready else value
    if isinstance(value, dict):
        return {key: resolved(item) for key, item in value.items()}
    return value


def has_refs(*values: Any) -> bool:
    """Whether any value (or dict value) is a :class:`Ref` not yet written."""
    return _has_refs(values, {})


# ------------------------------------------------------------------------- the journal's side


def _has_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Ref) and not value.ready:
            return True
        if isinstance(value, dict) and any(isinstance(v, Ref) and not v.ready
                                           for v in value.values()):
            return True
    return False


def _note_refusal(write: Callable[..., Any], error: StoreError) -> None:
    log.warning("store.write_deferred", write=getattr(write, "__name__", "write"),
                error=str(error)[:200])


def _keep(entry: Entry) -> None:
    if state.started is None:
        state.started = time.monotonic()
        state.outages += 1
        log.error("store.outage_started", first_write=entry.name)
    if len(_pending) >= MAX_PENDING:
        lost = _pending.popleft()
        state.dropped += 1
        if lost.ref is not None:
            lost.ref.failed = True
        log.error("store.write_dropped", write=lost.name, entry=lost.entry_id,
                  args=repr((lost.args, lost.kwargs))[:500])
    _pending.append(entry)
    state.deferred += 1
    if not _worker or _worker[0].dead:
        _worker[:] = [gevent.spawn(_replay_loop)]


def _replay_loop() -> None:
    """Write the waiting entries in order; on the first refusal wait and start again."""
    while _pending:
        gevent.sleep(RETRY_S)
        replay_now()


def replay_now() -> bool:
    """One pass over the journal; True when it is empty afterwards."""
    while _pending:
        entry = _pending[0]
        try:
            _apply(entry)
        except StoreError as error:
            log.info("store.still_refusing", waiting=len(_pending), error=str(error)[:200])
            return False
        except Exception:  # a write that can never succeed: kept in the log, not retried
            state.failed += 1
            if entry.ref is not None:
                entry.ref.failed = True
            log.exception("store.write_failed", write=entry.name, entry=entry.entry_id,
                          args=repr((entry.args, entry.kwargs))[:500])
        else:
            state.replayed += 1
        _pending.popleft()
    _caught_up()
    return True


def _apply(entry: Entry) -> None:
    for value in (*entry.args, *entry.kwargs.values(), *_dict_values(entry)):
        if isinstance(value, Ref) and value.failed:
            raise Unresolved(f"refers to {value!r}, whose create was not written")
    result = _call(entry.write, entry.args, entry.kwargs)
    if entry.ref is not None:
        entry.ref.value = getattr(result, "id", result)


def _call(write: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``write`` with every written :class:`Ref` replaced by its id."""
    return write(*(resolved(value) for value in args),
                 **{key: resolved(value) for key, value in kwargs.items()})


def _dict_values(entry: Entry) -> list[Any]:
    return [v for value in (*entry.args, *entry.kwargs.values()) if isinstance(value, dict)
            for v in value.values()]


def _caught_up() -> None:
    if state.started is None:
        return
    lasted = time.monotonic() - state.started
    state.longest_s = max(state.longest_s, lasted)
    state.started = None
    log.warning("store.outage_ended", seconds=round(lasted, 1), replayed=state.replayed,
                dropped=state.dropped, failed=state.failed)
    log.info("store.writes_caught_up")
    for ref in list(_listeners):
        kick = ref()
        if kick is None:
            _listeners.remove(ref)
        else:
            kick()


def outage_seconds() -> float:
    """How long the current outage has lasted (0 when the store takes writes)."""
    return 0.0 if state.started is None else time.monotonic() - state.started


def close() -> int:
    """At the daemon's stop: one last pass, then what is still waiting is given up (each
    entry logged with everything it would have written) and the replay loop ends. Returns
    how many entries were given up."""
    if _pending:
        replay_now()
    lost = len(_pending)
    while _pending:
        entry = _pending.popleft()
        state.dropped += 1
        log.error("store.write_lost_at_stop", write=entry.name, entry=entry.entry_id,
                  args=repr((entry.args, entry.kwargs))[:500])
    for worker in _worker:
        worker.kill(block=False)
    _worker.clear()
    state.started = None
    return lost
