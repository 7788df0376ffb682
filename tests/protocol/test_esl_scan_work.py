"""The header scan of the ESL parsers is linear in the bytes received, counted, not timed
(issue 22.10 c): a large header block arriving in tiny reads is scanned about once, where a
scan from byte 0 on every read costs the square of its size over the read size."""

from __future__ import annotations

import pytest

from fsrouter.esl.protocol import MAX_HEADER_BYTES, CommandParser, FrameParser


class CountingBuffer(bytearray):
    """The parser's buffer, counting the bytes each ``find`` may look at."""

    scanned = 0

    def find(self, sub, start=0, end=None):  # type: ignore[override]
        stop = len(self) if end is None else min(end, len(self))
        self.scanned += max(0, stop - max(start, 0))
        return super().find(sub, start, stop)


def fed_in_reads(parser, data: bytes, read: int) -> tuple[list, int]:
    parser._buf = CountingBuffer()  # the one buffer the parser keeps (it grows in place)
    items = []
    for i in range(0, len(data), read):
        items += parser.feed(data[i:i + read])
    assert isinstance(parser._buf, CountingBuffer)
    return items, parser._buf.scanned


def big_event(header_bytes: int) -> bytes:
    """A header block of about ``header_bytes``, as the outbound connect reply is: the
    channel's data as the outer frame's headers (variables make it large)."""
    lines = [b"Content-Type: command/reply", b"Reply-Text: +OK", b"Event-Name: CHANNEL_DATA"]
    lines += [b"variable_x_%05d: %s" % (n, b"v" * 24) for n in range(header_bytes // 40)]
    return b"\n".join(lines) + b"\n\n"


@pytest.mark.parametrize("read", [1, 8, 1024])
def test_a_59_kb_header_block_in_tiny_reads_is_scanned_about_once(read):
    data = big_event(59_000)
    head = data.index(b"\n\n") + 2
    assert 50_000 < head < MAX_HEADER_BYTES
    frames, scanned = fed_in_reads(FrameParser(), data, read)
    assert len(frames) == 1 and frames[0].headers["Content-Type"] == "command/reply"
    # Each byte is looked at once, plus one byte of overlap per read (a "\n\n" split
    # across two reads).
    assert scanned <= 2 * len(data) + len(data) // read + 16, (scanned, len(data))


def test_the_scan_work_grows_linearly_with_the_header_size():
    small = fed_in_reads(FrameParser(), big_event(10_000), 8)[1]
    large = fed_in_reads(FrameParser(), big_event(40_000), 8)[1]
    assert large <= 5 * small, (small, large)  # quadratic would be ~16x


def test_the_command_parser_scans_linearly_too():
    command = b"sendmsg\n" + b"".join(b"X-H-%05d: %s\n" % (n, b"v" * 24) for n in range(1400))
    data = command + b"\n"
    commands, scanned = fed_in_reads(CommandParser(), data, 8)
    assert len(commands) == 1
    assert scanned <= 2 * len(data) + len(data) // 8 + 16, (scanned, len(data))
