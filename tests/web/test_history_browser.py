"""The Voicemails page in headless Chromium: a recording plays in the browser's own player,
fetched from a real ``fsrouter web`` process, and seeks (Range requests)."""

from __future__ import annotations

from typing import Any

import pytest

from fsrouter.store import queries as q
from fsrouter.testing.waiting import wait_for
from fsrouter.web.sample import write_recording
from tests.store.history_seed import at
from tests.web.conftest import WebEnv, WebServer, login

pytestmark = pytest.mark.browser

STATE = """const audio = document.querySelector(arguments[0]);
return {ready: audio.readyState, duration: audio.duration, time: audio.currentTime,
        error: audio.error && audio.error.code, seeked: audio.dataset.seeked || null};"""


def test_a_voicemail_plays_in_the_browser(web_env: WebEnv, web_server: WebServer,
                                          browser: Any):
    path = web_env.directory / "voicemail" / "c-1.wav"
    write_recording(path, 3.0)
    row = q.record_voicemail("eva", str(path), at(0), call_uuid="c-1",
                             caller_number="+4989123456", duration_s=3.0)
    login(browser, web_server, "viewer")
    browser.get(f"{web_server.url}/voicemails")
    selector = f"#voicemail-{row.id} audio"
    browser.execute_script(
        "const audio = document.querySelector(arguments[0]);"
        "audio.addEventListener('seeked', () => { audio.dataset.seeked = 'yes'; });"
        "audio.preload = 'auto'; audio.load();", selector)
    state = wait_for(lambda: (s := browser.execute_script(STATE, selector))["ready"] >= 2
                     and s, 30, "the player to have the recording's first frames")
    assert state["error"] is None
    assert abs(state["duration"] - 3.0) < 0.1, state
    # Seeking near the end needs the server to answer a Range request (206).
    browser.execute_script("document.querySelector(arguments[0]).currentTime = 2.5;",
                           selector)
    state = wait_for(lambda: (s := browser.execute_script(STATE, selector))["seeked"]
                     and s, 30, "the player to seek to 2.5 s")
    assert abs(state["time"] - 2.5) < 0.1, state
    # Chromium's media loader asks with Range from the start; the console answered 206.
    answers = [line["status"] for line in web_server.log_lines()
               if line.get("event") == "web.request"
               and line.get("path") == f"/voicemails/{row.id}/audio"]
    assert 206 in answers, answers
