"""Issue 19, point 4: holidays of any country and subdivision, company closure days, and
national numbers that are never silently read as German. The CLI runs as a real process on
real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_fsrouter

# A Vienna company: Viennese public holidays (AT-9) and its own closure days.
VIENNA = """\
switch: {password_env: FSROUTER_ESL_PASSWORD}
database: {url: "sqlite:///DIR/fsrouter.db"}
defaults: {country: AT, timezone: Europe/Vienna, language: de}
users:
  lena: {name: Lena Huber, phones: [{type: mobile, number: 0676 9876543}]}
  max: {name: Max Gruber, phones: [{type: mobile, number: +43 664 1234567}]}
schedules:
  office:
    rotations:
      - users: [lena, max]
        start: 2026-01-05 08:00
        length: 1w
        restrictions: [{days: mon-fri, from: "08:00", to: "17:00"}]
    holidays:
      country: AT
      subdivision: "9"
      closed: [{date: "12-24", name: Heiliger Abend}, "12-31"]
policies:
  office: {levels: [{targets: [{schedule: office}]}]}
numbers:
  - number: 01 5871234
    type: call_routing
    options:
      - digit: 1
        label: Support
        policy: office
        hours:
          windows: [{days: mon-fri, from: "08:00", to: "17:00"}]
          holidays: {country: AT-9, closed: [{date: "12-24", name: Heiliger Abend}, "12-31"]}
        out_of_hours: voicemail:lena
