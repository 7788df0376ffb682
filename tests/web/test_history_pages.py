"""Incidents and calls, Voicemails, Audit (issue 20.3 and their API, 20.4) through Flask's
test client against a real SQLite file filled by the store's call-flow functions
(tests/store/history_seed.py: a night at the hotline)."""

from __future__ import annotations

import os
import re
import wave
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fsrouter.store import queries as q
from fsrouter.store.models import AuditEntry, Voicemail
from fsrouter.web.sample import write_recording
from tests.store.history_seed import HOTLINE, Night, at, seed
from tests.web.conftest import WebEnv

Client = Callable[[str | None], Any]


@pytest.fixture
def night(web_env: WebEnv) -> Night:
    return seed()


@pytest.fixture
def recording(web_env: WebEnv, night: Night) -> tuple[int, Path]:
    """A voicemail whose WAV is inside the configured voicemail directory."""
    path = web_env.directory / "voicemail" / "c-9.wav"
    write_recording(path, 2.0)
    row = q.record_voicemail("eva", str(path), at(400), call_uuid="c-9",
                             caller_number="+4989123456", duration_s=2.0)
    return row.id, path


def page(client: Any, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return str(response.get_data(as_text=True))


def api(client: Any, url: str, status: int = 200) -> Any:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return response.get_json()


def rows_of(html: str) -> str:
    """The table's body (the form and hints above it name kinds too)."""
    return html[html.index("<tbody>"):]


def incident_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/incidents/(\d+)"', html)]


def test_incidents_filter_and_page(client: Client, night: Night):
    # 60 more incidents on the option-1 line after the night: 62 in all, 50 a page.
    extra = [q.create_incident(HOTLINE, "1", "IT-Infrastruktur", f"+49301234{n:03d}", None,
                               None, at(400 + n)).id for n in range(60)]
    viewer = client("viewer")
    first = page(viewer, "/incidents")
    assert incident_ids(first) == extra[::-1][:50]  # newest first
    assert 'href="/incidents?page=2"' in first and "Newer" not in first
    second = page(viewer, "/incidents?page=2")
    assert incident_ids(second) == [*extra[::-1][50:], night.unanswered, night.accepted]
    assert "Older" not in second and 'href="/incidents" rel="prev"' in second
    # Time range (local time of defaults.timezone, as the browser's datetime-local sends it)
    # and state: only the night's unanswered incident.
    only = page(viewer, "/incidents?since=2026-12-05T03:00&until=2026-12-05T04:00&state=open")
    assert incident_ids(only) == [night.unanswered]
    assert "Datenbanken" in only and "nobody_answered" in only
    # A number in any form the configuration accepts (the commands' parse_number).
    assert len(incident_ids(page(viewer, "/incidents?number=030+23125+000"))) == 50
    assert incident_ids(page(viewer, "/incidents?number=03023125201")) == []
    # A filter the commands refuse: the page says why, with the form, and lists nothing.
    refused = page(viewer, "/incidents?since=yesterday&state=bogus")
    assert "not an ISO date" in refused and incident_ids(refused) == []
    assert 'value="yesterday"' in refused
    # The API: the CLI's JSON items, oldest first within the page, limit and offset.
    data = api(viewer, "/api/v1/incidents?limit=2&offset=60")
    assert [item["id"] for item in data["items"]] == [night.accepted, night.unanswered]
    assert data["more"] is False
    data = api(viewer, "/api/v1/incidents?limit=2")
    assert [item["id"] for item in data["items"]] == extra[-2:] and data["more"] is True
    assert data["items"][0]["created_at"].endswith("+01:00")
    errors = api(viewer, "/api/v1/incidents?limit=5000", 422)["errors"]
    assert errors == ["limit: a whole number 1-1000, got '5000'"]
    assert "--state must be one of" in api(viewer, "/api/v1/incidents?state=x", 422)[
        "errors"][0]


def test_an_incident_shows_its_attempt_timeline(client: Client, night: Night):
    viewer = client("viewer")
    html = page(viewer, f"/incidents/{night.accepted}")
    rows = re.findall(r'<td data-label="Who">(\w+)</td>.*?<td data-label="Rang at">([^<]+)'
                      r'</td>.*?<td data-label="Outcome"><span[^>]*>(\w+)</span> \((\w+)\)',
                      html, re.S)
    assert rows == [("anna", "2026-12-05 02:10 +01:00", "no_answer", "NO_ANSWER"),
                    ("bernd", "2026-12-05 02:11 +01:00", "accepted", "NORMAL_CLEARING")]
    # The chart: one bar per attempt from the menu choice (x=160) to bernd's acceptance
    # (x=980, 48 s later): anna rang 6-30 s, bernd 30-48 s.
    bars = [(int(x), int(w)) for x, w in re.findall(
        r'<rect class="hist-bar [^"]*" x="(\d+)" y="\d+" width="(\d+)"', html)]
    assert bars == [(262, 410), (672, 308)]
    assert "48 s</text>" in html
    assert "accepted by bernd" in html and "incident resolved (call ended)" in html
    data = api(viewer, f"/api/v1/incidents/{night.unanswered}")
    assert [(a["user"], a["result"]) for a in data["attempts"]] == [("dirk", "no_answer")]
    assert data["voicemails"][0]["mail"] == "failed"
    # Unknown ids: 404 on the page and the API; an id past the converter's bound too.
    assert "no incident 999" in page(viewer, "/incidents/999", 404)
    assert api(viewer, "/api/v1/incidents/999", 404) == {"errors": ["no incident 999"]}
    page(viewer, "/incidents/99999999999999999999999", 404)
    page(viewer, "/incidents/-1", 404)


def test_calls_filter_and_api(client: Client, night: Night):
    viewer = client("viewer")
    html = page(viewer, "/calls")
    assert html.index("+4989123456") < html.index("+4917012345678")  # newest first
    assert f'href="/incidents/{night.accepted}"' in html
    assert "=HYPERLINK(1)" in html  # a caller's text shown as text (Jinja escapes it)
    one = page(viewer, "/calls?number=030%2023125%20201")
    assert "+4989123456" in one and "+4917012345678" not in one
    data = api(viewer, "/api/v1/calls?outcome=bridged")
    assert [(c["call_uuid"], c["attempts"]) for c in data["items"]] == [("c-1", 2), ("c-3", 0)]
    bad = api(viewer, "/api/v1/calls?number=12ab", 422)["errors"]
    assert bad[0].startswith("--number '12ab'")


def test_the_api_needs_a_session_or_a_token(client: Client, web_env: WebEnv, night: Night):
    anonymous = client(None)
    for url in ("/api/v1/incidents", "/api/v1/calls", "/api/v1/voicemails", "/api/v1/audit",
                f"/api/v1/voicemails/{night.voicemail}/audio"):
        assert anonymous.get(url).status_code == 401, url
    assert anonymous.get("/voicemails").status_code == 302
    token = web_env.add_token("script", "viewer")
    response = anonymous.get("/api/v1/calls", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and len(response.get_json()["items"]) == 3


def test_a_voicemail_plays_with_ranges(client: Client, recording: tuple[int, Path]):
    voicemail_id, path = recording
    viewer = client("viewer")
    html = page(viewer, "/voicemails")
    assert f'<audio controls preload="none" src="/voicemails/{voicemail_id}/audio"' in html
    whole = viewer.get(f"/voicemails/{voicemail_id}/audio")
    assert whole.status_code == 200 and whole.data == path.read_bytes()
    assert whole.headers["Content-Type"] == "audio/wav"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = viewer.get(f"/voicemails/{voicemail_id}/audio", headers={"Range": "bytes=44-143"})
    assert part.status_code == 206 and part.data == path.read_bytes()[44:144]
    assert part.headers["Content-Range"] == f"bytes 44-143/{path.stat().st_size}"
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == 16000
    assert viewer.get(f"/api/v1/voicemails/{voicemail_id}/audio").data == path.read_bytes()
    # The API never shows the server's file path.
    items = api(viewer, "/api/v1/voicemails?user=eva")["items"]
    assert [item["id"] for item in items] == [voicemail_id] and "path" not in items[0]


def test_a_voicemail_file_outside_the_directory_is_refused(
        client: Client, web_env: WebEnv, night: Night, recording: tuple[int, Path]):
    viewer = client("viewer")
    secret = web_env.directory / "web-secret-copy"
    secret.write_bytes(b"not for the browser")
    folder = web_env.directory / "voicemail"
    cases = {
        night.voicemail: "/var/lib/fsrouter/voicemail/1.wav",  # the seed's path: elsewhere
        recording[0]: str(folder / ".." / "web-secret-copy"),  # dot-dot out of the folder
    }
    link = folder / "link.wav"
    os.symlink(secret, link)
    linked = q.record_voicemail("eva", str(link), at(401), duration_s=1.0).id
    cases[linked] = str(link)  # a symbolic link inside that points out
    for voicemail_id, stored in cases.items():
        Voicemail.update(path=stored).where(Voicemail.id == voicemail_id).execute()
        for url in (f"/voicemails/{voicemail_id}/audio",
                    f"/api/v1/voicemails/{voicemail_id}/audio"):
            response = viewer.get(url)
            assert response.status_code == 403, (stored, response.status_code)
            assert b"not for the browser" not in response.data
    missing = q.record_voicemail("eva", str(folder / "gone.wav"), at(402)).id
    assert viewer.get(f"/voicemails/{missing}/audio").status_code == 404
    assert viewer.get("/voicemails/424242/audio").status_code == 404
    assert viewer.get("/voicemails/..%2F..%2Fetc%2Fpasswd/audio").status_code == 404


def test_a_supervisor_retries_a_failed_mail_a_viewer_cannot(
        client: Client, web_env: WebEnv, night: Night):
    viewer = client("viewer")
    html = page(viewer, "/voicemails?mail=failed")
    assert "SMTP 550 mailbox unavailable" in html and "Send the mail again" not in html
    refused = viewer.post_form(f"/voicemails/{night.voicemail}/retry")
    assert refused.status_code == 403
    assert viewer.api("POST", f"/api/v1/voicemails/{night.voicemail}/retry").status_code == 403
    assert web_env.audit("delivery.") == []
    supervisor = client("supervisor")
    assert "Send the mail again" in page(supervisor, "/voicemails")
    forged = supervisor.post(f"/voicemails/{night.voicemail}/retry")  # no CSRF token
    assert forged.status_code == 403 and web_env.audit("delivery.") == []
    done = supervisor.post_form(f"/voicemails/{night.voicemail}/retry")
    assert done.status_code == 302 and done.headers["Location"].endswith("/voicemails")
    assert "the mail is due again" in page(supervisor, "/voicemails")
    row = Voicemail.get_by_id(night.voicemail)
    assert row.email_gave_up_at is None and row.email_next_at is not None
    [entry] = web_env.audit("delivery.")
    assert (entry.kind, entry.subject, entry.who) == ("delivery.retry",
                                                      f"mail:{night.voicemail}", "web:sam")
    # Again: nothing failed any more, the command's refusal as the API's 422.
    again = supervisor.api("POST", f"/api/v1/voicemails/{night.voicemail}/retry")
    assert again.status_code == 422
    assert again.get_json() == {"errors": [f"no failed voicemail mail {night.voicemail}: "
                                           "nothing was changed"]}
    # A token script retries the webhook through the deliveries API (no CSRF for tokens).
    token = web_env.add_token("ops-script", "supervisor")
    hooks = client(None).post("/api/v1/deliveries/retry", json={"ids": [
        f"webhook:{night.webhook}"]}, headers={"Authorization": f"Bearer {token}"})
    assert hooks.status_code == 200 and hooks.get_json() == {
        "retried": [f"webhook:{night.webhook}"]}
    assert [e.who for e in web_env.audit("delivery.")] == ["web:sam", "web:token:ops-script"]
    bad = supervisor.api("POST", "/api/v1/deliveries/retry", {"ids": ["mail:x"]})
    assert bad.status_code == 422 and "an id is mail:N or webhook:N" in bad.get_json()[
        "errors"][0]


def test_audit_filters(client: Client, web_env: WebEnv, night: Night):
    base = at(500)
    for n, (kind, subject, who) in enumerate([
            ("route.set", "+493023125201", "cli:anna"), ("route.reset", "+493023125201",
                                                         "web:sam"),
            ("agent.login", "eva", "phone:eva"), ("override.add", "it_infra#1", "web:sam")]):
        AuditEntry.create(at=base + timedelta(minutes=n), who=who, kind=kind,
                          subject=subject, before=None, after='{"type": "agent"}')
    viewer = client("viewer")
    html = rows_of(page(viewer, "/audit"))
    assert html.index("override.add") < html.index("route.set")  # newest first
    assert "type=<wbr>agent" in html
    routes = rows_of(page(viewer, "/audit?kind=route.&subject=030+23125+201"))
    assert "route.set" in routes and "route.reset" in routes and "agent.login" not in routes
    data = api(viewer, "/api/v1/audit?who=web:sam")
    assert [e["kind"] for e in data["items"]] == ["route.reset", "override.add"]
    # The accounts' own entries are newer (made now): a range before them.
    older = api(viewer, "/api/v1/audit?until=2026-12-05T11:00&limit=1&offset=1")["items"]
    assert [e["kind"] for e in older] == ["agent.login"]
    assert "at most 128 printable" in page(viewer, "/audit?who=" + "x" * 150)
