"""``load_config``: read the YAML file, validate it, cross-check it, report every problem."""

from __future__ import annotations

import os
from typing import Any

import phonenumbers
import structlog
from pydantic import ValidationError

from fsrouter.config.crosscheck import cross_check
from fsrouter.config.errors import ConfigError, ConfigIssue
from fsrouter.config.messages import format_path, issue_at, translate
from fsrouter.config.schema import Config
from fsrouter.config.yamlmarks import Marks, YamlSyntaxError, load_marked

log = structlog.get_logger(__name__)

MAX_BYTES = 5 * 1024 * 1024


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and check the configuration at ``path``; raise :class:`ConfigError` listing
    every problem (file:line:column: path: message)."""
    file = str(path)
    data, marks = _read(file)
    region = _region_of(data)
    issues = [issue_at(file, marks, p, message) for p, message in cross_check(data, region)]
    try:
        config = Config.model_validate(data, context={"region": region})
    except ValidationError as exc:
        issues.extend(translate(exc.errors(), data, marks, file))
        raise ConfigError(sorted(set(issues))) from None
    if issues:
        raise ConfigError(sorted(set(issues)))
    _set_origins(config, marks, file)
    log.debug("config.loaded", file=file, numbers=len(config.numbers), users=len(config.users))
    return config


def _read(file: str) -> tuple[dict[str, Any], Marks]:
    text = _read_text(file)
    try:
        data, marks, problems = load_marked(text)
    except YamlSyntaxError as exc:
        raise ConfigError([ConfigIssue(file, exc.line, exc.column, "(yaml)", exc.message)]) \
            from None
    issues = [ConfigIssue(file, p.line, p.column, format_path(p.path), p.message)
              for p in problems]
    if data is None:
        issues.append(ConfigIssue(file, 1, 1, "(root)", "the file is empty"))
    elif not isinstance(data, dict):
        issues.append(ConfigIssue(file, 1, 1, "(root)",
                                  "must be a mapping of sections (switch, users, numbers, ...)"))
    if issues:
        raise ConfigError(issues)
    return data, marks


def _read_text(file: str) -> str:
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([ConfigIssue(file, 1, 1, "(file)",
                                       f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError([ConfigIssue(file, 1, 1, "(file)",
                                       f"larger than {MAX_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file, line, 1, "(file)", "not valid UTF-8")]) from None


def _region_of(data: dict[str, Any]) -> str | None:
    """``defaults.country`` as written (validated by the schema), to read national numbers;
    None without it (national numbers are then errors, never guessed)."""
    defaults = data.get("defaults")
    country = defaults.get("country") if isinstance(defaults, dict) else None
    if isinstance(country, str) and country.upper() in phonenumbers.SUPPORTED_REGIONS:
        return country.upper()
    return None


def _set_origins(config: Config, marks: Marks, file: str) -> None:
    """Tell secret holders where they were configured, for errors at resolve time."""
    config._source = (file, marks)
    holders: list[tuple[tuple[Any, ...], Any]] = [(("switch",), config.switch),
                                                  (("smtp",), config.smtp)]
    holders += [(("switches", index), entry) for index, entry in enumerate(config.switches)]
    for section, holder in holders:
        if holder is None:
            continue
        line, column = marks.for_value(section)
        holder._origin = (file, line, column, format_path(section))
        holder._key_marks = {key: marks.for_value((*section, key))
                             for key in ("password", "password_env", "password_file")
                             if getattr(holder, key) is not None}



