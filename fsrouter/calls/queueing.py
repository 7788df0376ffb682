"""Holding a caller in a mod_fifo queue while the dialer rings people, shared by both flows.

The caller runs ``fifo <queue> in`` (hold music); agent legs take exactly this caller with
``fifo <queue> out nowait`` and ``fifo_bridge_uuid``. The caller leaves the queue by the exit
key, by the maximum wait (``fifo_orbit_exten=_continue_:<seconds>``: mod_fifo then returns the
call to us instead of transferring it), or by hanging up.
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from fsrouter.calls.call import Call, variable_runs
from fsrouter.calls.dialer import Dialer, Dialled, Ringing
from fsrouter.esl import ESLError, ESLTimeout
from fsrouter.routing.escalation import Plan

DEFAULT_HOLD_MUSIC = "local_stream://moh"
# Sent into the caller's own leg to take it out of the queue for the fallback; also lets a
# caller leave the queue by pressing it.
QUEUE_EXIT_KEY = "#"
QUEUE_LEFT = ("ABORTED", "TIMEOUT")


def enter_queue(call: Call, queue: str, music: str, max_wait: int,
                announcement: str | None = None) -> Any:
    """``fifo <queue> in`` with hold music, the queue's announcement (a file: a recording
    or a rendered prompt) played first; returns the running app (it ends when we leave)."""
    # _continue_: when the wait is over, fifo returns to us instead of transferring the call.
    # The variables and fifo go in one write (fifo runs after them, in order).
    runs = call.start_many([*variable_runs({"fifo_caller_exit_key": QUEUE_EXIT_KEY,
                                            "fifo_orbit_exten": f"_continue_:{max_wait}"}),
                            ("fifo", f"{queue} in {announcement or 'undef'} {music}")])
    waiting = runs[-1] if runs else None
    if waiting is not None:
        # Waiting until answered (above) or out of the fifo app (any way, also a lost socket).
        call.metrics.queue_joined(queue, call.uuid)
        waiting.rawlink(lambda _done: call.metrics.queue_left(call.uuid))
    # Ring only once the caller is in the queue: a phone that answers at once would otherwise
    # find nobody to take (fifo_bridge_uuid_required) and the call would never be bridged.
    gevent.wait([call.queued, call.gone], count=1, timeout=call.services.step_timeout)
    return waiting


def ring_until_left(call: Call, plan: Plan, ringing: Ringing, waiting: Any) -> Dialled:
    """Ring, but stop at once if the caller leaves the queue (exit key, maximum wait)."""
    dialer = Dialer(call, ringing)

    def queue_app_ended() -> None:
        status = wait_left_queue(waiting, 0)
        if status:
            call.log.info("queue.left", status=status)
            dialer.stop.set()  # the dialer kills what still rings and finishes its rows

    if waiting is None:  # the caller never got into the queue
        queue_app_ended()
    else:
        dialer.watch(waiting, queue_app_ended)  # in this greenlet: no waiter per caller
    dialled = dialer.ring(plan)
    if dialled.accepted is not None:
        call.metrics.queue_left(call.uuid)  # talking now, no longer waiting
        waited = time.monotonic() - call.started
        call.metrics.queue_waited(ringing.queue, waited)
        call.metrics.answered_after(waited)
    return dialled


def wait_left_queue(waiting: Any, timeout: float | None = None) -> str | None:
    """``ABORTED``/``TIMEOUT`` once the caller left the queue, ``GONE`` if the call ended;
    None when the fifo app ended otherwise (bridged) or ``timeout`` passed first.

    Without a timeout the wait ends at the latest when the socket closes (every waiter is
    released then)."""
    if waiting is None:
        return "GONE"
    try:
        done = waiting.wait(timeout)
    except ESLTimeout:
        return None
    except ESLError:  # the socket closed: the caller is gone
        return "GONE"
    status = done.get("variable_fifo_status")
    return status if status in QUEUE_LEFT else None


def leave_queue(call: Call, waiting: Any) -> None:
    """Take the caller out of the queue (as if they pressed the exit key) for the fallback."""
    if waiting is None or getattr(waiting, "done", False):
        return
    call.api(f"uuid_recv_dtmf {call.uuid} {QUEUE_EXIT_KEY}")
    wait_left_queue(waiting, timeout=5)
