"""The pure wire layer: framing rules, caps, malformed input, command encoding, fuzz."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsrouter.esl.protocol import (
    CommandParser,
    Frame,
    FrameParser,
    ProtocolError,
    UnsafeCommand,
    encode_command,
    encode_event,
    parse_event,
    url_decode,
    url_encode,
)
from tests.hypothesis_profiles import examples

_BGJOB_BODY = (
    b"Event-Name: BACKGROUND_JOB\nJob-UUID: j-1\nJob-Command: originate\n"
    b"Content-Length: 15\n\n-ERR NO_ANSWER\n"
)
BGJOB = b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (
    len(_BGJOB_BODY),
    _BGJOB_BODY,
)


def test_several_frames_in_one_read_and_partial_tail() -> None:
    parser = FrameParser()
    data = (
        b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n"
    )
    frames = parser.feed(data + b"Content-Type: api/resp")
    assert [f.content_type for f in frames] == ["auth/request", "command/reply"]
    assert frames[1].reply_text == "+OK accepted"  # raw frame: '+' is not a space
    assert parser.feed(b"onse\nContent-Length: 3\n\nab") == []
    assert parser.feed(b"c") == [
        Frame({"Content-Type": "api/response", "Content-Length": "3"}, "abc")
    ]


def test_background_job_inner_body() -> None:
    event = parse_event(FrameParser().feed(BGJOB)[0])
    assert event.name == "BACKGROUND_JOB" and event.job_uuid == "j-1"
    assert event.body == "-ERR NO_ANSWER\n"
    assert "Content-Length" not in event.headers


def test_values_decoded_after_splitting_lines() -> None:
    # A caller ID name holding an encoded newline must not become a second header.
    body = (
        "Event-Name: CHANNEL_PARK\nCaller-Caller-ID-Name: evil%0AUnique-ID: x\nUnique-ID: real\n\n"
    )
    event = parse_event(FrameParser().feed(encode_frame_plain(body))[0])
    assert event.uuid == "real"
    assert event.get("Caller-Caller-ID-Name") == "evil\nUnique-ID: x"


def encode_frame_plain(body: str) -> bytes:
    raw = body.encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(raw) + raw


def test_url_decoding_matches_switch() -> None:
    assert url_decode("%2BOK%0A") == "+OK\n"
    assert url_decode("M%C3%BCller+J") == "Müller+J"
    assert url_decode("100%") == "100%"  # an incomplete escape stays as it is
    assert url_encode("Müller, Jörg & +49") == "M%C3%BCller,%20J%C3%B6rg%20%26%20%2B49"
    # Not UTF-8 (caller text from a Latin-1 PBX): replaced, never a reason to drop the call.
    assert url_decode("M%FCller%FF%FE") == "M\ufffdller\ufffd\ufffd"


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"Content-Type: x\nno colon here\n\n", "without 'Name:'"),
        (b"Content-Length: abc\n\n", "bad Content-Length"),
        (b"Content-Length: -1\n\n", "bad Content-Length"),
        (b"Content-Length: 99999999999\n\n", "exceeds"),
        (b"Content-Type: \xff\xfe\n\n", "not valid UTF-8"),
    ],
)
def test_malformed_frames(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        FrameParser().feed(data)


def test_a_body_that_is_not_utf8_is_read_with_replacements() -> None:
    # An api/response body is the switch's raw text (a Latin-1 caller name in uuid_dump):
    # replaced, never a reason to drop the connection.
    [frame] = FrameParser().feed(b"Content-Length: 2\n\n\xff\xfe")
    assert frame.body == "\ufffd\ufffd"


def test_failed_parser_stays_failed() -> None:
    parser = FrameParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"garbage\n\n")
    with pytest.raises(ProtocolError, match="already failed"):
        parser.feed(b"Content-Type: auth/request\n\n")


def test_huge_content_length_refused_before_buffering() -> None:
    parser = FrameParser(max_body_bytes=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit of 1024"):
        parser.feed(b"Content-Length: 1025\n\nxx")
    assert parser.buffered == 0


def test_endless_header_block_refused() -> None:
    parser = FrameParser(max_header_bytes=4096)
    with pytest.raises(ProtocolError, match="header block exceeds 4096"):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"a" * 100 + b"\n")
    assert parser.buffered == 0


def test_event_body_shorter_than_inner_length() -> None:
    body = "Event-Name: BACKGROUND_JOB\nContent-Length: 50\n\nshort"
    with pytest.raises(ProtocolError, match="shorter"):
        parse_event(FrameParser().feed(encode_frame_plain(body))[0])


def test_json_event() -> None:
    frame = Frame({"Content-Type": "text/event-json"}, '{"Event-Name": "HEARTBEAT", "_body": "x"}')
    event = parse_event(frame)
    assert event.name == "HEARTBEAT" and event.body == "x"
    with pytest.raises(ProtocolError):
        parse_event(Frame({"Content-Type": "text/event-json"}, "[1"))
    with pytest.raises(ProtocolError):
        parse_event(Frame({"Content-Type": "command/reply"}))


def test_encode_command_shapes() -> None:
    assert encode_command("api status") == b"api status\n\n"
    assert encode_command("bgapi x", {"Job-UUID": "j"}) == b"bgapi x\nJob-UUID: j\n\n"
    data = encode_command("sendmsg", {"content-type": "text/plain"}, "a\nb")
    assert data == b"sendmsg\ncontent-type: text/plain\nContent-Length: 3\n\na\nb"
    command = CommandParser().feed(data)[0]
    assert (command.line, command.body, command.headers["content-type"]) == (
        "sendmsg",
        "a\nb",
        "text/plain",
    )


@pytest.mark.parametrize(
    "line,headers",
    [
        ("api status\n\napi system rm", None),
        ("api status\r", None),
        ("api x\x00", None),
        ("", None),
        ("sendmsg", {"execute-app-arg": "hi\nexecute-app-name: system"}),
        ("sendmsg", {"bad\nname": "x"}),
        ("sendmsg", {"a:b": "x"}),
        ("sendmsg", {"Content-Length": "5"}),
    ],
)
def test_encode_command_refuses_injection(line: str, headers: dict | None) -> None:
    with pytest.raises(UnsafeCommand):
        encode_command(line, headers)
    with pytest.raises(ValueError):  # also a ValueError for callers who catch that
        encode_command(line, headers)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.text(),
    st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4),
    st.none() | st.text(),
)
def test_encode_command_never_emits_a_second_command(line, headers, body) -> None:
    try:
        data = encode_command(line, headers, body)
    except UnsafeCommand:
        return
    commands = CommandParser().feed(data)
    assert len(commands) == 1
    assert commands[0].line == line
    assert commands[0].body == (body or "")


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20))
def test_fuzz_random_bytes_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    parser = FrameParser(max_header_bytes=2048, max_body_bytes=2048)
    start = time.monotonic()
    pos = 0
    try:
        for cut in sorted(set(cuts)) + [len(data)]:
            parser.feed(data[pos:cut])
            pos = max(pos, cut)
            assert parser.buffered <= 2048 + 2048 + len(data)
    except ProtocolError:
        pass
    assert time.monotonic() - start < 1.0


FRAMEISH = st.lists(
    st.sampled_from(
        [
            b"Content-Type: text/event-plain\n",
            b"Content-Length: 5\n",
            b"Content-Length: 1000000000\n",
            b"\n",
            b"\n\n",
            b"Event-Name: X\n",
            b"%ZZ",
            b"%0A",
            b"\xc3",
            b"abc",
            b": ",
            b"Reply-Text: +OK\n",
        ]
    ),
    max_size=40,
)


@settings(max_examples=examples(400), deadline=None)
@given(FRAMEISH, st.integers(1, 7))
def test_fuzz_frame_like_bytes(parts: list[bytes], step: int) -> None:
    # Near-valid input reaches deeper states than uniform random bytes do.
    data = b"".join(parts)
    parser = FrameParser(max_body_bytes=4096)
    try:
        for i in range(0, len(data), step):
            for frame in parser.feed(data[i : i + step]):
                if frame.content_type == "text/event-plain":
                    parse_event(frame)
    except ProtocolError:
        pass
    assert parser.buffered <= 64 * 1024 + 4096 + step


def test_large_stream_is_linear() -> None:
    # 2,000 events fed in 1 KiB reads: the header scan must not rescan from the start.
    one = encode_event({"Event-Name": "HEARTBEAT", "Up-Time": "x" * 500})
    data = one * 2000
    parser = FrameParser()
    start = time.monotonic()
    count = sum(len(parser.feed(data[i : i + 1024])) for i in range(0, len(data), 1024))
    assert count == 2000
    assert time.monotonic() - start < 2.0
