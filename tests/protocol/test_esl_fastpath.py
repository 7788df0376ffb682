"""The fast event path (one regex split, values decoded when read) decides exactly as the
plain line-by-line reader: same headers, same values, the same frames refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsrouter.esl.protocol import (
    Event,
    FrameParser,
    ProtocolError,
    clean_block,
    encode_event,
    parse_event,
    split_header_block,
    url_decode,
)
from tests.hypothesis_profiles import examples


def reference_split(text: str) -> dict[str, str]:
    """The reader as it was before the fast path: line by line, names stripped."""
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ProtocolError("header line without 'Name:'")
        headers[name.strip()] = value[1:] if value.startswith(" ") else value
    return headers


def outcome(split, text: str) -> dict[str, str] | str:
    try:
        return split(text)
    except ProtocolError:
        return "refused"


# Lines built from the characters that matter: separators, white space of every kind,
# percent escapes, line ends, non-ASCII.
_pieces = st.sampled_from(["A", "b-c", ":", " ", "  ", "\t", "\r", "\x0b", "\x1c", "\u00a0",
                           "\u2028", "%0A", "%3A", "%2B", "%", "\n", "\n\n", "Ü", "x y"])
_texts = st.lists(_pieces, max_size=40).map("".join)


@settings(max_examples=examples(3000), deadline=None)
@given(_texts)
def test_split_matches_the_line_reader_on_adversarial_text(text: str) -> None:
    assert outcome(split_header_block, text) == outcome(reference_split, text)


@settings(max_examples=examples(500), deadline=None)
@given(st.text(max_size=300))
def test_split_matches_the_line_reader_on_any_text(text: str) -> None:
    assert outcome(split_header_block, text) == outcome(reference_split, text)


@pytest.mark.parametrize("text", [
    " Lead: x", "Trail : x", "\tTab:\tx", ":no name", "no colon", "A: 1\n\n\nB: 2\n",
    ":abc:def", "A: 1\nA: 2", "A:", "A:  two spaces", "A: x: y: z", "A: 1\r\nB: 2\r", "   ", "\n\n",
])
def test_split_edge_cases(text: str) -> None:
    assert outcome(split_header_block, text) == outcome(reference_split, text)


# Blocks near the switch's shape: names and values from pieces that may break it.
_names = st.lists(st.sampled_from(["A", "b-c", "Event-Name", " ", ":", "\t", "%3A", "Ü", ""]),
                  min_size=0, max_size=3).map("".join)
_values = st.lists(st.sampled_from(["x", "%20", " ", ":", "\r", "\x1c", "%0A", "é", "+OK"]),
                   max_size=4).map("".join)
_seps = st.sampled_from([": ", ":", ":  ", " : ", ": :"])
_blocks = st.lists(st.tuples(_names, _seps, _values), min_size=1, max_size=6).map(
    lambda lines: "\n".join(n + s + v for n, s, v in lines))


@settings(max_examples=examples(3000), deadline=None)
@given(_blocks, st.sampled_from(["A", "b-c", "Event-Name", "Content-Length", "A:", " A", "x"]))
def test_a_clean_block_is_read_by_lookup_exactly_as_the_line_reader_reads_it(
        text: str, name: str) -> None:
    expected = outcome(reference_split, text)
    assert outcome(split_header_block, text) == expected
    if not clean_block(text):
        return
    assert isinstance(expected, dict)  # a clean block is never refused
    event = Event.from_block(text)
    for key, value in expected.items():
        if key != "Content-Length":
            assert event.get(key) == url_decode(value)
    assert event.get(name) == (None if name == "Content-Length" or name not in expected
                               else url_decode(expected[name]))
    assert event.headers == {k: url_decode(v) for k, v in expected.items()
                             if k != "Content-Length"}


def test_the_switchs_blocks_are_clean_and_odd_ones_are_not() -> None:
    assert clean_block("Event-Name: CUSTOM\nUnique-ID: u%3A1\nCaller-Name: A%20B")
    for odd in ["", "A: 1\n", "A: 1\n\nB: 2", ":x y", "A: 1\n: 2", "A:1", "A: b c",
                "A: b:c", " A: 1", "A : 1", "A:\t1", "A: 1\r", "Ü: 1", "A: \x1c"]:
        assert not clean_block(odd), odd


def test_values_are_decoded_only_when_read_and_then_all_alike() -> None:

    wire = encode_event({"Event-Name": "CHANNEL_PARK", "Unique-ID": "u-1",
                         "Caller-Caller-ID-Name": "evil\nUnique-ID: x", "Caller-Number": "+49 30"})
    event = parse_event(FrameParser().feed(wire)[0])
    assert event.get("Caller-Caller-ID-Name") == "evil\nUnique-ID: x"
    assert event.get("Missing") is None and event.get("Missing", "d") == "d"
    assert event.uuid == "u-1" and event.name == "CHANNEL_PARK"
    assert event.headers == {"Event-Name": "CHANNEL_PARK", "Unique-ID": "u-1",
                             "Caller-Caller-ID-Name": "evil\nUnique-ID: x",
                             "Caller-Number": "+49 30"}
    assert event.headers is event.headers  # decoded once
    assert event.get("Caller-Number") == "+49 30"  # after the full decode too


def test_an_encoded_event_equals_the_decoded_one() -> None:
    raw = Event.encoded({"Event-Name": "CUSTOM", "X": "a%20b"}, "body")
    assert raw == Event({"Event-Name": "CUSTOM", "X": "a b"}, "body")
    assert raw != Event({"Event-Name": "CUSTOM", "X": "a%20b"}, "body")
    assert "a b" in repr(raw)


def test_inner_content_length_is_read_decoded() -> None:
    body = "Event-Name: BACKGROUND_JOB\nJob-UUID: j\nContent-Length: 3\n\n+OK"
    raw = body.encode()
    frame = FrameParser().feed(
        b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(raw) + raw)[0]
    event = parse_event(frame)
    assert event.body == "+OK" and "Content-Length" not in event.headers


def test_cached_decode_gives_the_same_text_every_time() -> None:
    for _ in range(3):
        assert url_decode("M%C3%BCller%FF") == "M\u00fcller\ufffd"
