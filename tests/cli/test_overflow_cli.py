"""Huge durations, far-off dates and huge counts (issue 22.9): ``check-config`` names the
file, line, column and key instead of crashing with an OverflowError traceback, and so do
``oncall`` and ``simulate`` for dates given on the command line. The inputs are the
counterexamples the config fuzzing found, plus their neighbours."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.conftest import EXAMPLE, Cli

ROTATION = "schedules.it_infra.rotations[0]"
OVERRIDE = "schedules.it_infra.overrides[0]"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """The example with one line's value replaced in place (so line and column are real)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "key", "message"), [
    ("length: 1w            # weekly", "length: 86400000000000  # weekly", f"{ROTATION}.length",
     "must be at most 366d"),
    ("length: 1w            # weekly", "length: 99999999999999w  # weekly", f"{ROTATION}.length",
     "must be at most 366d"),
    ("length: 1w            # weekly", "length: 1000000000d  # weekly", f"{ROTATION}.length",
     "must be at most 366d"),
    ("length: 1w            # weekly", "length: 367d  # weekly", f"{ROTATION}.length",
     "must be at most 366d"),
    ("start: 2024-01-01 09:00", "start: 9999-12-31 23:59", f"{ROTATION}.start",
     "must be in the years 1970-2199, got 9999"),
    ("start: 2024-01-01 09:00", "start: 0001-01-01 00:00", f"{ROTATION}.start",
     "must be in the years 1970-2199, got 1"),
    ("from: 2024-08-05 09:00", "from: 0001-01-01 00:00", f"{OVERRIDE}.from",
     "must be in the years 1970-2199, got 1"),
    ("to: 2024-08-12 09:00", "to: 9999-12-31 23:59:59+14:00", f"{OVERRIDE}.to",
     "must be in the years 1970-2199, got 9999"),
    ("max_wait: 300", "max_wait: 100000000000000000000000000000", "queues.sales.max_wait",
     "must be 10-86400"),
])
def test_check_config_names_the_place_of_an_overflowing_value(cli: Cli, tmp_path: Path,
                                                              old, new, key, message):
    path = edited(tmp_path, old, new)
    line = 1 + EXAMPLE.read_text(encoding="utf-8").split(old, 1)[0].count("\n")
    result = cli("check-config", path)
    assert result.code == 2, result
    pattern = rf"^{re.escape(str(path))}:{line}:\d+: {re.escape(key)}: {re.escape(message)}"
    assert re.search(pattern, result.err, re.MULTILINE), result.err


def test_longest_rotation_still_loads_and_oncall_runs(cli: Cli, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FSROUTER_ESL_PASSWORD", "s3cret-Esl-pw")  # check-config resolves it
    path = edited(tmp_path, "length: 1w            # weekly", "length: 366d  # weekly")
    assert cli("check-config", path).code == 0
    result = cli("oncall", "-c", path, "--days", "3", "--from", "2199-12-28T00:00")
    assert result.code in (0, 5), result


@pytest.mark.parametrize("args", [
    ("oncall", "-c", EXAMPLE, "--days", "5", "--from", "9999-12-31T23:00"),
    ("oncall", "-c", EXAMPLE, "--days", "5", "--from", "0001-01-01T00:00+14:00"),
    ("simulate", "-c", EXAMPLE, "--number", "+493023125000", "--caller", "+4917012345678",
     "--at", "0001-01-01T00:00+14:00"),
    ("simulate", "-c", EXAMPLE, "--number", "+493023125000", "--caller", "+4917012345678",
     "--at", "9999-12-31T23:59-12:00"),
])
def test_far_off_dates_on_the_command_line_are_usage_errors(cli: Cli, args):
    result = cli(*args)
    assert result.code == 2, result
    assert "must be in the years 1970-2199" in result.err, result.err
