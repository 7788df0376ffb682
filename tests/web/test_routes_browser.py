"""The Inbound routes tab in headless Chromium, on the real switch (issue 20 point 5).

``fsrouter run`` and ``fsrouter web`` as real processes on one SQLite database; a supervisor
logs in, ticks two numbers, assigns them to another agent in the pop-up, and a real call to
one of them then rings the new agent's phone.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any

import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.web.routes_harness import WebProcess, chrome, web_account

pytestmark = [pytest.mark.browser, pytest.mark.realswitch]

FIRST = "+493040006100"
SECOND = "+493040006200"
OTHER = "+493040006300"  # not selected: stays with anna
CUSTOMER = "+4915112345678"
PASSWORD = "a-long-enough-pw"


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


def test_two_numbers_reassigned_in_the_browser_ring_the_new_agent(center, real_switch,
                                                                   tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    daemon, watcher = center
    with daemon.store() as queries:
        for user in ("anna", "bruno"):
            queries.set_presence(user, datetime.now(UTC), state="logged_in", busy=False)
    web_account(daemon.config_path, "sue", "supervisor", PASSWORD, daemon.env)
    with WebProcess(tmp_path, daemon.config_path, daemon.env) as web, chrome() as browser:
        wait = WebDriverWait(browser, 30)
        browser.get(f"{web.url}/login?next=/routes")
        browser.find_element(By.ID, "name").send_keys("sue")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        wait.until(ready.presence_of_element_located((By.ID, "routes-form")))
        for number in (FIRST, SECOND):
            browser.find_element(By.CSS_SELECTOR, f'input[name=numbers][value="{number}"]') \
                .click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "selected-count"),
                                                       "2 selected"))
        browser.find_element(By.ID, "assign-open").click()
        dialog = wait.until(ready.visibility_of_element_located((By.ID, "assign-dialog")))
        Select(dialog.find_element(By.NAME, "destination")).select_by_value("agent:bruno")
        dialog.find_element(By.ID, "assign-save").click()
        done = wait.until(ready.visibility_of_element_located((By.ID, "routes-done")))
        assert "2 route(s) set by web:sue; they apply to the next call" in done.text
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-number="{FIRST}"]')
        assert "Bruno (bruno)" in row.text and "database" in row.text
    assert daemon.rows("SELECT number, route_type, target, changed_by FROM "
                       "number_assignments ORDER BY number") == [
        {"number": FIRST, "route_type": "agent", "target": "bruno", "changed_by": "web:sue"},
        {"number": SECOND, "route_type": "agent", "target": "bruno", "changed_by": "web:sue"}]
    assert [r["subject"] for r in daemon.rows(
        "SELECT subject FROM audit_log WHERE kind = 'route.set' AND who = 'web:sue' "
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
