"""What a caller hears, proven: find reference audio (a prompt file, a tone) in a recording.

Tests record the audio that reaches a leg on the real switch (``record_session`` with
``RECORD_READ_ONLY``) and ask whether the expected prompts are in it, in order::

    heard = read_wav(recording)
    matches = find_in_order(heard, [read_wav(greeting), read_wav(option_1)])   # or raises

The measure is the normalised cross-correlation of the waveforms (both resampled to the
recording's rate and band-limited to the telephone band, 200-3400 Hz), with the reference's
energy and the energy of the same stretch of the recording: 1.0 is the reference itself at
any volume. The whole reference is first placed where it correlates best; then it is scored
in pieces of 0.25 s, each allowed 80 ms from where the one before was found (a loaded switch
drops or pads a 20 ms frame now and then, which shifts the rest of a prompt), and the
pieces' scores are weighted by their energy. So a prompt played whole scores near 1; a
prompt cut after its first half scores about the first half's share of its energy; another
sentence, a tone of another pitch or cadence, or silence score low. Measured (8 kHz,
espeak-ng speech; tests/unit/test_audio.py and tests/e2e/test_heard_realswitch.py):

- through the real switch: 0.999-1.000 (caller side), 0.956 (the agent's phone, whose
  recording starts ~20 ms into the prompt); with another resampler and G.711: 0.97-0.99;
  with a frame dropped every 0.5 s: 0.94;
- the first half of the prompt, then silence or the next prompt: 0.60-0.65;
- another prompt: 0.15-0.36 (0.29-0.39 on the switch, the swapped menu); silence: 0.

``THRESHOLD`` (0.85) sits between.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsrouter.prompts.install import ensure_tools

# Between a whole prompt (>= 0.94 measured) and half of one or another one (<= 0.65).
THRESHOLD = 0.85
BAND_HZ = (200.0, 3400.0)
# A place where the whole reference scores this much is refined piece by piece.
ANCHOR = 0.5
PIECE_S = 0.25
SLACK_S = 0.08
# The recording may start before the reference with a little overlap of the previous one
# (the switch's frames are 20 ms; a resampler's delay is a few ms).
OVERLAP_S = 0.05
# Frames of a recording whose energy is below this (relative to the reference) are silence:
# the correlation there is noise over noise, not a match.
_QUIET = 1e-6


class AudioMismatch(AssertionError):
    """The expected audio is not in the recording (the message gives every score)."""


@dataclass(frozen=True)
class Audio:
    """Mono samples as floats (full scale 1.0) at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    def cut(self, start_s: float, end_s: float | None = None) -> Audio:
        """The part from ``start_s`` to ``end_s`` (seconds)."""
        first = int(start_s * self.rate)
        last = None if end_s is None else int(end_s * self.rate)
        return Audio(self.samples[first:last], self.rate)


@dataclass(frozen=True)
class Match:
    """Where a reference was found (seconds into the recording) and how well (0..1)."""

    offset_s: float
    score: float
    seconds: float

    @property
    def end_s(self) -> float:
        return self.offset_s + self.seconds


# -- reading and making audio -----------------------------------------------------------------


def read_wav(path: Path | str, channel: int | None = None) -> Audio:
    """A 16-bit (or 8-bit) PCM WAV file; stereo is mixed down unless ``channel`` is given."""
    with wave.open(str(path), "rb") as wav:
        width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported")
    data = data.reshape(-1, channels)
    mono = data[:, channel] if channel is not None else data.mean(axis=1)
    return Audio(np.ascontiguousarray(mono), rate)


