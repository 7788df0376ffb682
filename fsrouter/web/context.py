"""What a request handler needs: the configuration, the store, who is acting, the time.

The configuration is read again when the YAML file's modification time changes (the daemon
reloads on SIGHUP; the console follows the file). A file that does not load keeps the last
good configuration in use and :func:`config_problem` says why (base.html shows it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flask
import structlog

from fsrouter.config import Config, ConfigError, load_config
from fsrouter.store.db import session

log = structlog.get_logger(__name__)


@dataclass
class ConfigHolder:
    """The configuration last read from ``path``, and why the newest file is not in use."""

    path: Path
    config: Config
    mtime_ns: int
    problem: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ConfigHolder:
        """The first read: a bad file raises :class:`ConfigError` (``fsrouter web`` exits 2)."""
        mtime = _mtime(path)
        return cls(path, load_config(path), mtime)

    def current(self) -> Config:
        mtime = _mtime(self.path)
        if mtime != self.mtime_ns:
            self.mtime_ns = mtime
            try:
                self.config = load_config(self.path)
                self.problem = []
                log.info("web.config_reloaded", config=str(self.path))
            except ConfigError as error:
                self.problem = [str(issue) for issue in error.issues]
                log.warning("web.config_refused", config=str(self.path), problems=self.problem)
            except OSError as error:
                self.problem = [f"{self.path}: {error.strerror}"]
        return self.config


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _holder() -> ConfigHolder:
    holder: ConfigHolder = flask.current_app.extensions["fsrouter.config"]
    return holder


def config() -> Config:
    """The configuration in use (re-read when the file changed)."""
    return _holder().current()


def config_problem() -> list[str]:
    """Why the file on disk is not the configuration in use ([] when it is)."""
    holder = _holder()
    holder.current()
    return holder.problem


@contextmanager
def db(immediate: bool = False) -> Iterator[Any]:
    """Store work for this request: ``with db(): queries...`` (one transaction)."""
    with session(immediate=immediate) as database:
        yield database


def who() -> str:
    """``web:<account>``: ``changed_by`` and the audit trail's "who" for this request."""
    return f"web:{flask.g.account.name}"


def now() -> datetime:
    """The time now, UTC (the one clock of the console: tests may replace ``clock``)."""
    clock = flask.current_app.extensions.get("fsrouter.clock")
    return clock() if clock is not None else datetime.now(UTC)
