"""One daemon per SQLite file: the guard that makes a second one refuse to start.

SQLite is fsrouter's single-node store. Two daemons on one file would each believe the calls
in it are theirs: the second one's start-up recovery closed the first one's live call as lost.
So a daemon holds an exclusive ``flock`` on ``<database>.daemon.lock`` for as long as it runs;
a second daemon finds it held and refuses with the holder's PID. The kernel drops the lock
when the holder dies (SIGKILL included), so a crash never leaves a stale lock behind.
Several nodes share state through PostgreSQL instead (no file lock there).

The operator commands (``routes``, ``agents`` ...) never take the lock: they are short
transactions that SQLite's own locking already serialises with the daemon.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from fsrouter.store.errors import StoreError

_MAX_PID_BYTES = 32


class DatabaseInUse(StoreError):
    """Another daemon runs on this SQLite file."""


class DaemonLock:
    """The held lock; :meth:`release` (or the process ending) lets another daemon start."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None


def lock_path(database_path: str) -> Path:
    return Path(f"{database_path}.daemon.lock")


def claim(database_path: str) -> DaemonLock | None:
    """Lock the SQLite file at ``database_path`` for this daemon; None for ``:memory:``.

    Raises :class:`DatabaseInUse` naming the other daemon's PID when the lock is held.
    """
    if database_path == ":memory:":
        return None
    path = lock_path(database_path)
    try:
        handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - kept open while we run
    except OSError as error:
        raise StoreError(f"cannot open the daemon lock {path}: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(handle)
        handle.close()
        raise DatabaseInUse(_in_use_message(database_path, holder)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return DaemonLock(path, handle)


def _read_pid(handle: IO[str]) -> int | None:
    handle.seek(0)
    text = handle.read(_MAX_PID_BYTES).strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _in_use_message(database_path: str, holder: int | None) -> str:
    who = f"process {holder}" if holder is not None else "another process"
    return (f"SQLite database {database_path} is in use by another fsrouter daemon ({who}). "
            "SQLite serves one node only; to run several daemons, point every one at the same "
            "PostgreSQL database (database.url: postgresql://...)")
