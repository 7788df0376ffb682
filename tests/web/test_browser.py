"""The console in a real headless Chromium against a real ``fsrouter web`` process
(issue 20, point 5): log in and out, and a form forged on another origin refused."""

from __future__ import annotations

import html
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import flask
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from fsrouter.testing.waiting import wait_for
from tests.web.conftest import ACCOUNTS, WebEnv, WebServer, login

pytestmark = pytest.mark.browser


_SITE = """
import http.server, sys
page = sys.stdin.buffer.read()
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Page)
print(server.server_port, flush=True)
server.serve_forever()
"""


class Attacker:
    """Another site (another port of loopback, so another origin) whose page auto-submits
    a form to the console, as a page the supervisor opens in another tab would. A process
    of its own: Selenium's calls block this one."""

    def __init__(self, target: str, fields: dict[str, str]) -> None:
        """``target``: the form's action; "#" takes it from the page URL's fragment
        (``url#http://...``), so one attacker page can aim at every URL of the console."""
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" '
                         f'value="{html.escape(v)}">' for k, v in fields.items())
        aim = ("f.action = decodeURIComponent(location.hash.slice(1)); " if target == "#"
               else "")
        page = (f'<!doctype html><title>win a prize</title><form method="post" '
                f'action="{html.escape(target)}">{inputs}</form>'
                f"<script>const f = document.forms[0]; {aim}f.submit()</script>").encode()
        self.process = subprocess.Popen([sys.executable, "-c", _SITE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(page)
        self.process.stdin.close()
        self.port = int(self.process.stdout.readline())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def attackers() -> Iterator[list[Attacker]]:
    made: list[Attacker] = []
    yield made
    for attacker in made:
        attacker.stop()


STALE_RETRIES = 10  # pages replaced under a read, in a row (one is what happens)

def text(browser: Any) -> str:
    """The page's text. A navigation under way (a form just posted) can replace the page
    between finding its body and reading it: then the new page's body is read (a stale
    element failed test_wrong_password_in_the_browser once in CI)."""
    for _ in range(STALE_RETRIES):
        try:
            return str(browser.find_element(By.TAG_NAME, "body").text)
        except StaleElementReferenceException:
            continue
    return str(browser.find_element(By.TAG_NAME, "body").text)


def test_log_in_and_out(browser, web_server: WebServer):
    browser.get(f"{web_server.url}/account")
    assert "/login?next=/account" in browser.current_url
    login(browser, web_server, "supervisor")
    assert browser.current_url == f"{web_server.url}/account"
    assert "sam" in text(browser) and "supervisor" in text(browser)
    browser.find_element(By.CSS_SELECTOR, ".who button[type=submit]").click()
    wait_for(lambda: "/login" in browser.current_url, 30, "the log-out")
    browser.get(f"{web_server.url}/account")
    assert "/login" in browser.current_url


def test_wrong_password_in_the_browser(browser, web_server: WebServer):
    browser.get(f"{web_server.url}/login")
    browser.find_element(By.ID, "name").send_keys("sam")
    browser.find_element(By.ID, "password").send_keys("not-the-password")
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_for(lambda: "Wrong name or password" in text(browser), 30, "the refusal")


def test_a_form_forged_on_another_origin_is_refused(browser, web_server: WebServer,
                                                    attackers: list[Attacker]):
    login(browser, web_server, "supervisor")
    # 1. Log the supervisor out from the attacker's page (a change: it ends every session).
    attacker = Attacker(f"{web_server.url}/logout", {})
    attackers.append(attacker)
    assert attacker.url != web_server.url + "/"
    browser.get(attacker.url)
    wait_for(lambda: browser.current_url.startswith(web_server.url), 30,
             "the forged form to reach the console")
    wait_for(lambda: "CSRF token missing" in text(browser), 30, "the CSRF refusal")
    # The browser did send the session cookie (same site: SameSite does not stop it); the
    # refusal is the CSRF check's: the page knows who is logged in, and they still are.
    assert "sam" in text(browser)
    browser.get(f"{web_server.url}/account")
    assert browser.current_url == f"{web_server.url}/account" and "sam" in text(browser)
    # 2. Log the supervisor into the attacker's account (log-in CSRF) with a guessed token.
    name, password = ACCOUNTS["viewer"]
    attacker = Attacker(f"{web_server.url}/login",
                        {"name": name, "password": password, "csrf_token": "guessed"})
    attackers.append(attacker)
    browser.get(attacker.url)
    wait_for(lambda: "CSRF token missing" in text(browser), 30, "the CSRF refusal")
    browser.get(f"{web_server.url}/account")
    assert "sam" in text(browser) and "vera" not in text(browser)
    refused = [line for line in web_server.log_lines() if line.get("event") == "web.request"
               and line.get("status") == 403]
    assert [(line["method"], line["path"]) for line in refused] == [
        ("POST", "/logout"), ("POST", "/login")]


def change_urls(web_env: WebEnv) -> list[str]:
    """Every URL of the console (all of PAGES) that takes a POST, arguments filled in."""
    from fsrouter.web.app import create_app

    app = create_app(web_env.settings())
    found = []
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or ()) and rule.endpoint != "login.login":
            values = {name: 1 if "Integer" in type(rule._converters[name]).__name__ else "x"
                      for name in rule.arguments}
            with app.test_request_context():
                found.append(flask.url_for(rule.endpoint, **values))
    return found


def test_forms_forged_against_every_change_of_the_console_are_refused(
        browser, web_env: WebEnv, web_server: WebServer, attackers: list[Attacker]):
    targets = change_urls(web_env)
    assert "/logout" in targets
    attacker = Attacker("#", {"numbers": "+493012345678", "agent": "anna", "user": "anna",
                              "target": "1000", "schedule": "it_infra", "ids": "1"})
    attackers.append(attacker)
    audited = len(web_env.audit())
    login(browser, web_server, "supervisor")
    for target in targets:
        url = web_server.url + target
        browser.get(f"{attacker.url}#{quote(url, safe='')}")
        wait_for(lambda url=url: browser.current_url.split("?")[0] == url, 30,
                 f"the forged form to reach {target}")
        wait_for(lambda: "CSRF token missing" in text(browser), 30, f"the refusal of {target}")
        # The session cookie went with it: a page names the account; the API would have
        # answered 401 "log in first" without one, not the CSRF refusal.
        assert target.startswith("/api/") or "sam" in text(browser), target
    assert len(web_env.audit()) == audited  # nothing changed
    refused = [(line["method"], line["path"]) for line in web_server.log_lines()
               if line.get("event") == "web.request" and line.get("status") == 403]
    assert refused == [("POST", target.split("?")[0]) for target in targets]


def test_fsr_api_sends_the_csrf_header(browser, web_server: WebServer):
    login(browser, web_server, "supervisor")
    browser.get(f"{web_server.url}/account")
    script = """
        const done = arguments[arguments.length - 1];
        const raw = fetch("/api/v1/nothing", {method: "POST"}).then(r => r.status);
        const api = fsr.api("POST", "/api/v1/nothing", {a: 1}).then(
            () => 200, error => error.status + " " + error.lines.join(" "));
        Promise.all([raw, api]).then(done);
    """
    raw, through_api = browser.execute_async_script(script)
    assert raw == 403  # a change without the header: refused
    assert through_api.startswith("404 ")  # with it: past the CSRF check, to routing


def test_a_viewer_cannot_change_anything_but_may_log_out(browser, web_server: WebServer):
    login(browser, web_server, "viewer")
    browser.get(f"{web_server.url}/account")
    assert "vera" in text(browser) and "viewer" in text(browser)
    script = """
        const done = arguments[arguments.length - 1];
        Promise.all(["POST", "PUT", "DELETE"].map(method =>
            fsr.api(method, "/api/v1/routes", {}).then(() => "allowed",
                                                       error => error.status + " " + error.lines)))
            .then(done);
    """
    answers = browser.execute_async_script(script)
    assert answers == ["403 viewers cannot change anything: vera is a viewer"] * 3
    browser.find_element(By.CSS_SELECTOR, ".who button[type=submit]").click()
    wait_for(lambda: "/login" in browser.current_url, 30, "the log-out")
