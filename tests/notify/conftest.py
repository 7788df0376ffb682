"""Fixtures for the notify tests: a store in tmp_path, a clock, real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.notify.servers import Clock, HookServer, SmtpServer, store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fsrouter.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Any]:
    with store(db_path) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An SMTP server, not started yet (connections refused until ``start()``)."""
    server = SmtpServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    """A webhook receiver, not started yet (connections refused until ``start()``)."""
    server = HookServer()
    try:
        yield server
    finally:
        server.stop()
