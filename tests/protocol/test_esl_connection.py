"""Connection over real loopback TCP against a fake switch peer."""

from __future__ import annotations

import time

import gevent
import pytest

from fsrouter.esl import (
    CommandError,
    Connection,
    ConnectionClosed,
    ESLTimeout,
    Event,
    UnsafeCommand,
)
from tests.protocol.esl_peer import CALLER_UUID, socket_pair


def test_replies_matched_in_order(pair) -> None:
    conn, peer = pair
    calls = [gevent.spawn(conn.api, f"echo {i}", 2) for i in range(5)]
    seen = [peer.recv().line for _ in range(5)]
    for line in seen:
        peer.api_response(line.removeprefix("api "))
    gevent.joinall(calls, timeout=2, raise_error=True)
    assert [g.value for g in calls] == [line.removeprefix("api ") for line in seen]
    assert sorted(seen) == [f"api echo {i}" for i in range(5)]


def test_two_executes_of_same_app_complete_in_reverse(pair) -> None:
    conn, peer = pair

    def queue_two() -> tuple:
        first = conn.execute("playback", "tone_stream://%(100,0,425)", timeout=2)
        second = conn.execute("playback", "silence_stream://100", event_lock=True, timeout=2)
        return first, second

    starter = gevent.spawn(queue_two)
    cmd1 = peer.recv()
    peer.reply("+OK")
    cmd2 = peer.recv()
    peer.reply("+OK")
    first, second = starter.get(timeout=2)
    assert cmd1.line == "sendmsg" and cmd1.headers["call-command"] == "execute"
    assert cmd1.headers["Event-UUID"] == first.app_uuid != second.app_uuid
    assert cmd2.headers["event-lock"] == "true"
    peer.complete(cmd2, response="second")
    done2 = second.wait(timeout=2)
    assert not first.done  # greenswitch would have woken the first wait here (same app name)
    peer.complete(cmd1, response="first")
    assert first.wait(timeout=2).get("Application-Response") == "first"
    assert done2.get("Application-Response") == "second"
    assert done2.app_uuid == second.app_uuid


def test_execute_argument_with_newline_goes_in_body(pair) -> None:
    conn, peer = pair
    run = gevent.spawn(conn.execute, "log", "INFO line1\nline2", None, False, 2)
    cmd = peer.recv()
    peer.reply("+OK")
    run.get(timeout=2)
    assert "execute-app-arg" not in cmd.headers
    assert cmd.headers["content-type"] == "text/plain"
    assert cmd.body == "INFO line1\nline2"


def test_execute_refused_by_switch_raises(pair) -> None:
    conn, peer = pair
    run = gevent.spawn(conn.execute, "answer", None, None, False, 2)
    peer.recv()
    peer.reply("-ERR no such channel")
    with pytest.raises(CommandError, match="no such channel"):
        run.get(timeout=2)


def test_bgapi_jobs_matched_by_job_uuid(pair) -> None:
    conn, peer = pair
    starter = gevent.spawn(
        lambda: [
            conn.bgapi("originate a", timeout=2),
            conn.bgapi("originate b", job_uuid="job-b", timeout=2),
        ]
    )
    for _ in range(2):
        cmd = peer.recv()
        job = cmd.headers["Job-UUID"]
        peer.reply(f"+OK Job-UUID: {job}", **{"Job-UUID": job})
    job_a, job_b = starter.get(timeout=2)
    assert job_b.job_uuid == "job-b" and job_a.job_uuid != "job-b"
    peer.job_done("someone-else", "+OK other\n")  # not ours: ignored by the matcher
    peer.job_done("job-b", "-ERR USER_BUSY\n")
    peer.job_done(job_a.job_uuid, "-ERR NO_ANSWER\n")
    assert job_b.wait(timeout=2) == "-ERR USER_BUSY\n"
    assert job_a.wait(timeout=2) == "-ERR NO_ANSWER\n"


def test_disconnect_mid_wait_releases_every_waiter(pair) -> None:
    conn, peer = pair
    starter = gevent.spawn(lambda: (conn.execute("park", timeout=2), conn.bgapi("x", timeout=2)))
    for _ in range(2):
        cmd = peer.recv()
        peer.reply("+OK" if cmd.name == "sendmsg" else f"+OK Job-UUID: {cmd.headers['Job-UUID']}")
    run, job = starter.get(timeout=2)
    waiters = [
        gevent.spawn(run.wait, 30),
        gevent.spawn(job.wait, 30),
        gevent.spawn(conn.api, "status", 30),
        gevent.spawn(conn.next_event, 30),
    ]
    peer.recv()  # the api command is on the wire
    start = time.monotonic()
    peer.close()
    gevent.joinall(waiters, timeout=2)
    assert time.monotonic() - start < 1.0
    for waiter in waiters:
        assert isinstance(waiter.exception, ConnectionClosed), waiter
    assert conn.closed and conn.close_reason == "peer closed the socket"
    with pytest.raises(ConnectionClosed):
        conn.api("status", 1)


