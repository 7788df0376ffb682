"""bench/switchcost.py on the real switch: the figures it reports are real, and they show
what the call socket's design rests on (a header byte costs the switch far more than a
body byte)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from bench import switchcost
from fsrouter.testing.realswitch import RealSwitch, find_freeswitch

pytestmark = pytest.mark.realswitch


def test_header_bytes_cost_the_switch_more_than_body_bytes() -> None:
    if find_freeswitch() is None:
        if os.environ.get("CI"):
            pytest.fail("real FreeSWITCH required when CI is set", pytrace=False)
        pytest.skip("no FreeSWITCH found (set FSROUTER_FREESWITCH)")
    pad = "x" * switchcost.PAD
    with tempfile.TemporaryDirectory() as tmp, RealSwitch(Path(tmp)) as switch:
        header = switchcost.command_cost(
            switch, f"noevents\nX-Pad: {pad}\n\n".encode(), 200)
        body = switchcost.command_cost(
            switch, f"noevents\nContent-Length: {len(pad)}\n\n{pad}".encode(), 200)
    # Measured 1,270 against 70 us per command (the switch's own CPU time, whatever else
    # the machine does): a factor of 5 leaves room for a clock tick's rounding.
    assert header["switch_cpu_us"] > 5 * max(body["switch_cpu_us"], 10.0), (header, body)
