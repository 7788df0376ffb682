"""Who is called depends on the moment of the call: hand-over at 18:00, two time zones, DST.

The daemon runs in this process with a fixed clock (``start_daemon(now=...)``) against the
simulator, so the moment of the call can be chosen; the escalation is resolved when the call
arrives, and the phone that rings shows who was on call.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid as uuidlib
from datetime import datetime
from zoneinfo import ZoneInfo

import gevent
import pytest
import yaml

from fsrouter.daemon import start_daemon
from fsrouter.sim.driver import SimSwitch
from fsrouter.store import queries
from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number

ROUTING = "+493040002000"


def config(zone: str, esl: tuple[str, int, str]) -> dict:
    host, port, _ = esl
    return {
        "switch": {"host": host, "port": port, "password_env": "FSROUTER_TEST_ESL"},
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "users": {
            "day": {"name": "Day", "phones": [{"type": "mobile",
                                               "number": phone_number("hangup", 300, 1)}]},
            "night": {"name": "Night", "phones": [{"type": "mobile",
                                                   "number": phone_number("hangup", 300, 2)}]},
        },
        "schedules": {"ops": {"timezone": zone, "rotations": [
            {"users": ["night"], "start": "2026-01-01 00:00", "length": "1w"},
            {"users": ["day"], "start": "2026-01-01 00:00", "length": "1w",
             "restrictions": [{"days": "mon-sun", "from": "08:00", "to": "18:00"}]},
        ]}},
        "policies": {"ops": {"levels": [{"targets": [{"schedule": "ops"}], "ring_timeout": 5}],
                             "press_to_accept": False}},
        "numbers": [{"number": ROUTING, "type": "call_routing", "options": [
            {"digit": 1, "label": "Ops", "prompt": "silence_stream://100", "policy": "ops",
             "hold_music": "silence_stream://-1"}]}],
    }


@pytest.fixture(scope="module")
def fast_sim(tmp_path_factory):
    switch = SimSwitch(tmp_path_factory.mktemp("fastsim"), speed=10.0)
    switch.start()
    yield switch
    switch.stop()


CASES = [
    ("Europe/Berlin", "2026-06-10 17:59", "day"),
    ("Europe/Berlin", "2026-06-10 18:00", "night"),
    ("America/New_York", "2026-06-10 17:59", "day"),
    ("America/New_York", "2026-06-10 18:00", "night"),
    # The day the clocks go back in Berlin (25 Oct) and in New York (1 Nov).
    ("Europe/Berlin", "2026-10-25 17:59", "day"),
    ("Europe/Berlin", "2026-10-25 18:00", "night"),
    ("America/New_York", "2026-11-01 17:59", "day"),
    ("America/New_York", "2026-11-01 18:00", "night"),
]


@pytest.mark.parametrize(("zone", "local", "expected"), CASES)
def test_the_person_on_call_at_that_moment_is_rung(fast_sim, tmp_path, monkeypatch, zone,
                                                    local, expected):
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone))
    *_, attempts = run_call(fast_sim, tmp_path, monkeypatch,
                            config(zone, fast_sim.esl_endpoint()), moment)
    assert attempts == [(expected, "answered")], attempts


def finished_calls() -> int:
    from fsrouter.store.models import CallRecord

    return CallRecord.select().where(CallRecord.ended_at.is_null(False)).count()


def queries_all_attempts():
    from fsrouter.store.models import Attempt

    return list(Attempt.select().order_by(Attempt.seq))


def run_call(fast_sim, tmp_path, monkeypatch, data: dict, moment: datetime,
             keep_db: bool = False) -> list:
    """One call; ``keep_db`` calls again on the same database (returns the last call)."""
    monkeypatch.setenv("FSROUTER_TEST_ESL", fast_sim.esl_endpoint()[2])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), "utf-8")
    daemon = start_daemon(path, database_url=f"sqlite:///{tmp_path}/db.sqlite", listen_port=0,
                          now=lambda: moment)
    try:
        fast_sim.route_to(daemon.server.port)
        before = finished_calls() if keep_db else 0
        fast_sim.place_call(ROUTING, "+4915112345678", "Erika", uuid=str(uuidlib.uuid4()))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (finished_calls() > before
                                                   and not queries.open_calls()):
            gevent.sleep(0.05)
        from fsrouter.store.models import CallRecord, Incident

        call = CallRecord.select().order_by(CallRecord.id.desc()).get()  # the clock is fixed
        incident = Incident.get_or_none(Incident.call_uuid == call.call_uuid)
        return [call.outcome, incident.outcome_reason if incident else None,
                [(a.user_id, a.result) for a in queries_all_attempts()
                 if a.call_id == call.id]]
    finally:
        daemon.request_stop("test over")
        daemon.shutdown(drain_seconds=5)


@pytest.mark.parametrize(("local", "expected"), [
    ("2026-12-02 10:00", ["bridged", "call ended", [("day", "answered")]]),  # Wednesday
    ("2026-12-05 10:00", ["out_of_hours", "out_of_hours", []]),              # Saturday
    ("2026-12-25 10:00", ["out_of_hours", "out_of_hours", []]),              # Christmas
])
def test_option_business_hours(fast_sim, tmp_path, monkeypatch, local, expected):
    data = config("Europe/Berlin", fast_sim.esl_endpoint())
    data["schedules"]["ops"]["rotations"] = [
        {"users": ["day"], "start": "2026-01-01 00:00", "length": "1w"}]
    data["numbers"][0]["options"][0] |= {
        "hours": {"windows": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}],
                  "holidays": "BE"},
        "out_of_hours": "message:tone_stream://%(500,0,440)",
    }
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Berlin"))
    assert run_call(fast_sim, tmp_path, monkeypatch, data, moment) == expected


def two_people(strategy: str, first: str, second: str, repeat: int = 0) -> dict:
    return {
        "users": {
            "day": {"name": "Day", "phones": [{"type": "mobile", "number": first}]},
            "night": {"name": "Night", "phones": [{"type": "mobile", "number": second}]},
        },
        "policies": {"ops": {"levels": [{"targets": [{"user": "day"}, {"user": "night"}],
                                         "strategy": strategy, "ring_timeout": 5}],
                             "repeat": repeat, "press_to_accept": False}},
    }


def test_all_at_once_rings_together_and_cancels_the_others(fast_sim, tmp_path, monkeypatch):
    data = config("Europe/Berlin", fast_sim.esl_endpoint())
    data |= two_people("all_at_once", phone_number("noanswer", 0, 1),
                       phone_number("hangup", 2000, 2))
    moment = datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    outcome, _, attempts = run_call(fast_sim, tmp_path, monkeypatch, data, moment)
    assert outcome == "bridged"
    assert sorted(attempts) == [("day", "cancelled"), ("night", "answered")]
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite")) as db:  # daemon closed
        started = [datetime.fromisoformat(row[0])
                   for row in db.execute("SELECT started_at FROM attempts")]
    assert abs((started[0] - started[1]).total_seconds()) < 0.5


def test_repeat_pass_calls_everyone_again(fast_sim, tmp_path, monkeypatch):
    data = config("Europe/Berlin", fast_sim.esl_endpoint())
    data |= two_people("in_order", phone_number("busy", 0, 1), phone_number("gone", 0, 2),
                       repeat=1)
    moment = datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    outcome, reason, attempts = run_call(fast_sim, tmp_path, monkeypatch, data, moment)
    assert (outcome, reason) == ("no_answer_fallback", "nobody_answered")
    assert attempts == [("day", "busy"), ("night", "unreachable")] * 2


def test_round_robin_starts_with_the_next_person_each_call(fast_sim, tmp_path, monkeypatch):
    data = config("Europe/Berlin", fast_sim.esl_endpoint())
    data |= two_people("round_robin", phone_number("hangup", 300, 1),
                       phone_number("hangup", 300, 2))
    moment = datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    firsts = []
    for _ in range(3):
        *_, attempts = run_call(fast_sim, tmp_path, monkeypatch, data, moment, keep_db=True)
        firsts.append(attempts[-1])
    assert firsts == [("day", "answered"), ("night", "answered"), ("day", "answered")]
