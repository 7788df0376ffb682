"""Migrations on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fsrouter.store.db import close_database, open_database
from fsrouter.store.migrations import MIGRATIONS, current_version, latest_version, upgrade
from fsrouter.store.models import ALL_MODELS, LATER_MODELS

VERSIONS = [version for version, _ in MIGRATIONS]

REPO = Path(__file__).resolve().parents[2]


def test_upgrade_from_empty_creates_every_table(empty_db):
    assert current_version(empty_db) == 0
    assert upgrade(empty_db) == VERSIONS
    assert current_version(empty_db) == latest_version() == VERSIONS[-1]
    models = ALL_MODELS + LATER_MODELS
    with empty_db.connection_context():
        tables = set(empty_db.get_tables())
        assert {model._meta.table_name for model in models} <= tables
        for model in models:  # every model column exists, none missing or extra
            columns = {c.name for c in empty_db.get_columns(model._meta.table_name)}
            assert columns == {f.column_name for f in model._meta.sorted_fields}, model


def test_upgrade_is_idempotent(empty_db):
    assert upgrade(empty_db) == VERSIONS
    assert upgrade(empty_db) == []
    assert current_version(empty_db) == VERSIONS[-1]
    with empty_db.connection_context():
        rows = empty_db.execute_sql("SELECT version FROM schema_version").fetchall()
    assert sorted(r[0] for r in rows) == VERSIONS


def test_needed_indexes_exist(db):
    with db.connection_context():

        def indexed(table):
            return [tuple(index.columns) for index in db.get_indexes(table)]

        assert ("state", "created_at") in indexed("incidents")
        assert ("call_id",) in indexed("attempts")
        assert ("customer_number",) in indexed("two_way_mappings")
        assert ("call_uuid",) in indexed("call_records")


_WORKER = """
import json, os, sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: protocol
from fsrouter.store.db import open_database
from fsrouter.store.migrations import upgrade
db = open_database(sys.argv[1], bind=False)
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
print(json.dumps(upgrade(db)), flush=True)
"""


def test_concurrent_upgrade_from_two_processes(db_url, tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", textwrap.dedent(_WORKER), db_url, str(go)]
    workers = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        results = _race(workers, go)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    # Each migration is applied exactly once, by one process or the other.
    assert sorted(version for applied in results for version in applied) == VERSIONS
    db = open_database(db_url)
    try:
        assert current_version(db) == VERSIONS[-1]
    finally:
        close_database(db)


def _race(workers: list[subprocess.Popen], go: Path) -> list[list[int]]:
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    go.touch()  # both are connected: let them race
    results = []
    deadline = time.monotonic() + 30
    for worker in workers:
        out, err = worker.communicate(timeout=max(1, deadline - time.monotonic()))
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip()))
    return results
