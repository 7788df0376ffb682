"""``fsrouter oncall override add|list|remove`` against a real SQLite file, as the operator
runs it: checks before writing (nothing half-written), times read like ``--at``, and the
override showing up in ``oncall``, ``simulate --with-db`` and the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, rows, run_fsrouter

# Sunday 2031-01-12 (Berlin, +01:00). The example's it_infra rotation (anna/bernd, weekly
# from Monday 2024-01-01 09:00) has anna on call that week (bernd from Mon 13th 09:00).
FROM, TO = "2031-01-11T18:00", "2031-01-12T08:00"


def add(config: Path, *extra: str, user: str = "bernd", start: str = FROM, end: str = TO):
    return run_fsrouter("oncall", "override", "add", user, "-c", config, "--schedule",
                        "it_infra", "--from", start, "--to", end, *extra)


def test_add_list_remove_as_a_process(upgraded: Path, db_file: Path):
    added = add(upgraded, "--reason", "anna is sick", "--by", "lead")
    assert added.code == 0, added.err
    assert added.out.splitlines() == [
        "override #1: bernd is on call for it_infra from 2031-01-11 18:00 +01:00 to "
        "2031-01-12 08:00 +01:00 (anna is sick)",
        "added by lead; it applies to the next call"]
    # Read in defaults.timezone (Europe/Berlin): 18:00 +01:00 is 17:00 UTC in the table.
    [row] = rows(db_file, "oncall_overrides")
    assert row[1:5] == ("it_infra", "bernd", "2031-01-11 17:00:00.000000",
                        "2031-01-12 07:00:00.000000")

    listing = run_fsrouter("oncall", "override", "list", "-c", upgraded, "--json")
    assert listing.code == 0, listing.err
    [item] = json.loads(listing.out)
    assert item | {"created_at": None} == {
        "id": 1, "schedule": "it_infra", "user": "bernd", "from": "2031-01-11T18:00:00+01:00",
        "to": "2031-01-12T08:00:00+01:00", "reason": "anna is sick", "created_by": "lead",
        "created_at": None, "active": False}
    csv_out = run_fsrouter("oncall", "override", "list", "-c", upgraded, "--csv").out
    assert csv_out.splitlines()[1].startswith(
        "1,it_infra,bernd,2031-01-11T18:00:00+01:00,2031-01-12T08:00:00+01:00,anna is sick")

    removed = run_fsrouter("oncall", "override", "remove", "1", "-c", upgraded, "--by", "lead")
    assert removed.code == 0, removed.err
    assert rows(db_file, "oncall_overrides") == []
    trail = json.loads(run_fsrouter("audit", "-c", upgraded, "--json").out)
    assert [(e["kind"], e["who"], e["subject"]) for e in trail] == [
        ("override.add", "lead", "it_infra#1"), ("override.remove", "lead", "it_infra#1")]
    assert trail[1]["before"]["user"] == "bernd" and trail[1]["after"] is None
    # Stored in UTC, shown in the one convention (defaults.timezone with its offset).
    assert (trail[0]["after"]["from"], trail[0]["after"]["to"]) == (
        "2031-01-11T18:00:00+01:00", "2031-01-12T08:00:00+01:00")


def test_every_problem_is_named_and_nothing_written(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("oncall", "override", "add", "berndt", "-c", upgraded, "--schedule",
                 "it_infr", "--from", TO, "--to", FROM)
    assert result.code == 2
    assert result.err.splitlines() == [
        "unknown user 'berndt' (did you mean 'bernd'?)",
        "unknown schedule 'it_infr' (did you mean 'it_infra'?) (schedules: database, "
        "it_infra)",
        "--to (2031-01-11 18:00 +01:00) must be after --from (2031-01-12 08:00 +01:00)",
        "3 problem(s): nothing was changed"]
    past = cli("oncall", "override", "add", "bernd", "-c", upgraded, "--schedule",
               "it_infra", "--from", "2020-01-01T00:00", "--to", "2020-01-02T00:00")
    assert past.code == 2 and "is in the past" in past.err
    bad = cli("oncall", "override", "add", "bernd", "-c", upgraded, "--schedule", "it_infra",
              "--from", "tonight", "--to", TO)
    assert bad.code == 2 and "--from: not an ISO date" in bad.err
    assert rows(db_file, "oncall_overrides") == [] and rows(db_file, "audit_log") == []


def test_an_overlap_is_refused_with_the_clashing_override(cli: Cli, upgraded: Path,
                                                          db_file: Path):
    assert add(upgraded).code == 0
    clash = add(upgraded, user="carla", start="2031-01-12T07:00", end="2031-01-12T12:00")
    assert clash.code == 2
    assert clash.err.splitlines() == [
        "overlaps override #1: bernd for it_infra from 2031-01-11 18:00 +01:00 to "
        "2031-01-12 08:00 +01:00 (remove it first: fsrouter oncall override remove 1)",
        "nothing was changed"]
    # Right after it (the end is exclusive) is fine; an unknown id removes nothing.
    assert add(upgraded, user="carla", start=TO, end="2031-01-12T12:00").code == 0
    missing = cli("oncall", "override", "remove", "2", "7", "-c", upgraded)
    assert missing.code == 2 and "no run-time override #7" in missing.err
    assert len(rows(db_file, "oncall_overrides")) == 2
    assert len(rows(db_file, "audit_log")) == 2


def test_oncall_and_simulate_use_the_override(upgraded: Path):
    assert add(upgraded, "--reason", "sick").code == 0
    oncall = run_fsrouter("oncall", "-c", upgraded, "--from", "2031-01-11T12:00", "--days", "1")
    assert oncall.code == 0, oncall.err
    lines = oncall.out.splitlines()
    assert lines[1].startswith("run-time overrides: 1 from SQLite database ")
    start = lines.index("+493023125000 (Bereitschaft IT) option 1 IT-Infrastruktur, "
                        "policy it_infra")
    assert lines[start + 1:start + 4] == [
        "  2031-01-11 12:00 +01:00 -> 2031-01-11 18:00 +01:00  anna; then carla",
        "  2031-01-11 18:00 +01:00 -> 2031-01-12 08:00 +01:00  bernd; then carla  "
        "[it_infra: run-time override #1 (sick)]",
        "  2031-01-12 08:00 +01:00 -> 2031-01-12 12:00 +01:00  anna; then carla"]
    data = json.loads(run_fsrouter("oncall", "-c", upgraded, "--from", "2031-01-11T12:00",
                                   "--days", "1", "--json").out)
    segment = data["options"][0]["segments"][1]
    assert segment["origins"] == [{"schedule": "it_infra", "user": "bernd",
                                   "source": "run-time override", "override_id": 1,
                                   "reason": "sick"}]
    without = run_fsrouter("oncall", "-c", upgraded, "--from", "2031-01-11T12:00", "--days",
                           "1", "--no-db")
    assert "run-time override #" not in without.out
    assert "  2031-01-11 12:00 +01:00 -> 2031-01-12 12:00 +01:00  anna; then carla" in \
        without.out.splitlines()

    def first_rung(*extra: str) -> str:
        result = run_fsrouter("simulate", "-c", upgraded, "--number", "03023125000",
                              "--caller", "0301234567", "--digits", "1", "--at",
                              "2031-01-11T22:00", "--json", *extra)
        assert result.code == 0, result.err
        option = json.loads(result.out)["menu"]["option"]
        return option["plan"]["waves"][0]["attempts"][0]["user"]
    assert first_rung("--with-db") == "bernd"
    assert first_rung() == "anna"  # config only: the YAML alone


def test_the_config_may_be_given_before_override(cli: Cli, upgraded: Path):
    assert add(upgraded).code == 0
    result = cli("oncall", "-c", upgraded, "override", "list", "--json")
    assert result.code == 0, result.err
    assert [item["user"] for item in json.loads(result.out)] == ["bernd"]
