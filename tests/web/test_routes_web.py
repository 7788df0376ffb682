"""The Inbound routes tab and its API on Flask's test client, against a real SQLite file
made by ``fsrouter db upgrade``: the same checks as ``fsrouter routes set|reset`` (one code
path), all or nothing, the audit trail naming ``web:<account>``, viewers refused."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import run_fsrouter

HOSTILE = "user/1000,${system(x)}"


class Browser:
    """A logged-in test client (tests/web/conftest.py) with short names for the calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.csrf = client.csrf()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, **kwargs)

    def send(self, method: str, url: str, body: Any = None, **kwargs: Any) -> Any:
        return self.client.api(method, url, body, **kwargs)

    def form(self, url: str, data: dict[str, Any], **kwargs: Any) -> Any:
        return self.client.post_form(url, data, **kwargs)


@pytest.fixture
def sam(client: Any) -> Browser:
    """The supervisor of web_env."""
    return Browser(client("supervisor"))


@pytest.fixture
def vera(client: Any) -> Browser:
    """The viewer of web_env."""
    return Browser(client("viewer"))


def db_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(tmp_path / "fsrouter.db")) as conn:
        return conn.execute(sql).fetchall()


def assignments(tmp_path: Path) -> list[tuple[Any, ...]]:
    return db_rows(tmp_path, "SELECT number, route_type, target, changed_by "
                             "FROM number_assignments ORDER BY number")


def audit_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    rows = db_rows(tmp_path, "SELECT who, kind, subject, before, after FROM audit_log "
                             "WHERE kind LIKE 'route.%' ORDER BY id")
    return [(who, kind, subject, json.loads(before) if before else None,
             json.loads(after) if after else None) for who, kind, subject, before, after in rows]


# ---------------------------------------------------------------- the table


def test_the_table_lists_every_number_with_user_type_and_source(sam: Browser):
    html = sam.get("/routes").get_data(as_text=True)
    for number in ("+493023125000", "+493023125201", "+493023125202", "+498941612300",
                   "+493023125200", "+493023125999", "+493023125100"):
        assert f'data-number="{number}"' in html
    assert "<td>Felix Wagner (felix)</td>" in html
    assert "Inbound queue" in html and "Not assigned" in html and "On-call hotline" in html
    assert 'href="/routes/+493023125202"' in html  # a click on a number opens its form
    assert '<dialog id="assign-dialog"' in html


def test_the_api_lists_and_filters_like_the_command(sam: Browser, tmp_path: Path):
    routes = sam.get("/api/v1/routes").get_json()["routes"]
    # The command as its own process: in this one, it would close the app's database.
    listing = json.loads(run_fsrouter("routes", "list", "-c", tmp_path / "config.yaml",
                                      "--json").out)
    assert [r["number"] for r in routes] == [r["number"] for r in listing]
    by_number = {r["number"]: r for r in routes}
    assert (by_number["+493023125202"]["type"], by_number["+493023125202"]["target"],
            by_number["+493023125202"]["source"]) == ("agent", "felix", "yaml")
    agents = sam.get("/api/v1/routes?type=agent").get_json()["routes"]
    assert {r["type"] for r in agents} == {"agent"} and len(agents) == 3
    felix = sam.get("/api/v1/routes?q=FELIX").get_json()["routes"]
    assert [r["number"] for r in felix] == ["+493023125202"]
    assert sam.get("/api/v1/routes?source=db").get_json()["routes"] == []
    bad = sam.get("/api/v1/routes?type=voicemail&source=x")
    assert bad.status_code == 422 and bad.get_json()["errors"][0].startswith("type:")


def test_the_page_filters_on_the_server_too(vera: Browser):
    html = vera.get("/routes?type=queue").get_data(as_text=True)
    assert 'data-number="+493023125200"' in html and 'data-number="+493023125202"' not in html


# ---------------------------------------------------------------- changes through the API


