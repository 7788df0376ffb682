"""``fsrouter routes list|set|reset`` against a real SQLite file: checks before writing, all or
nothing, and what ``list`` shows afterwards."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, rows, run_fsrouter

HOSTILE = "user/1000,${system(x)}"


def assignments(db_file: Path) -> list[tuple[object, ...]]:
    """(number, route_type, target, changed_by) as stored."""
    return [(r[1], r[2], r[3], r[5]) for r in rows(db_file, "number_assignments")]


def test_set_then_list_shows_the_database_as_source(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("routes", "set", "-c", upgraded, "030 23125 202", "+49 30 9876543",
                 "--agent", "greta", "--by", "tester")
    assert result.code == 0, result.err
    assert "set +493023125202 -> agent greta" in result.out
    assert "+49309876543 is not in the configuration's numbers" in result.out
    assert assignments(db_file) == [("+493023125202", "agent", "greta", "tester"),
                                    ("+49309876543", "agent", "greta", "tester")]

    listing = cli("routes", "list", "-c", upgraded)
    assert listing.code == 0, listing.err
    lines = {line.split()[0]: line for line in listing.out.splitlines()[1:]}
    assert lines["+493023125202"].split()[1:6] == ["agent", "agent", "greta", "no", "db"]
    assert "tester" in lines["+493023125202"]
    assert lines["+493023125201"].split()[-1] == "yaml"  # Eva's number is untouched
    assert "menu: 1 IT-Infrastruktur (it_infra)" in lines["+493023125000"]

    table = {r["number"]: r for r in json.loads(cli("routes", "list", "-c", upgraded,
                                                    "--json").out)}
    assert table["+49309876543"] | {"changed_at": None} == {
        "number": "+49309876543", "name": None, "yaml_type": None, "yaml_destination": "-",
        "type": "agent", "destination": "agent greta", "source": "db",
        "changed_by": "tester", "changed_at": None, "note": None, "two_way": False}
    assert table["+493023125202"]["yaml_destination"] == "agent felix"
    assert table["+493023125999"]["source"] == "yaml"


def test_unknown_agent_changes_nothing(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("routes", "set", "-c", upgraded, "03023125202", "--agent", "gretta")
    assert result.code == 2
    assert "unknown agent 'gretta' (did you mean 'greta'?)" in result.err
    assert "nothing was changed" in result.err
    assert assignments(db_file) == []


def test_every_invalid_number_is_reported_and_nothing_changes(cli: Cli, upgraded: Path,
                                                              db_file: Path):
    result = cli("routes", "set", "-c", upgraded, "03023125202", "abc", "0301", "+49+30",
                 "--queue", "sales")
    assert result.code == 2
    errors = result.err.splitlines()
    assert [e.split(":")[0] for e in errors[:-1]] == ["abc", "0301", "+49+30"]
    assert errors[-1] == "3 problem(s): nothing was changed"
    assert assignments(db_file) == []


def test_hostile_custom_target_is_refused(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("routes", "set", "-c", upgraded, "03023125202", "--custom", HOSTILE)
    assert result.code == 2
    assert "unsafe custom target" in result.err
    assert assignments(db_file) == []
    good = cli("routes", "set", "-c", upgraded, "03023125202", "--custom", "user/1000")
    assert good.code == 0, good.err
    assert assignments(db_file)[0][:3] == ("+493023125202", "custom", "user/1000")
    assert "bridge user/1000" in cli("routes", "list", "-c", upgraded).out


def test_unknown_queue_and_duplicate_numbers(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("routes", "set", "-c", upgraded, "03023125202", "--queue", "sale")
    assert result.code == 2 and "unknown queue 'sale' (did you mean 'sales'?)" in result.err
    twice = cli("routes", "set", "-c", upgraded, "03023125202", "+49 30 23125 202",
                "--unassigned")
    assert twice.code == 2 and "+493023125202 is also given as 03023125202" in twice.err
    assert assignments(db_file) == []


def test_csv_reports_every_broken_line_and_writes_nothing(cli: Cli, upgraded: Path,
                                                          db_file: Path, tmp_path: Path):
    assert cli("routes", "set", "-c", upgraded, "03023125202", "--agent", "eva").code == 0
    before = assignments(db_file)
    csv_file = tmp_path / "routes.csv"
    csv_file.write_text(
        "number,type,target\n"                      # 1 header
        "# sales re-organisation\n"                 # 2
        "030 23125 201,agent,greta\n"               # 3 fine
        "0301234569,custom," + HOSTILE + "\n"       # 4 four columns
        '0301234570,custom,"' + HOSTILE + '"\n'     # 5 quoted: unsafe target
        "0301234571,agent,nobody\n"                 # 6 unknown agent
        "abc,unassigned\n"                          # 7 bad number
        "0301234572,unassigned,x\n"                 # 8 unassigned with a target
        "0301234573,voicemail,eva\n"                # 9 unknown type
        "\n"                                        # 10 blank
        "+49 30 23125 201,queue,sales\n"            # 11 duplicate of line 3
        '"0301234574,agent,eva\n',                  # 12 broken quoting
        encoding="utf-8")
    result = cli("routes", "set", "-c", upgraded, "--from-file", csv_file)
    assert result.code == 2
    errors = result.err.splitlines()
    assert [e.split(":")[1] for e in errors[:-1]] == ["4", "5", "6", "7", "8", "9", "11", "12"]
    assert all(e.startswith(f"{csv_file}:") for e in errors[:-1])
    assert "unknown agent 'nobody'" in errors[2]
    assert "+493023125201 is also on line 3" in errors[6]
    assert errors[-1] == "8 problem(s): nothing was changed"
    assert assignments(db_file) == before  # the earlier assignment is untouched too


def test_csv_without_header_with_bom_and_comments(cli: Cli, upgraded: Path, db_file: Path,
                                                  tmp_path: Path):
    csv_file = tmp_path / "routes.csv"
    csv_file.write_text("\ufeff# from the spreadsheet\n030 23125 201, queue , sales\n"
                        "+4930 23125 202,UNASSIGNED,\n0049 30 555 0000,custom,1000\n",
                        encoding="utf-8")
    result = cli("routes", "set", "-c", upgraded, "--from-file", csv_file, "--by", "ops")
    assert result.code == 0, result.err
    assert [a[:3] for a in assignments(db_file)] == [
        ("+493023125201", "queue", "sales"), ("+493023125202", "unassigned", None),
        ("+49305550000", "custom", "1000")]
    assert "3 route(s) set by ops" in result.out


def test_empty_or_missing_csv_is_a_usage_error(cli: Cli, upgraded: Path, tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("number,type,target\n# nothing yet\n", encoding="utf-8")
    assert cli("routes", "set", "-c", upgraded, "--from-file", empty).code == 2
    missing = cli("routes", "set", "-c", upgraded, "--from-file", tmp_path / "nope.csv")
    assert missing.code == 2 and "nope.csv: cannot read" in missing.err
    both = cli("routes", "set", "-c", upgraded, "03023125202", "--from-file", empty)
    assert both.code == 2 and "not both" in both.err
    nothing = cli("routes", "set", "-c", upgraded, "--agent", "eva")
    assert nothing.code == 2 and "give numbers and a target" in nothing.err


def test_reset_by_number_and_all(cli: Cli, upgraded: Path, db_file: Path):
    cli("routes", "set", "-c", upgraded, "03023125201", "03023125202", "--agent", "greta")
    result = cli("routes", "reset", "-c", upgraded, "+49 30 23125 201", "03023125999")
    assert result.code == 0, result.err
    assert "reset +493023125201: the YAML applies: agent eva (2-way)" in result.out
    assert "note: +493023125999 had no run-time assignment; the YAML applies: not in service " \
        "(SIT)" in result.out
    assert [a[0] for a in assignments(db_file)] == ["+493023125202"]
    assert cli("routes", "reset", "-c", upgraded, "0301x").code == 2
    assert cli("routes", "reset", "-c", upgraded).code == 2  # numbers or --all
    assert cli("routes", "reset", "-c", upgraded, "--all").code == 0
    assert assignments(db_file) == []


def test_a_database_without_schema_is_exit_3(cli: Cli, config_path: Path):
    result = cli("routes", "set", "-c", config_path, "03023125202", "--agent", "eva")
    assert result.code == 3
    assert "fsrouter db upgrade" in result.err


def test_set_and_list_as_real_processes(upgraded: Path, db_file: Path, tmp_path: Path):
    csv_file = tmp_path / "routes.csv"
    csv_file.write_text("number,type,target\n03023125202,agent,eva\n", encoding="utf-8")
    done = run_fsrouter("routes", "set", "-c", upgraded, "--from-file", csv_file)
    assert done.code == 0, done.err
    assert done.err == ""  # operator commands keep the info logs quiet
    listing = run_fsrouter("routes", "list", "-c", upgraded, "--json")
    assert listing.code == 0, listing.err
    table = {r["number"]: r for r in json.loads(listing.out)}
    assert (table["+493023125202"]["source"], table["+493023125202"]["destination"]) == (
        "db", "agent eva")
    bad = run_fsrouter("routes", "set", "-c", upgraded, "03023125202", "--custom", HOSTILE)
    assert bad.code == 2 and "unsafe custom target" in bad.err
    assert assignments(db_file)[0][2] == "eva"


# --- issue 19, point 6 -----------------------------------------------------------------------


def test_list_shows_the_two_way_flag(cli: Cli, upgraded: Path):
    # Eva's number has two_way: true; once routed to a custom target the flag has no effect.
    assert cli("routes", "set", "-c", upgraded, "03023125201", "--custom", "user/1000").code == 0
    listing = cli("routes", "list", "-c", upgraded)
    assert listing.out.splitlines()[0].split()[:6] == [
        "NUMBER", "NAME", "TYPE", "DESTINATION", "2-WAY", "SOURCE"]
    lines = {line.split()[0]: line for line in listing.out.splitlines()[1:]}
    assert " unused (custom) " in lines["+493023125201"]
    assert lines["+493023125202"].split()[-2:] == ["no", "yaml"]
    assert cli("routes", "reset", "-c", upgraded, "03023125201").code == 0
    lines = {line.split()[0]: line for line in cli("routes", "list", "-c", upgraded)
             .out.splitlines()[1:]}
    assert lines["+493023125201"].split()[-2:] == ["yes", "yaml"]
    table = {r["number"]: r for r in json.loads(cli("routes", "list", "-c", upgraded,
                                                    "--json").out)}
    assert (table["+493023125201"]["two_way"], table["+493023125202"]["two_way"]) == (
        True, False)


def test_reset_of_a_number_only_in_the_database_says_it_is_now_out_of_service(
        cli: Cli, upgraded: Path):
    assert cli("routes", "set", "-c", upgraded, "+49 30 9876543", "--agent", "eva").code == 0
    result = cli("routes", "reset", "-c", upgraded, "+49 30 9876543")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "reset +49309876543: it is not in the configuration's numbers: callers get not in "
        "service (SIT) from fsrouter")
