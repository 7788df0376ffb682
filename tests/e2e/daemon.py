"""Run ``fsrouter run`` as a real process against a switch, for end-to-end tests.

Every wait here yields to gevent's hub (``gevent.sleep``, never ``time.sleep``): the switch
may be the simulator running in this test process, and it must keep answering meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import yaml

from fsrouter.testing.prompt_cache import with_shared_prompts


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that the kernel does not hand out itself.

    The daemon binds it only after its Python start (seconds on a busy host). A port from
    ``bind(("127.0.0.1", 0))`` is in the ephemeral range, where every outbound connection on
    the machine (the daemon's own to the switch, other test runs') and every other port-0
    pick can take it meanwhile: "Address already in use", exit 4, seen at load 10. Below the
    ephemeral range only a program that names the port binds it."""
    high = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10000, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback TCP port in 10000-{high}")


class Daemon:
    """A ``fsrouter run`` process with its own config file and SQLite database."""

    def __init__(self, workdir: Path, config: dict[str, Any], esl: tuple[str, int, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.metrics_port = free_port()
        self.db_path = workdir / "fsrouter.db"
        host, esl_port, password = esl
        config = {
            "listener": {"port": self.port},
            "switch": {"host": host, "port": esl_port, "password_env": "FSROUTER_TEST_ESL"},
            "database": {"url": f"sqlite:///{self.db_path}"},
            "metrics": {"port": self.metrics_port},
            **config,
        }
        self.config_path = workdir / "config.yaml"
        config = with_shared_prompts(config)
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
        self.env = {**os.environ, "FSROUTER_TEST_ESL": password}
        self.log_path = workdir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.argv_prefix: list[str] = []  # e.g. unshare: the daemon under a host name of its own

    def start(self, timeout: float = 60.0) -> None:  # a cold prompt render on a busy host
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*self.argv_prefix, sys.executable, "-m", "fsrouter", "--log-format", "json",
                 "--log-level", "debug", "run", "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.get("event") == "daemon.ready" for line in self.log_lines()):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"fsrouter exited {self.process.returncode}:\n{self.log()}")
            gevent.sleep(0.05)
        raise RuntimeError(f"fsrouter not ready in {timeout} s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            deadline = time.monotonic() + 30
            while self.process.poll() is None and time.monotonic() < deadline:
                gevent.sleep(0.05)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def wait_logged(self, event: str, timeout: float = 10.0) -> None:
        """Until the daemon has logged ``event`` (e.g. the agent watcher's first
        ``agents.resynced``, after which busy flags set by a test are kept)."""
        deadline = time.monotonic() + timeout
        while not any(line.get("event") == event for line in self.log_lines()):
            assert time.monotonic() < deadline, (
                f"no {event} within {timeout} s\n{self.log()[-2000:]}")
            gevent.sleep(0.05)

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        # closing(): a sqlite3 connection used as a context manager commits but stays open.
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(sql, args)]

    def wait_for(self, sql: str, *args: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Rows of ``sql`` once it returns any (the daemon writes as the call goes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.rows(sql, *args)
            if rows:
                return rows
            gevent.sleep(0.1)
        raise AssertionError(f"no rows for {sql} within {timeout} s\n{self.log()[-4000:]}")

    @contextlib.contextmanager
    def store(self) -> Iterator[Any]:
        """The daemon's database opened in this process (for setting up presence, routes)."""
        from fsrouter.store import open_database, queries
        from fsrouter.store.db import close_database

        db = open_database(f"sqlite:///{self.db_path}")
        try:
            yield queries
        finally:
            close_database(db)  # every connection, the WAL keeper's too
