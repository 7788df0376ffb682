"""``fsrouter simulate``: the dry run of a call, config only and with the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import EXAMPLE, Cli, example_config, rows, run_fsrouter

HOTLINE = "030 23125 000"
CHRISTMAS_EVE_NIGHT = "2026-12-24T03:00+01:00"  # Thursday: the database team is off
WEDNESDAY_MORNING = "2026-12-02T10:00+01:00"


def simulate(cli: Cli, *args: str, config: Path = EXAMPLE) -> dict[str, Any]:
    result = cli("simulate", "-c", config, "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def waves(plan: dict[str, Any]) -> list[tuple[int, int, str, list[tuple[str, str, int]]]]:
    return [(w["pass"], w["level"], w["strategy"],
             [(a["user"], a["phone"], a["ring_timeout"]) for a in w["attempts"]])
            for w in plan["waves"]]


def test_hotline_out_of_hours_goes_to_the_other_policy(cli: Cli):
    report = simulate(cli, "--number", HOTLINE, "--caller", "+49 171 5550001",
                      "--digits", "2", "--at", CHRISTMAS_EVE_NIGHT)
    assert (report["number"], report["configured_type"]) == ("+493023125000", "call_routing")
    assert report["caller_e164"] == "+491715550001"
    assert report["database"] == "config only"
    menu = report["menu"]
    assert menu["greeting"]["kind"] == "tts"
    assert menu["greeting"]["value"] == "Willkommen bei der Bereitschaft der Beispiel GmbH."
    assert [(o["digit"], o["prompt"]["value"]) for o in menu["options"]] == [
        (1, "Für die IT-Infrastruktur drücken Sie die 1."),
        (2, "Für die Datenbanken drücken Sie die 2.")]
    assert menu["plays"] == [{"play": 1, "key": "2", "action": "choose", "invalid": False,
                              "reason": "key 2"}]
    option = menu["option"]
    assert option["hours"]["in_hours"] is False
    assert (option["out_of_hours"], option["policy"]) == (True, "it_infra")
    # it_infra: Bernd's week (the weekly rotation from 2024-01-01), then Carla; repeat 1.
    bernd = ("bernd", "+4916098765432", 25)
    carla = [("carla", "+491713456789", 20), ("carla", "+498941612345", 20)]
    assert waves(option["plan"]) == [
        (1, 1, "in_order", [bernd]), (1, 2, "in_order", [carla[0]]),
        (1, 2, "in_order", [carla[1]]),
        (2, 1, "in_order", [bernd]), (2, 2, "in_order", [carla[0]]),
        (2, 2, "in_order", [carla[1]])]
    assert option["plan"]["gaps"] == []
    assert option["fallback"] == "message:/usr/share/freeswitch/sounds/fsrouter/nobody-reached.wav"
    assert option["queue"] == "hotline_database"


def test_hotline_in_hours_rings_all_at_once_on_the_second_level(cli: Cli):
    report = simulate(cli, "--number", "+4930 23125000", "--caller", "0171 5550001",
                      "--digits", "2", "--at", WEDNESDAY_MORNING)
    option = report["menu"]["option"]
    assert (option["hours"]["in_hours"], option["policy"]) == (True, "database")
    plan = waves(option["plan"])
    assert len(plan) == 12  # 4 waves, repeat 2
    assert plan[:4] == [
        (1, 1, "in_order", [("carla", "+491713456789", 20)]),
        (1, 1, "in_order", [("carla", "+498941612345", 20)]),
        (1, 2, "all_at_once", [("anna", "+4915123456789", 20),
                               ("bernd", "+4916098765432", 20)]),
        (1, 2, "all_at_once", [("anna", "+493023125101", 20)])]


def test_text_output_shows_menu_key_hours_policy_waves_and_fallback(cli: Cli):
    result = cli("simulate", "-c", EXAMPLE, "--number", HOTLINE, "--caller", "01715550001",
                 "--digits", "2", "--at", CHRISTMAS_EVE_NIGHT)
    assert result.code == 0, result.err
    out = result.out
    for expected in ("at        2026-12-24 03:00 +01:00 (Thu, Europe/Berlin)",
                     '  1  IT-Infrastruktur: tts "Für die IT-Infrastruktur drücken Sie die 1."',
                     "  play 1: key 2 -> choose (key 2)",
                     "option    2 Datenbanken",
                     "hours     OUT OF HOURS (mon-fri 07:00-20:00 Europe/Berlin",
                     "policy    it_infra (2 level(s), repeat 1, press to accept: 1)",
                     "  wave  1  pass 1 level 1 in_order: bernd (Bernd Weber) mobile "
                     "+4916098765432 25 s",
                     "fallback  message:/usr/share/freeswitch/sounds/fsrouter/nobody-reached.wav"):
        assert expected in out, expected


def test_invalid_key_then_no_key_until_goodbye(cli: Cli):
    menu = simulate(cli, "--number", HOTLINE, "--caller", "0171", "--digits", "9_",
                    "--at", WEDNESDAY_MORNING)["menu"]
    assert [(p["key"], p["action"], p["invalid"]) for p in menu["plays"]] == [
        ("9", "repeat", True), (None, "repeat", False), (None, "goodbye", False)]
    assert menu["chosen"] is None and "option" not in menu


@pytest.mark.parametrize(("flags", "kind"), [
    ((), "ring_agent"), (("--logged-out", "eva"), "voicemail"), (("--busy", "eva"), "busy_tone")])
def test_agent_number_by_presence(cli: Cli, flags: tuple[str, ...], kind: str):
    destination = simulate(cli, "--number", "030 23125 201", "--caller", "0171 5550001",
                           *flags)["destination"]
    assert destination["kind"] == kind
    if kind == "voicemail":
        assert destination["email"] == "eva.becker@beispiel.de"
    if kind == "ring_agent":
        assert destination["dial_string"] == "user/1001"


def test_unknown_number_and_custom_destination(cli: Cli):
    assert simulate(cli, "--number", "030 5550000", "--caller", "0171")["destination"] == {
        "kind": "unassigned", "behaviour": "sit", "notes": []}
    custom = simulate(cli, "--number", "+49 30 23125 100", "--caller", "0171")["destination"]
    assert (custom["kind"], custom["extension"], custom["context"]) == (
        "custom", "1000", "default")


def test_hostile_caller_is_shown_harmlessly(cli: Cli):
    hostile = "\x1b[2J${system(rm -rf /)}\n"
    result = cli("simulate", "-c", EXAMPLE, "--number", HOTLINE, "--caller", hostile,
                 "--digits", "1", "--at", WEDNESDAY_MORNING)
    assert result.code == 0, result.err
    assert "\x1b" not in result.out
    assert "caller    ?[2J${system(rm -rf /)}? (not a number)" in result.out


@pytest.mark.parametrize(("args", "message"), [
    (("--number", "abc"), "--number 'abc'"),
    (("--at", "tomorrow"), "--at: not an ISO date"),
    (("--digits", "12x"), "--digits '12x'"),
    (("--logged-in", "nobody"), "unknown agent 'nobody'"),
])
def test_bad_input_is_a_usage_error(cli: Cli, args: tuple[str, ...], message: str):
    base = {"--number": HOTLINE, "--caller": "0171"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = cli("simulate", "-c", EXAMPLE, *[x for pair in base.items() for x in pair])
    assert result.code == 2
    assert message in result.err


def test_with_db_reads_assignments_and_presence_and_writes_nothing(cli: Cli, upgraded: Path,
                                                                   db_file: Path):
    assert cli("routes", "set", "-c", upgraded, "030 23125 202", "--agent", "greta").code == 0
    number = ("--number", "030 23125 202", "--caller", "0171 5550001")
    config_only = simulate(cli, *number, config=upgraded)["destination"]
    assert (config_only["kind"], config_only["agent"]) == ("ring_agent", "felix")  # the YAML
    with_db = simulate(cli, *number, "--with-db", config=upgraded)
    assert with_db["database"].startswith("SQLite database")
    destination = with_db["destination"]
    assert (destination["kind"], destination["agent"]) == ("voicemail", "greta")  # logged out
    assert destination["notes"][0] == "assignment: agent greta"
    assert cli("agents", "login", "-c", upgraded, "greta").code == 0
    destination = simulate(cli, *number, "--with-db", config=upgraded)["destination"]
    assert (destination["kind"], destination["agent"]) == ("ring_agent", "greta")
    for table in ("call_records", "incidents", "attempts"):
        assert rows(db_file, table) == []


def test_with_db_uses_two_way_mappings(cli: Cli, tmp_path: Path):
    config = example_config(tmp_path, extra=(
        "  - number: +49 30 23125 300\n    type: queue\n    queue: sales\n"
        "    two_way: true\n"))
    assert cli("db", "upgrade", "-c", config).code == 0
    mapping = tmp_path / "calls.csv"
    mapping.write_text("0171 5550001,felix,030 23125 300\n", encoding="utf-8")
    assert cli("two-way", "import", "-c", config, mapping).code == 0
    known = simulate(cli, "--number", "03023125300", "--caller", "+491715550001",
                     "--with-db", "--logged-in", "felix", config=config)["destination"]
    assert (known["kind"], known["agent"]) == ("ring_agent", "felix")
    assert known["notes"][0] == "2-way: caller was last called by felix"
    other = simulate(cli, "--number", "03023125300", "--caller", "+491715550002",
                     "--with-db", config=config)["destination"]
    assert (other["kind"], other["queue"]) == ("queue", "sales")


def test_with_db_never_creates_a_missing_database(cli: Cli, config_path: Path, db_file: Path):
    result = cli("simulate", "-c", config_path, "--number", HOTLINE, "--caller", "0171",
                 "--with-db")
    assert result.code == 3
    assert "does not exist" in result.err
    assert not db_file.exists()


def test_simulate_as_a_real_process():
    done = run_fsrouter("simulate", "-c", EXAMPLE, "--number", HOTLINE, "--caller",
                        "+49 171 5550001", "--digits", "1", "--at", CHRISTMAS_EVE_NIGHT,
                        "--json")
    assert done.code == 0, done.err
    option = json.loads(done.out)["menu"]["option"]
    assert (option["policy"], option["plan"]["waves"][0]["attempts"][0]["user"]) == (
        "it_infra", "bernd")
    bad = run_fsrouter("simulate", "-c", EXAMPLE, "--number", "x", "--caller", "1")
    assert bad.code == 2 and "--number 'x'" in bad.err
