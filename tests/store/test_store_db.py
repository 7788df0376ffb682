"""open_database: URLs, SQLite settings and file modes, and clear errors for unusable databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fsrouter.store import queries
from fsrouter.store.db import (
    PostgresTarget,
    SqliteTarget,
    close_database,
    open_database,
    parse_url,
)
from fsrouter.store.errors import StoreError, StoreInputError
from fsrouter.store.migrations import MIGRATIONS, upgrade
from fsrouter.testing.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def run_python(code: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [*prefix, sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_parse_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite:////var/lib/x.db") == SqliteTarget("/var/lib/x.db")
    assert parse_url("sqlite:///rel/x.db") == SqliteTarget(str(tmp_path / "rel" / "x.db"))
    assert parse_url("sqlite:///:memory:") == SqliteTarget(":memory:")
    pg = parse_url("postgresql://u%40x:p%2Fw%3A@db.example:6543/fs%20r?sslmode=require")
    assert isinstance(pg, PostgresTarget)
    assert (pg.user, pg.password, pg.host, pg.port, pg.dbname) == (
        "u@x",
        "p/w:",
        "db.example",
        6543,
        "fs r",
    )
    assert pg.options == {"sslmode": "require"}
    assert "p/w" not in pg.label() and "p/w" not in repr(pg)
    assert parse_url("postgres://h/d").port == 5432


@pytest.mark.parametrize(
    "url",
    [
        "mysql://h/d",
        "sqlite://x.db",
        "sqlite:///",
        "sqlite:///x.db?mode=ro",
        "postgresql://h",
        "postgresql:///d",
        "postgresql://h:99999/d",
        "",
        "/tmp/x.db",
    ],
)
def test_bad_urls_are_refused_clearly(url):
    with pytest.raises(StoreInputError):
        parse_url(url)


def test_sqlite_file_settings_and_modes(tmp_path):
    path = tmp_path / "new" / "deeper" / "fs.db"
    db = open_database(f"sqlite:///{path}")
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
        with db.connection_context():
            pragma = lambda name: db.execute_sql(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("busy_timeout") == 5000
            assert pragma("foreign_keys") == 1
            assert pragma("synchronous") == 1  # NORMAL
            upgrade(db)
            wal = Path(f"{path}-wal")
            assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        close_database(db)
    # WAL is a property of the file: a plain connection sees it too.
    with contextlib.closing(sqlite3.connect(path)) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_existing_directory_mode_is_left_alone(tmp_path):
    tmp_path.chmod(0o755)
    db = open_database(f"sqlite:///{tmp_path}/fs.db")
    close_database(db)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_memory_database_for_tests():
    db = open_database("sqlite:///:memory:")
    try:
        # each session has its own connection: all see one database
        assert upgrade(db) == [version for version, _ in MIGRATIONS]
        queries.set_presence("alice", NOW, state="logged_in")
        assert queries.get_presence("alice").state == "logged_in"
    finally:
        close_database(db)
    other = open_database("sqlite:///:memory:")  # a second store starts empty
    try:
        assert upgrade(other) == [version for version, _ in MIGRATIONS]
    finally:
        close_database(other)


def test_locked_sqlite_gives_store_error_after_busy_timeout(tmp_path):
    path = tmp_path / "fs.db"
    db = open_database(f"sqlite:///{path}", busy_timeout_ms=200)
    try:
        upgrade(db)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked by another process.*200 ms"):
            queries.set_presence("alice", NOW, state="logged_in")
        waited = time.monotonic() - started
        assert 0.15 <= waited < 3
        holder.rollback()
        holder.close()
        assert queries.set_presence("alice", NOW, state="logged_in").state == "logged_in"
    finally:
        close_database(db)


def _read_only_prefix() -> tuple[str, ...]:
    """Root ignores file modes; drop the capabilities that let it, so 0400 means read-only."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file read-only for root")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_read_only_sqlite_gives_store_error(tmp_path):
    path = tmp_path / "fs.db"
    db = open_database(f"sqlite:///{path}")
    upgrade(db)
    close_database(db)
    path.chmod(0o400)
    result = run_python(
        f"""
        from datetime import UTC, datetime
        from fsrouter.store import queries
        from fsrouter.store.db import open_database
        from fsrouter.store.errors import StoreError
        try:
            open_database("sqlite:///{path}")
            queries.set_presence("alice", datetime.now(UTC), state="logged_in")
        except StoreError as exc:
            print("STORE_ERROR", exc)
        """,
        *_read_only_prefix(),
    )
    assert "STORE_ERROR" in result.stdout, result.stderr
    assert "read-only" in result.stdout
    assert "Traceback" not in result.stderr


def test_unreachable_postgres_gives_store_error():
    port = free_port()  # nothing listens there
    with pytest.raises(StoreError, match=rf"127.0.0.1:{port}/fsr is unavailable") as info:
        open_database(f"postgresql://fsr:secret-pw@127.0.0.1:{port}/fsr")
    assert "secret-pw" not in str(info.value)


def test_wrong_postgres_password_gives_store_error(postgres_server):
    url = postgres_server.url.replace(":p%40ss", ":wrong")
    with pytest.raises(StoreError, match="password authentication failed"):
        open_database(url)


def test_missing_psycopg2_gives_store_error():
    result = run_python(
        """
        import sys
        sys.modules["psycopg2"] = None  # what an install without the postgres extra looks like
        from fsrouter.store.db import open_database
        from fsrouter.store.errors import StoreError
        try:
            open_database("postgresql://u:p@127.0.0.1:1/d")
        except StoreError as exc:
            print("STORE_ERROR", exc)
        """
    )
    assert "STORE_ERROR" in result.stdout and "fsrouter[postgres]" in result.stdout, result.stderr


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_database(f"sqlite:///{tmp_path}")


def test_store_used_before_open_gives_store_error():
    with pytest.raises(StoreError, match="not open"):
        queries.list_assignments()


def test_postgres_helper_runs_a_private_loopback_server(postgres_server):
    from fsrouter.testing.postgres import find_bin_dir

    assert (find_bin_dir() / "initdb").exists()
    assert postgres_server.url.startswith("postgresql://fsrouter:p%40ss%3Aw%2Frd%25")
    db = open_database(postgres_server.url, bind=False)
    try:
        with db.connection_context():
            addr = db.execute_sql("SELECT current_setting('listen_addresses')").fetchone()[0]
            sock = db.execute_sql("SELECT current_setting('unix_socket_directories')").fetchone()
        assert addr == "127.0.0.1"
        assert sock[0] == str(postgres_server.base_dir)
    finally:
        close_database(db)
