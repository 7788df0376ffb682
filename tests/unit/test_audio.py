"""The matcher that proves what a caller heard (fsrouter.testing.audio), on real speech.

The speech is espeak-ng's (installed by the set-up when missing), rendered at its own rate
(22050 Hz) and brought to 8 kHz by another resampler than the matcher's (linear
interpolation, no anti-aliasing), then through G.711 mu-law. Scores measured here (printed
with ``-s``): the whole prompt 0.97-0.99 (0.999-1.000 through the real switch); with a
20 ms frame dropped every 0.5 s 0.94 (one correlation over the whole prompt: 0.28); the
first half only 0.60-0.65; another sentence 0.15-0.18; silence 0. THRESHOLD is 0.85.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsrouter.testing import audio
from fsrouter.testing.audio import (
    THRESHOLD,
    Audio,
    AudioMismatch,
    concat,
    find_in_order,
    first_match,
    silence,
)

TEXTS = {
    "greeting": "Welcome to the hotline.",
    "one": "For the database team, press one.",
    "two": "For the network team, press two.",
    "three": "For the storage team, press three.",
}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Audio]:
    """Each text as the product would configure it: a WAV file at 8 kHz."""
    folder = tmp_path_factory.mktemp("prompts")
    return {name: audio.espeak(text, folder / f"{name}.wav") for name, text in TEXTS.items()}


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Audio]:
    """The same texts at espeak-ng's own rate, to go through "a switch" here."""
    folder = tmp_path_factory.mktemp("native")
    return {name: audio.espeak(text, folder / f"{name}.wav", rate=22050)
            for name, text in TEXTS.items()}


def switch_path(clip: Audio, drop_every_s: float | None = None) -> Audio:
    """Another resampler (linear interpolation), G.711 mu-law, and optionally a 20 ms
    frame dropped now and then, as a loaded switch does."""
    times = np.arange(int(clip.seconds * 8000)) / 8000
    samples = np.interp(times, np.arange(len(clip.samples)) / clip.rate, clip.samples)
    mu = 255.0
    encoded = np.sign(samples) * np.log1p(mu * np.abs(samples)) / np.log1p(mu)
    encoded = np.round(encoded * 127) / 127
    samples = np.sign(encoded) * np.expm1(np.abs(encoded) * np.log1p(mu)) / mu
    if drop_every_s:
        frames = [samples[i: i + 160] for i in range(0, len(samples), 160)]
        every = int(drop_every_s / 0.02)
        samples = np.concatenate([f for n, f in enumerate(frames) if n % every != every - 1])
    return Audio(samples, 8000)


def menu(clips: dict[str, Audio], names: list[str]) -> Audio:
    return concat(silence(0.3), *[clips[name] for name in names], silence(0.5))


def test_a_prompt_played_whole_is_found(prompts, native):
    heard = menu({k: switch_path(v) for k, v in native.items()},
                 ["greeting", "one", "two", "three"])
    matches = find_in_order(heard, [prompts[n] for n in ("greeting", "one", "two", "three")])
    print("whole:", [round(m.score, 3) for m in matches])
    assert all(m.score >= 0.95 for m in matches)
    assert matches[0].offset_s == pytest.approx(0.3, abs=0.02)


def test_dropped_frames_do_not_fail_a_prompt(prompts, native):
    heard = concat(silence(0.2), switch_path(native["one"], drop_every_s=0.5), silence(0.2))
    whole = float(audio.scores(heard, prompts["one"]).max())
    match = first_match(heard, prompts["one"])
    print(f"dropped frames: whole-clip {whole:.3f}, piecewise {match.score:.3f}")
    assert match.score >= 0.9 > whole  # one correlation over the whole prompt would fail


def test_silence_is_not_a_prompt(prompts):
    assert first_match(silence(5.0), prompts["one"]).score == 0.0
    quiet = Audio(np.random.default_rng(1).normal(0, 0.001, 40000), 8000)
    assert first_match(quiet, prompts["one"]).score < 0.2
    with pytest.raises(AudioMismatch):
        find_in_order(silence(5.0), [prompts["one"]])


