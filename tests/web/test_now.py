"""The Now page and /api/v1/now (issue 20.3): who each hotline option rings now and next,
gaps in red, calls in progress and callers waiting per queue, the agents; live by polling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest

from fsrouter.store import queries
from tests.web.conftest import WebEnv, logged_in

# Saturday noon in Berlin, a week on (sessions issued before the accounts were made are void):
# the IT rotation (changed below to weekdays 09:00-17:00) is off.
SATURDAY_NOON = datetime(2026, 12, 12, 11, 0, tzinfo=UTC)
HOTLINE = "+493023125000"
SALES = "+493023125200"


def with_gaps(env: WebEnv) -> None:
    """The example with the IT rotation on weekdays 09:00-17:00 only and no team lead behind
    it: option 1 (and option 2 out of hours) has nobody to ring at nights and weekends."""
    text = env.config_path.read_text("utf-8")
    rotation = "        length: 1w            # weekly hand-over, Monday 09:00\n"
    lead = "      - targets: [{user: carla}]        # team lead as the last resort\n"
    assert rotation in text and lead in text, "the example changed: adapt this test"
    text = text.replace(rotation, rotation + '        restrictions:\n'
                        '          - {days: mon-fri, from: "09:00", to: "17:00"}\n')
    env.config_path.write_text(text.replace(lead, ""), "utf-8")


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def app_at(web_env: WebEnv, web_app_with: Callable[..., flask.Flask]
           ) -> Callable[..., tuple[flask.Flask, Clock]]:
    def make(moment: datetime = SATURDAY_NOON, gaps: bool = False) -> tuple[flask.Flask, Clock]:
        if gaps:
            with_gaps(web_env)
        clock = Clock(moment)
        return web_app_with(clock=clock), clock
    return make


def option(data: dict[str, Any], digit: int) -> dict[str, Any]:
    return next(o for o in data["hotlines"] if o["number"] == HOTLINE and o["digit"] == digit)


def test_now_shows_who_rings_now_the_next_change_and_gaps_in_red(
        app_at: Callable[..., tuple[flask.Flask, Clock]], web_env: WebEnv) -> None:
    app, _ = app_at(gaps=True)
    viewer = logged_in(app, web_env, "viewer")
    data = viewer.get("/api/v1/now").get_json()
    first = option(data, 1)
    assert first["now"]["gap"] is True and first["now"]["who"] == "NOBODY to ring"
    # Monday 09:00 the rotation starts again: anna's week (2024-01-01 + whole weeks).
    assert first["next"]["from"] == "2026-12-14T09:00:00+01:00"
    assert first["next"]["gap"] is False and first["next"]["first_level"] in (["anna"],
                                                                            ["bernd"])
    page = viewer.get("/now")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<tr class="gap">' in html and "GAP</strong> NOBODY to ring" in html
    assert "12-14 09:00" in html  # the next change, not today: with its date


def test_now_without_gaps_names_the_people(app_at: Callable[..., tuple[flask.Flask, Clock]],
                                            web_env: WebEnv) -> None:
    app, _ = app_at()
    data = logged_in(app, web_env, "viewer").get("/api/v1/now").get_json()
    first, second = option(data, 1), option(data, 2)
    assert first["now"]["gap"] is False and first["now"]["later"] == ["carla"]
    assert second["now"]["out_of_hours"] is True  # Saturday: the IT team takes databases
    assert second["now"]["who"].startswith("out of hours (policy:it_infra): ")
    assert second["next"]["from"] == "2026-12-14T07:00:00+01:00"  # mon-fri 07:00-20:00
    assert second["next"]["who"].startswith("dirk")  # the database rotation's night layer


def test_calls_in_progress_and_callers_waiting_per_queue(
        app_at: Callable[..., tuple[flask.Flask, Clock]], web_env: WebEnv) -> None:
    app, clock = app_at()
    started = SATURDAY_NOON - timedelta(minutes=2)
    # A hotline caller waiting in option 1's queue, one talking to anna, one in the menu.
    queries.create_call_record("wait-1", HOTLINE, "call_routing", "+4930111", "<b>Eve</b>",
                               started)
    queries.create_incident(HOTLINE, "1", "IT", "+4930111", "<b>Eve</b>", "wait-1", started,
                            answered_at=started)
    queries.create_call_record("talk-1", HOTLINE, "call_routing", "+4930222", None, started)
    talking = queries.create_incident(HOTLINE, "1", "IT", "+4930222", None, "talk-1", started)
    queries.accept_incident(talking.id, "anna", started + timedelta(seconds=30))
    queries.create_call_record("menu-1", HOTLINE, "call_routing", "+4930333", None, started)
    # The sales line: one caller waiting; a call that ended is not shown.
    queries.create_call_record("sales-1", SALES, "queue", "+4930444", None, started)
    queries.mark_answered("sales-1", started)
    queries.create_call_record("gone-1", SALES, "queue", "+4930555", None, started)
    queries.finish_call("gone-1", "abandoned_in_queue", "NORMAL_CLEARING", started)

    viewer = logged_in(app, web_env, "viewer")
    data = viewer.get("/api/v1/now").get_json()
    queues = {queue["name"]: queue for queue in data["queues"]}
    assert [c["call"] for c in queues["hotline_infra"]["waiting"]] == ["wait-1"]
    assert queues["hotline_infra"]["waiting"][0]["seconds"] == 120
    assert [(c["call"], c["with"]) for c in queues["hotline_infra"]["talking"]] == [
        ("talk-1", "anna")]
    assert [c["call"] for c in queues["sales"]["waiting"]] == ["sales-1"]
    assert queues["hotline_database"] == {"name": "hotline_database", "waiting": [],
                                          "talking": []}
    assert [(c["call"], c["state"]) for c in data["other_calls"]] == [("menu-1", "in_menu")]
    assert (data["calls"], data["waiting"]) == (4, 2)

    html = viewer.get("/now").get_data(as_text=True)
    assert "hotline_infra: 1 waiting, 1 talking" in html
    assert "waiting 2:00: +4930111 (&lt;b&gt;Eve&lt;/b&gt;)" in html  # caller text escaped
    assert "<b>Eve</b>" not in html
    assert "in menu 2:00: +4930333" in html

    queries.finish_call("wait-1", "hangup_in_queue", "NORMAL_CLEARING", SATURDAY_NOON)
    clock.moment += timedelta(seconds=3)
    data = viewer.get("/api/v1/now").get_json()
    assert data["waiting"] == 1  # the next poll sees the caller gone


def test_an_override_or_the_time_passing_changes_who_is_on_call_at_once(
        app_at: Callable[..., tuple[flask.Flask, Clock]], web_env: WebEnv) -> None:
    """The on-call answers are kept between polls: a new override of the schedule and the
    next change coming due must still show on the next poll."""
    app, clock = app_at()
    supervisor = logged_in(app, web_env, "supervisor")
    before = option(supervisor.get("/api/v1/now").get_json(), 1)
    assert before["now"]["first_level"] in (["anna"], ["bernd"])
    other = "bernd" if before["now"]["first_level"] == ["anna"] else "anna"
    added = supervisor.api("POST", "/api/v1/oncall/overrides", {
        "schedule": "it_infra", "user": "dirk", "from": "2026-12-12T11:00",
        "to": "2026-12-12T14:00", "reason": "sick"})
    assert added.status_code == 201, added.get_json()
    during = option(supervisor.get("/api/v1/now").get_json(), 1)
    assert during["now"]["first_level"] == ["dirk"]
    assert during["next"]["from"] == "2026-12-12T14:00:00+01:00"
    clock.moment = datetime(2026, 12, 12, 13, 0, 1, tzinfo=UTC)  # 14:00:01 Berlin
    after = option(supervisor.get("/api/v1/now").get_json(), 1)
    assert after["now"]["first_level"] == before["now"]["first_level"] != [other]
    supervisor.api("DELETE", f"/api/v1/oncall/overrides/{added.get_json()['id']}")


def test_agents_on_the_now_page(app_at: Callable[..., tuple[flask.Flask, Clock]],
                                web_env: WebEnv) -> None:
    app, _ = app_at()
    queries.set_presence("eva", SATURDAY_NOON, state="logged_in", busy=True,
                         busy_call_uuid="x-1")
    data = logged_in(app, web_env, "viewer").get("/api/v1/now").get_json()
    agents = {agent["user"]: agent for agent in data["agents"]}
    assert (agents["eva"]["state"], agents["eva"]["busy"]) == ("logged_in", True)
    assert agents["felix"]["state"] == "logged_out"


def test_now_needs_an_account(app_at: Callable[..., tuple[flask.Flask, Clock]],
                              web_env: WebEnv) -> None:
    app, _ = app_at()
    anonymous = logged_in(app, web_env, None)
    assert anonymous.get("/now").status_code == 302
    assert anonymous.get("/api/v1/now").status_code == 401


def test_now_page_polls_its_json(app_at: Callable[..., tuple[flask.Flask, Clock]],
                                 web_env: WebEnv) -> None:
    """The page loads now.js (no inline script: the CSP forbids it) pointed at the API."""
    app, _ = app_at()
    viewer = logged_in(app, web_env, "viewer")
    html = viewer.get("/now").get_data(as_text=True)
    assert 'src="/static/now.js" data-poll="3" data-url="/api/v1/now"' in html
    script = viewer.get("/static/now.js").get_data(as_text=True)
    assert "fetch(url" in script and "innerHTML" not in script
