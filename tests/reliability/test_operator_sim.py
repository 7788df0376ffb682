"""The operator's first week against the running daemon (this process) and the simulator:
an on-call override added by ``fsrouter`` (a separate process) is used by the very next
call, and reloads, accepted or refused, land in the audit trail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fsrouter.sim import CallerScript, Press
from fsrouter.testing.phones import phone_number
from tests.cli.conftest import run_fsrouter
from tests.reliability.conftest import HOTLINE, SimDaemon, full_config, wait_for

MENU_KEY = [Press("1", 0.3, "menu")]


def team_config(tmp_path: Any) -> dict[str, Any]:
    """The hotline's policy rings the schedule ``team``: olga every week (rotation)."""
    config = full_config(tmp_path, {"olga": phone_number("noanswer", 0, 40),
                                    "bernd": phone_number("noanswer", 0, 41)})
    config["schedules"] = {"team": {"timezone": "Europe/Berlin", "rotations": [
        {"users": ["olga"], "start": "2024-01-01 09:00", "length": "1w"}]}}
    config["policies"]["ops"]["levels"] = [{"targets": [{"schedule": "team"}],
                                            "ring_timeout": 5}]
    return config


def first_rung(run: SimDaemon) -> str:
    """Place a hotline call, choose option 1, hang up while the phone rings; who rang."""
    before = len(run.rows("SELECT id FROM attempts"))
    record = run.call(HOTLINE, script=CallerScript(presses=MENU_KEY,
                                                   hangup_in="agent_ringing"))
    run.wait_ended(record)
    rows = run.rows("SELECT user_id FROM attempts ORDER BY id")
    assert len(rows) > before, "nobody was rung"
    return str(rows[before]["user_id"])


def test_an_override_from_the_cli_is_used_by_the_next_call(sim_daemon, tmp_path):
    run: SimDaemon = sim_daemon(team_config(tmp_path), speed=5.0)
    assert first_rung(run) == "olga"
    now = datetime.now(UTC)
    added = run_fsrouter(
        "oncall", "override", "add", "bernd", "-c", run.daemon.config_path,
        "--database", f"sqlite:///{run.db_path}", "--schedule", "team",
        "--from", (now - timedelta(minutes=5)).isoformat(),
        "--to", (now + timedelta(hours=1)).isoformat(), "--reason", "olga is sick",
        "--by", "lead")
    assert added.code == 0, added.err
    assert first_rung(run) == "bernd"  # no reload, no restart
    run.check_nothing_left()
    [entry] = run.rows("SELECT kind, who, subject FROM audit_log")
    assert entry == {"kind": "override.add", "who": "lead", "subject": "team#1"}


def test_reloads_accepted_and_refused_are_audited(sim_daemon, tmp_path):
    run: SimDaemon = sim_daemon(team_config(tmp_path))
    assert run.daemon.reload()
    path = run.daemon.config_path
    good = path.read_text("utf-8")
    path.write_text(good + "\nnot_a_section: 1\n", "utf-8")
    assert not run.daemon.reload()
    entries = wait_for(lambda: run.rows("SELECT kind, who, subject, after FROM audit_log "
                                        "ORDER BY id")[-2:] or None, 5, "audit rows")
    assert [(e["kind"], e["who"], e["subject"]) for e in entries] == [
        ("reload.accepted", "daemon", str(path)), ("reload.refused", "daemon", str(path))]
    assert json.loads(entries[0]["after"]) == {"numbers": 6, "needs_restart": []}
    assert "not_a_section" in json.loads(entries[1]["after"])["problems"][0]
