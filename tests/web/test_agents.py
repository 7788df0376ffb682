"""The Agents page and /api/v1/agents (issue 20.3-4): presence, busy, since; a supervisor
logs agents in and out (the checks of ``fsrouter agents``, audited as web:<account>)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fsrouter.store import queries
from tests.web.conftest import WebEnv


def state(user: str) -> str | None:
    row = queries.get_presence(user)
    return row.state if row else None


def test_viewer_sees_agents_but_no_buttons(client: Callable[[str | None], Any]) -> None:
    queries.set_presence("felix", datetime(2026, 12, 5, 8, 30, tzinfo=UTC), state="logged_in",
                         busy=True, busy_call_uuid="c-1")
    viewer = client("viewer")
    html = viewer.get("/agents").get_data(as_text=True)
    for agent in ("eva", "felix", "greta"):
        assert f'id="agent-{agent}"' in html
    assert 'id="agent-anna"' not in html  # no SIP phone, no extension: not an agent
    assert '<tr id="agent-felix" class="logged_in busy">' in html
    assert "2026-12-05 09:30" in html  # since, in Europe/Berlin
    assert "never logged in" in html  # eva
    assert "Log in eva" not in html and "csrf_token" not in html.split("<main")[1]
    listed = {a["user"]: a for a in viewer.get("/api/v1/agents").get_json()}
    assert listed["felix"] == {"user": "felix", "name": "Felix Wagner", "extension": "1002",
                               "state": "logged_in", "busy": True,
                               "since": "2026-12-05T09:30:00+01:00"}


def test_viewer_cannot_log_agents_in_or_out(client: Callable[[str | None], Any],
                                            web_env: WebEnv) -> None:
    viewer = client("viewer")
    assert viewer.post_form("/agents/eva/login").status_code == 403
    assert viewer.api("POST", "/api/v1/agents/login", {"agents": ["eva"]}).status_code == 403
    assert state("eva") is None and web_env.audit("agent.") == []


def test_supervisor_logs_an_agent_in_and_out_with_the_buttons(
        client: Callable[[str | None], Any], web_env: WebEnv) -> None:
    supervisor = client("supervisor")
    html = supervisor.get("/agents").get_data(as_text=True)
    assert 'action="/agents/eva/login"' in html and "Log in eva" in html
    done = supervisor.post_form("/agents/eva/login", follow_redirects=True)
    assert done.status_code == 200
    page = done.get_data(as_text=True)
    assert "eva: logged in" in page and 'action="/agents/eva/logout"' in page
    assert state("eva") == "logged_in"
    supervisor.post_form("/agents/eva/logout")
    assert state("eva") == "logged_out"
    audit = [(e.kind, e.subject, e.who) for e in web_env.audit("agent.")]
    assert sorted(audit) == [("agent.login", "eva", "web:sam"), ("agent.logout", "eva", "web:sam")]


def test_a_form_without_the_csrf_token_changes_nothing(
        client: Callable[[str | None], Any]) -> None:
    supervisor = client("supervisor")
    assert supervisor.post("/agents/eva/login").status_code == 403
    assert state("eva") is None


def test_api_changes_all_named_agents_or_none(client: Callable[[str | None], Any],
                                              web_env: WebEnv) -> None:
    supervisor = client("supervisor")
    refused = supervisor.api("POST", "/api/v1/agents/login", {"agents": ["eva", "anna", "evx"]})
    assert refused.status_code == 422
    errors = refused.get_json()["errors"]
    assert "anna is not an agent: no SIP phone or extension to ring" in errors
    assert any(line.startswith("unknown agent 'evx'") for line in errors)
    assert errors[-1] == "2 problem(s): nothing was changed"
    assert state("eva") is None and web_env.audit("agent.") == []
    for body in (None, {"agents": "eva"}, {"agents": []}, {"agents": [3]}):
        assert supervisor.api("POST", "/api/v1/agents/login", body).status_code == 422
    assert supervisor.api("POST", "/api/v1/agents/sleep", {"agents": ["eva"]}
                          ).status_code == 404
    done = supervisor.api("POST", "/api/v1/agents/login", {"agents": ["eva", "felix"]})
    assert done.status_code == 200
    assert done.get_json()["changes"] == ["eva: logged in", "felix: logged in"]
    assert (state("eva"), state("felix")) == ("logged_in", "logged_in")


def test_a_token_logs_agents_in_without_csrf(client: Callable[[str | None], Any],
                                             web_env: WebEnv) -> None:
    token = web_env.add_token("dialler", "supervisor")
    anonymous = client(None)
    headers = {"Authorization": f"Bearer {token}"}
    done = anonymous.post("/api/v1/agents/login", json={"agents": ["greta"]}, headers=headers)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["changes"] == ["greta: logged in"]
    audit = [(e.kind, e.who) for e in web_env.audit("agent.")]
    assert audit == [("agent.login", "web:token:dialler")]
    assert anonymous.get("/api/v1/agents").status_code == 401


def test_the_api_lists_what_the_command_prints(client: Callable[[str | None], Any],
                                               web_env: WebEnv) -> None:
    """One code path: /api/v1/agents and ``fsrouter agents list --json`` (a real process)."""
    import json
    import subprocess
    import sys

    supervisor = client("supervisor")
    supervisor.api("POST", "/api/v1/agents/login", {"agents": ["greta"]})
    done = subprocess.run([sys.executable, "-m", "fsrouter", "agents", "list", "--json", "-c",
                           str(web_env.config_path)],
                          capture_output=True, text=True, timeout=120, check=True)
    assert supervisor.get("/api/v1/agents").get_json() == json.loads(done.stdout)
