"""The store under gevent monkey-patching, as the daemon runs it (in a fresh process, since
monkey-patching cannot be undone inside pytest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = """
import sys
if sys.argv[3] == "peewee-first":  # as in a test process: peewee imported, then the patching
    import peewee  # noqa: F401
from gevent import monkey
monkey.patch_all()
import json, sys, time
from datetime import UTC, datetime
import gevent, structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from fsrouter.store import queries
from fsrouter.store.db import open_database, session
from fsrouter.store.migrations import upgrade

db = open_database(sys.argv[1])
upgrade(db)
result = {}

def one_call(n):
    queries.create_call_record(f"c-{n}", "+4930123", "agent", "+49170", "x", datetime.now(UTC))
    queries.finish_call(f"c-{n}", "bridged", "NORMAL_CLEARING", datetime.now(UTC))

gevent.joinall([gevent.spawn(one_call, n) for n in range(40)], raise_error=True)
result["finished"] = sum(1 for n in range(40) if queries.get_call(f"c-{n}").ended_at)

if sys.argv[2] == "postgres":
    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    def slow():
        with session():
            db.execute_sql("SELECT pg_sleep(0.4)")
    tick = gevent.spawn(ticker)
    gevent.sleep(0)
    start = time.monotonic()
    gevent.joinall([gevent.spawn(slow) for _ in range(4)], raise_error=True)
    result["elapsed"] = time.monotonic() - start
    result["ticks"] = sum(1 for t in ticks if t > start)
    tick.kill()
print(json.dumps(result))
"""


def run_under_gevent(url: str, engine: str, order: str = "patch-first") -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", textwrap.dedent(_SCRIPT), url, engine, order]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", ["patch-first", "peewee-first"])
def test_many_greenlets_write_concurrently(db_url, order):
    """``peewee-first``: peewee keeps connections in a threading.local class made when it is
    imported; imported before the patching (a pytest worker that runs the daemon in-process),
    that class is per thread and every greenlet shared one PostgreSQL connection: "execute
    cannot be used while an asynchronous callback is in progress" (a CI run's blink test)."""
    engine = "postgres" if db_url.startswith("postgres") else "sqlite"
    result = run_under_gevent(db_url, engine, order)
    assert result["finished"] == 40
    if engine == "postgres":
        # Four 0.4 s queries overlap (one pooled connection per greenlet) and the hub keeps
        # running meanwhile: psycopg2 waits on gevent, not in C.
        assert result["elapsed"] < 1.2
        assert result["ticks"] >= 15