def test_garbage_frame_closes_and_releases(pair) -> None:
    conn, peer = pair
    waiter = gevent.spawn(conn.api, "status", 30)
    peer.recv()
    peer.send(b"this is not a header\n\n")
    gevent.joinall([waiter], timeout=2)
    assert isinstance(waiter.exception, ConnectionClosed)
    assert conn.close_reason.startswith("protocol error")
    assert peer.at_eof()


def test_timeout_keeps_reply_order(pair) -> None:
    conn, peer = pair
    with pytest.raises(ESLTimeout):
        conn.api("slow", timeout=0.05)
    later = gevent.spawn(conn.api, "fast", 2)
    assert peer.recv().line == "api slow"
    assert peer.recv().line == "api fast"
    peer.api_response("slow result")
    peer.api_response("fast result")
    assert later.get(timeout=2) == "fast result"


def test_linger_delivers_remaining_events_until_close(pair) -> None:
    conn, peer = pair
    peer.event({"Event-Name": "CHANNEL_HANGUP", "Unique-ID": CALLER_UUID})
    peer.send(
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: "
        + CALLER_UUID.encode()
        + b"\nContent-Disposition: linger\nChannel-Name: loopback/+4930-b\nLinger-Time: 10\n"
        b"Content-Length: 0\n\n"
    )
    peer.event({"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": CALLER_UUID})
    names = [conn.next_event(2).name, conn.next_event(2).name]
    assert names == ["CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"]
    assert conn.lingering and conn.linger_time == 10 and not conn.closed
    peer.close()
    assert conn.wait_closed(2)
    with pytest.raises(ConnectionClosed):
        conn.next_event(1)


def test_disconnect_notice_without_linger_closes(pair) -> None:
    conn, peer = pair
    peer.send(
        b"Content-Type: text/disconnect-notice\nContent-Length: 23\n\nDisconnected, goodbye.\n"
    )
    assert conn.wait_closed(2)
    assert "Disconnected, goodbye." in conn.close_reason


def test_callback_may_call_api_without_deadlock(pair) -> None:
    conn, peer = pair
    results: list[str] = []
    conn.on_event(lambda event: results.append(conn.api(f"uuid_exists {event.uuid}", 2)))
    conn.on_event(lambda event: 1 / 0)  # a broken callback must not stop the others
    peer.event({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": CALLER_UUID})
    assert peer.recv().line == f"api uuid_exists {CALLER_UUID}"
    peer.api_response("true")
    with gevent.Timeout(2):
        while not results:
            gevent.sleep(0.01)
    assert results == ["true"]


def test_hangup_and_subscriptions_on_the_wire(pair) -> None:
    conn, peer = pair
    steps = gevent.spawn(
        lambda: (
            conn.myevents(2),
            conn.linger(10, 2),
            conn.events(["BACKGROUND_JOB", "CUSTOM", "fifo::info"], 2),
            conn.filter("Unique-ID", CALLER_UUID, 2),
            conn.hangup("USER_BUSY", timeout=2),
        )
    )
    lines = []
    for _ in range(5):
        cmd = peer.recv()
        lines.append((cmd.line, cmd.headers))
        peer.reply("+OK")
    steps.get(timeout=2)
    assert [line for line, _ in lines] == [
        "myevents",
        "linger 10",
        "event plain BACKGROUND_JOB CUSTOM fifo::info",
        f"filter Unique-ID {CALLER_UUID}",
        "sendmsg",
    ]
    assert lines[-1][1] == {"call-command": "hangup", "hangup-cause": "USER_BUSY"}


def test_injection_refused_before_anything_is_written(pair) -> None:
    conn, peer = pair
    with pytest.raises(UnsafeCommand):
        conn.api("status\n\napi system touch /tmp/x", 1)
    with pytest.raises(UnsafeCommand):
        conn.hangup("NORMAL_CLEARING\nx")
    with pytest.raises(UnsafeCommand):
        conn.execute("play back", "x")
    with pytest.raises(UnsafeCommand):
        conn.execute("answer", uuid="abc\ndef")
    with pytest.raises(UnsafeCommand):
        conn.events(["CHANNEL_ANSWER\napi system"])
    assert conn.api  # still usable: nothing half-written
    call = gevent.spawn(conn.api, "status", 2)
    assert peer.recv().line == "api status"
    peer.api_response("ok")
    assert call.get(timeout=2) == "ok"


def test_unsolicited_reply_is_a_protocol_error(pair) -> None:
    conn, peer = pair
    peer.reply("+OK surprise")
    assert conn.wait_closed(2)
    assert "without a pending command" in conn.close_reason


def test_event_queue_is_bounded() -> None:
    sock, peer = socket_pair()
    conn = Connection(sock, event_queue_size=10)
    conn.start()
    for i in range(25):
        peer.event({"Event-Name": "HEARTBEAT", "Event-Sequence": str(i)})
    with gevent.Timeout(2):
        while conn.dropped_events < 15:
            gevent.sleep(0.01)
    first: Event = conn.next_event(1)
    assert first.get("Event-Sequence") == "15"  # the newest ten are kept
    conn.close()
    peer.close()
