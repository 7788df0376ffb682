"""``next_change`` (what the Now page asks) agrees with the full coverage: the state now, and
the first change within the horizon, at random moments of the example configuration (layered
rotations with restrictions, business hours with holidays, DST weeks) and a one-day rotation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fsrouter.config import load_config
from fsrouter.config.schema import CallRoutingNumber
from fsrouter.routing.coverage import next_change, option_coverage
from tests.unit.test_coverage import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def agree(cfg: object, moment: datetime, horizon: timedelta) -> None:
    for number in cfg.numbers:  # type: ignore[attr-defined]
        if not isinstance(number, CallRoutingNumber):
            continue
        for option in number.options:
            full = option_coverage(cfg, number, option, moment,  # type: ignore[arg-type]
                                   moment + horizon)
            state, change, following = next_change(cfg, option, moment,  # type: ignore[arg-type]
                                                   horizon)
            assert state == full.segments[0].state, (moment, option.digit)
            if len(full.segments) == 1:
                assert (change, following) == (None, None), (moment, option.digit)
            else:
                assert (change, following) == (full.segments[1].start,
                                               full.segments[1].state), (moment, option.digit)


def test_the_example_at_random_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSROUTER_ESL_PASSWORD", "x")
    cfg = load_config(EXAMPLE)
    rng = random.Random(20)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(60):
        moment = start + timedelta(minutes=rng.randrange(366 * 24 * 60))
        agree(cfg, moment, timedelta(days=8))
    # Exactly on a hand-over, a second before it, and a DST night.
    for moment in (datetime(2026, 12, 14, 8, 0, tzinfo=UTC),
                   datetime(2026, 12, 14, 7, 59, 59, tzinfo=UTC),
                   datetime(2026, 3, 28, 23, 30, tzinfo=UTC)):
        agree(cfg, moment, timedelta(days=8))


def test_a_change_exactly_one_day_ahead_is_found() -> None:
    """The first window is a day long: a change exactly at its end must not fall between the
    two windows."""
    cfg = config({"team": {"timezone": "UTC", "rotations": [
        {"users": ["anna", "bernd"], "start": "2026-01-01T09:00:00", "length": "1d"}]}})
    moment = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a hand-over: the next is 24 h later
    state, change, following = next_change(cfg, cfg.numbers[0].options[0], moment,
                                           timedelta(days=8))
    assert change == moment + timedelta(days=1)
    assert following is not None and following.first_level != state.first_level
    agree(cfg, moment, timedelta(days=8))
    agree(cfg, moment, timedelta(days=1))  # the horizon ends on the change: none within
