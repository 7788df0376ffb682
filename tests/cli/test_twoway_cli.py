"""``fsrouter two-way list|import`` against a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cli.conftest import Cli, rows, run_fsrouter

MAX_AGE = timedelta(hours=24 * 30)  # two_way.max_age_hours default; the example sets none


def mappings(db_file: Path) -> dict[object, tuple[object, ...]]:
    """customer -> (agent, our number, last call, expires), read with plain sqlite3."""
    return {row[1]: row[2:] for row in rows(db_file, "two_way_mappings")}


def stamp(moment: datetime) -> str:
    """How the store writes a time (naive UTC text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_import_then_list(cli: Cli, upgraded: Path, db_file: Path, tmp_path: Path):
    last = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text(
        "customer_number,agent,our_number,last_call_iso\n"
        "# exported from the old dialer\n"
        f"0171 5550001,eva,030 23125 201,{last.isoformat()}\n"
        "+49 171 5550002,felix,+493023125202\n", encoding="utf-8")
    before = datetime.now(UTC)
    result = cli("two-way", "import", "-c", upgraded, csv_file)
    assert result.code == 0, result.err
    assert "imported 2 mapping(s)" in result.out
    stored = mappings(db_file)
    assert stored["+491715550001"] == ("eva", "+493023125201", stamp(last), stamp(last + MAX_AGE))
    assert stored["+491715550002"][:2] == ("felix", "+493023125202")
    assert stored["+491715550002"][2] >= stamp(before)  # no last call given: now

    listing = json.loads(cli("two-way", "list", "-c", upgraded, "--json").out)
    assert [m["customer_number"] for m in listing] == ["+491715550002", "+491715550001"]
    assert datetime.fromisoformat(listing[1]["expires"]) == last + MAX_AGE
    table = cli("two-way", "list", "-c", upgraded).out.splitlines()
    assert table[0].split()[:3] == ["CUSTOMER", "AGENT", "OUR"]
    assert table[2].split()[:3] == ["+491715550001", "eva", "+493023125201"]


def test_every_bad_line_is_reported_and_nothing_imported(cli: Cli, upgraded: Path,
                                                         db_file: Path, tmp_path: Path):
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text(
        "01715550001,eva,03023125201\n"                 # 1 fine (no header)
        "01715550002,nobody,03023125201\n"              # 2 unknown agent
        "not-a-number,eva,03023125201\n"                # 3 bad customer number
        "01715550004,eva,03023125201,yesterday\n"       # 4 bad time
        f"01715550005,eva,03023125201,{future}\n"       # 5 in the future
        "01715550006,eva\n"                             # 6 too few columns
        "01715550007,anna,0301\n",                      # 7 not an agent, bad our_number
        encoding="utf-8")
    result = cli("two-way", "import", "-c", upgraded, csv_file)
    assert result.code == 2
    errors = result.err.splitlines()
    assert [e.split(":")[1] for e in errors[:-1]] == ["2", "3", "4", "5", "6", "7"]
    assert "unknown agent 'nobody'" in errors[0]
    assert "our_number '0301'" in errors[5] and "anna is not an agent" in errors[5]
    assert errors[-1] == "6 problem(s): nothing was imported"
    assert mappings(db_file) == {}


def test_newest_wins_and_expired_lines_are_skipped(cli: Cli, upgraded: Path, db_file: Path,
                                                   tmp_path: Path):
    now = datetime.now(UTC).replace(microsecond=0)
    first = tmp_path / "first.csv"
    first.write_text(f"01715550001,felix,03023125202,{(now - timedelta(hours=1)).isoformat()}\n",
                     encoding="utf-8")
    assert cli("two-way", "import", "-c", upgraded, first).code == 0
    second = tmp_path / "second.csv"
    second.write_text(
        f"01715550001,eva,03023125201,{(now - timedelta(hours=5)).isoformat()}\n"   # older
        f"01715550003,eva,03023125201,{(now - MAX_AGE - timedelta(hours=1)).isoformat()}\n"
        f"01715550004,eva,03023125201,{(now - timedelta(hours=9)).isoformat()}\n"
        f"01715550004,greta,03023125201,{(now - timedelta(hours=3)).isoformat()}\n",
        encoding="utf-8")
    result = cli("two-way", "import", "-c", upgraded, second)
    assert result.code == 0, result.err
    assert f"note: {second}:1: +491715550001: skipped, the database has a newer call by felix" \
        in result.out
    assert f"note: {second}:2: +491715550003: skipped, expired" in result.out
    assert "imported 1 mapping(s)" in result.out
    stored = mappings(db_file)
    assert {k: v[0] for k, v in stored.items()} == {"+491715550001": "felix",
                                                    "+491715550004": "greta"}


def test_list_all_includes_expired(cli: Cli, upgraded: Path, tmp_path: Path):
    # An expired row can only come from the daemon's own records; write one the way it would.
    from fsrouter.store import open_database, queries
    from fsrouter.store.db import close_database

    db = open_database(f"sqlite:///{tmp_path}/fsrouter.db")
    try:
        long_ago = datetime(2026, 1, 1, 12, tzinfo=UTC)
        queries.remember_two_way("+491715550009", "eva", "+493023125201", long_ago,
                                 timedelta(hours=1))
    finally:
        close_database(db)
    assert cli("two-way", "list", "-c", upgraded, "--json").out.strip() == "[]"
    everything = json.loads(cli("two-way", "list", "-c", upgraded, "--all", "--json").out)
    assert [(m["customer_number"], m["expired"]) for m in everything] == [
        ("+491715550009", True)]
    assert "(expired)" in cli("two-way", "list", "-c", upgraded, "--all").out


def test_import_and_list_as_real_processes(upgraded: Path, db_file: Path, tmp_path: Path):
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("customer_number,agent,our_number\n0171 5550001,greta,+4989 4161 2300\n",
                        encoding="utf-8")
    done = run_fsrouter("two-way", "import", "-c", upgraded, csv_file)
    assert done.code == 0, done.err
    listing = run_fsrouter("two-way", "list", "-c", upgraded)
    assert listing.code == 0, listing.err
    assert listing.out.splitlines()[1].split()[:3] == ["+491715550001", "greta", "+498941612300"]
    bad = run_fsrouter("two-way", "import", "-c", upgraded, tmp_path / "missing.csv")
    assert bad.code == 2 and "cannot read" in bad.err
