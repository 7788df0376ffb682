"""The Inbound routes tab in headless Chromium, on the real switch (issue 20 point 5).

``fsrouter run`` and ``fsrouter web`` as real processes on one SQLite database; a supervisor
logs in, ticks two numbers, assigns them to another agent in the pop-up, and a real call to
one of them then rings the new agent's phone.
"""

from __future__ import annotations

import sqlite3
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import Watcher
from fsrouter.web import accounts
from tests.e2e.daemon import Daemon
from tests.web.conftest import ACCOUNTS, WebEnv, WebServer, login

pytestmark = pytest.mark.browser

FIRST = "+493040006100"
SECOND = "+493040006200"
OTHER = "+493040006300"  # not selected: stays with anna
CUSTOMER = "+4915112345678"


def phone(n: int) -> dict[str, str]:
    """A SIP phone of the test switch that answers and hangs up after a second."""
    return {"type": "sip", "dial_string": f"loopback/{phone_number('hangup', 1000, n)}/agents"}


def center_config(tmp_path: Any) -> dict[str, Any]:
    users = {uid: {"name": uid.title(), "phones": [phone(n)], "email": f"{uid}@example.test",
                   "language": "en"}
             for uid, n in (("anna", 61), ("bruno", 62))}
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en", "country": "DE"},
        "voicemail": {"directory": str(tmp_path / "voicemail")},
        "users": users,
        "numbers": [{"number": number, "type": "agent", "agent": "anna", "ring_timeout": 10}
                    for number in (FIRST, SECOND, OTHER)],
    }


@pytest.fixture
def center(tmp_path: Any, real_switch: Any) -> Any:
    watcher = Watcher(real_switch.esl_endpoint())
    daemon = Daemon(tmp_path, center_config(tmp_path), real_switch.esl_endpoint())
    daemon.start()
    real_switch.route_to(daemon.port)
    yield daemon, watcher
    watcher.close()
    assert daemon.stop() == 0, daemon.log()[-3000:]


@pytest.mark.realswitch
def test_two_numbers_reassigned_in_the_browser_ring_the_new_agent(center, real_switch, browser,
                                                                   tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    daemon, watcher = center
    with daemon.store() as queries:
        for user in ("anna", "bruno"):
            queries.set_presence(user, datetime.now(UTC), state="logged_in", busy=False)
        name, password = ACCOUNTS["supervisor"]
        accounts.add_user(name, "supervisor", password, "test:setup", datetime.now(UTC))
    env = WebEnv(tmp_path, daemon.config_path, f"sqlite:///{daemon.db_path}", daemon.db_path,
                 tmp_path / "web-secret")
    with serving(env) as web:
        wait = WebDriverWait(browser, 30)
        login(browser, web, "supervisor")
        browser.get(f"{web.url}/routes")
        wait.until(ready.presence_of_element_located((By.ID, "routes-form")))
        for number in (FIRST, SECOND):
            browser.find_element(By.CSS_SELECTOR, f'input[name=numbers][value="{number}"]') \
                .click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "selected-count"),
                                                       "2 selected"))
        browser.find_element(By.ID, "assign-open").click()
        dialog = wait.until(ready.visibility_of_element_located((By.ID, "assign-dialog")))
        wait.until(ready.presence_of_element_located(  # the agents come from the API
            (By.CSS_SELECTOR, "#assign-dialog select[data-loaded=yes]")))
        Select(dialog.find_element(By.NAME, "destination")).select_by_value("agent:bruno")
        dialog.find_element(By.ID, "assign-save").click()
        done = wait.until(ready.visibility_of_element_located((By.ID, "routes-done")))
        assert "2 route(s) set by web:sam; they apply to the next call" in done.text
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-number="{FIRST}"]')
        assert "Bruno (bruno)" in row.text and "database" in row.text
    assert daemon.rows("SELECT number, route_type, target, changed_by FROM "
                       "number_assignments ORDER BY number") == [
        {"number": FIRST, "route_type": "agent", "target": "bruno", "changed_by": "web:sam"},
        {"number": SECOND, "route_type": "agent", "target": "bruno", "changed_by": "web:sam"}]
    assert [r["subject"] for r in daemon.rows(
        "SELECT subject FROM audit_log WHERE kind = 'route.set' AND who = 'web:sam' "
        "ORDER BY subject")] == [FIRST, SECOND]

    # A real call to the second number now rings bruno's phone, not anna's.
    caller = str(uuidlib.uuid4())
    real_switch.place_call(SECOND, CUSTOMER, "Kunde", uuid=caller)
    b_leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
    watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=40, **{"Unique-ID": b_leg})
    record = daemon.wait_for("SELECT * FROM call_records WHERE call_uuid = ? AND ended_at "
                             "IS NOT NULL", b_leg)[0]
    assert (record["route_type"], record["outcome"], record["bridged_to_user"]) == (
        "agent", "bridged", "bruno")
    assert len(watcher.legs_to(phone_number("hangup", 1000, 62))) == 1
    assert watcher.legs_to(phone_number("hangup", 1000, 61)) == []


# ---------------------------------------------------------------- without a switch


