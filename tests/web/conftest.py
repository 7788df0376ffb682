"""Fixtures for the console (issue 20), shared by every page's tests.

- ``web_env``: a temporary folder with the example configuration, its SQLite database
  upgraded, a session key file, and one account per role (:data:`ACCOUNTS`);
- ``web_app``: the Flask app on that environment (``web_app_with(...)`` for other settings);
- ``client``: ``client("viewer" | "supervisor" | None)`` -> a Flask test client, logged in
  through the real log-in form, with ``.post_form`` / ``.api`` adding the CSRF token;
- ``web_server``: a real ``fsrouter web`` process on port 0 (its port read from its log);
- ``browser``: headless Chromium (fsrouter.testing.browser; skipped with the reason when it
  cannot run, failed under CI), cookies cleared for each test; ``login(browser, server,
  role)`` logs in through the form.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient

from fsrouter.testing.waiting import wait_for
from fsrouter.web.settings import WebSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
EXAMPLE_DB = "sqlite:////var/lib/fsrouter/fsrouter.db"

# name -> (role, password) of the accounts every web_env has.
ACCOUNTS = {
    "viewer": ("vera", "vera-Viewer-pw-1"),
    "supervisor": ("sam", "sam-Supervisor-pw-2"),
}


@dataclass
class WebEnv:
    directory: Path
    config_path: Path
    db_url: str
    db_path: Path
    secret_file: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def settings(self, **changes: Any) -> WebSettings:
        values: dict[str, Any] = {"config_path": self.config_path, "database_url": self.db_url,
                                  "host": "127.0.0.1", "port": 0,
                                  "secret_key_file": self.secret_file}
        values.update(changes)
        return WebSettings(**values)

    def account(self, role: str) -> tuple[str, str]:
        """(name, password) of the account with ``role``."""
        return ACCOUNTS[role]

    def add_token(self, name: str, role: str) -> str:
        from fsrouter.web import accounts

        token = accounts.add_token(name, role, "test:setup", datetime.now(UTC))
        self.tokens[name] = token
        return token

    def audit(self, kind_prefix: str = "") -> list[Any]:
        from fsrouter.store.audit import AuditFilter, entries

        return entries(AuditFilter(kind=kind_prefix or None))


def example_config(directory: Path) -> tuple[Path, str]:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert EXAMPLE_DB in text, "the example no longer sets database.url"
    url = f"sqlite:///{directory}/fsrouter.db"
    path = directory / "config.yaml"
    path.write_text(text.replace("/var/lib/fsrouter", str(directory)), encoding="utf-8")
    return path, url


@pytest.fixture
def web_env(tmp_path: Path) -> Iterator[WebEnv]:
    from fsrouter.store import open_database, upgrade
    from fsrouter.store.db import close_database
    from fsrouter.web import accounts

    config_path, url = example_config(tmp_path)
    db = open_database(url)
    upgrade(db)
    now = datetime.now(UTC)
    for role, (name, password) in ACCOUNTS.items():
        accounts.add_user(name, role, password, "test:setup", now)
    try:
        yield WebEnv(tmp_path, config_path, url, tmp_path / "fsrouter.db",
                     tmp_path / "web-secret")
    finally:
        close_database(db)


@pytest.fixture
def web_app_with(web_env: WebEnv) -> Callable[..., flask.Flask]:
    """``web_app_with(pages=..., clock=..., **settings)``: an app on ``web_env``."""
    from fsrouter.web.app import PAGES, create_app

    def make(pages: tuple[str, ...] = PAGES, clock: Callable[[], datetime] | None = None,
             **settings: Any) -> flask.Flask:
        app = create_app(web_env.settings(**settings), clock=clock, pages=pages)
        app.testing = True
        return app
    return make


@pytest.fixture
def web_app(web_app_with: Callable[..., flask.Flask]) -> flask.Flask:
    return web_app_with()


class WebClient(FlaskClient):
    """A test client that knows its session's CSRF token."""

    def csrf(self) -> str:
        with self.session_transaction() as session:
            token = session.get("csrf")
        if token is None:
            self.get("/login")
            with self.session_transaction() as session:
                token = session["csrf"]
        return str(token)

    def post_form(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """POST a form with the session's ``csrf_token`` field."""
        return self.post(url, data={**(data or {}), "csrf_token": self.csrf()}, **kwargs)

    def api(self, method: str, url: str, body: Any = None, **kwargs: Any) -> Any:
        """A JSON API call with the ``X-CSRF-Token`` header (as fsr.api in app.js does)."""
        headers = {"X-CSRF-Token": self.csrf(), **kwargs.pop("headers", {})}
        return self.open(url, method=method, json=body, headers=headers, **kwargs)

    def log_in(self, name: str, password: str) -> Any:
        return self.post("/login", data={"name": name, "password": password,
                                         "csrf_token": self.csrf()})


def logged_in(app: flask.Flask, env: WebEnv, role: str | None,
              address: str | None = None) -> WebClient:
    """A client of ``app`` (from ``address``: REMOTE_ADDR), logged in as ``role``'s account."""
    app.test_client_class = WebClient
    client = app.test_client()
    assert isinstance(client, WebClient)
    if address is not None:
        client.environ_base["REMOTE_ADDR"] = address
    if role is not None:
        name, password = env.account(role)
        response = client.log_in(name, password)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


@pytest.fixture
def client(web_app: flask.Flask, web_env: WebEnv) -> Callable[[str | None], WebClient]:
    """``client("supervisor")``: logged in through the form; ``client(None)``: anonymous."""
    return lambda role: logged_in(web_app, web_env, role)


# ---------------------------------------------------------------- a real `fsrouter web`


class WebServer:
    """``fsrouter web`` as a process on a free port of loopback."""

    def __init__(self, env: WebEnv, *extra: str) -> None:
        self.env = env
        self.log_path = env.directory / "web.log"
        self.port = 0
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fsrouter", "--log-format", "json", "web",
                 "-c", str(env.config_path), "--port", "0",
                 "--secret-file", str(env.secret_file), *extra],
                stdout=log, stderr=subprocess.STDOUT, cwd=env.directory)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> int:
            if self.process.poll() is not None:
                raise RuntimeError(f"fsrouter web exited {self.process.returncode}:\n"
                                   f"{self.log()}")
            return next((line["port"] for line in self.log_lines()
                         if line.get("event") == "web.ready"), 0)
        self.port = wait_for(ready, timeout, "fsrouter web to log web.ready", every=0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines


@pytest.fixture
def web_server(web_env: WebEnv) -> Iterator[WebServer]:
    server = WebServer(web_env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Any]:
    from fsrouter.testing.browser import BrowserUnavailable, running_browser

    try:
        with running_browser() as driver:
            yield driver
    except BrowserUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"under CI the browser tests must run: {reason}")
        pytest.skip(str(reason))


@pytest.fixture
def browser(_chromium: Any) -> Any:
    """The session's headless Chromium, with no cookies left from an earlier test."""
    _chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    _chromium.get("about:blank")
    return _chromium


def login(browser: Any, server: WebServer, role: str, timeout: float = 30.0) -> None:
    """Log in through the form as the ``role``'s account; returns on the first page after."""
    from selenium.webdriver.common.by import By

    name, password = ACCOUNTS[role]
    browser.get(f"{server.url}/login")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait_for(lambda: "/login" not in browser.current_url, timeout, "the log-in to finish")
    wait_for(lambda: browser.execute_script("return document.readyState") == "complete",
             timeout, "the page after the log-in to load")
