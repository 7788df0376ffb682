"""``fsrouter prompts`` and check-config's prompt files, run as the operator runs them."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

from tests.cli.conftest import run_fsrouter
from tests.prompts.conftest import hotline, write


def test_list_render_list_export_as_real_processes(tmp_path):
    config = write(tmp_path, hotline(tmp_path / "prompts"))
    before = run_fsrouter("prompts", "list", "-c", config, "--json")
    assert before.code == 0, before.err
    rows = {row["key"]: row for row in json.loads(before.out)}
    goodbye = rows["numbers[0].menu.goodbye"]
    assert (goodbye["kind"], goodbye["text"], goodbye["language"], goodbye["rendered"]) == (
        "tts", "Auf Wiederhören.", "de", False)
    assert rows["numbers[0].options[1].prompt"]["language"] == "en"
    assert {"numbers[0].options[0].prompt", "numbers[0].menu.invalid",
            "users.anna.voicemail.greeting", "features.refused.de"} <= set(rows)

    rendered = run_fsrouter("prompts", "render", "-c", config, "--export", tmp_path / "listen")
    assert rendered.code == 0, rendered.err
    assert "rendered now" in rendered.out and f"exported {len(rows)} prompts" in rendered.out
    listen = tmp_path / "listen" / "numbers[0].menu.goodbye.wav"
    with wave.open(str(listen), "rb") as audio:
        assert audio.getframerate() == 8000 and audio.getnframes() > 4000

    after = json.loads(run_fsrouter("prompts", "list", "-c", config, "--json").out)
    assert all(row["rendered"] for row in after)
    text = run_fsrouter("prompts", "list", "-c", config)
    assert "numbers[0].menu.goodbye  [tts, rendered]" in text.out
    assert 'de: "Auf Wiederhören."' in text.out
    assert goodbye["file"] in text.out


def test_render_names_the_key_of_a_prompt_that_cannot_be_rendered(tmp_path):
    config = write(tmp_path, hotline(tmp_path / "prompts", language="xx"))
    result = run_fsrouter("prompts", "render", "-c", config)
    assert result.code == 2
    assert "numbers[0].options[1].prompt: cannot render prompt" in result.err
    assert str(config) in result.err


def test_check_config_reports_a_missing_or_unreadable_recording_with_its_key(tmp_path):
    data = hotline(tmp_path / "prompts")
    data["numbers"][0]["menu"] = {"goodbye_prompt": str(tmp_path / "missing.wav"),
                                  "invalid_prompt": str(tmp_path)}  # a folder, not a file
    config = write(tmp_path, data)
    result = run_fsrouter("check-config", config)
    assert result.code == 2, result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 2, result.err
    goodbye = next(line for line in lines if "goodbye" in line)
    assert goodbye.startswith(f"{config}:")
    assert "numbers[0].menu.goodbye_prompt: prompt numbers[0].menu.goodbye: file " in goodbye
    assert "missing.wav not found" in goodbye
    assert any("numbers[0].menu.invalid" in line and "is not a file" in line for line in lines)


def test_check_config_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        # root reads any file, so a mode-000 file is readable here: use a dangling link,
        # a name the switch cannot open either (reported as "not found").
        target = tmp_path / "gone.wav"
        link = tmp_path / "greeting.wav"
        link.symlink_to(target)
    else:
        link = tmp_path / "greeting.wav"
        link.write_bytes(b"RIFF")
        link.chmod(0)
    data = hotline(tmp_path / "prompts")
    data["users"]["anna"]["voicemail"] = {"greeting": str(link)}
    result = run_fsrouter("check-config", write(tmp_path, data))
    assert result.code == 2
    assert "users.anna.voicemail.greeting: prompt users.anna.voicemail.greeting:" in result.err


def test_a_recording_on_the_switch_host_only_is_not_looked_for(tmp_path):
    data = hotline(tmp_path / "prompts")
    data["prompts"]["switch_only"] = ["/usr/share/freeswitch/sounds"]
    data["numbers"][0]["menu"] = {
        "goodbye_prompt": "/usr/share/freeswitch/sounds/de/bye.wav"}
    result = run_fsrouter("check-config", write(tmp_path, data))
    assert result.code == 0, result.err
    assert "OK" in result.out


def test_the_example_configuration_renders_and_checks(tmp_path):
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    result = run_fsrouter("prompts", "render", "-c", example, "--directory", tmp_path)
    assert result.code == 0, result.err
    rows = json.loads(run_fsrouter("prompts", "list", "-c", example, "--directory", tmp_path,
                                   "--json").out)
    spoken = [row for row in rows if row["kind"] == "tts"]
    assert len(spoken) >= 10 and all(row["rendered"] for row in spoken)
    assert run_fsrouter("check-config", example).code == 0
