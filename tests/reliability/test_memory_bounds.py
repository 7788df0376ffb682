"""Memory bounded in bytes, not counts (issue 22.3), measured on the listener's own process.

The outbound listener runs in a process of its own (bench/hostile_esl.py); a "switch" calls
it and sends events before answering ``connect``. Before, 10,000 such events were queued
whatever their size (+295 MB RSS for 10,000 x 30 KB); now the connection is ended at its
16 MB cap. The bound here is generous (a loaded 2-core machine, malloc's own slack).
"""

from __future__ import annotations

import pytest

from bench.hostile_esl import flood_before_connect

# Run alone, after the parallel part (see the Makefile): it sends ~100 MB over loopback.
pytestmark = pytest.mark.serial


def test_a_pre_connect_flood_is_ended_and_rss_stays_bounded():
    result = flood_before_connect(events=3_000, size=32 * 1024)  # ~96 MB offered
    print(result.line())
    assert result.closed, result.line()
    assert result.peak_rss_mb - result.rss_before_mb < 60, result.line()