"""
HOTLINE = "+43 1 5871234"


def vienna(tmp_path: Path, text: str = VIENNA) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("DIR", str(tmp_path)), encoding="utf-8")
    return path


def simulate(config: Path, at: str) -> dict:
    result = run_fsrouter("simulate", "-c", config, "--number", HOTLINE, "--caller",
                          "+43 699 1112233", "--digits", "1", "--at", at, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)["menu"]["option"]


def test_vienna_config_is_valid_and_reads_austrian_numbers(tmp_path):
    result = run_fsrouter("check-config", vienna(tmp_path))
    assert result.code == 0, result.err
    assert "OK (1 numbers, 2 users)" in result.out


@pytest.mark.parametrize(("at", "closed"), [
    ("2026-12-25T10:00", "Christmas Day (AT-9)"),          # a Friday
    ("2026-10-26T10:00", "National Day (AT-9)"),           # Nationalfeiertag, a Monday
    ("2026-12-08T10:00", "Immaculate Conception (AT-9)"),  # Mariä Empfängnis, a Tuesday
    ("2026-12-24T10:00", "Heiliger Abend (company closure)"),
    ("2027-12-31T10:00", "company closure"),               # every year
])
def test_simulate_names_the_holiday_or_closure(tmp_path, at, closed):
    option = simulate(vienna(tmp_path), at)
    assert option["hours"]["holidays"] == "AT-9"
    assert (option["hours"]["in_hours"], option["hours"]["closed"]) == (False, closed)
    assert option["out_of_hours"] is True and option["fallback"] == "voicemail:lena"


def test_simulate_text_says_closed_and_why(tmp_path):
    result = run_fsrouter("simulate", "-c", vienna(tmp_path), "--number", HOTLINE,
                          "--caller", "+43 699 1112233", "--digits", "1",
                          "--at", "2026-12-25T10:00")
    assert result.code == 0, result.err
    assert "hours     OUT OF HOURS, closed: Christmas Day (AT-9) (mon-fri 08:00-17:00" \
        in result.out


def test_an_ordinary_weekday_is_in_hours(tmp_path):
    option = simulate(vienna(tmp_path), "2026-12-02T10:00")
    assert (option["hours"]["in_hours"], option["hours"]["closed"]) == (True, None)
    assert option["plan"]["waves"][0]["attempts"][0]["user"] in ("lena", "max")


def test_a_bare_german_state_still_means_germany(tmp_path):
    # 1 November: a holiday in Bavaria, not in Berlin. "BY" meant DE-BY before issue 19.
    text = VIENNA.replace("holidays: {country: AT-9, closed: [{date: \"12-24\", "
                          "name: Heiliger Abend}, \"12-31\"]}", "holidays: BY")
    option = simulate(vienna(tmp_path, text), "2027-11-01T10:00")
    assert (option["hours"]["holidays"], option["hours"]["closed"]) == (
        "DE-BY", "All Saints' Day (DE-BY)")


@pytest.mark.parametrize(("holidays", "message"), [
    ("AT-10", "AT has no subdivision '10' (known: 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
    ("CH-ZX", "CH has no subdivision 'ZX'"),
    ("XY", "unknown holiday country 'XY'"),
])
def test_an_unknown_country_or_subdivision_is_an_error_at_its_key(tmp_path, holidays, message):
    text = VIENNA.replace("holidays: {country: AT-9, closed: [{date: \"12-24\", "
                          "name: Heiliger Abend}, \"12-31\"]}", f"holidays: {holidays}")
    path = vienna(tmp_path, text)
    result = run_fsrouter("check-config", path)
    assert result.code == 2
    line = text.splitlines().index(f"          holidays: {holidays}") + 1
    assert f"{path}:{line}:11: numbers[0].options[0].hours.holidays: {message}" in result.err


def test_a_national_number_without_country_is_an_error_not_german(tmp_path):
    # The trial: "0676 9876543" became +496769876543 and check-config said OK.
    text = VIENNA.replace("defaults: {country: AT, ", "defaults: {")
    path = vienna(tmp_path, text)
    result = run_fsrouter("check-config", path)
    assert result.code == 2, result.out
    assert "OK" not in result.out
    errors = result.err.splitlines()
    assert f"{path}:5:52: users.lena.phones[0].number: national number '0676 9876543' needs " \
        "defaults.country (e.g. AT) to be read; set it, or write the number as " \
        "+<country code> ..." in errors
    assert any(e.startswith(f"{path}:21:5: numbers[0].number: national number '01 5871234'")
               for e in errors)
    # International numbers need no country.
    assert not any("+43 664" in e for e in errors)


def test_simulate_refuses_a_national_number_without_country(tmp_path):
    text = VIENNA.replace("0676 9876543", "+43 676 9876543").replace(
        "- number: 01 5871234", "- number: +43 1 5871234").replace(
        "defaults: {country: AT, ", "defaults: {")
    path = vienna(tmp_path, text)
    result = run_fsrouter("simulate", "-c", path, "--number", "01 5871234", "--caller",
                          "+43 699 1112233")
    assert result.code == 2
    assert "--number '01 5871234': national number '01 5871234' needs defaults.country" \
        in result.err
    ok = run_fsrouter("simulate", "-c", path, "--number", HOTLINE, "--caller", "+436991112233",
                      "--digits", "1", "--at", "2026-12-02T10:00")
    assert ok.code == 0, ok.err


def test_simulate_names_the_schedules_day_off_when_a_policy_rings_anyway(tmp_path):
    # Without business hours on the option the policy rings on Christmas Day too; the
    # schedule's restricted rotation is off, and simulate says why nobody is on call.
    text = VIENNA.replace("""        hours:
          windows: [{days: mon-fri, from: "08:00", to: "17:00"}]
          holidays: {country: AT-9, closed: [{date: "12-24", name: Heiliger Abend}, "12-31"]}
        out_of_hours: voicemail:lena
""", "")
    result = run_fsrouter("simulate", "-c", vienna(tmp_path, text), "--number", HOTLINE,
                          "--caller", "+43 699 1112233", "--digits", "1",
                          "--at", "2026-12-25T10:00")
    assert result.code == 0, result.err
    assert "  day off in schedule office: Christmas Day (AT-9) (restricted rotations are off)" \
        in result.out.splitlines()
    assert "NOBODY to ring" in result.out