@contextmanager
def serving(env: WebEnv) -> Iterator[WebServer]:
    """``fsrouter web`` on ``env``'s configuration and database."""
    server = WebServer(env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def routes_page(browser: Any, server: WebServer, role: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    login(browser, server, role)
    browser.get(f"{server.url}/routes")
    WebDriverWait(browser, 30).until(ready.presence_of_element_located((By.ID, "routes")))


def shown_numbers(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.get_attribute("data-number")
            for row in browser.find_elements(By.CSS_SELECTOR, "#routes tbody tr")
            if row.is_displayed()]


def test_filter_sort_and_a_change_with_the_keyboard_alone(web_server, browser, web_env):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    routes_page(browser, web_server, "supervisor")
    assert len(shown_numbers(browser)) == 7
    search = browser.find_element(By.ID, "routes-q")
    search.send_keys("greta")
    wait.until(lambda _: shown_numbers(browser) == ["+498941612300"])
    search.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)
    browser.find_element(By.ID, "routes-type").send_keys("Inbound queue")
    wait.until(lambda _: shown_numbers(browser) == ["+493023125200"])
    Select(browser.find_element(By.ID, "routes-type")).select_by_value("")
    wait.until(lambda _: len(shown_numbers(browser)) == 7)
    sort = browser.find_element(By.CSS_SELECTOR, "#routes thead th:nth-child(2) button")
    sort.send_keys(Keys.ENTER)  # ascending (as served), then descending
    sort.send_keys(Keys.ENTER)
    wait.until(lambda _: shown_numbers(browser)[0] == "+498941612300")

    # Space ticks a box, Enter opens the pop-up, Escape closes it: nothing is written.
    browser.find_element(By.CSS_SELECTOR, 'input[value="+493023125999"]').send_keys(
        Keys.SPACE)
    browser.find_element(By.ID, "assign-open").send_keys(Keys.ENTER)
    dialog = wait.until(ready.visibility_of_element_located((By.ID, "assign-dialog")))
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait.until(lambda _: not dialog.is_displayed())

    # Enter on a number opens its form; the keyboard picks a queue and saves.
    browser.find_element(By.LINK_TEXT, "+493023125202").send_keys(Keys.ENTER)
    choice = wait.until(ready.presence_of_element_located((By.NAME, "destination")))
    choice.send_keys("sales")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").send_keys(
        Keys.ENTER)
    wait.until(ready.text_to_be_present_in_element(
        (By.CSS_SELECTOR, ".flashes"), "set +493023125202 -> queue sales"))
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-number="+493023125202"]')
    assert "Inbound queue" in row.text and "web:sam" in row.text
    assert db_rows(web_env.db_path) == [("+493023125202", "queue", "sales", "web:sam")]

    # Reset selected to YAML asks first, then drops the assignment.
    browser.find_element(By.CSS_SELECTOR, 'input[value="+493023125202"]').send_keys(Keys.SPACE)
    browser.find_element(By.ID, "reset-selected").send_keys(Keys.ENTER)
    wait.until(ready.alert_is_present()).accept()
    done = wait.until(ready.visibility_of_element_located((By.ID, "routes-done")))
    assert "reset +493023125202: the YAML applies: agent felix" in done.text
    assert db_rows(web_env.db_path) == []


def test_the_pop_up_shows_every_problem_and_changes_nothing(web_server, browser, web_env):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    routes_page(browser, web_server, "supervisor")
    for number in ("+493023125201", "+493023125202"):
        browser.find_element(By.CSS_SELECTOR, f'input[value="{number}"]').click()
    browser.find_element(By.ID, "assign-open").click()
    dialog = wait.until(ready.visibility_of_element_located((By.ID, "assign-dialog")))
    Select(dialog.find_element(By.NAME, "destination")).select_by_value("custom:")
    field = dialog.find_element(By.NAME, "custom")
    field.send_keys("user/1000,${system(x)}", Keys.ENTER)  # Enter submits the pop-up only
    errors = wait.until(ready.visibility_of_element_located((By.ID, "assign-errors")))
    wait.until(lambda _: "unsafe custom target" in errors.text)
    assert "nothing was changed" in errors.text and dialog.is_displayed()
    assert db_rows(web_env.db_path) == []


def test_a_csv_upload_shows_every_bad_line_and_a_viewer_only_reads(web_server, browser,
                                                                    web_env, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    upload = tmp_path / "routes.csv"
    upload.write_text("number,type,target\n030 23125 202,agent,eva\n0301234571,agent,nobody\n"
                      "abc,unassigned\n", encoding="utf-8")
    routes_page(browser, web_server, "supervisor")
    browser.find_element(By.LINK_TEXT, "Import CSV").click()
    WebDriverWait(browser, 30).until(ready.presence_of_element_located((By.NAME, "file")))
    browser.find_element(By.NAME, "file").send_keys(str(upload))
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    errors = WebDriverWait(browser, 30).until(
        ready.visibility_of_element_located((By.ID, "import-errors")))
    assert [line.split(":")[0] for line in errors.text.splitlines()] == [
        "line 3", "line 4", "2 problem(s)"]
    assert db_rows(web_env.db_path) == []
    browser.delete_all_cookies()  # log out: the viewer next
    routes_page(browser, web_server, "viewer")
    assert len(shown_numbers(browser)) == 7
    assert browser.find_elements(By.CSS_SELECTOR, "input[name=numbers]") == []
    assert browser.find_elements(By.ID, "assign-open") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#routes a") == []
    browser.find_element(By.ID, "routes-q").send_keys("vertrieb")  # names, any case
    wait_for(lambda: shown_numbers(browser) == ["+493023125200", "+493023125201"], 30,
             "the viewer's filter")


def db_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT number, route_type, target, changed_by FROM "
                            "number_assignments ORDER BY number").fetchall()
