"""The store fixtures (both engines, a real PostgreSQL) for the cluster tests."""

from tests.store.conftest import db, db_url, empty_db, postgres_server, postgres_url

__all__ = ["db", "db_url", "empty_db", "postgres_server", "postgres_url"]

from tests.reliability.conftest import capture_logs, sim_daemon  # noqa: E402

__all__ += ["capture_logs", "sim_daemon"]