def test_put_sets_one_number_and_audits_the_account(sam: Browser, tmp_path: Path):
    answer = sam.send("PUT", "/api/v1/routes/030 23125 202", {"type": "agent",
                                                              "target": "greta"})
    assert answer.status_code == 200, answer.get_json()
    assert "set +493023125202 -> agent greta" in answer.get_json()["done"]
    assert assignments(tmp_path) == [("+493023125202", "agent", "greta", "web:sam")]
    assert audit_rows(tmp_path) == [("web:sam", "route.set", "+493023125202", None,
                                     {"type": "agent", "target": "greta"})]
    row = {r["number"]: r for r in sam.get("/api/v1/routes").get_json()["routes"]}
    assert (row["+493023125202"]["source"], row["+493023125202"]["changed_by"]) == (
        "db", "web:sam")


def test_validation_errors_are_the_commands_and_nothing_changes(sam: Browser,
                                                                tmp_path: Path):
    unknown = sam.send("PUT", "/api/v1/routes/03023125202", {"type": "agent",
                                                            "target": "gretta"})
    assert unknown.status_code == 422
    assert unknown.get_json()["errors"] == [
        "target: unknown agent 'gretta' (did you mean 'greta'?)",
        "1 problem(s): nothing was changed"]
    hostile = sam.send("PUT", "/api/v1/routes/03023125202", {"type": "custom",
                                                            "target": HOSTILE})
    assert hostile.status_code == 422 and "unsafe custom target" in hostile.get_json()[
        "errors"][0]
    many = sam.send("POST", "/api/v1/routes/assign",
                    {"numbers": ["03023125201", "abc", "0301", "+49 30 23125 201"],
                     "target": "greta"})
    assert many.status_code == 422
    errors = many.get_json()["errors"]
    assert [e.split(":")[0] for e in errors[:-1]] == ["abc", "0301", "+49 30 23125 201"]
    assert "+493023125201 is also given as 03023125201" in errors[2]
    for body in ({"numbers": [], "target": "eva"}, {"numbers": "0301", "target": "eva"},
                 {"numbers": ["03023125201"], "type": "voicemail", "target": "eva"},
                 [1, 2]):
        assert sam.send("POST", "/api/v1/routes/assign", body).status_code == 422, body
    assert sam.send("PUT", "/api/v1/routes/abc", {"type": "unassigned"}).status_code == 422
    assert assignments(tmp_path) == [] and audit_rows(tmp_path) == []


