"""``fsrouter oncall``: the on-call timeline per hotline option, and exit 5 on gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import EXAMPLE, Cli, run_fsrouter

# Carla covers weekdays 08:00-18:00 only; option 2 sends callers to voicemail out of hours.
GAPPY = """\
switch: {password_env: FSROUTER_ESL_PASSWORD}
defaults: {country: DE}
users:
  carla: {name: Carla, phones: [{type: mobile, number: +49 171 3456789}]}
schedules:
  day:
    rotations:
      - users: [carla]
        start: 2026-01-05 08:00
        length: 1w
        restrictions: [{days: mon-fri, from: "08:00", to: "18:00"}]
policies:
  day: {levels: [{targets: [{schedule: day}]}]}
numbers:
  - number: 030 23125 000
    type: call_routing
    options:
      - {digit: 1, label: Support, policy: day}
      - digit: 2
        label: Sales
        policy: day
        hours: {windows: [{days: mon-fri, from: "08:00", to: "18:00"}]}
        out_of_hours: voicemail:carla
"""


@pytest.fixture
def gappy(tmp_path: Path) -> Path:
    path = tmp_path / "gappy.yaml"
    path.write_text(GAPPY, encoding="utf-8")
    return path


def test_example_has_no_gaps_and_shows_each_change(cli: Cli):
    # The week of the spring DST change: the Monday 09:00 hand-over is at +02:00.
    result = cli("oncall", "-c", EXAMPLE, "--days", "14", "--from", "2026-03-23T00:00")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == ("on call from 2026-03-23 00:00 +01:00 to 2026-04-06 00:00 +02:00 "
                        "(Europe/Berlin)")
    start = lines.index("+493023125000 (Bereitschaft IT) option 1 IT-Infrastruktur, "
                        "policy it_infra")
    assert lines[start + 1:start + 4] == [
        "  2026-03-23 00:00 +01:00 -> 2026-03-23 09:00 +01:00  bernd; then carla",
        "  2026-03-23 09:00 +01:00 -> 2026-03-30 09:00 +02:00  anna; then carla",
        "  2026-03-30 09:00 +02:00 -> 2026-04-06 00:00 +02:00  bernd; then carla"]
    assert ("  2026-03-23 20:00 +01:00 -> 2026-03-24 07:00 +01:00  "
            "out of hours (policy:it_infra): anna; then carla") in lines
    assert lines[-1] == "no gaps"


def test_gaps_are_warned_about_with_exit_5(cli: Cli, gappy: Path):
    result = cli("oncall", "-c", gappy, "--days", "3", "--from", "2026-06-05T12:00+02:00")
    assert result.code == 5
    warnings = [line for line in result.out.splitlines() if line.startswith("WARN")]
    assert warnings == [
        "WARN +493023125000 option 1 Support: nobody to ring 2026-06-05 18:00 +02:00 -> "
        "2026-06-08 08:00 +02:00 (level 1: schedule day: nobody on call)"]
    assert "  2026-06-05 18:00 +02:00 -> 2026-06-08 08:00 +02:00  out of hours: " \
           "voicemail:carla" in result.out.splitlines()


def test_json_output(cli: Cli, gappy: Path):
    result = cli("oncall", "-c", gappy, "--days", "3", "--from", "2026-06-05T12:00+02:00",
                 "--json")
    assert result.code == 5
    data = json.loads(result.out)
    assert data["gaps"] == 1
    support, sales = data["options"]
    assert [(s["from"], s["gap"], s["first_level"]) for s in support["segments"]] == [
        ("2026-06-05T12:00:00+02:00", False, ["carla"]),
        ("2026-06-05T18:00:00+02:00", True, []),
        ("2026-06-08T08:00:00+02:00", False, ["carla"])]
    assert [s["action"] for s in sales["segments"]] == [None, "voicemail:carla", None]


@pytest.mark.parametrize(("args", "message"), [
    (("--days", "0"), "--days must be 1-366"),
    (("--from", "soon"), "--from: not an ISO date"),
])
def test_bad_arguments(cli: Cli, args: tuple[str, ...], message: str):
    result = cli("oncall", "-c", EXAMPLE, *args)
    assert result.code == 2 and message in result.err


def test_oncall_as_a_real_process(gappy: Path):
    gaps = run_fsrouter("oncall", "-c", gappy, "--from", "2026-06-05T12:00+02:00")
    assert gaps.code == 5, gaps.err
    assert "WARN +493023125000 option 1 Support" in gaps.out
    fine = run_fsrouter("oncall", "-c", EXAMPLE, "--days", "2")
    assert fine.code == 0, fine.err + fine.out
