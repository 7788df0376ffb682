"""The daemon renders at start and on reload, never during a call: ``fsrouter run`` as a
process against the simulator, its /metrics read over HTTP."""

from __future__ import annotations

import os
import re
import signal
import urllib.request
import uuid as uuidlib
from pathlib import Path

import gevent
import yaml

from fsrouter.prompts.render import rate_path
from fsrouter.testing.waiting import wait_for
from fsrouter.testing.watcher import Watcher
from tests.e2e.daemon import Daemon
from tests.prompts.conftest import hotline

ROUTING = "+493040001000"


def rendered_total(daemon: Daemon) -> float:
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(r"^fsrouter_prompts_rendered_total (\S+)$", text, re.M)
    assert match, "no fsrouter_prompts_rendered_total metric"
    return float(match.group(1))


def config(directory: Path, **option_two: object) -> dict:
    data = hotline(directory, **option_two)
    del data["switch"]  # the test daemon sets its own
    data["numbers"][0]["menu"] = {"tries": 2, "timeout_s": 1}
    return data


def played(watcher: Watcher, b_leg: str) -> list[str]:
    """Every file the call played (the menu's file_string parts, playbacks)."""
    files = []
    for event in watcher.events:
        if event.name != "CHANNEL_EXECUTE" or event.get("Unique-ID") != b_leg:
            continue
        data = event.get("Application-Data") or ""
        if event.get("Application") == "play_and_get_digits":
            data = data.split("'")[1]
        elif event.get("Application") != "playback":
            continue
        files.extend(data.removeprefix("file_string://").split("!"))
    return files


def test_calls_render_nothing_and_a_reload_renders_only_what_changed(tmp_path, sim_switch):
    directory = tmp_path / "prompts"
    daemon = Daemon(tmp_path, config(directory), sim_switch.esl_endpoint())
    daemon.start()
    watcher = Watcher(sim_switch.esl_endpoint())
    try:
        sim_switch.route_to(daemon.port)
        at_start = rendered_total(daemon)
        assert at_start >= 6  # options, invalid, goodbye, voicemail greeting, features
        for _ in range(2):  # an invalid key, then no key: invalid prompt, menu, goodbye
            caller = str(uuidlib.uuid4())
            sim_switch.place_call(ROUTING, "+4915112345678", "Erika", uuid=caller)
            b_leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
            watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": b_leg,
                                               "Application": "play_and_get_digits"})
            sim_switch.send_dtmf(caller, "7")
            watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=30, **{"Unique-ID": b_leg})
            files = played(watcher, b_leg)
            # Menu twice (2 options each), the invalid prompt, the goodbye: all rendered files.
            assert len(files) >= 6, files
            for file in files:
                assert Path(file).parent == directory, file
                assert all(rate_path(file, rate).is_file() for rate in (8000, 16000)), file
        assert rendered_total(daemon) == at_start  # the calls rendered nothing

        # A reload with one option's text changed renders exactly that one.
        data = yaml.safe_load(daemon.config_path.read_text("utf-8"))
        data["numbers"][0]["options"][1]["prompt_text"] = "For help in English, press 2."
        daemon.config_path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        os.kill(daemon.process.pid, signal.SIGHUP)
        wait_for(lambda: any(line.get("event") == "config.reloaded"
                             for line in daemon.log_lines()), timeout=30)
        assert rendered_total(daemon) == at_start + 1

        # A reload with a prompt espeak-ng cannot speak is rejected, naming the prompt.
        data["numbers"][0]["options"][1]["language"] = "xx"
        daemon.config_path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        os.kill(daemon.process.pid, signal.SIGHUP)
        rejected = wait_for(lambda: [line for line in daemon.log_lines()
                                     if line.get("event") == "config.reload_rejected"],
                            timeout=30)
        assert "numbers[0].options[1].prompt: cannot render prompt" in rejected[0]["problem"]
        assert rendered_total(daemon) == at_start + 1
    finally:
        watcher.client.close()
        gevent.sleep(0)
        assert daemon.stop() == 0, daemon.log()[-3000:]


def test_a_queue_caller_hears_the_rendered_announcement_first(tmp_path, sim_switch):
    directory = tmp_path / "prompts"
    data = config(directory)
    data["queues"] = {"sales": {"announcement_text": "Bitte warten Sie.", "max_wait": 30,
                                "hold_music": "tone_stream://%(1000,0,350);loops=-1"}}
    data["numbers"].append({"number": "+493040002000", "type": "queue", "queue": "sales"})
    daemon = Daemon(tmp_path, data, sim_switch.esl_endpoint())
    daemon.start()
    watcher = Watcher(sim_switch.esl_endpoint())
    try:
        sim_switch.route_to(daemon.port)
        caller = str(uuidlib.uuid4())
        sim_switch.place_call("+493040002000", "+4915112345678", "Erika", uuid=caller)
        b_leg = watcher.wait("CHANNEL_CREATE", variable_other_loopback_leg_uuid=caller).uuid
        fifo = watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": b_leg, "Application": "fifo"})
        _queue, _in, announcement, _music = fifo.get("Application-Data").split(" ")
        assert Path(announcement).parent == directory
        assert rate_path(announcement, 8000).is_file()
        sim_switch.hangup(b_leg)
        watcher.wait("CHANNEL_HANGUP_COMPLETE", timeout=30, **{"Unique-ID": b_leg})
    finally:
        watcher.client.close()
        assert daemon.stop() == 0, daemon.log()[-3000:]