@pytest.mark.parametrize("other", ["greeting", "two", "three"])
def test_another_prompt_is_not_this_one(prompts, native, other):
    heard = concat(silence(0.2), switch_path(native[other]), silence(3.0))
    score = first_match(heard, prompts["one"]).score
    print(f"'one' in '{other}': {score:.3f}")
    assert score < 0.5


@pytest.mark.parametrize("after", ["silence", "next prompt"])
def test_a_truncated_prompt_is_not_accepted(prompts, native, after):
    one = switch_path(native["one"])
    rest = silence(3.0) if after == "silence" else switch_path(native["two"])
    heard = concat(silence(0.2), one.cut(0, one.seconds / 2), rest)
    score = first_match(heard, prompts["one"]).score
    print(f"first half then {after}: {score:.3f}")
    assert score < 0.75
    with pytest.raises(AudioMismatch, match="one"):
        find_in_order(heard, [prompts["one"]], names=["one"])


def test_prompts_out_of_order_or_one_missing_fail(prompts, native):
    path = {k: switch_path(v) for k, v in native.items()}
    expected = [prompts[n] for n in ("greeting", "one", "two", "three")]
    names = ["greeting", "one", "two", "three"]
    with pytest.raises(AudioMismatch, match="two not heard"):
        find_in_order(menu(path, ["greeting", "two", "one", "three"]), expected, names=names)
    gap = {**path, "one": silence(path["one"].seconds)}
    with pytest.raises(AudioMismatch, match="one not heard"):
        find_in_order(menu(gap, ["greeting", "one", "two", "three"]), expected, names=names)


def test_the_busy_tone_by_pitch_and_cadence():
    busy = "tone_stream://%(480,480,425);loops=-1"
    heard = concat(silence(0.1), audio.tone(425, 480, 480, loops=5, level=0.1), silence(0.3))
    expected = audio.tone_from_spec(busy, loops=5)
    assert first_match(heard, expected).score > 0.99
    assert audio.dominant_hz(heard) == pytest.approx(425, abs=5)
    for wrong in (audio.tone(440, 480, 480, loops=5),  # another pitch
                  audio.tone(425, 240, 240, loops=10),  # another cadence
                  audio.tone(425, 480, 480, loops=2)):  # stopped early
        assert first_match(concat(silence(0.1), wrong, silence(3)), expected).score < THRESHOLD


def test_tone_specs():
    assert audio.tone_from_spec("tone_stream://%(800,0,1000)").seconds == pytest.approx(0.8)
    sit = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"
    assert audio.tone_from_spec(sit).seconds == pytest.approx(0.928)
    with pytest.raises(ValueError, match="for ever"):
        audio.tone_from_spec("tone_stream://%(480,480,425);loops=-1")
    with pytest.raises(ValueError, match="not a tone spec"):
        audio.tone_from_spec("tone_stream://v=-7;%(100,0,941.0,1477.0)")


def test_wav_round_trip(tmp_path: Path):
    clip = audio.tone(1000, 100, 0, level=0.5)
    audio.write_wav(tmp_path / "t.wav", clip)
    back = audio.read_wav(tmp_path / "t.wav")
    assert back.rate == 8000 and np.max(np.abs(back.samples - clip.samples)) < 1e-4


def test_a_cut_prompt_then_the_whole_one_finds_the_whole_one(prompts, native):
    """A prompt interrupted and played again: the whole one counts, where it is."""
    one = switch_path(native["one"])
    cut = one.cut(0, one.seconds / 2)
    heard = concat(silence(0.2), cut, silence(0.3), one, silence(0.3))
    match = first_match(heard, prompts["one"])
    assert match.score >= 0.95
    assert match.offset_s == pytest.approx(0.2 + cut.seconds + 0.3, abs=0.03)
