"""Prompts: what callers (and called people) hear, rendered by fsrouter before any call.

Every generated prompt (menu greeting, "for X press N", invalid key, goodbye, out of hours,
press-to-accept, queue announcements, the default voicemail greeting, feature-code
confirmations) is either a recording named in the configuration or text that fsrouter renders
to WAV files itself with espeak-ng, in the number's or option's language, at start and on every
reload (never while a caller waits; a reload renders only what changed). With
``tts.engine: flite`` nothing is rendered and the switch's mod_flite speaks the text instead.

The API (all take the loaded :class:`~fsrouter.config.Config`)::

    from fsrouter import prompts

    prompts.render_prompts(config)        # render what is missing; ConfigError names keys
    prompts.prompt_path(config, "numbers[0].menu.goodbye")
        # -> "/var/lib/fsrouter/prompts/tts-<hash>.wav" (or the configured recording)
    prompts.rate_file(config, "numbers[0].menu.goodbye", 8000)
        # -> Path(".../prompts/8000/tts-<hash>.wav"): the file an 8 kHz caller hears
    prompts.entries(config)               # every prompt: key, text, language, file, rendered
    prompts.check_files(config)           # ConfigIssues for missing/unreadable recordings
    prompts.playable(config, prompt)      # what a call passes to playback

Keys are listed in :mod:`fsrouter.prompts.catalog` (``numbers[0].options[1].prompt``,
``numbers[0].menu.invalid``, ``users.eva.voicemail.greeting``, ``features.login.de``...).
Files are named ``tts-<hash>.wav`` after a hash of text, language, voice, speed and engine;
the rate folders follow FreeSWITCH's mod_sndfile (see :mod:`fsrouter.prompts.render`).
``RENDERED.rendered`` counts the prompts this process rendered (and the daemon's metric
``fsrouter_prompts_rendered_total``): a call never changes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fsrouter.config import Config
from fsrouter.config.errors import ConfigError, ConfigIssue
from fsrouter.config.messages import format_path
from fsrouter.config.yamlmarks import Path as KeyPath
from fsrouter.prompts.catalog import PromptSpec, catalog
from fsrouter.prompts.render import (
    RENDERED,
    Job,
    is_rendered,
    rate_path,
    render_many,
    rendered_path,
    tools_missing,
)
from fsrouter.routing.menu import Prompt

__all__ = ["RENDERED", "Entry", "RenderReport", "catalog", "check_files", "entries",
           "playable", "prompt_path", "rate_file", "render_prompts"]

STREAMS = ("tone_stream://", "silence_stream://", "local_stream://", "say:")


def playable(config: Config, prompt: Prompt) -> str:
    """A file or stream for ``playback``: recordings as they are, text as its rendered file
    (or, with ``tts.engine: flite``, as the switch's ``say:flite:<voice>:<text>``)."""
    if prompt.kind == "file":
        return prompt.value
    if config.tts.engine == "flite":
        # say:<engine>:<voice>:<text> is FreeSWITCH's TTS file syntax (switch_ivr_play_file).
        return f"say:flite:{config.tts.voice or ''}:{prompt.value}"
    return rendered_path(prompt.value, _language(config, prompt), config.tts, config.prompts)


def _language(config: Config, prompt: Prompt) -> str:
    return prompt.language or config.defaults.language


def _spec(config: Config, key: str) -> PromptSpec:
    for spec in catalog(config):
        if spec.key == key:
            return spec
    raise KeyError(f"no prompt {key!r} in this configuration")


def prompt_path(config: Config, key: str) -> str:
    """What is played for the prompt ``key`` (a rendered file, a recording, a stream)."""
    return playable(config, _spec(config, key).prompt)


def rate_file(config: Config, key: str, rate: int) -> Path:
    """The rendered file of ``key`` at ``rate`` (8000 or 16000) that mod_sndfile opens."""
    return rate_path(prompt_path(config, key), rate)


@dataclass(frozen=True)
class Entry:
    """One line of ``fsrouter prompts``."""

    key: str
    kind: str  # "tts" (rendered), "file" (a recording), "switch" (flite speaks it)
    text: str
    language: str
    file: str
    rendered: bool


def entries(config: Config) -> list[Entry]:
    """Every prompt with its text, language, file and whether that file exists."""
    rows = []
    for spec in catalog(config):
        prompt, file = spec.prompt, playable(config, spec.prompt)
        if prompt.kind == "file":
            ready = file.startswith(STREAMS) or _readable(file) is None
            rows.append(Entry(spec.key, "file", "", "", file, ready))
        elif config.tts.engine == "flite":
            rows.append(Entry(spec.key, "switch", prompt.value, _language(config, prompt),
                              file, False))
        else:
            rows.append(Entry(spec.key, "tts", prompt.value, _language(config, prompt), file,
                              is_rendered(file)))
    return rows


@dataclass(frozen=True)
class RenderReport:
    prompts: int
    rendered: int
    seconds: float


def render_prompts(config: Config) -> RenderReport:
    """Render every spoken prompt that is not rendered yet; raise :class:`ConfigError`
    naming the key of each prompt that cannot be rendered."""
    if config.tts.engine == "flite":
        return RenderReport(0, 0, 0.0)
    specs = [spec for spec in catalog(config) if spec.prompt.kind == "tts"]
    missing = tools_missing()
    if missing and specs:
        raise ConfigError([_issue(config, ("tts", "engine"), "tts.engine",
                                  f"{' and '.join(missing)} not installed (Debian: apt-get "
                                  "install espeak-ng sox), so no prompt can be rendered")])
    jobs = {spec.key: Job(spec.prompt.value, _language(config, spec.prompt)) for spec in specs}
    before = RENDERED.rendered
    _paths, failures, seconds = render_many(jobs.values(), config.tts, config.prompts)
    issues = [_issue(config, spec.where, spec.key, f"cannot render prompt {spec.key}: "
                     f"{failures[jobs[spec.key]]}")
              for spec in specs if jobs[spec.key] in failures]
    if issues:
        raise ConfigError(sorted(set(issues)))
    return RenderReport(len(set(jobs.values())), RENDERED.rendered - before, seconds)


def check_files(config: Config) -> list[ConfigIssue]:
    """A missing or unreadable recording, per prompt key (files under a ``switch_only``
    folder live on the switch host and are not looked for)."""
    issues = []
    for spec in catalog(config):
        path = spec.prompt.value
        if spec.prompt.kind != "file" or path.startswith(STREAMS) or _switch_only(config, path):
            continue
        problem = _readable(path)
        if problem is not None:
            issues.append(_issue(config, spec.where, format_path(spec.where),
                                 f"prompt {spec.key}: {problem} (mark its folder in "
                                 "prompts.switch_only if it lives only on the switch host)"))
    return sorted(set(issues))


def _switch_only(config: Config, path: str) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/")
               for folder in config.prompts.switch_only)


def _readable(path: str) -> str | None:
    if not os.path.exists(path):
        return f"file {path} not found"
    if not os.path.isfile(path):
        return f"{path} is not a file"
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        return f"file {path} cannot be read: {error.strerror or error}"
    return None


def _issue(config: Config, where: KeyPath, key: str, message: str) -> ConfigIssue:
    file, marks = config._source
    line, column = marks.for_value(where) if marks is not None else (1, 1)
    return ConfigIssue(file, line, column, key, message)
