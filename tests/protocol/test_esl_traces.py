"""Replay the byte-exact FreeSWITCH 1.11.1 recordings through the parsers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsrouter.esl.protocol import (
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    EVENT_PLAIN,
    CommandParser,
    Event,
    Frame,
    FrameParser,
    encode_event,
    parse_event,
)
from tests.hypothesis_profiles import examples

TRACE_DIR = Path("/work/shared/esl-traces")
TRACES = sorted(TRACE_DIR.glob("*.jsonl"))


def load(path: Path) -> tuple[dict, dict[tuple[str, str], bytes]]:
    """Meta and one byte stream per (connection, direction), in recorded order."""
    lines = path.read_text().splitlines()
    meta = json.loads(lines[0])["meta"]
    streams: dict[tuple[str, str], bytearray] = {}
    for line in lines[1:]:
        rec = json.loads(line)
        streams.setdefault((rec["conn"], rec["dir"]), bytearray()).extend(rec["data"].encode())
    return meta, {key: bytes(value) for key, value in streams.items()}


def parse_whole(direction: str, data: bytes) -> list:
    parser = FrameParser() if direction == "fs->app" else CommandParser()
    items = parser.feed(data)
    assert parser.buffered == 0
    return items


def parse_chunked(direction: str, data: bytes, cuts: list[int]) -> list:
    parser = FrameParser() if direction == "fs->app" else CommandParser()
    items: list = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        items.extend(parser.feed(data[start:cut]))
        start = cut
    assert parser.buffered == 0
    return items


def events_of(frames: list[Frame]) -> list[Event]:
    return [parse_event(f) for f in frames if f.content_type == EVENT_PLAIN]


ALL_STREAMS = [(path.name, key, data) for path in TRACES for key, data in load(path)[1].items()]


def test_traces_present() -> None:
    assert len(TRACES) == 6
    assert len(ALL_STREAMS) >= 20


@pytest.mark.parametrize(
    "name,key,data", ALL_STREAMS, ids=[f"{n}:{k[0]}:{k[1]}" for n, k, _ in ALL_STREAMS]
)
@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_points=st.lists(st.floats(0, 1), max_size=60))
def test_any_chunking_gives_same_frames(name, key, data, cut_points) -> None:
    cuts = [int(p * len(data)) for p in cut_points]
    assert parse_chunked(key[1], data, cuts) == parse_whole(key[1], data)


@pytest.mark.parametrize(
    "name,key,data", ALL_STREAMS, ids=[f"{n}:{k[0]}" for n, k, _ in ALL_STREAMS]
)
def test_byte_at_a_time(name, key, data) -> None:
    assert parse_chunked(key[1], data, list(range(len(data)))) == parse_whole(key[1], data)


def test_tcp_reads_as_recorded_match_whole_stream() -> None:
    # The recorded reads themselves (several frames per read, frames split across reads).
    for path in TRACES:
        lines = path.read_text().splitlines()[1:]
        parsers: dict[tuple[str, str], FrameParser] = {}
        got: dict[tuple[str, str], list] = {}
        for line in lines:
            rec = json.loads(line)
            key = (rec["conn"], rec["dir"])
            if rec["dir"] == "fs->app":
                parser = parsers.setdefault(key, FrameParser())
                got.setdefault(key, []).extend(parser.feed(rec["data"].encode()))
        for key, frames in got.items():
            assert frames == parse_whole("fs->app", load(path)[1][key]), (path.name, key)


def outbound_events(name: str) -> tuple[dict, list[Frame], list[Event]]:
    meta, streams = load(TRACE_DIR / name)
    frames = parse_whole("fs->app", streams[("outbound", "fs->app")])
    return meta, frames, events_of(frames)


def test_background_job_bodies_in_escalation() -> None:
    meta, _, events = outbound_events("ivr_queue_escalation.jsonl")
    jobs = [e.body for e in events if e.name == "BACKGROUND_JOB"]
    assert jobs == ["-ERR NO_ANSWER\n", "-ERR USER_BUSY\n", f"+OK {meta['agents'][2]}\n"]
    # The inner Content-Length must not leak into the headers (greenswitch's bug).
    assert all("Content-Length" not in e.headers for e in events)


def test_menu_choice_and_read_result() -> None:
    _, _, events = outbound_events("ivr_queue_escalation.jsonl")
    done = [e for e in events if e.name == "CHANNEL_EXECUTE_COMPLETE"]
    pagd = [e for e in done if e.get("Application") == "play_and_get_digits"]
    assert pagd[0].get("variable_fsr_choice") == "2"
    assert pagd[0].get("variable_read_result") == "success"
    failed = outbound_events("invalid_then_timeout.jsonl")[2]
    results = [
        e.get("variable_read_result")
        for e in failed
        if e.get("Application") == "play_and_get_digits"
    ]
    assert "failure" in results


@pytest.mark.parametrize("path", TRACES, ids=[p.name for p in TRACES])
def test_application_uuid_equals_sent_event_uuid(path: Path) -> None:
    _, streams = load(path)
    if ("outbound", "app->fs") not in streams:
        pytest.skip("no outbound call in this trace")
    commands = parse_whole("app->fs", streams[("outbound", "app->fs")])
    sent = {
        c.headers["Event-UUID"]: c.headers["execute-app-name"]
        for c in commands
        if "Event-UUID" in c.headers
    }
    assert sent
    events = events_of(parse_whole("fs->app", streams[("outbound", "fs->app")]))
    completions = {
        e.app_uuid: e.get("Application") for e in events if e.name == "CHANNEL_EXECUTE_COMPLETE"
    }
    for event_uuid, app in sent.items():
        if event_uuid in completions:
            assert completions[event_uuid] == app
    assert set(completions) & set(sent)


def test_connect_reply_is_channel_data_decoded() -> None:
    meta, frames, _ = outbound_events("ivr_queue_escalation.jsonl")
    reply = frames[0]
    assert reply.content_type == COMMAND_REPLY
    assert reply.headers["Unique-ID"] == meta["caller_uuid"]
    assert reply.headers["Reply-Text"] == "+OK\n"  # sent as %2BOK%0A
    assert reply.headers["Caller-Caller-ID-Number"] == "+4915112345678"
    assert reply.headers["Caller-Caller-ID-Name"] == "Jane Caller"
    assert reply.headers["Event-Date-GMT"].startswith("Sun, 22 Nov")
    assert reply.headers["Control"] == "full" and reply.body == ""


@pytest.mark.parametrize(
    "name",
    [
        "ivr_queue_escalation.jsonl",
        "hangup_in_ivr.jsonl",
        "caller_abandons_in_queue.jsonl",
        "invalid_then_timeout.jsonl",
        "busy_tone_and_voicemail.jsonl",
    ],
)
def test_linger_notice_seen(name: str) -> None:
    _, frames, _ = outbound_events(name)
    notices = [f for f in frames if f.content_type == DISCONNECT_NOTICE]
    assert notices[0].headers["Content-Disposition"] == "linger"
    assert notices[0].headers["Linger-Time"] == "10"
    # Raw (not URL-encoded) frame: '+' must stay as it is.
    assert "+" in notices[0].headers["Channel-Name"]


def test_exit_disconnect_notice_body() -> None:
    _, streams = load(TRACE_DIR / "ivr_queue_escalation.jsonl")
    frames = parse_whole("fs->app", streams[("inbound-api", "fs->app")])
    assert frames[0].content_type == "auth/request"
    assert frames[-1].content_type == DISCONNECT_NOTICE
    assert frames[-1].body.startswith("Disconnected, goodbye.")


def test_abandon_fifo_and_kill_result() -> None:
    meta, _, events = outbound_events("caller_abandons_in_queue.jsonl")
    fifo = [e.get("FIFO-Action") for e in events if e.subclass == "fifo::info"]
    assert "abort" in fifo
    assert [e.body for e in events if e.name == "BACKGROUND_JOB"] == ["-ERR NORMAL_CLEARING\n"]


def test_inbound_event_connection_sees_custom_variable() -> None:
    _, streams = load(TRACE_DIR / "outbound_agent_call.jsonl")
    events = events_of(parse_whole("fs->app", streams[("inbound-events", "fs->app")]))
    names = [e.name for e in events]
    assert "CHANNEL_CREATE" in names and "CHANNEL_HANGUP_COMPLETE" in names
    assert any(e.get("variable_fsr_agent") == "alice" for e in events)


def test_reencoding_events_round_trips() -> None:
    # encode_event (for simulators and test peers) must produce what parse_event reads back.
    _, _, events = outbound_events("ivr_queue_escalation.jsonl")
    for event in events:
        again = parse_event(FrameParser().feed(encode_event(event.headers, event.body))[0])
        assert again == event
