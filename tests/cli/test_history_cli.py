"""What happened last night, and who changed what: ``fsrouter incidents|calls|voicemails|
deliveries|audit`` as processes against a real SQLite file that the store's call-flow
functions filled (tests/store/history_seed.py). Every ``--json`` time is ISO 8601 with the
offset of ``defaults.timezone``."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsrouter.store.db import close_database, open_database
from tests.cli.conftest import Cli, rows, run_fsrouter
from tests.store.history_seed import Night, seed

ISO_WITH_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d")
TIME_KEYS = re.compile(r"(_at|^at|^from|^to|^since|^last_call|^expires)$")


@pytest.fixture
def night(upgraded: Path, db_file: Path) -> Night:
    db = open_database(f"sqlite:///{db_file}")
    try:
        return seed()
    finally:
        close_database(db)


def times(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) of a JSON document whose key names a time."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from times(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from times(v, key)
    elif TIME_KEYS.search(key) and value is not None:
        yield key, value


def json_of(*args: Any) -> Any:
    result = run_fsrouter(*map(str, args), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    bad = [(k, v) for k, v in times(data) if not ISO_WITH_OFFSET.fullmatch(str(v))]
    assert bad == [], f"times not ISO 8601 with offset: {bad}"
    return data


def test_incidents_list_filters_and_formats(upgraded: Path, night: Night):
    listing = run_fsrouter("incidents", "list", "-c", upgraded)
    assert listing.code == 0, listing.err
    lines = listing.out.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "NUMBER", "OPTION", "CALLER", "STATE",
                                "ACCEPTED", "BY", "REASON"]
    assert lines[1].split()[:7] == [str(night.accepted), "2026-12-05", "02:10", "+01:00",
                                    "+493023125000", "1", "IT-Infrastruktur"]
    assert lines[-1] == "2 incident(s)"
    data = json_of("incidents", "list", "-c", upgraded, "--state", "open", "--since",
                   "2026-12-05T03:00")
    assert [(i["id"], i["option"], i["reason"], i["created_at"]) for i in data] == [
        (night.unanswered, "2", "nobody_answered", "2026-12-05T03:40:30+01:00")]
    table = list(csv.reader(io.StringIO(run_fsrouter(
        "incidents", "list", "-c", upgraded, "--option", "1", "--csv").out)))
    assert table[0][:4] == ["id", "created_at", "number", "option"]
    assert [r[0] for r in table[1:]] == [str(night.accepted)]
    bad = run_fsrouter("incidents", "list", "-c", upgraded, "--since", "yesterday")
    assert bad.code == 2 and "--since: not an ISO date" in bad.err


def test_incident_show_tells_the_story(upgraded: Path, night: Night):
    shown = run_fsrouter("incidents", "show", str(night.accepted), "-c", upgraded)
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[:4] == [
        f"incident {night.accepted}: +493023125000 option 1 IT-Infrastruktur",
        "caller    +4917012345678 (Erika)",
        "state     resolved, accepted by bernd (call ended)",
        "timeline"]
    story = [line.split("  ", 2)[-1] for line in shown.out.splitlines()[4:]]
    assert story == [
        "call c-1 from +4917012345678 to +493023125000",
        "menu choice 1 IT-Infrastruktur: incident opened",
        "ring anna on +4915100000001 (mobile)",
        "  anna +4915100000001: no_answer (NO_ANSWER)",
        "ring bernd on +4915100000002 (mobile)",
        "  bernd +4915100000002: accepted (NORMAL_CLEARING)",
        "accepted by bernd",
        "call ended: bridged (NORMAL_CLEARING)",
        "incident resolved (call ended)"]
    data = json_of("incidents", "show", night.unanswered, "-c", upgraded)
    assert [(a["user"], a["result"]) for a in data["attempts"]] == [("dirk", "no_answer")]
    assert data["voicemails"][0]["mail"] == "failed"
    missing = run_fsrouter("incidents", "show", "999", "-c", upgraded)
    assert missing.code == 2 and "no incident 999" in missing.err


def test_calls_and_voicemails(upgraded: Path, night: Night):
    calls = json_of("calls", "list", "-c", upgraded)
    assert [(c["call_uuid"], c["outcome"], c["attempts"]) for c in calls] == [
        ("c-1", "bridged", 2), ("c-2", "no_answer_fallback", 1), ("c-3", "bridged", 0)]
    by_number = json_of("calls", "list", "-c", upgraded, "--number", "030 23125 201")
    assert [c["call_uuid"] for c in by_number] == ["c-3"]
    # A hostile caller name cannot become a spreadsheet formula.
    table = list(csv.reader(io.StringIO(run_fsrouter("calls", "list", "-c", upgraded,
                                                     "--csv").out)))
    assert table[3][table[0].index("caller_name")] == "'=HYPERLINK(1)"
    assert table[3][table[0].index("caller_number")] == "+4989123456"
    voicemails = run_fsrouter("voicemails", "list", "-c", upgraded, "--mail", "failed")
    assert voicemails.code == 0, voicemails.err
    assert "failed after 1 tries: SMTP 550 mailbox unavailable" in voicemails.out
    assert json_of("voicemails", "list", "-c", upgraded, "--mail", "sent") == []


def test_failed_deliveries_are_listed_and_retried(upgraded: Path, night: Night,
                                                  db_file: Path):
    listing = json_of("deliveries", "list", "-c", upgraded)
    assert [(d["id"], d["error"]) for d in listing] == [
        (f"webhook:{night.webhook}", "HTTP 503"),
        (f"mail:{night.voicemail}", "SMTP 550 mailbox unavailable")]
    bad = run_fsrouter("deliveries", "retry", f"mail:{night.voicemail}", "webhook:99",
                       "-c", upgraded)
    assert bad.code == 2 and "no failed webhook delivery 99" in bad.err
    assert len(json_of("deliveries", "list", "-c", upgraded)) == 2  # nothing changed
    retried = run_fsrouter("deliveries", "retry", f"mail:{night.voicemail}",
                           f"webhook:{night.webhook}", "-c", upgraded, "--by", "lead")
    assert retried.code == 0, retried.err
    assert json_of("deliveries", "list", "-c", upgraded) == []
    [(state,)] = [(r[6],) for r in rows(db_file, "outbox")]
    assert state == "pending"
    trail = json_of("audit", "-c", upgraded, "--kind", "delivery.retry")
    assert [(e["subject"], e["who"], e["after"]) for e in trail] == [
        (f"mail:{night.voicemail}", "lead", {"state": "pending"}),
        (f"webhook:{night.webhook}", "lead", {"state": "pending"})]


def test_route_changes_keep_their_history(upgraded: Path, db_file: Path, tmp_path: Path):
    for target in (("--agent", "felix", "--by", "lead"), ("--queue", "sales", "--by", "anna")):
        done = run_fsrouter("routes", "set", "-c", upgraded, "030 23125 201", *target)
        assert done.code == 0, done.err
    assert run_fsrouter("routes", "reset", "-c", upgraded, "03023125201", "--by",
                        "lead").code == 0
    assert run_fsrouter("agents", "login", "eva", "-c", upgraded, "--by", "sup").code == 0
    mapping = tmp_path / "map.csv"
    mapping.write_text("customer_number,agent,our_number\n0171 555 0101,eva,03023125201\n")
    assert run_fsrouter("two-way", "import", str(mapping), "-c", upgraded).code == 0
    trail = json_of("audit", "-c", upgraded)
    assert [(e["kind"], e["subject"], e["before"], e["after"]) for e in trail[:3]] == [
        ("route.set", "+493023125201", None, {"type": "agent", "target": "felix"}),
        ("route.set", "+493023125201", {"type": "agent", "target": "felix"},
         {"type": "queue", "target": "sales"}),
        ("route.reset", "+493023125201", {"type": "queue", "target": "sales"}, None)]
    assert [e["who"] for e in trail[:4]] == ["lead", "anna", "lead", "sup"]
    assert (trail[3]["kind"], trail[3]["after"]) == ("agent.login", {"state": "logged_in"})
    assert (trail[4]["kind"], trail[4]["subject"], trail[4]["who"][:4]) == (
        "two_way.import", "+491715550101", "cli:")
    assert trail[4]["after"]["agent"] == "eva"
    text = run_fsrouter("audit", "-c", upgraded, "--subject", "030 23125 201")
    assert text.code == 0 and text.out.splitlines()[-1] == "3 entr(ies)"
    assert "type=agent, target=felix -> type=queue, target=sales" in text.out
    table = list(csv.reader(io.StringIO(run_fsrouter("audit", "-c", upgraded, "--csv").out)))
    assert json.loads(table[2][6]) == {"target": "sales", "type": "queue"}
    # The route table itself keeps only the latest (here: none); the trail keeps all.
    assert rows(db_file, "number_assignments") == []


def test_every_json_output_uses_one_time_convention(cli: Cli, upgraded: Path, night: Night):
    run_fsrouter("routes", "set", "-c", upgraded, "03023125202", "--agent", "greta")
    run_fsrouter("agents", "login", "eva", "-c", upgraded)
    [route] = [r for r in json_of("routes", "list", "-c", upgraded)
               if r["number"] == "+493023125202"]
    assert route["changed_at"].endswith("+01:00")  # December in Berlin, not UTC
    for command in (("agents", "list"), ("two-way", "list", "--all"),
                    ("oncall", "--days", "1"),
                    ("simulate", "--number", "03023125000", "--caller", "0301234",
                     "--digits", "1", "--with-db")):
        json_of(*command, "-c", upgraded)
