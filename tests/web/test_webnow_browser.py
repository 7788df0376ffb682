"""The Now and On call pages in headless Chromium against a real ``fsrouter web`` (issue
20.5): the Now page follows an agent logged out by the command line without reloading, and
an override is added on the On call page with the keyboard alone."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from fsrouter.store import queries
from fsrouter.testing.waiting import wait_for
from tests.web.conftest import WebServer, login

pytestmark = pytest.mark.browser

TIMEOUT = 60.0  # a loaded 2-core machine; the page polls every 3 s


def fsrouter(server: WebServer, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fsrouter", *args, "-c",
                           str(server.env.config_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def text_of(browser: Any, element_id: str) -> str:
    return str(browser.execute_script(
        "var e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
        element_id))


def test_now_page_follows_an_agent_logged_out_elsewhere(browser: Any,
                                                        web_server: WebServer) -> None:
    fsrouter(web_server, "agents", "login", "eva")
    login(browser, web_server, "viewer")
    browser.get(f"{web_server.url}/now")
    assert text_of(browser, "now-agent-eva") == "eva: logged in, free"
    browser.execute_script("window.fsrNotReloaded = true;")  # gone if the page reloads

    assert "eva: logged out" in fsrouter(web_server, "agents", "logout", "eva")
    wait_for(lambda: text_of(browser, "now-agent-eva") == "eva: logged out", TIMEOUT,
             "the Now page to show eva logged out")
    assert browser.execute_script("return window.fsrNotReloaded === true;")
    assert "live, updated every 3 s" in text_of(browser, "now-live")

    # A caller the daemon put in the sales queue shows up too, drawn by the script.
    now = datetime.now(UTC)
    queries.create_call_record("live-1", "+493023125200", "queue", "+4930123456",
                               "<i>Kim</i>", now)
    queries.mark_answered("live-1", now)
    wait_for(lambda: "sales: 1 waiting, 0 talking" in text_of(browser, "queues"), TIMEOUT,
             "the Now page to show the caller waiting")
    assert "+4930123456 (<i>Kim</i>) on +493023125200" in text_of(browser, "queues")
    assert browser.execute_script("return document.querySelector('#queues i') === null;")
    assert text_of(browser, "now-waiting") == "1"
    assert browser.execute_script("return window.fsrNotReloaded === true;")


def press(browser: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).send_keys(*keys).perform()


def focused(browser: Any) -> str:
    return str(browser.execute_script("return document.activeElement.id || '';"))


def test_an_override_is_added_with_the_keyboard_only(browser: Any,
                                                     web_server: WebServer) -> None:
    from selenium.webdriver.common.keys import Keys

    login(browser, web_server, "supervisor")
    browser.get(f"{web_server.url}/oncall")
    for _ in range(300):  # Tab through the page to the form (no mouse, no script focus)
        if focused(browser) == "ov-schedule":
            break
        press(browser, Keys.TAB)
    assert focused(browser) == "ov-schedule", "Tab never reached the override form"
    press(browser, "i")  # the select jumps to it_infra
    press(browser, Keys.TAB, "carla")
    assert focused(browser) == "ov-user"
    press(browser, Keys.ESCAPE, Keys.TAB, Keys.TAB, Keys.TAB)  # keep the proposed times
    assert focused(browser) == "ov-reason"
    press(browser, "typed on the keyboard", Keys.ENTER)
    wait_for(lambda: "override #1: carla is on call for it_infra" in str(
        browser.execute_script("return document.body.textContent;")),
             TIMEOUT, "the override to be added (the flash message)")
    assert "typed on the keyboard" in text_of(browser, "override-1")
    assert "web:sam" in text_of(browser, "override-1")
    listed = fsrouter(web_server, "oncall", "override", "list", "--json")
    assert '"created_by": "web:sam"' in listed and '"user": "carla"' in listed


def test_pages_fit_a_phone_screen(browser: Any, web_server: WebServer) -> None:
    """At 390 px (a phone), Now, Agents and On call scroll only down, never sideways (wide
    tables scroll inside their own box)."""
    login(browser, web_server, "supervisor")
    size = browser.get_window_size()
    try:
        browser.set_window_size(390, 844)
        for page in ("now", "agents", "oncall"):
            browser.get(f"{web_server.url}/{page}")
            wait_for(lambda: browser.execute_script("return document.readyState") == "complete",
                     TIMEOUT, f"/{page} to load")
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth;"), page
    finally:
        browser.set_window_size(size["width"], size["height"])
