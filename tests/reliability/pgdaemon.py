"""The simulator daemon of tests/reliability on a real PostgreSQL instead of a SQLite file.

``PgSimDaemon`` is :class:`tests.reliability.conftest.SimDaemon` with its rows in a fresh
database of a throwaway PostgreSQL server (fsrouter.testing.postgres), read back with a
connection of its own (psycopg2), so a test can halt the server under a running daemon
(``server.halt()``, ``server.resume()``) and count the rows afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fsrouter.daemon import Daemon, start_daemon
from fsrouter.testing.postgres import PostgresServer, postgres_for_tests
from fsrouter.testing.prompt_cache import with_shared_prompts
from fsrouter.testing.waiting import wait_for
from tests.reliability.conftest import PASSWORD, SimDaemon


@pytest.fixture
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own (it may halt and resume it)."""
    with postgres_for_tests() as server:
        yield server


def fresh_database(server: PostgresServer) -> str:
    """A new, empty database on ``server``; its URL."""
    return server.create_database(f"blink_{uuid.uuid4().hex[:12]}")


@dataclass
class PgSimDaemon(SimDaemon):
    """A SimDaemon whose store is ``db_url`` (PostgreSQL)."""

    db_url: str = ""
    config_name: str = "config.yaml"

    def start_daemon(self, esl_port: int) -> Daemon:
        path = self.tmp_path / self.config_name
        data = with_shared_prompts({"switch": {"host": "127.0.0.1", "port": esl_port,
                                               "password": PASSWORD},
                                    "metrics": {"enabled": False}, **self.config})
        data.setdefault("database", {})["url"] = self.db_url
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        resyncs = self.log_events().count("agents.resynced")
        daemon = start_daemon(path, listen_port=0)
        assert daemon.parts["switch"].wait_connected(5), "no event connection to the simulator"
        wait_for(lambda: self.log_events().count("agents.resynced") > resyncs, 10,
                 "the watcher's first resync")
        return daemon

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return pg_rows(self.db_url, sql, *args)


def pg_rows(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """``sql`` (``?`` placeholders) on its own connection; [] while the server is down is an
    error, not an empty answer (psycopg2 raises)."""
    import psycopg2
    import psycopg2.extras

    with contextlib.closing(psycopg2.connect(url, connect_timeout=5)) as conn:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            cursor.execute(sql.replace("?", "%s"), args)
            result = [dict(row) for row in cursor.fetchall()] if cursor.description else []
        conn.commit()
    return result


def start_pg_daemon(tmp_path: Path, server: PostgresServer, config: dict[str, Any],
                    logs: list[dict[str, Any]], speed: float = 1.0,
                    name: str = "a") -> PgSimDaemon:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    runner = PgSimDaemon(folder, config, speed, None, logs=logs, db_url=fresh_database(server))
    return runner.start()  # type: ignore[return-value]
