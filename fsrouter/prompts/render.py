"""Rendering spoken prompts to WAV files with espeak-ng, cached by a hash of what is spoken.

Layout of ``prompts.directory`` (what FreeSWITCH's mod_sndfile expects: when asked for
``<dir>/<name>.wav`` it first opens ``<dir>/<channel rate>/<name>.wav``, then the highest rate
folder it finds, then the file itself; mod_sndfile.c, sndfile_file_open)::

    <dir>/tts-<hash>.wav          16 kHz, the path fsrouter plays (a hard link to the 16 kHz one)
    <dir>/8000/tts-<hash>.wav     8 kHz  (G.711 callers: no resampling on the switch)
    <dir>/16000/tts-<hash>.wav    16 kHz (G.722 and wideband callers)

The hash covers the text, the language, the espeak-ng voice and speed, the engine and the
file format, so a changed prompt gets a new file and an unchanged one is never rendered
again (a reload renders only what changed). Every file is written to a temporary name in the
same folder and renamed into place; the plain ``<name>.wav`` comes last, so its presence
means the three are complete. espeak-ng speaks at 22050 Hz; sox resamples (its default
high-quality ``rate`` effect) to 8000 and 16000 Hz, 16-bit mono PCM.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fsrouter.config.schema import PromptSettings, Tts

ENGINE = "espeak-ng"
RATES = (8000, 16000)
# The rate of the plain <name>.wav (the fallback for other channel rates).
BASE_RATE = 16000
# Bumped when the files change for the same text (rates, format, resampler settings).
FORMAT = 1
RENDER_TIMEOUT_S = 60
MAX_WORKERS = 4
DIRECTORY_MODE = 0o755
FILE_MODE = 0o644
# espeak-ng voices with a region of their own; other languages use their base (de-AT -> de).
_REGIONAL_VOICES = frozenset({"en-us", "en-gb", "pt-br", "es-419"})


class RenderFailed(Exception):
    """One prompt could not be rendered; the message says why (shown with its key)."""


@dataclass
class RenderCount:
    """How many prompts this process rendered (the proof that a call renders nothing)."""

    rendered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int = 1) -> None:
        with self.lock:
            self.rendered += count


RENDERED = RenderCount()


def espeak_voice(language: str, tts: Tts) -> str:
    """The espeak-ng ``-v`` argument for a language: ``de``, ``en-us``, ``de+f3``."""
    full = language.lower()
    voice = full if full in _REGIONAL_VOICES else full.split("-", 1)[0]
    return f"{voice}+{tts.voice}" if tts.voice else voice


@functools.lru_cache(maxsize=4096)  # calls ask for the same few names over and over
def file_name(text: str, language: str, tts: Tts) -> str:
    """``tts-<hash>.wav``: the hash of everything that changes the sound."""
    what = [FORMAT, ENGINE, espeak_voice(language, tts), tts.speed, language, text]
    digest = hashlib.sha256(json.dumps(what, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"tts-{digest[:24]}.wav"


def rendered_path(text: str, language: str, tts: Tts, settings: PromptSettings) -> str:
    """The path fsrouter plays for this text (it exists once rendered)."""
    return str(Path(settings.directory) / file_name(text, language, tts))


def rate_path(path: str, rate: int) -> Path:
    """The file of ``path`` at ``rate`` (``<dir>/<rate>/<name>``)."""
    plain = Path(path)
    return plain.parent / str(rate) / plain.name


def is_rendered(path: str) -> bool:
    return all(Path(p).is_file() for p in (*(rate_path(path, r) for r in RATES), path))


def tools_missing() -> list[str]:
    """The programs rendering needs that are not on PATH."""
    return [tool for tool in (ENGINE, "sox") if shutil.which(tool) is None]


def render(text: str, language: str, tts: Tts, settings: PromptSettings) -> str:
    """Render one prompt unless it already is; returns its path. Raises RenderFailed."""
    path = rendered_path(text, language, tts, settings)
    if is_rendered(path):
        return path
    directory = Path(settings.directory)
    try:
        for folder in (directory, *(directory / str(rate) for rate in RATES)):
            _make_dir(folder)
        with tempfile.TemporaryDirectory(prefix=".render-", dir=directory) as tmp:
            _render_into(Path(tmp), text, language, tts, path)
    except OSError as error:
        raise RenderFailed(f"cannot write {directory}: {error.strerror or error}") from None
    RENDERED.add()
    return path


def _make_dir(folder: Path) -> None:
    """A folder the switch can read even under the service's ``UMask=0077``."""
    if folder.is_dir():
        return
    folder.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(folder, DIRECTORY_MODE)


def _render_into(tmp: Path, text: str, language: str, tts: Tts, path: str) -> None:
    spoken = tmp / "espeak.wav"
    _run([ENGINE, "-v", espeak_voice(language, tts), "-s", str(tts.speed), "-w", str(spoken),
          "--stdin"], text)
    if not spoken.is_file() or spoken.stat().st_size <= 44:  # a bare WAV header: no sound
        raise RenderFailed(f"{ENGINE} produced no sound for language {language!r}")
    for rate in RATES:
        resampled = tmp / f"{rate}.wav"
        _run(["sox", str(spoken), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
              str(resampled)], None)
        _publish(resampled, rate_path(path, rate))
    # The plain name last: it marks the set complete. A hard link costs no space.
    base = tmp / "base.wav"
    try:
        os.link(rate_path(path, BASE_RATE), base)
    except OSError:
        shutil.copyfile(rate_path(path, BASE_RATE), base)
    _publish(base, Path(path))


def _publish(source: Path, target: Path) -> None:
    os.chmod(source, FILE_MODE)
    os.replace(source, target)  # same folder tree and file system: atomic


def _run(command: list[str], stdin: str | None) -> None:
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                timeout=RENDER_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise RenderFailed(f"{command[0]} is not installed (Debian: apt-get install "
                           f"espeak-ng sox)") from None
    except subprocess.TimeoutExpired:
        raise RenderFailed(f"{command[0]} took longer than {RENDER_TIMEOUT_S} s") from None
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise RenderFailed(f"{command[0]} failed: {message[-1] if message else result.returncode}")


@dataclass(frozen=True)
class Job:
    """One distinct text to render (several prompts may share it)."""

    text: str
    language: str


def render_many(jobs: Iterable[Job], tts: Tts, settings: PromptSettings
                ) -> tuple[dict[Job, str], dict[Job, str], float]:
    """Render each job (in parallel); ``(paths, failures, seconds)``, failures by message."""
    began = time.monotonic()
    unique = list(dict.fromkeys(jobs))
    paths: dict[Job, str] = {}
    failures: dict[Job, str] = {}

    def one(job: Job) -> None:
        try:
            paths[job] = render(job.text, job.language, tts, settings)
        except RenderFailed as error:
            failures[job] = str(error)

    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1, len(unique)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, unique))
    return paths, failures, time.monotonic() - began
