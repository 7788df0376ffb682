"""Fixtures for the operator commands: the example configuration with its database in
tmp_path, ``fsrouter.cli.main`` in-process with captured output, and the installed
``fsrouter`` script as a real process."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
FSROUTER = Path(sys.executable).parent / "fsrouter"  # the console script of this venv


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@contextmanager
def logging_kept() -> Iterator[None]:
    """main() points the logs at the stderr of the moment (a capture that pytest closes
    later); put the previous set-up back when it returns."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """``fsrouter ARGS`` in this process: (exit code, stdout, stderr)."""
    from fsrouter.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        with logging_kept():
            code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


def run_fsrouter(*args: str) -> Result:
    """``fsrouter ARGS`` as the operator runs it: the installed script, a real process."""
    env = {**os.environ, "FSROUTER_ESL_PASSWORD": "s3cret-Esl-pw"}
    done = subprocess.run([str(FSROUTER), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def example_config(directory: Path, extra: str = "") -> Path:
    """config.example.yaml with its SQLite database in ``directory`` (plus ``extra`` YAML)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    url = "sqlite:////var/lib/fsrouter/fsrouter.db"
    assert url in text, "the example no longer sets database.url"
    path = directory / "config.yaml"
    path.write_text(text.replace(url, f"sqlite:///{directory}/fsrouter.db") + extra,
                    encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return example_config(tmp_path)


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "fsrouter.db"


@pytest.fixture
def upgraded(cli: Cli, config_path: Path) -> Path:
    """The example configuration with its database created (``fsrouter db upgrade``)."""
    result = cli("db", "upgrade", "-c", config_path)
    assert result.code == 0, result.err
    return config_path


def rows(db_file: Path, table: str) -> list[tuple[object, ...]]:
    """A table's rows read with plain sqlite3 (not through the code under test)."""
    with closing(sqlite3.connect(db_file)) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
