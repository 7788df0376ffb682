"""The connection's lean paths over real loopback TCP: inline callbacks (no dispatcher
greenlet), close callbacks, executions and jobs waited on with gevent.wait, lazy queues."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from fsrouter.esl import ConnectionClosed
from tests.protocol.esl_peer import CALLER_UUID


def test_inline_callbacks_run_in_the_reader_and_no_dispatcher_starts(pair) -> None:
    conn, peer = pair
    seen: list[tuple[str, object]] = []
    got = gevent.event.Event()

    def inline(event) -> None:
        seen.append((event.name, gevent.getcurrent()))
        if event.name == "CHANNEL_HANGUP":
            got.set()

    conn.on_event(inline, inline=True)
    peer.event({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": CALLER_UUID})
    peer.event({"Event-Name": "CHANNEL_HANGUP", "Unique-ID": CALLER_UUID})
    assert got.wait(2)
    assert [name for name, _ in seen] == ["CHANNEL_ANSWER", "CHANNEL_HANGUP"]
    assert {runner for _, runner in seen} == {conn._greenlets[0]}  # the reader
    assert len(conn._greenlets) == 1 and conn._dispatch_q is None and conn._events_q is None


def test_inline_and_queued_callbacks_both_see_every_event_in_order(pair) -> None:
    conn, peer = pair
    order: list[str] = []
    done = gevent.event.Event()
    conn.on_event(lambda e: order.append(f"inline {e.get('Seq')}"), inline=True)

    def queued(event) -> None:
        order.append(f"queued {event.get('Seq')}")
        if event.get("Seq") == "2":
            done.set()

    conn.on_event(queued)
    for seq in ("1", "2"):
        peer.event({"Event-Name": "CUSTOM", "Seq": seq})
    assert done.wait(2)
    assert [o for o in order if o.startswith("inline")] == ["inline 1", "inline 2"]
    assert [o for o in order if o.startswith("queued")] == ["queued 1", "queued 2"]
    assert order.index("inline 1") < order.index("queued 1")


def test_events_pulled_before_an_inline_callback_go_to_it_first(pair) -> None:
    conn, peer = pair
    peer.event({"Event-Name": "CUSTOM", "Seq": "early"})
    first = conn.next_event(2)  # pulled: the queue now exists
    peer.event({"Event-Name": "CUSTOM", "Seq": "queued"})
    gevent.sleep(0.2)  # read and queued for next_event
    seen: list[str | None] = []
    conn.on_event(lambda e: seen.append(e.get("Seq")), inline=True)
    assert first.get("Seq") == "early" and seen == ["queued"]
    peer.event({"Event-Name": "CUSTOM", "Seq": "late"})
    gevent.sleep(0.2)
    assert seen == ["queued", "late"]


def test_a_failing_inline_callback_does_not_stop_the_reader(pair) -> None:
    conn, peer = pair
    conn.on_event(lambda e: 1 / 0, inline=True)
    peer.event({"Event-Name": "CUSTOM"})
    gevent.spawn(conn.api, "status", 2)
    peer.recv()
    peer.api_response("UP")
    gevent.sleep(0.1)
    assert not conn.closed


def test_close_callbacks_run_once_after_the_waiters_were_released(pair) -> None:
    conn, peer = pair
    calls: list[str | None] = []
    starter = gevent.spawn(conn.execute, "park", timeout=2)
    peer.recv()
    peer.reply("+OK")
    run = starter.get(timeout=2)
    conn.on_close(lambda: calls.append(f"{conn.close_reason} {run.done}"))
    peer.close()
    assert conn.wait_closed(2)
    assert calls == ["peer closed the socket True"]
    conn.close("again")
    conn.on_close(lambda: calls.append("late"))  # already closed: at once
    assert calls == ["peer closed the socket True", "late"]
    with pytest.raises(ConnectionClosed):
        conn.next_event(0.1)  # no queue was ever made: still the end marker's error


def test_executions_and_jobs_are_waitable_without_a_greenlet(pair) -> None:
    conn, peer = pair
    starter = gevent.spawn(lambda: (conn.execute("playback", "x", timeout=2),
                                    conn.bgapi("originate y", timeout=2)))
    command = peer.recv()
    peer.reply("+OK")
    job_command = peer.recv()
    peer.reply("+OK Job-UUID: x")
    run, job = starter.get(timeout=2)
    other = gevent.event.Event()
    assert gevent.wait([run, job, other], count=1, timeout=0.2) == []
    assert run.event is None and not run.done and not job.done
    peer.complete(command, response="FILE PLAYED")
    assert gevent.wait([run, other], count=1, timeout=2)
    assert run.done and run.event.get("Application-Response") == "FILE PLAYED"
    peer.job_done(job_command.headers["Job-UUID"], "-ERR NO_ANSWER\n")
    assert gevent.wait([job, other], count=1, timeout=2)
    assert job.done and job.wait(0) == "-ERR NO_ANSWER\n"


def test_a_run_the_connection_ended_is_done_without_an_event(pair) -> None:
    conn, peer = pair
    starter = gevent.spawn(conn.execute, "park", timeout=2)
    peer.recv()
    peer.reply("+OK")
    run = starter.get(timeout=2)
    peer.close()
    assert gevent.wait([run], timeout=2)
    assert run.done and run.event is None
    with pytest.raises(ConnectionClosed):
        run.wait(0)