def test_assign_many_then_delete_one_back_to_the_yaml(sam: Browser, tmp_path: Path):
    done = sam.send("POST", "/api/v1/routes/assign",
                    {"numbers": ["03023125201", "+49 30 23125 202"], "target": "greta"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["done"][-1] == ("2 route(s) set by web:sam; they apply to the "
                                           "next call")
    assert [a[:3] for a in assignments(tmp_path)] == [
        ("+493023125201", "agent", "greta"), ("+493023125202", "agent", "greta")]
    back = sam.send("DELETE", "/api/v1/routes/03023125201")
    assert back.status_code == 200
    assert back.get_json()["done"] == [
        "reset +493023125201: the YAML applies: agent eva (2-way)", "1 assignment(s) removed"]
    assert [a[0] for a in assignments(tmp_path)] == ["+493023125202"]
    assert audit_rows(tmp_path)[-1] == ("web:sam", "route.reset", "+493023125201",
                                        {"type": "agent", "target": "greta"}, None)
    everything = sam.send("POST", "/api/v1/routes/reset", {"all": True})
    assert everything.status_code == 200 and assignments(tmp_path) == []


def test_csv_import_lists_every_bad_line_and_writes_nothing(sam: Browser, tmp_path: Path):
    sam.send("PUT", "/api/v1/routes/03023125202", {"type": "agent", "target": "eva"})
    before = assignments(tmp_path)
    csv_text = ("number,type,target\n"
                "030 23125 201,agent,greta\n"            # 2 fine
                "0301234571,agent,nobody\n"              # 3 unknown agent
                "abc,unassigned\n"                       # 4 bad number
                '0301234570,custom,"' + HOSTILE + '"\n'  # 5 unsafe target
                "+49 30 23125 201,queue,sales\n")        # 6 duplicate of line 2
    answer = sam.send("POST", "/api/v1/routes/import", data=csv_text.encode(),
                      headers={"Content-Type": "text/csv"})
    assert answer.status_code == 422
    errors = answer.get_json()["errors"]
    assert [e.split(":")[0] for e in errors[:-1]] == ["line 3", "line 4", "line 5", "line 6"]
    assert "unknown agent 'nobody'" in errors[0]
    assert "+493023125201 is also on line 2" in errors[3]
    assert errors[-1] == "4 problem(s): nothing was changed"
    assert assignments(tmp_path) == before
    bad_utf8 = sam.send("POST", "/api/v1/routes/import", data=b"0301,agent,\xff\n")
    assert bad_utf8.status_code == 422
    assert bad_utf8.get_json()["errors"] == ["the CSV file:1: not valid UTF-8"]
    good = sam.send("POST", "/api/v1/routes/import",
                    data=b"030 23125 201,queue,sales\n+49 30 23125 202,unassigned,\n")
    assert good.status_code == 200, good.get_json()
    assert [a[:3] for a in assignments(tmp_path)] == [
        ("+493023125201", "queue", "sales"), ("+493023125202", "unassigned", None)]


# ---------------------------------------------------------------- the pages' forms


def test_the_change_form_saves_and_shows_errors(sam: Browser, tmp_path: Path):
    form = sam.get("/routes/+493023125202").get_data(as_text=True)
    assert 'value="agent:felix" selected' in form
    wrong = sam.form("/routes/+493023125202", {"destination": "custom:", "custom": HOSTILE})
    assert wrong.status_code == 200
    assert "unsafe custom target" in wrong.get_data(as_text=True)
    saved = sam.form("/routes/+493023125202", {"destination": "queue:sales"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith("/routes")
    assert "set +493023125202 -&gt; queue sales" in sam.get("/routes").get_data(as_text=True)
    assert assignments(tmp_path) == [("+493023125202", "queue", "sales", "web:sam")]


def test_the_assign_and_reset_forms_work_without_javascript(sam: Browser, tmp_path: Path):
    sam.client.post("/routes/assign", data={"csrf_token": sam.csrf, "destination": "agent:eva",
                                            "numbers": ["+493023125202", "+498941612300"]})
    assert [a[:3] for a in assignments(tmp_path)] == [
        ("+493023125202", "agent", "eva"), ("+498941612300", "agent", "eva")]
    sam.client.post("/routes/reset", data={"csrf_token": sam.csrf,
                                           "numbers": ["+493023125202"]})
    assert [a[0] for a in assignments(tmp_path)] == ["+498941612300"]
    refused = sam.client.post("/routes/assign", data={"csrf_token": sam.csrf,
                                                      "destination": "agent:eva"})
    assert refused.status_code == 303
    assert "no numbers given" in sam.get("/routes").get_data(as_text=True)


def test_the_csv_upload_page_shows_every_bad_line_with_its_number(sam: Browser,
                                                                  tmp_path: Path):
    from io import BytesIO

    upload = (BytesIO(b"number,type,target\n0301234571,agent,nobody\n\nabc,unassigned\n"),
              "routes.csv")
    page = sam.form("/routes/import", {"file": upload}, content_type="multipart/form-data")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "line 2: unknown agent &#39;nobody&#39;" in html
    assert "line 4: number &#39;abc&#39;" in html
    assert "2 problem(s): nothing was changed" in html
    assert assignments(tmp_path) == []


# ---------------------------------------------------------------- who may


def test_a_viewer_sees_the_table_but_cannot_change_anything(vera: Browser, tmp_path: Path):
    html = vera.get("/routes").get_data(as_text=True)
    assert 'data-number="+493023125202"' in html
    assert "assign-dialog" not in html and 'href="/routes/+493023125202"' not in html
    assert vera.get("/api/v1/routes").status_code == 200
    for method, url, body in (("PUT", "/api/v1/routes/03023125202", {"type": "unassigned"}),
                              ("POST", "/api/v1/routes/assign",
                               {"numbers": ["03023125202"], "target": "eva"}),
                              ("POST", "/api/v1/routes/reset", {"all": True}),
                              ("DELETE", "/api/v1/routes/03023125202", None)):
        assert vera.send(method, url, body).status_code == 403, url
    assert vera.get("/routes/+493023125202").status_code == 403
    assert vera.form("/routes/+493023125202", {"destination": "unassigned:"}).status_code == 403
    assert assignments(tmp_path) == []


def test_without_a_session_or_csrf_token_nothing_is_changed(client: Any, sam: Browser,
                                                            tmp_path: Path):
    anonymous = client(None)
    assert anonymous.get("/api/v1/routes").status_code == 401
    assert anonymous.get("/routes").status_code == 302
    forged = sam.client.put("/api/v1/routes/03023125202", json={"type": "unassigned"})
    assert forged.status_code == 403
    assert sam.client.post("/routes/+493023125202",
                           data={"destination": "unassigned:"}).status_code == 403
    assert assignments(tmp_path) == []


def test_the_change_form_of_something_that_is_not_a_number_says_so(sam: Browser):
    page = sam.get("/routes/abc")
    assert page.status_code == 200
    assert "abc: " in page.get_data(as_text=True)
    assert "has no route yet" not in page.get_data(as_text=True)
    spare = sam.get("/routes/+49 30 555 0000").get_data(as_text=True)
    assert "has no route yet" in spare


def test_a_script_with_a_token_needs_no_csrf_and_is_audited_by_its_name(web_app: Any,
                                                                         web_env: Any,
                                                                         tmp_path: Path):
    writer = {"Authorization": f"Bearer {web_env.add_token('ops-script', 'supervisor')}"}
    reader = {"Authorization": f"Bearer {web_env.add_token('wallboard', 'viewer')}"}
    script = web_app.test_client()
    # curl --data-binary @routes.csv sends it as a form type: the body is still the CSV.
    done = script.post("/api/v1/routes/import", data=b"030 23125 201,queue,sales\n",
                       headers=writer, content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200, done.get_json()
    assert assignments(tmp_path) == [("+493023125201", "queue", "sales", "web:token:ops-script")]
    assert script.get("/api/v1/routes?source=db", headers=reader).get_json()["routes"][0][
        "changed_by"] == "web:token:ops-script"
    refused = script.delete("/api/v1/routes/03023125201", headers=reader)
    assert refused.status_code == 403
    assert script.delete("/api/v1/routes/03023125201", headers=writer).status_code == 200
    assert [row[:3] for row in audit_rows(tmp_path)] == [
        ("web:token:ops-script", "route.set", "+493023125201"),
        ("web:token:ops-script", "route.reset", "+493023125201")]


def test_the_pop_up_gets_its_agents_and_queues_from_the_api(vera: Browser):
    page = vera.get("/routes").get_data(as_text=True)
    assert "agent:felix" not in page  # not in the page: it stays small with many agents
    lists = vera.get("/api/v1/routes/destinations").get_json()
    assert ["felix", "Felix Wagner (felix)"] in lists["agents"]
    assert ["sales", "sales"] in lists["queues"]
    assert all(agent not in dict(lists["agents"]) for agent in ("anna", "bernd"))  # no phone


def test_the_page_stays_under_100_kb_with_1000_agents_and_100_numbers(sam: Browser,
                                                                       web_env: Any):
    import yaml

    config = yaml.safe_load(web_env.config_path.read_text(encoding="utf-8"))
    for n in range(1000):
        config["users"][f"agent{n:04d}"] = {
            "name": f"Agent Nummer {n:04d}",
            "phones": [{"type": "sip", "dial_string": f"user/{2000 + n}"}]}
    config["numbers"] += [{"number": f"+49 30 4000 {n:04d}", "type": "agent",
                           "agent": f"agent{n:04d}", "name": f"Durchwahl {n}"}
                          for n in range(100)]
    web_env.config_path.write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    page = sam.get("/routes")  # the console reads the changed file
    assert page.get_data(as_text=True).count('<tr data-number="') == 107
    assert len(page.get_data()) < 100_000, len(page.get_data())
    assert len(sam.get("/api/v1/routes/destinations").get_json()["agents"]) == 1003
