"""Fixtures: a real PostgreSQL server for the session, and a fresh database per test on
both engines (a SQLite file under tmp_path, and an emptied schema on the PostgreSQL server)."""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import pytest

from fsrouter.store.db import close_database, open_database
from fsrouter.store.migrations import upgrade
from fsrouter.testing.postgres import PostgresServer, postgres_for_tests


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with postgres_for_tests() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


def empty_postgres(url: str) -> None:
    db = open_database(url, bind=False)
    with db.connection_context():
        db.execute_sql("DROP SCHEMA public CASCADE")
        db.execute_sql("CREATE SCHEMA public")
    db.close_all()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    return url


@pytest.fixture
def empty_db(db_url: str) -> Iterator[peewee.Database]:
    """The database opened and bound, no migrations applied."""
    db = open_database(db_url)
    try:
        yield db
    finally:
        close_database(db)


@pytest.fixture
def db(empty_db: peewee.Database) -> peewee.Database:
    """The database opened, bound and upgraded to the latest schema."""
    upgrade(empty_db)
    return empty_db