def write_wav(path: Path | str, audio: Audio) -> None:
    """16-bit mono PCM."""
    pcm = np.clip(np.round(audio.samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.rate)
        wav.writeframes(pcm.tobytes())


def silence(seconds: float, rate: int = 8000) -> Audio:
    return Audio(np.zeros(int(seconds * rate)), rate)


def tone(hz: float, on_ms: int, off_ms: int = 0, loops: int = 1, rate: int = 8000,
         level: float = 0.3) -> Audio:
    """A tone as FreeSWITCH's ``tone_stream://%(on,off,hz);loops=n`` makes it.

    Each burst starts at phase 0 (libteletone resets its oscillator for every segment), so
    a burst made here lines up with the switch's sample for sample.
    """
    on = level * np.sin(2 * np.pi * hz * np.arange(int(on_ms * rate / 1000)) / rate)
    burst = np.concatenate([on, np.zeros(int(off_ms * rate / 1000))])
    return Audio(np.tile(burst, loops), rate)


_SEGMENT = re.compile(r"%\((\d+),(\d+),(\d+(?:\.\d+)?)\)")


def tone_from_spec(spec: str, loops: int | None = None, rate: int = 8000) -> Audio:
    """The audio of a ``tone_stream://%(on,off,hz);...;loops=n`` spec (one tone a segment).

    ``loops`` overrides the spec's (``loops=-1`` plays for ever, so give a count then).
    """
    body = spec.removeprefix("tone_stream://")
    segments = [tone(float(hz), int(on), int(off), 1, rate)
                for on, off, hz in _SEGMENT.findall(body)]
    rest = _SEGMENT.sub("", body).replace(";", "")
    if not segments or not re.fullmatch(r"(loops=-?\d+)?", rest):
        raise ValueError(f"not a tone spec this understands: {spec!r}")
    spec_loops = re.search(r"loops=(-?\d+)", body)
    count = loops if loops is not None else int(spec_loops.group(1)) if spec_loops else 1
    if count < 1:
        raise ValueError(f"{spec!r} plays for ever: give loops")
    return Audio(np.tile(concat(*segments).samples, count), rate)


def concat(*parts: Audio) -> Audio:
    rates = {part.rate for part in parts}
    if len(rates) != 1:
        raise ValueError(f"parts have different rates: {sorted(rates)}")
    return Audio(np.concatenate([part.samples for part in parts]), rates.pop())


def resample(audio: Audio, rate: int) -> Audio:
    """Band-limited resampling through the spectrum (the clips are short; edges are quiet)."""
    if audio.rate == rate or len(audio.samples) == 0:
        return audio
    count = len(audio.samples)
    new_count = max(1, round(count * rate / audio.rate))
    spectrum = np.fft.rfft(audio.samples)
    kept = min(len(spectrum), new_count // 2 + 1)
    out = np.zeros(new_count // 2 + 1, dtype=complex)
    out[:kept] = spectrum[:kept]
    samples = np.fft.irfft(out, new_count) * (new_count / count)
    return Audio(samples, rate)


def band_limited(audio: Audio, band: tuple[float, float] = BAND_HZ) -> Audio:
    """Only the telephone band: what survives any switch path, whatever its resampler."""
    if len(audio.samples) == 0:
        return audio
    spectrum = np.fft.rfft(audio.samples)
    freqs = np.fft.rfftfreq(len(audio.samples), 1.0 / audio.rate)
    spectrum[(freqs < band[0]) | (freqs > band[1])] = 0
    return Audio(np.fft.irfft(spectrum, len(audio.samples)), audio.rate)


def espeak(text: str, path: Path | str, voice: str = "en", rate: int = 8000) -> Audio:
    """Speak ``text`` with espeak-ng into a 16-bit mono WAV at ``rate``; returns the audio.

    For test material only (the product's prompts come from fsrouter.prompts). Installs
    Debian's ``espeak-ng`` when missing and we may (fsrouter.prompts.install).
    """
    binary = ensure_espeak()
    raw = Path(f"{path}.raw.wav")
    subprocess.run([binary, "-v", voice, "-w", str(raw), "--", text], check=True,
                   capture_output=True, timeout=60)
    audio = resample(read_wav(raw), rate)
    raw.unlink()
    peak = float(np.max(np.abs(audio.samples))) or 1.0
    audio = Audio(audio.samples * (0.5 / peak), rate)
    write_wav(path, audio)
    return audio


def ensure_espeak() -> str:
    """The espeak-ng binary; installed as ``make test`` does when missing (Debian, root)."""
    ensure_tools()
    found = shutil.which("espeak-ng")
    if not found:
        raise RuntimeError("espeak-ng is missing (Debian: apt-get install espeak-ng)")
    return found


# -- matching -------------------------------------------------------------------------------


def scores(recording: Audio, reference: Audio, filtered: bool = False) -> np.ndarray:
    """The normalised cross-correlation at every lag where the reference fits (0..1).

    ``filtered``: both are already at the same rate and band-limited.
    """
    if filtered:
        ref, rec = reference.samples, recording.samples
    else:
        ref = band_limited(resample(reference, recording.rate)).samples
        rec = band_limited(recording).samples
    size, count = len(ref), len(rec)
    if size == 0 or count < size:
        return np.zeros(0)
    ref_energy = float(np.dot(ref, ref))
    if ref_energy == 0:
        raise ValueError("the reference is silent")
    fft_size = 1 << int(np.ceil(np.log2(count + size)))
    product = np.fft.irfft(np.fft.rfft(rec, fft_size) * np.conj(np.fft.rfft(ref, fft_size)),
                           fft_size)[: count - size + 1]
    cumulative = np.concatenate([[0.0], np.cumsum(rec * rec)])
    window_energy = cumulative[size:] - cumulative[:-size]
    quiet = window_energy < _QUIET * ref_energy
    denominator = np.sqrt(np.maximum(window_energy, 1e-30) * ref_energy)
    result = np.where(quiet, 0.0, product / denominator)
    return np.clip(result, -1.0, 1.0)


def _anchors(found: np.ndarray, reference_samples: int, most: int = 50) -> list[int]:
    """Lags to refine from, in order: each peak scoring ``ANCHOR`` or more (one per half
    reference), else the best lag there is."""
    half = max(1, reference_samples // 2)
    lags: list[int] = []
    above = np.flatnonzero(found >= ANCHOR)
    while len(above) and len(lags) < most:
        window = found[above[0]: above[0] + half]
        lags.append(int(above[0] + np.argmax(window)))
        above = above[above >= lags[-1] + half]
    return lags or [int(np.argmax(found))]


def _piecewise(recording: Audio, reference: Audio, lag: int) -> float:
    """The score of ``reference`` placed at sample ``lag``, piece by piece.

    Each piece (``PIECE_S``) may sit up to ``SLACK_S`` from where the one before ended: the
    switch drops or pads a frame now and then on a busy machine, which would shift the rest
    of a long prompt against the reference. The score is the pieces' scores weighted by
    their energy, so a piece missing (cut, silent, another sound) costs its share of the
    prompt's energy: the first half alone scores about the first half's share.
    """
    ref = band_limited(resample(reference, recording.rate))
    rec = band_limited(recording)
    piece, slack = int(PIECE_S * rec.rate), int(SLACK_S * rec.rate)
    total, weighted, drift = 0.0, 0.0, 0
    for start in range(0, len(ref.samples), piece):
        part = ref.samples[start: start + piece]
        energy = float(np.dot(part, part))
        if energy < _QUIET * len(part) or len(part) < piece // 4:
            continue  # a pause in the prompt: nothing to find
        first = max(0, lag + start + drift - slack)
        window = Audio(rec.samples[first: lag + start + drift + slack + len(part)], rec.rate)
        found = scores(window, Audio(part, rec.rate), filtered=True)
        best = int(np.argmax(found)) if len(found) else 0
        score = float(found[best]) if len(found) else 0.0
        if score >= ANCHOR:  # a piece not found says nothing about where the next one is
            drift = first + best - (lag + start)
        total += energy
        weighted += energy * max(0.0, score)
    return weighted / total if total else 0.0


def first_match(recording: Audio, reference: Audio, start_s: float = 0.0,
                threshold: float = THRESHOLD) -> Match:
    """The first place from ``start_s`` on where ``reference`` scores ``threshold`` or more;
    else the best-scoring place (a failed match: the score says how far off it is)."""
    seconds = reference.seconds
    start = max(0.0, start_s)
    # Silence in front: a recording that began a few ms into the prompt still lines up.
    part = concat(silence(SLACK_S, recording.rate), recording.cut(start))
    found = scores(part, reference)
    if len(found) == 0:
        return Match(start, 0.0, seconds)
    best = Match(start, -1.0, seconds)
    for lag in _anchors(found, int(seconds * recording.rate)):
        match = Match(start + lag / recording.rate - SLACK_S,
                      _piecewise(part, reference, lag), seconds)
        if match.score >= threshold:
            return match
        best = max(best, match, key=lambda m: m.score)
    return best


def find_in_order(recording: Audio, references: Sequence[Audio], threshold: float = THRESHOLD,
                  names: Sequence[str] | None = None, start_s: float = 0.0) -> list[Match]:
    """Each reference in turn, each after the end of the one before; raises AudioMismatch.

    The message lists every reference's best score, so a failure says which prompt was
    missing, cut or replaced.
    """
    labels = list(names) if names is not None else [f"#{i + 1}" for i in range(len(references))]
    matches: list[Match] = []
    position = start_s
    for label, reference in zip(labels, references, strict=True):
        match = first_match(recording, reference, position, threshold)
        matches.append(match)
        if match.score < threshold:
            raise AudioMismatch(
                f"{label} not heard in order (best score {match.score:.3f} < {threshold} at "
                f"{match.offset_s:.2f} s of {recording.seconds:.2f} s); so far: "
                + ", ".join(f"{name} {m.score:.3f}@{m.offset_s:.2f}s"
                            for name, m in zip(labels, matches, strict=False)))
        position = match.end_s - OVERLAP_S
    return matches


def dominant_hz(audio: Audio) -> float:
    """The strongest frequency of the audio (for a tone: its pitch)."""
    spectrum = np.abs(np.fft.rfft(audio.samples * np.hanning(len(audio.samples))))
    return float(np.fft.rfftfreq(len(audio.samples), 1.0 / audio.rate)[int(np.argmax(spectrum))])
