"""The On call page and /api/v1/oncall (issue 20.3-4): two weeks per option as a timeline,
run-time overrides added and removed there with the checks of ``fsrouter oncall override``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import flask
import pytest

from fsrouter.store import overrides
from tests.web.conftest import WebEnv, logged_in
from tests.web.test_now import Clock, with_gaps

# Wednesday 2026-12-16 10:00 Berlin (after the accounts were made).
WEDNESDAY = datetime(2026, 12, 16, 9, 0, tzinfo=UTC)


@pytest.fixture
def at_wednesday(web_env: WebEnv, web_app_with: Callable[..., flask.Flask]
                 ) -> Callable[[str | None], Any]:
    app = web_app_with(clock=Clock(WEDNESDAY))
    return lambda role: logged_in(app, web_env, role)


def rows() -> list[Any]:
    return overrides.list_overrides()


def test_two_weeks_per_option_as_a_timeline(web_env: WebEnv,
                                            web_app_with: Callable[..., flask.Flask]) -> None:
    with_gaps(web_env)
    viewer = logged_in(web_app_with(clock=Clock(WEDNESDAY)), web_env, "viewer")
    html = viewer.get("/oncall").get_data(as_text=True)
    assert html.count('<svg class="bar"') == 2  # the hotline's two options
    assert "Two weeks from Wed 16 Dec" in html
    days = re.findall(r"<li>(\w\w\w)<br>(\d+)</li>", html)
    assert days[0] == ("Wed", "16") and days[-1] == ("Tue", "29") and len(days) == 28
    # Wednesday 00:00-09:00 is a gap (the changed rotation works 09:00-17:00 on weekdays):
    # 9 hours of 14 days = 2.679% of the bar, from its left edge.
    assert '<rect class="gap" x="0.0" y="0" width="2.679" height="10">' in html
    assert "Wed 16 Dec 00:00 to Wed 16 Dec 09:00: <strong class=\"gap-word\">GAP</strong>" \
        in html
    assert '<rect class="now" x="2.976"' in html  # 10:00 Berlin
    # What each colour stands for, under the bar.
    assert re.search(r'<li><span class="swatch on-0"></span> (anna|bernd)</li>', html)
    assert "Add an override" not in html  # a viewer


def test_supervisor_adds_and_removes_an_override_on_the_page(
        at_wednesday: Callable[[str | None], Any], web_env: WebEnv) -> None:
    supervisor = at_wednesday("supervisor")
    page = supervisor.get("/oncall").get_data(as_text=True)
    assert 'value="2026-12-16T11:00"' in page and 'value="2026-12-17T11:00"' in page
    done = supervisor.post_form("/oncall/overrides", {
        "schedule": "it_infra", "user": "carla", "from": "2026-12-16T11:00",
        "to": "2026-12-17T11:00", "reason": "Anna is sick"}, follow_redirects=True)
    html = done.get_data(as_text=True)
    assert "override #1: carla is on call for it_infra from 2026-12-16 11:00 to " \
        "2026-12-17 11:00; it applies to the next call" in html
    assert 'id="override-1"' in html and "web:sam" in html and "Anna is sick" in html
    assert "it_infra: run-time override #1 (Anna is sick)" in html  # in the segments
    [row] = rows()
    assert (row.user_id, row.created_by) == ("carla", "web:sam")
    removed = supervisor.post_form("/oncall/overrides/1/remove", follow_redirects=True)
    assert "removed override #1: carla for it_infra" in removed.get_data(as_text=True)
    assert rows() == []
    audit = [(e.kind, e.who) for e in web_env.audit("override.")]
    assert sorted(audit) == [("override.add", "web:sam"), ("override.remove", "web:sam")]


def test_the_page_shows_every_problem_and_writes_nothing(
        at_wednesday: Callable[[str | None], Any], web_env: WebEnv) -> None:
    supervisor = at_wednesday("supervisor")
    bad = supervisor.post_form("/oncall/overrides", {
        "schedule": "it_infr", "user": "karla", "from": "2026-12-17T11:00",
        "to": "2026-12-16T11:00"}, follow_redirects=True)
    html = bad.get_data(as_text=True)
    assert "unknown user &#39;karla&#39; (did you mean &#39;carla&#39;?)" in html
    assert "unknown schedule &#39;it_infr&#39; (did you mean &#39;it_infra&#39;?)" in html
    assert "must be after --from" in html and "3 problem(s): nothing was changed" in html
    assert rows() == [] and web_env.audit("override.") == []
    supervisor.post_form("/oncall/overrides", {"schedule": "it_infra", "user": "carla",
                                               "from": "2026-12-16T11:00",
                                               "to": "2026-12-17T11:00"})
    overlap = supervisor.post_form("/oncall/overrides", {
        "schedule": "it_infra", "user": "dirk", "from": "2026-12-17T10:00",
        "to": "2026-12-18T10:00"}, follow_redirects=True).get_data(as_text=True)
    assert "overlaps override #1: carla for it_infra" in overlap
    assert len(rows()) == 1
    missing = supervisor.post_form("/oncall/overrides", {"schedule": "it_infra"},
                                   follow_redirects=True).get_data(as_text=True)
    assert "user: required" in missing and "from: required" in missing


def test_a_viewer_cannot_add_or_remove(at_wednesday: Callable[[str | None], Any],
                                       web_env: WebEnv) -> None:
    supervisor = at_wednesday("supervisor")
    supervisor.post_form("/oncall/overrides", {"schedule": "it_infra", "user": "carla",
                                               "from": "2026-12-16T11:00",
                                               "to": "2026-12-17T11:00"})
    viewer = at_wednesday("viewer")
    assert "Remove #1" not in viewer.get("/oncall").get_data(as_text=True)
    assert viewer.post_form("/oncall/overrides", {
        "schedule": "it_infra", "user": "dirk", "from": "2026-12-20T11:00",
        "to": "2026-12-21T11:00"}).status_code == 403
    assert viewer.post_form("/oncall/overrides/1/remove").status_code == 403
    assert viewer.api("DELETE", "/api/v1/oncall/overrides/1").status_code == 403
    assert len(rows()) == 1 and len(web_env.audit("override.")) == 1


def test_api(at_wednesday: Callable[[str | None], Any]) -> None:
    supervisor = at_wednesday("supervisor")
    data = supervisor.get("/api/v1/oncall?days=2").get_json()
    assert data["from"] == "2026-12-16T10:00:00+01:00" and data["to"].startswith("2026-12-18")
    assert [o["digit"] for o in data["options"]] == [1, 2] and data["gaps"] == 0
    for query in ("days=0", "days=32", "days=x", "from=tomorrow"):
        assert supervisor.get(f"/api/v1/oncall?{query}").status_code == 422
    for body in (None, [], {"schedule": "it_infra"},
                 {"schedule": "it_infra", "user": "carla", "from": 1, "to": "x"}):
        assert supervisor.api("POST", "/api/v1/oncall/overrides", body).status_code == 422
    added = supervisor.api("POST", "/api/v1/oncall/overrides", {
        "schedule": "database", "user": "anna", "from": "2026-12-16T12:00+01:00",
        "to": "2026-12-16T18:00+01:00"})
    assert added.status_code == 201
    item = added.get_json()
    assert (item["user"], item["from"], item["created_by"], item["active"]) == (
        "anna", "2026-12-16T12:00:00+01:00", "web:sam", False)
    clash = supervisor.api("POST", "/api/v1/oncall/overrides", {
        "schedule": "database", "user": "dirk", "from": "2026-12-16T17:00",
        "to": "2026-12-16T19:00"})
    assert clash.status_code == 422 and clash.get_json()["errors"][-1] == "nothing was changed"
    listed = supervisor.get("/api/v1/oncall/overrides").get_json()
    assert [o["id"] for o in listed] == [item["id"]]
    segments = supervisor.get("/api/v1/oncall?days=1").get_json()["options"][1]["segments"]
    assert any(origin["source"] == "run-time override" and origin["user"] == "anna"
               for segment in segments for origin in segment["origins"])
    assert supervisor.api("DELETE", "/api/v1/oncall/overrides/99").status_code == 422
    removed = supervisor.api("DELETE", f"/api/v1/oncall/overrides/{item['id']}")
    assert removed.status_code == 200 and removed.get_json()["removed"][0]["id"] == item["id"]
    assert supervisor.get("/api/v1/oncall/overrides").get_json() == []


def test_many_hotlines_are_drawn_one_number_at_a_time(
        web_env: WebEnv, web_app_with: Callable[..., flask.Flask]) -> None:
    """Past five hotline numbers the page draws one (two weeks of a large configuration take
    seconds to work out): the first, or the one picked."""
    extra = "".join(f"  - number: +49 30 23125 30{i}\n    type: call_routing\n"
                    "    options:\n      - {digit: 1, label: Extra, policy: it_infra}\n"
                    for i in range(5))
    web_env.config_path.write_text(web_env.config_path.read_text("utf-8") + extra, "utf-8")
    viewer = logged_in(web_app_with(clock=Clock(WEDNESDAY)), web_env, "viewer")
    first = viewer.get("/oncall").get_data(as_text=True)
    assert first.count('<svg class="bar"') == 2 and "+493023125000 (Bereitschaft IT), key 2" \
        in first
    assert '<option value="+493023125304">' in first and 'value="all"' not in first
    picked = viewer.get("/oncall?number=%2B493023125304").get_data(as_text=True)
    assert picked.count('<svg class="bar"') == 1 and "+493023125304, key 1: Extra" in picked
    assert viewer.get("/oncall?number=all").get_data(as_text=True).count(
        '<svg class="bar"') == 2  # refused: the first number again


def test_the_api_answers_what_the_command_prints(at_wednesday: Callable[[str | None], Any],
                                                 web_env: WebEnv) -> None:
    """One code path: /api/v1/oncall and ``fsrouter oncall --json`` (a real process on the
    same files) give the same options, with the same run-time override in them."""
    import json
    import subprocess
    import sys

    supervisor = at_wednesday("supervisor")
    assert supervisor.api("POST", "/api/v1/oncall/overrides", {
        "schedule": "it_infra", "user": "dirk", "from": "2026-12-16T12:00",
        "to": "2026-12-16T20:00", "reason": "swap"}).status_code == 201
    moment = "2026-12-16T10:00:00+01:00"
    api = supervisor.get(f"/api/v1/oncall?from={moment.replace('+', '%2B')}&days=3"
                         ).get_json()
    done = subprocess.run([sys.executable, "-m", "fsrouter", "oncall", "-c",
                           str(web_env.config_path), "--from", moment, "--days", "3", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert api["options"] == printed["options"] and api["gaps"] == printed["gaps"] == 0
    assert any(origin["reason"] == "swap" for option in api["options"]
               for segment in option["segments"] for origin in segment["origins"])
