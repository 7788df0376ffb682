"""Persistence: peewee models on SQLite (embedded default) or PostgreSQL (shared by instances).

Typical start-up::

    db = open_database(config.database_url)   # StoreError with a readable reason if unusable
    upgrade(db)                                # apply missing migrations
    queries.create_call_record(...)
"""

from fsrouter.store.db import open_database, session
from fsrouter.store.errors import NotFound, StoreError, StoreInputError
from fsrouter.store.migrations import current_version, latest_version, upgrade

__all__ = [
    "NotFound",
    "StoreError",
    "StoreInputError",
    "current_version",
    "latest_version",
    "open_database",
    "session",
    "upgrade",
]
