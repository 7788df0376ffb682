"""The console's security rules (issue 20, point 2) through Flask's test client: every URL
rule of the app walked, with the real store (SQLite file) and real argon2 hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest

from fsrouter.web.app import PAGES
from tests.web import probe
from tests.web.conftest import ACCOUNTS, WebEnv, logged_in

CHANGE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
PUBLIC = {"static", "login.login"}
PROBE = "tests.web.probe"


@pytest.fixture
def web_app(web_app_with: Callable[..., flask.Flask]) -> flask.Flask:
    """The console with every page of PAGES and the undecorated probe page (``client``
    logs in here too)."""
    return web_app_with(pages=(*PAGES, PROBE))


@pytest.fixture
def app(web_app: flask.Flask) -> flask.Flask:
    return web_app


@pytest.fixture(autouse=True)
def _probe_changes() -> Iterator[None]:
    probe.CHANGES.clear()
    yield
    probe.CHANGES.clear()


def urls(app: flask.Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule and method, arguments filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        values = {name: _sample(rule, name) for name in rule.arguments}
        with app.test_request_context():
            url = flask.url_for(rule.endpoint, **values)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, url))
    return found


def _sample(rule: Any, name: str) -> Any:
    converter = type(rule._converters[name]).__name__
    return {"IntegerConverter": 1, "FloatConverter": 1.0, "UUIDConverter":
            "3fa85f64-5717-4562-b3fc-2c963f66afa6"}.get(converter, "x")


def changes(app: flask.Flask) -> list[tuple[str, str, str]]:
    return [(e, m, u) for e, m, u in urls(app) if m in CHANGE_METHODS and e != "login.logout"]


def is_login_redirect(response: Any) -> bool:
    return response.status_code == 302 and response.location.startswith("/login")


def test_no_page_or_api_without_a_session_or_token(app, web_env):
    everything = urls(app)
    assert {"login.home", "login.account", "login.logout", "probe.page", "probe.api"} <= {
        endpoint for endpoint, _, _ in everything}
    anonymous = logged_in(app, web_env, None)
    for endpoint, method, url in everything:
        for headers in ({}, {"Authorization": "Bearer fsr_not-a-token"},
                        {"Authorization": "Basic dmVyYTp2ZXJh"}):
            response = anonymous.open(url, method=method, headers=headers,
                                      data={"csrf_token": anonymous.csrf()})
            where = f"{method} {url} ({endpoint}) with {headers}"
            if url.startswith("/api/"):
                assert response.status_code == 401, where
                assert response.get_json()["errors"], where
            else:
                assert is_login_redirect(response), where
    assert probe.CHANGES == []


def test_a_viewer_gets_403_on_every_change(app, client):
    viewer = client("viewer")
    walked = changes(app)
    assert ("probe.page", "POST", "/probe") in walked
    for endpoint, method, url in walked:
        response = viewer.open(url, method=method, data={"csrf_token": viewer.csrf()},
                               headers={"X-CSRF-Token": viewer.csrf()})
        assert response.status_code == 403, f"{method} {url} ({endpoint})"
        assert "viewer" in response.get_data(as_text=True)
    assert probe.CHANGES == []
    assert viewer.get("/probe").get_data(as_text=True) == "probe GET by web:vera"


def test_every_change_needs_the_csrf_token(app, client):
    supervisor = client("supervisor")
    for endpoint, method, url in changes(app):
        for given in ({}, {"csrf_token": "wrong"}):
            response = supervisor.open(url, method=method, data=given)
            assert response.status_code == 403, f"{method} {url} ({endpoint}) {given}"
            assert "CSRF" in response.get_data(as_text=True)
        response = supervisor.open(url, method=method, headers={"X-CSRF-Token": "wrong"})
        assert response.status_code == 403
    assert probe.CHANGES == []
    # With the session's token (form field or header) the same changes go through.
    assert supervisor.post_form("/probe").status_code == 200
    assert supervisor.api("PUT", "/api/v1/probe/7", {"a": 1}).get_json()["who"] == "web:sam"
    assert probe.CHANGES == ["web:sam", "web:sam"]


def test_the_csrf_token_of_another_session_does_not_do(app, web_env):
    sam = logged_in(app, web_env, "supervisor")
    other = logged_in(app, web_env, "supervisor")
    assert sam.csrf() != other.csrf()
    response = sam.post("/probe", data={"csrf_token": other.csrf()})
    assert response.status_code == 403 and probe.CHANGES == []


def test_log_in_and_log_out_forms_need_the_csrf_token(app, web_env):
    anonymous = logged_in(app, web_env, None)
    name, password = ACCOUNTS["supervisor"]
    response = anonymous.post("/login", data={"name": name, "password": password})
    assert response.status_code == 403
    assert is_login_redirect(anonymous.get("/account"))
    sam = logged_in(app, web_env, "supervisor")
    assert sam.post("/logout").status_code == 403
    assert sam.get("/account").status_code == 200  # still logged in
    assert sam.post_form("/logout").status_code == 302
    assert is_login_redirect(sam.get("/account"))
    vera = logged_in(app, web_env, "viewer")  # a viewer may log out (her own session)
    assert vera.post("/logout").status_code == 403
    assert vera.post_form("/logout").status_code == 302
    assert is_login_redirect(vera.get("/account"))


# ---------------------------------------------------------------- tokens


def test_a_token_authenticates_and_is_exempt_from_csrf(app, web_env):
    token = web_env.add_token("nightly-script", "supervisor")
    viewer_token = web_env.add_token("dashboard", "viewer")
    bare = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    response = bare.put("/api/v1/probe/3", json={}, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["who"] == "web:token:nightly-script"
    assert bare.post("/probe", headers=auth).status_code == 200
    assert probe.CHANGES == ["web:token:nightly-script"] * 2
    # A viewer's token reads, and cannot change.
    viewer = {"Authorization": f"Bearer {viewer_token}"}
    assert bare.get("/api/v1/probe/3", headers=viewer).status_code == 200
    assert bare.delete("/api/v1/probe/3", headers=viewer).status_code == 403
    # A wrong or removed token: 401, even with a valid session cookie alongside.
    sam = logged_in(app, web_env, "supervisor")
    assert sam.get("/api/v1/probe/3", headers={"Authorization": f"Bearer {token}x"}
                   ).status_code == 401
    from fsrouter.web import accounts

    accounts.remove_token("nightly-script", "test", datetime.now(UTC))
    assert bare.put("/api/v1/probe/3", json={}, headers=auth).status_code == 401
    assert len(probe.CHANGES) == 2


def test_tokens_are_stored_as_sha256_only(web_env):
    token = web_env.add_token("ci", "viewer")
    from fsrouter.store import accounts as stored

    row = stored.list_tokens()[0]
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token.encode() not in _database_bytes(web_env)


# ---------------------------------------------------------------- passwords


def test_passwords_are_never_stored_in_clear(web_env):
    from fsrouter.store import accounts as stored
    from fsrouter.web import accounts

    accounts.change_password("vera", "a-New-Password-42", "test", datetime.now(UTC))
    everything = _database_bytes(web_env)
    for _, password in ACCOUNTS.values():
        assert password.encode() not in everything
    assert b"a-New-Password-42" not in everything
    for row in stored.list_accounts():
        assert row.password_hash.startswith("$argon2id$")
    audit = [(e.kind, e.subject, e.before, e.after) for e in web_env.audit("web_user.")]
    assert ("web_user.passwd", "vera", None, '{"password": "changed"}') in audit


def _database_bytes(env: WebEnv) -> bytes:
    """The SQLite file and its write-ahead log, as bytes (a checkpoint may not have run)."""
    found = b""
    for suffix in ("", "-wal"):
        path = env.db_path.with_name(env.db_path.name + suffix)
        if path.exists():
            found += path.read_bytes()
    assert len(found) > 4096
    return found


# ---------------------------------------------------------------- rate limit


def test_five_failures_lock_the_name_even_with_the_right_password(app, web_env):
    name, password = ACCOUNTS["supervisor"]
    attacker = logged_in(app, web_env, None)
    for _ in range(5):
        assert attacker.log_in(name, "wrong-password-x").status_code == 401
    refused = attacker.log_in(name, password)
    assert refused.status_code == 429
    assert "15 minutes" in refused.get_data(as_text=True)
    # The same name from another address: locked too (the count is the name's).
    elsewhere = logged_in(app, web_env, None, address="192.0.2.7")
    assert elsewhere.log_in(name, password).status_code == 429
    # Another name from the attacker's address still logs in (5 < the address's 20).
    assert attacker.log_in(*ACCOUNTS["viewer"]).status_code == 302
    # Once the failures are older than the window, the right password works again.
    _age_failures(web_env, minutes=16)
    assert logged_in(app, web_env, None).log_in(name, password).status_code == 302


def test_twenty_failures_lock_the_address_for_every_name(app, web_env):
    attacker = logged_in(app, web_env, None, address="198.51.100.9")
    for number in range(20):
        assert attacker.log_in(f"guess{number}", "wrong-password-x").status_code == 401
    assert attacker.log_in(*ACCOUNTS["viewer"]).status_code == 429
    assert logged_in(app, web_env, "viewer").get("/account").status_code == 200


def test_a_good_log_in_starts_the_names_count_again(app, web_env):
    name, password = ACCOUNTS["viewer"]
    user = logged_in(app, web_env, None)
    for _ in range(4):
        assert user.log_in(name, "wrong-password-x").status_code == 401
    assert user.log_in(name, password).status_code == 302
    for _ in range(4):
        assert user.log_in(name, "wrong-password-x").status_code == 401
    assert user.log_in(name, password).status_code == 302


def _age_failures(env: WebEnv, minutes: int) -> None:
    from fsrouter.store.db import session
    from fsrouter.store.models import LoginFailure

    with session():
        for row in LoginFailure.select():
            row.at = row.at - timedelta(minutes=minutes)
            row.save()


# ---------------------------------------------------------------- sessions and cookies


def _cookie_header(response: Any) -> str:
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie"
               and v.startswith("fsrouter_session=")]
    assert cookies, response.headers
    return cookies[-1]


def test_the_session_cookie_flags(web_app_with, web_env):
    name, password = ACCOUNTS["viewer"]

    def cookie(app: flask.Flask, **environ: Any) -> str:
        browser = logged_in(app, web_env, None)
        token = browser.csrf()
        response = browser.post("/login", data={"name": name, "password": password,
                                                "csrf_token": token}, **environ)
        assert response.status_code == 302
        return _cookie_header(response)

    plain = cookie(web_app_with())
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Path=/" in plain
    assert "Secure" not in plain
    assert "Secure" in cookie(web_app_with(secure_cookies=True))
    proxied = web_app_with(trusted_proxy="127.0.0.1")
    tls = {"headers": {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}}
    assert "Secure" in cookie(proxied, **tls)
    assert "Secure" not in cookie(proxied)
    # The same header from an address that is not the proxy is not believed.
    elsewhere = web_app_with(trusted_proxy="192.0.2.1")
    assert "Secure" not in cookie(elsewhere, **tls)


def test_the_client_address_comes_from_the_trusted_proxy_only(web_app_with, web_env):
    name, _ = ACCOUNTS["viewer"]
    proxied = web_app_with(trusted_proxy="127.0.0.1")
    for number in range(3):
        forwarded = {"X-Forwarded-For": f"203.0.113.{number}"}
        logged_in(proxied, web_env, None).post("/login", headers=forwarded, data={
            "name": f"n{number}", "password": "wrong-password"})
    from fsrouter.store.db import session
    from fsrouter.store.models import LoginFailure

    with session():
        addresses = sorted(row.address for row in LoginFailure.select())
    assert addresses == []  # no CSRF token: refused before the password was looked at
    client = logged_in(proxied, web_env, None)
    client.log_in(name, "wrong-password-x")
    client.post("/login", headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.77"},
                data={"name": name, "password": "wrong-password-x",
                      "csrf_token": client.csrf()})
    direct = logged_in(web_app_with(), web_env, None)
    direct.post("/login", headers={"X-Forwarded-For": "203.0.113.99"},
                data={"name": name, "password": "wrong-password-x",
                      "csrf_token": direct.csrf()})
    with session():
        addresses = sorted(row.address for row in LoginFailure.select())
    assert addresses == ["127.0.0.1", "127.0.0.1", "203.0.113.77"]


def test_log_out_password_change_and_removal_void_a_copied_cookie(app, web_env):
    from fsrouter.web import accounts

    sam = logged_in(app, web_env, "supervisor")
    copy = app.test_client()
    copy.set_cookie("fsrouter_session", sam.get_cookie("fsrouter_session").value)
    assert copy.get("/account").status_code == 200
    sam.post_form("/logout")
    assert is_login_redirect(copy.get("/account"))

    vera = logged_in(app, web_env, "viewer")
    assert vera.get("/account").status_code == 200
    accounts.change_password("vera", "another-Password-7", "test",
                             datetime.now(UTC) + timedelta(seconds=1))
    assert is_login_redirect(vera.get("/account"))
    vera = logged_in(app, web_env, None)
    assert vera.log_in("vera", "another-Password-7").status_code == 302
    accounts.remove_user("vera", "test", datetime.now(UTC))
    assert is_login_redirect(vera.get("/account"))


def test_a_session_ends_after_its_maximum_age(web_app_with, web_env):
    moment = [datetime.now(UTC)]
    app = web_app_with(clock=lambda: moment[0], pages=(PROBE,))
    sam = logged_in(app, web_env, "supervisor")
    assert sam.get("/probe").status_code == 200
    moment[0] += timedelta(hours=23)
    assert sam.get("/probe").status_code == 200
    moment[0] += timedelta(hours=2)
    assert is_login_redirect(sam.get("/probe"))


def test_security_headers_on_pages_api_and_errors(app, client):
    sam = client("supervisor")
    for response in (sam.get("/account"), sam.get("/api/v1/probe/1"), sam.get("/nowhere"),
                     sam.get("/api/v1/nowhere"), app.test_client().get("/login"),
                     sam.post("/probe")):
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert sam.get("/api/v1/nowhere").get_json() == {"errors": [
        "The requested URL was not found on the server. If you entered the URL manually "
        "please check your spelling and try again."]}


def test_no_inline_script_in_the_frame(app, client):
    page = client("supervisor").get("/account").get_data(as_text=True)
    login = app.test_client().get("/login").get_data(as_text=True)
    for html in (page, login):
        assert "<script>" not in html and " on" + "click=" not in html
        assert "http://" not in html and "https://" not in html  # nothing from elsewhere


def test_next_after_log_in_stays_on_this_site(app, web_env):
    name, password = ACCOUNTS["viewer"]
    for wanted, lands in (("/account", "/account"), ("//evil.example/x", "/"),
                          ("https://evil.example/", "/"), ("/\\evil.example", "/")):
        browser = logged_in(app, web_env, None)
        response = browser.post("/login", data={"name": name, "password": password,
                                                "next": wanted, "csrf_token": browser.csrf()})
        assert response.status_code == 302 and response.location == lands, wanted
