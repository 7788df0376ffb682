"""Rendering with the real espeak-ng and sox: real files, the right rates, a cache by hash,
only what changed on a reload, and an unrenderable prompt as a configuration error."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from fsrouter import prompts
from fsrouter.config import ConfigError
from fsrouter.prompts.render import RATES
from tests.prompts.conftest import hotline, load


def wav(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as audio:
        frames = audio.getnframes()
        return (audio.getframerate(), audio.getnchannels(), audio.getsampwidth(),
                frames / audio.getframerate())


def test_every_spoken_prompt_is_a_real_file_at_8_and_16_khz(tmp_path):
    config = load(tmp_path, hotline(tmp_path / "prompts"))
    report = prompts.render_prompts(config)
    spoken = [e for e in prompts.entries(config) if e.kind == "tts"]
    assert report.rendered == report.prompts == len({(e.text, e.language) for e in spoken})
    assert all(e.rendered for e in spoken)
    for entry in spoken:
        assert entry.file.startswith(str(tmp_path / "prompts") + "/")
        for rate in RATES:
            got_rate, channels, width, seconds = wav(prompts.rate_file(config, entry.key, rate))
            assert (got_rate, channels, width) == (rate, 1, 2)
            assert 0.4 < seconds < 20, (entry.key, seconds)
        assert wav(Path(entry.file))[0] == 16000  # the plain path: mod_sndfile's fallback
    # No temporary files left behind.
    assert [p.name for p in (tmp_path / "prompts").iterdir() if p.name.startswith(".")] == []


def test_each_prompt_is_spoken_in_its_own_language(tmp_path):
    config = load(tmp_path, hotline(tmp_path / "prompts"))
    german = prompts.prompt_path(config, "numbers[0].options[0].prompt")
    english = prompts.prompt_path(config, "numbers[0].options[1].prompt")
    rows = {e.key: e for e in prompts.entries(config)}
    assert rows["numbers[0].options[0].prompt"].language == "de"
    assert rows["numbers[0].options[0].prompt"].text == "Für die Datenbanken drücken Sie die 1."
    assert rows["numbers[0].options[1].prompt"].language == "en"
    assert rows["numbers[0].options[1].prompt"].text == "For English support, press 2."
    assert rows["numbers[0].menu.goodbye"].text == "Auf Wiederhören."
    # The same text in another language is another file.
    same = load(tmp_path, {**hotline(tmp_path / "prompts"),
                           "defaults": {"language": "en"}})
    assert german != english
    assert prompts.prompt_path(same, "features.login.en") != prompts.prompt_path(
        config, "features.login.de")


def test_second_render_is_a_cache_hit(tmp_path):
    config = load(tmp_path, hotline(tmp_path / "prompts"))
    first = prompts.render_prompts(config)
    assert first.rendered > 0
    goodbye = prompts.rate_file(config, "numbers[0].menu.goodbye", 8000)
    before = goodbye.stat().st_mtime_ns
    second = prompts.render_prompts(config)
    assert (second.prompts, second.rendered) == (first.prompts, 0)
    assert goodbye.stat().st_mtime_ns == before


def test_a_reload_renders_only_the_prompt_that_changed(tmp_path):
    directory = tmp_path / "prompts"
    prompts.render_prompts(load(tmp_path, hotline(directory)))
    changed = load(tmp_path, hotline(directory, prompt_text="For help in English, press 2."))
    report = prompts.render_prompts(changed)
    assert report.rendered == 1
    assert Path(prompts.prompt_path(changed, "numbers[0].options[1].prompt")).is_file()


def test_a_deleted_rate_file_is_rendered_again(tmp_path):
    config = load(tmp_path, hotline(tmp_path / "prompts"))
    prompts.render_prompts(config)
    prompts.rate_file(config, "numbers[0].menu.invalid", 8000).unlink()
    assert prompts.render_prompts(config).rendered == 1
    assert prompts.rate_file(config, "numbers[0].menu.invalid", 8000).is_file()


def test_a_prompt_that_cannot_be_rendered_is_a_config_error_naming_its_key(tmp_path):
    # espeak-ng has no voice for "xx": the option's prompt cannot be spoken.
    config = load(tmp_path, hotline(tmp_path / "prompts", language="xx"))
    with pytest.raises(ConfigError) as caught:
        prompts.render_prompts(config)
    issues = caught.value.issues
    keys = {issue.path for issue in issues}
    assert "numbers[0].options[1].prompt" in keys
    assert "numbers[0].options[0].prompt" not in keys  # the German one renders
    issue = next(i for i in issues if i.path == "numbers[0].options[1].prompt")
    assert issue.file.endswith("config.yaml") and issue.line > 1
    assert "espeak-ng" in issue.message


def test_an_unwritable_directory_is_a_config_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = load(tmp_path, hotline(blocker / "prompts"))
    with pytest.raises(ConfigError) as caught:
        prompts.render_prompts(config)
    assert any("cannot write" in issue.message for issue in caught.value.issues)


def test_flite_engine_renders_nothing_and_lets_the_switch_speak(tmp_path):
    data = {**hotline(tmp_path / "prompts"), "tts": {"engine": "flite", "voice": "slt"}}
    config = load(tmp_path, data)
    assert prompts.render_prompts(config).rendered == 0
    assert prompts.prompt_path(config, "numbers[0].menu.goodbye") == \
        "say:flite:slt:Auf Wiederhören."
    assert not (tmp_path / "prompts").exists()


def test_recordings_replace_any_prompt_the_goodbye_included(tmp_path):
    bye = tmp_path / "bye.wav"
    bye.write_bytes(b"RIFF")
    data = hotline(tmp_path / "prompts")
    data["numbers"][0]["menu"] = {"goodbye_prompt": str(bye)}
    config = load(tmp_path, data)
    assert prompts.prompt_path(config, "numbers[0].menu.goodbye") == str(bye)
    assert prompts.check_files(config) == []


def test_feature_confirmations_in_each_agents_language_or_a_recording(tmp_path):
    data = hotline(tmp_path / "prompts")
    data["users"]["bob"] = {"name": "Bob", "extension": "1002", "language": "en"}
    config = load(tmp_path, data)
    keys = {e.key: e for e in prompts.entries(config)}
    assert keys["features.login.en"].text == "You are logged in."
    assert keys["features.login.de"].text == "Sie sind angemeldet."
    data["features"] = {"refused_prompt": str(tmp_path / "nope.wav")}
    config = load(tmp_path, data)
    assert prompts.prompt_path(config, "features.refused") == str(tmp_path / "nope.wav")
    assert "features.refused.en" not in {e.key for e in prompts.entries(config)}
    [issue] = prompts.check_files(config)
    assert issue.path == "features.refused_prompt" and "nope.wav not found" in issue.message
