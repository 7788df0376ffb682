"""One ESL connection over a gevent socket: commands, replies, jobs, executions, events.

The commands (writing them, waiting for their replies) are the :class:`Commands` half in
:mod:`fsrouter.esl.commands`; this module reads the socket, fills the reply slots, completes
jobs and executions, and hands events on.

One reader greenlet owns the socket's read side. Replies (``command/reply``,
``api/response``) come back in the order commands were written, so each command takes a slot
in a FIFO while holding the write lock; the reader fills the oldest slot. Background jobs are
matched by the ``Job-UUID`` we choose, and application runs by the ``Event-UUID`` we choose
(returned as ``Application-UUID``), never by application name: two queued ``playback`` runs
must not satisfy each other's waits (greenswitch gets this wrong, freeswitch-facts.md §6).

Event callbacks run in a separate dispatcher greenlet, so a callback may itself call
``api()`` without deadlocking the reader; its queue is bounded, so callbacks that fall far
behind hold the reader back (backpressure on the switch) rather than fill memory. A callback
that never blocks (it only looks at the event and sets flags) may be registered ``inline``:
the reader calls it itself, which saves a greenlet switch per event and, when every callback
is inline, the dispatcher greenlet and its queue (one call's socket: ~7 KB less per waiting
caller, bench/README.md). Events are either pulled (``next_event``) or pushed to callbacks
(``on_event``), not both: once a callback is registered, events stop queueing for
``next_event``, so a long call nobody pulls from does not keep every event it saw (~10 KB
each). When the connection ends (peer close, protocol error, ``close()``), every waiter is
released with :class:`ConnectionClosed` and the ``on_close`` callbacks run. What a
connection buffers is also bounded in bytes (:mod:`fsrouter.esl.buffers`), and an event that
names a channel by anything but a UUID is dropped (:mod:`fsrouter.esl.ids`).

Example::

    conn = Connection(sock)
    conn.start()
    print(conn.api("status", timeout=5))
    run = conn.execute("playback", "tone_stream://%(500,500,425)", uuid=call_uuid)
    done = run.wait(timeout=30)       # the CHANNEL_EXECUTE_COMPLETE of *this* run
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import structlog

from fsrouter.esl.buffers import MAX_CONNECTION_BYTES, BufferAccount, EventQueue
from fsrouter.esl.commands import Commands
from fsrouter.esl.ids import bad_identifier
from fsrouter.esl.pending import (
    ConnectionClosed,
    ESLTimeout,
    Execution,
    Job,
)
from fsrouter.esl.pending import (
    ESLError as ESLError,  # re-exported: the callers import it from here
)
from fsrouter.esl.protocol import (
    API_RESPONSE,
    AUTH_REQUEST,
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    EVENT_JSON,
    EVENT_PLAIN,
    LOG_DATA,
    RUDE_REJECTION,
    Event,
    Frame,
    FrameParser,
    ProtocolError,
    linger_seconds,
    parse_event,
)

log = structlog.get_logger(__name__)

EventCallback = Callable[[Event], Any]

_READ_SIZE = 65536
# Under gevent a recv on a socket with data waiting returns without switching, so a peer that
# streams without pause would keep the reader running for ever: no timer, no other socket, no
# new call (issue 22.2: 1 tick of a 10 ms timer in 3 s). The reader yields after this many
# bytes (~1-3 ms of parsing), the dispatcher after this many events; counted per read and per
# event, one subtraction each, so a call's socket (a few KB between waits) never pays a switch.
_YIELD_BYTES = 65536
_YIELD_EVENTS = 64


def _yield() -> None:
    """Let every other greenlet, timer and socket run once, then go on.

    Not ``gevent.sleep(0)``: that only queues a callback, and gevent runs up to 50 of them
    before it looks at the clock, so two busy readers could go 150 ms without the loop polling
    sockets or timers (measured: gaps of 128 ms). A timer that is due at once resumes us in the
    loop's next iteration, after the sockets and timers that are ready.
    """
    gevent.sleep(1e-6)


class Connection(Commands):
    """An ESL connection (inbound or outbound) over a connected gevent socket."""

    def __init__(
        self,
        sock: Any,
        *,
        name: str = "esl",
        max_body_bytes: int | None = None,
        event_queue_size: int = 10_000,
        dispatch_queue_size: int = 10_000,
        max_buffer_bytes: int = MAX_CONNECTION_BYTES,
    ) -> None:
        self.sock = sock
        self.name = name
        # Bytes this connection holds (partial frame, queued events), fsrouter.esl.buffers.
        self.buffers = BufferAccount(max_buffer_bytes)
        self._parser = (
            FrameParser(max_body_bytes=max_body_bytes, account=self.buffers)
            if max_body_bytes else FrameParser(account=self.buffers)
        )
        self._write_lock = gevent.lock.Semaphore()
        # A list, not a deque (~0.7 KB each): rarely more than one reply is outstanding.
        self._replies: list[gevent.event.AsyncResult] = []
        self._jobs: dict[str, Job] = {}
        self._executions: dict[str, Execution] = {}
        self._callbacks: list[EventCallback] = []  # run by the dispatcher greenlet
        self._inline: list[EventCallback] = []  # run by the reader (they never block)
        self._close_callbacks: list[Callable[[], Any]] = []
        # Both queues are made when first needed (~3.7 KB each): a call's socket whose only
        # callback is inline never needs either.
        self._event_queue_size = event_queue_size
        self._events_q: EventQueue | None = None
        # Bounded: a callback that cannot keep up stops the reader (the switch then queues,
        # and drops a listener that falls 100,000 events behind) instead of growing memory.
        self._dispatch_queue_size = dispatch_queue_size
        self._dispatch_q: EventQueue | None = None
        self._auth_request = gevent.event.Event()
        self._closed = gevent.event.Event()
        self.close_reason: str | None = None
        self.lingering = False
        self.linger_time: int | None = None
        self.disconnect_notice: Frame | None = None
        self.dropped_events = 0
        self.quiet = False  # close() logs nothing (its owner reports the connection's end)
        self.bad_identifiers = 0  # events dropped for naming a channel by a non-UUID
        self._discarding = False  # discard_events(): no more events to callbacks
        self._greenlets: list[gevent.Greenlet] = []
        self._log = log.bind(conn=name)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader (the callback dispatcher starts with the first callback that is
        not inline)."""
        self._greenlets.append(gevent.spawn(self._read_loop))

    @property
    def _events(self) -> EventQueue:
        if self._events_q is None:
            self._events_q = EventQueue(self._event_queue_size, self.buffers)
        return self._events_q

    @property
    def _dispatch(self) -> EventQueue:
        if self._dispatch_q is None:
            self._dispatch_q = EventQueue(self._dispatch_queue_size, self.buffers)
            if self.closed:
                self._dispatch_q.put_nowait(None)  # nothing will come: the loop just ends
            self._greenlets.append(gevent.spawn(self._dispatch_loop))
        return self._dispatch_q

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float | None) -> bool:
        """True once the connection has ended (e.g. after linger, the switch hangs up)."""
        return self._closed.wait(timeout)

    def wait_auth_request(self, timeout: float | None) -> None:
        if not self._auth_request.wait(timeout):
            raise ESLTimeout(f"{self.name}: no auth/request within {timeout} s")
        if self.closed:
            raise ConnectionClosed(f"{self.name}: before auth/request: {self.close_reason}")

    def close(self, reason: str = "closed by us") -> None:
        """End the connection and release every waiter; safe to call more than once."""
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        self.buffers.close()  # what it still holds goes back to the shared budget
        if self.quiet:
            pass  # the owner reports it (a listener summarises sockets it turned away)
        elif reason.startswith("protocol error"):
            self._log.warning("esl.closed", reason=reason)
        else:
            self._log.info("esl.closed", reason=reason)
        try:
            self.sock.close()
        except OSError:
            pass
        error = ConnectionClosed(f"{self.name}: {reason}")
        while self._replies:
            slot = self._replies.pop(0)
            if not slot.ready():
                slot.set_exception(error)
        for job in list(self._jobs.values()):
            job._fail(error)
        for run in list(self._executions.values()):
            run._fail(error)
        self._jobs.clear()
        self._executions.clear()
        self._auth_request.set()
        self._end_dispatch()
        if self._events_q is not None and reason.startswith("protocol error"):
            # A peer that broke the protocol (or flooded us): none of its events is acted
            # on, and their memory goes now, with the budget it was charged to.
            self.dropped_events += self._events_q.clear()
        if self._events_q is not None:  # else next_event() sees `closed` by itself
            self._put_event(None)
        for callback in self._close_callbacks:
            self._call(callback)
        self._close_callbacks.clear()

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once when the connection ends (at once if it has ended), from
        the greenlet that ends it, after every waiter was released; it must not block."""
        if self.closed:
            self._call(callback)
        else:
            self._close_callbacks.append(callback)

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        """``callback(*args)``; an exception is logged (with the event's name when the
        argument is an event), never passed on: one bad callback must not stop the others."""
        try:
            callback(*args)
        except Exception:
            if args and isinstance(args[0], Event):
                self._log.exception("esl.callback_failed", event_name=args[0].name)
            else:
                self._log.exception("esl.callback_failed")

    def discard_events(self) -> None:
        """Hand no more events of this (closed) connection to the callbacks, however many
        wait: for a client that reconnects and resynchronises they are stale (a leg that
        ended while we were deaf would come back to life)."""
        self._discarding = True
        if self._dispatch_q is not None:
            while not self._dispatch_q.empty():
                if self._dispatch_q.get_nowait() is not None:
                    self.dropped_events += 1
        self._end_dispatch()

    def _end_dispatch(self) -> None:
        """Tell the dispatcher to stop, never waiting: events not yet handed to callbacks
        are dropped (a reconnect resynchronises), so a stalled callback cannot stall this."""
        if self._dispatch_q is None:
            return  # no dispatcher was ever started
        while True:
            try:
                self._dispatch.put_nowait(None)
                return
            except gevent.queue.Full:
                self._dispatch.get_nowait()
                self.dropped_events += 1

    def on_event(self, callback: EventCallback, inline: bool = False) -> None:
        """Call ``callback(event)`` for every event, in order, from the dispatcher greenlet;
        with ``inline``, from the reader itself, before the dispatcher's callbacks get the
        event: such a callback must never block (no commands, no waits, no sleeps).

        Events queued for ``next_event`` so far go to the callbacks first; later ones are not
        queued for ``next_event`` any more.
        """
        queued = self._take_queued()
        if inline:
            self._inline.append(callback)
            for event in queued:
                self._call(callback, event)
            return
        self._callbacks.append(callback)
        for event in queued:
            self._dispatch.put(event)

    def _take_queued(self) -> list[Event]:
        """The events waiting for ``next_event`` (its end marker stays)."""
        taken: list[Event] = []
        queue = self._events_q
        while queue is not None and not queue.empty() and queue.peek() is not None:
            taken.append(queue.get_nowait())
        return taken

    def next_event(self, timeout: float | None) -> Event:
        """The next event from this connection's queue (raises ConnectionClosed at the end)."""
        if self._events_q is None and self.closed:
            raise ConnectionClosed(f"{self.name}: {self.close_reason}")
        try:
            event = self._events.get(timeout=timeout)
        except gevent.queue.Empty:
            raise ESLTimeout(f"no event within {timeout} s") from None
        if event is None:
            self._events.put_nowait(None)  # keep the end marker for the next reader
            raise ConnectionClosed(f"{self.name}: {self.close_reason}")
        return event

    # -- reader -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        budget = _YIELD_BYTES
        while not self.closed:
            try:
                data = self.sock.recv(_READ_SIZE)
            except OSError as exc:
                self.close(f"read failed: {exc}")
                return
            if not data:
                self.close("peer closed the socket")
                return
            if not self._feed(data):
                return
            budget -= len(data)
            del data  # an idle connection must not hold its last read while it waits
            if budget <= 0:
                budget = _YIELD_BYTES
                _yield()

    def _feed(self, data: bytes) -> bool:
        try:
            for frame in self._parser.feed(data):
                self._handle(frame)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")
            return False
        except Exception as exc:
            # A bug here must still release every waiter rather than strand them.
            self._log.exception("esl.reader_failed")
            self.close(f"internal error: {exc!r}")
            return False
        return True

    def _handle(self, frame: Frame) -> None:
        kind = frame.content_type
        if kind in (COMMAND_REPLY, API_RESPONSE):
            self._handle_reply(frame)
        elif kind in (EVENT_PLAIN, EVENT_JSON):
            self._handle_event(parse_event(frame))
        elif kind == DISCONNECT_NOTICE:
            self._handle_disconnect(frame)
        elif kind == AUTH_REQUEST:
            self._auth_request.set()
        elif kind == RUDE_REJECTION:
            self.close(f"rude-rejection from the switch: {frame.body.strip()[:200]}")
        elif kind == LOG_DATA:
            self._log.debug("esl.log_data", size=len(frame.body))
        else:
            self._log.warning("esl.unknown_frame", content_type=kind[:80])

    def _handle_reply(self, frame: Frame) -> None:
        if self._replies:
            # A slot abandoned after a timeout still takes its own reply, keeping order.
            self._replies.pop(0).set(frame)
            return
        raise ProtocolError(f"reply without a pending command: {frame.reply_text[:80]!r}")

    def _handle_event(self, event: Event) -> None:
        if (bad := bad_identifier(event.get)) is not None:
            # Never about one of our channels (theirs are UUIDs): dropped, see esl/ids.py.
            self.dropped_events += 1
            self.bad_identifiers += 1
            if self.bad_identifiers in (1, 10, 100, 1000) or self.bad_identifiers % 10_000 == 0:
                self._log.warning("esl.bad_identifier", header=bad, event_name=event.name[:40],
                                  count=self.bad_identifiers)
            return
        if event.name == "BACKGROUND_JOB" and event.job_uuid in self._jobs:
            self._jobs.pop(event.job_uuid)._complete(event)
        elif event.name == "CHANNEL_EXECUTE_COMPLETE" and event.app_uuid in self._executions:
            self._executions.pop(event.app_uuid)._complete(event)
        if self._discarding:
            self.dropped_events += 1
            return
        for callback in self._inline:
            self._call(callback, event)
        if self._callbacks:
            self._dispatch.put(event)
        elif not self._inline:
            self._put_event(event)

    def _handle_disconnect(self, frame: Frame) -> None:
        self.disconnect_notice = frame
        if frame.headers.get("Content-Disposition") == "linger":
            # The channel is gone but the switch keeps sending queued events until it closes.
            self.lingering = True
            self.linger_time = linger_seconds(frame)  # a bad number: a protocol error
            self._log.info("esl.linger_notice", linger_time=self.linger_time)
            return
        self.close(f"disconnect-notice: {frame.body.strip()[:80] or 'no text'}")

    def _put_event(self, event: Event | None) -> None:
        while True:
            try:
                self._events.put_nowait(event)
                return
            except gevent.queue.Full:
                # Nobody reads the queue: keep the newest events, count what we drop.
                self._events.get_nowait()
                self.dropped_events += 1
                if self.dropped_events in (1, 1000, 100_000):
                    self._log.warning("esl.event_queue_full", dropped=self.dropped_events)

    def _dispatch_loop(self) -> None:
        budget = _YIELD_EVENTS
        while (event := self._dispatch.get()) is not None:
            if self._discarding:
                continue
            for callback in list(self._callbacks):
                self._call(callback, event)
            del event  # not kept alive while the loop waits for the next one
            budget -= 1
            if not budget:
                # A full queue never blocks get(): yield as the reader does (_YIELD_BYTES).
                budget = _YIELD_EVENTS
                _yield()
