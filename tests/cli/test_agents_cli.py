"""``fsrouter agents list|login|logout`` against a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, rows, run_fsrouter


def presence(db_file: Path) -> dict[object, object]:
    """user_id -> state, read with plain sqlite3."""
    return {row[1]: row[2] for row in rows(db_file, "agent_presence")}


def test_list_shows_only_agents_logged_out_at_first(cli: Cli, upgraded: Path):
    result = cli("agents", "list", "-c", upgraded)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["USER", "NAME", "EXTENSION", "STATE", "BUSY", "SINCE"]
    assert [line.split()[0] for line in lines[1:]] == ["eva", "felix", "greta"]  # not anna
    assert all("logged out" in line and "never logged in" in line for line in lines[1:])


def test_login_logout_and_list(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("agents", "login", "-c", upgraded, "eva", "felix")
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["eva: logged in", "felix: logged in"]
    assert presence(db_file) == {"eva": "logged_in", "felix": "logged_in"}
    again = cli("agents", "login", "-c", upgraded, "eva")
    assert again.out.strip() == "eva: already logged in"
    assert cli("agents", "logout", "-c", upgraded, "felix").code == 0
    agents = {a["user"]: a for a in json.loads(cli("agents", "list", "-c", upgraded,
                                                   "--json").out)}
    assert {u: (a["state"], a["busy"]) for u, a in agents.items()} == {
        "eva": ("logged_in", False), "felix": ("logged_out", False),
        "greta": ("logged_out", False)}
    assert agents["eva"]["since"] is not None and agents["greta"]["since"] is None
    assert agents["eva"]["extension"] == "1001"


def test_unknown_agent_changes_nobody(cli: Cli, upgraded: Path, db_file: Path):
    result = cli("agents", "login", "-c", upgraded, "eva", "felx", "anna")
    assert result.code == 2
    assert result.err.splitlines() == [
        "unknown agent 'felx' (did you mean 'felix'?)",
        "anna is not an agent: no SIP phone or extension to ring",
        "2 problem(s): nothing was changed"]
    assert presence(db_file) == {}


def test_login_and_list_as_real_processes(upgraded: Path, db_file: Path):
    done = run_fsrouter("agents", "login", "-c", upgraded, "greta")
    assert done.code == 0, done.err
    listing = run_fsrouter("agents", "list", "-c", upgraded)
    assert listing.code == 0, listing.err
    greta = next(line for line in listing.out.splitlines() if line.startswith("greta"))
    assert "logged in" in greta and "never" not in greta
    bad = run_fsrouter("agents", "logout", "-c", upgraded, "greta", "nobody")
    assert bad.code == 2 and "unknown agent 'nobody'" in bad.err
    assert presence(db_file) == {"greta": "logged_in"}
