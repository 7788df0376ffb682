"""Fixtures shared by the simulator tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fsrouter.sim.driver import SimSwitch


@pytest.fixture
def switch() -> Iterator[SimSwitch]:
    """A simulator at 20x real time with its event socket on a loopback port."""
    sw = SimSwitch(speed=20)
    sw.start()
    yield sw
    sw.stop()
