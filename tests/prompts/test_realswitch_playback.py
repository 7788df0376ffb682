"""The real FreeSWITCH (1.11, mod_sndfile) plays a rendered prompt from its rate folder: the
file exists for the switch, plays to the end, and its length is the rendered file's.

What the caller hears, sample by sample, is proven by the audio tests; this checks only
that the switch side of point 5 (directory layout, modules) holds."""

from __future__ import annotations

import wave

import pytest

from fsrouter import prompts
from fsrouter.prompts.render import rate_path
from tests.prompts.conftest import hotline, load

pytestmark = pytest.mark.realswitch


def test_the_switch_plays_the_rendered_file_to_the_end(tmp_path, real_switch):
    config = load(tmp_path, hotline(tmp_path / "prompts"))
    prompts.render_prompts(config)
    path = prompts.prompt_path(config, "numbers[0].menu.goodbye")
    call = real_switch.originate("loopback/answer-20000-pr1/agents", f"&playback({path})")
    ended = real_switch.wait_hangup(call.uuid, timeout=30)
    assert ended.get("variable_current_application_response") == "FILE PLAYED"
    rate = int(ended.get("variable_read_rate") or 0)
    assert rate in (8000, 16000), rate
    frames = {}
    for folder in (8000, 16000):
        with wave.open(str(rate_path(path, folder))) as audio:
            frames[folder] = audio.getnframes()
    # mod_sndfile opened the file of the channel's rate: its samples, every one of them
    # (measured: 10601 of 10601 at 8 kHz for "Auf Wiederhören.").
    assert int(ended.get("variable_playback_samples") or 0) == frames[rate]
