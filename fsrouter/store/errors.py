"""Errors the store lets callers see.

Every database problem an operator can cause or fix (wrong URL, unreachable server, locked or
read-only SQLite file, missing driver) surfaces as :class:`StoreError` with a sentence that
names the database (never its password), so the CLI and the daemon can print it instead of a
traceback.
"""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used: unreachable, locked, read-only, misconfigured."""


class StoreInputError(StoreError, ValueError):
    """A value handed to the store is invalid; nothing was written."""


class NotFound(StoreError, LookupError):
    """The row a caller refers to (call uuid, incident id...) does not exist."""
