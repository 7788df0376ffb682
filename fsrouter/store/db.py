"""Open the database named by a URL and bind the models to it.

URLs::

    sqlite:////var/lib/fsrouter/fsrouter.db   absolute path
    sqlite:///fsrouter.db                     relative to the current directory (made absolute)
    sqlite:///:memory:                        tests only: every connection sees its own database
    postgresql://user:pass@host:5432/dbname   needs the ``postgres`` extra (psycopg2)

The models are bound to :data:`database_proxy`; :func:`open_database` points the proxy at the
database it opens, so one process works with the database it was told to use.

gevent: peewee keeps one connection per thread in a ``threading.local``; under gevent's
monkey-patching that is one connection per greenlet, which is what we want. Two rules follow:
run store work inside :func:`session` so the greenlet's connection goes back (closed for
SQLite, to the pool for PostgreSQL) when it is done, and never yield to the hub inside a
transaction (no socket I/O there), or a second greenlet could wait on a lock the first holds
while the busy handler blocks the hub. psycopg2 is made cooperative (a wait callback on
gevent's sockets) when the socket module is monkey-patched, so a slow PostgreSQL query does
not stall other calls.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import structlog
from playhouse.pool import PooledSqliteDatabase

from fsrouter.store.errors import StoreError, StoreInputError

log = structlog.get_logger(__name__)

database_proxy = peewee.DatabaseProxy()

DEFAULT_BUSY_TIMEOUT_MS = 5000
_PG_CONNECT_TIMEOUT_S = 5
_PG_ANSWER_TIMEOUT_S = 5  # longest wait for one answer of the server (see wait())


@dataclass(frozen=True)
class SqliteTarget:
    path: str  # absolute path, or ":memory:"


@dataclass(frozen=True)
class PostgresTarget:
    dbname: str
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, str] = field(default_factory=dict)

    def label(self) -> str:
        """A name for messages and logs; never contains the password."""
        who = f"{self.user}@" if self.user else ""
        return f"postgresql://{who}{self.host}:{self.port}/{self.dbname}"


class SqliteStore(PooledSqliteDatabase):
    """SQLite with the settings fsrouter relies on (set on every new connection).

    Connections are pooled: a session hands its connection back instead of closing it.
    Opening one (with its pragmas) and closing the last one (a WAL checkpoint) took ~1.5 ms,
    ten times a typical query, and dominated a call's CPU time (bench/README.md).
    """

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.label = f"SQLite database {path}"
        self.busy_timeout_ms = busy_timeout_ms
        self.in_memory = path == ":memory:"
        self._keeper: sqlite3.Connection | None = None
        extra: dict[str, Any] = {}
        if self.in_memory:
            # Every session opens its own connection; a named shared-cache memory database,
            # held open by a keeper connection, lets them all see the same data.
            path = f"file:fsrouter-{uuid.uuid4().hex}?mode=memory&cache=shared"
            extra["uri"] = True
            self._keeper = sqlite3.connect(path, uri=True, check_same_thread=False)
        pragmas = {
            "journal_mode": "wal",
            "busy_timeout": busy_timeout_ms,
            "foreign_keys": 1,
            "synchronous": "normal",
        }
        # No pool limit: sessions never yield inside (see the module docstring), so only a
        # few connections are ever in use.
        super().__init__(path, pragmas=pragmas, max_connections=None,
                         check_same_thread=False, **extra)
        self._timeout = busy_timeout_ms / 1000  # sqlite3.connect's (the pool takes `timeout`)

    def close_keeper(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None


def _postgres_class() -> type[peewee.Database]:
    # Imported here: the pool module is cheap, but psycopg2 may be absent (optional extra).
    from playhouse.pool import PooledPostgresqlDatabase

    class PostgresStore(PooledPostgresqlDatabase):
        label = "PostgreSQL database"

    return PostgresStore


def parse_url(url: str) -> SqliteTarget | PostgresTarget:
    """Split a database URL into what is needed to connect; :class:`StoreInputError` if bad."""
    if url.startswith("sqlite:"):
        return _parse_sqlite(url)
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        return _parse_postgres(url)
    raise StoreInputError(
        f"unsupported database URL scheme {parts.scheme or url!r}: "
        "use sqlite:////abs/path.db or postgresql://user:pass@host:port/db"
    )


def _parse_sqlite(url: str) -> SqliteTarget:
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise StoreInputError(
            f"bad SQLite URL {url!r}: use sqlite:////absolute/path.db or sqlite:///relative.db"
        )
    path = url[len("sqlite:///") :]
    if "?" in path or "\x00" in path:
        raise StoreInputError(f"bad SQLite URL {url!r}: no query string or NUL allowed")
    if path == ":memory:":
        return SqliteTarget(":memory:")
    return SqliteTarget(os.path.abspath(path))


def _parse_postgres(url: str) -> PostgresTarget:
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname:
        raise StoreInputError(
            "bad PostgreSQL URL: need postgresql://user:pass@host:port/dbname "
            f"(got host={parts.hostname!r}, database={dbname!r})"
        )
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise StoreInputError(f"bad PostgreSQL URL: {exc}") from None
    return PostgresTarget(
        dbname=dbname,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        options=dict(parse_qsl(parts.query)),
    )


def open_database(
    url: str, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, bind: bool = True, pool_size: int = 20
) -> peewee.Database:
    """Open (and check) the database at ``url``; bind the models to it unless ``bind=False``.

    Raises :class:`StoreError` with an operator-readable reason when the database cannot be
    used (unreachable server, locked or read-only SQLite file, missing driver).
    """
    target = parse_url(url)
    if isinstance(target, SqliteTarget):
        db: peewee.Database = _open_sqlite(target, busy_timeout_ms)
    else:
        db = _open_postgres(target, pool_size)
    _check_connection(db)
    if bind:
        database_proxy.initialize(db)
    log.info("store.opened", database=db.label)
    return db


def _open_sqlite(target: SqliteTarget, busy_timeout_ms: int) -> SqliteStore:
    if target.path != ":memory:":
        _prepare_sqlite_file(Path(target.path))
    return SqliteStore(target.path, busy_timeout_ms)


def _prepare_sqlite_file(path: Path) -> None:
    """Create missing directories (0700) and the file (0600) ourselves so no umask widens them.

    SQLite gives the -wal and -shm files the mode of the database file.
    """
    try:
        make_private_dirs(path.parent, 0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
    except FileExistsError:
        pass  # another process created it between our check and open
    except OSError as exc:
        raise StoreError(f"cannot create SQLite database {path}: {exc.strerror}") from None
    if path.is_dir():
        raise StoreError(f"SQLite database path {path} is a directory")


def make_private_dirs(directory: Path, mode: int) -> None:
    """Create ``directory`` and its missing parents with ``mode`` whatever the umask
    (``mkdir(parents=True)`` gives the parents the umask's mode: a world-writable parent under
    umask 0 would let anyone plant a symlink where our files go)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(created, mode)


def _open_postgres(target: PostgresTarget, pool_size: int) -> peewee.Database:
    try:
        import psycopg2  # noqa: F401  (only to give a clear error when the extra is missing)
    except ImportError:
        raise StoreError(
            f"{target.label()} needs the psycopg2 driver: pip install 'fsrouter[postgres]'"
        ) from None
    cooperative = _make_psycopg2_cooperative()
    params: dict[str, Any] = {"host": target.host, "port": target.port}
    if target.user:
        params["user"] = target.user
    if target.password is not None:
        params["password"] = target.password
    params.setdefault("connect_timeout", _PG_CONNECT_TIMEOUT_S)
    params.update(target.options)
    db = _postgres_class()(
        target.dbname, max_connections=pool_size, stale_timeout=300, timeout=10, **params
    )
    db.label = f"PostgreSQL database {target.label()}"
    if cooperative:
        db._state = _greenlet_state()
    return db


def _greenlet_state() -> Any:
    """One connection per greenlet, whatever the import order.

    peewee keeps each connection in an instance of a ``threading.local`` subclass made when
    peewee is imported. Imported before gevent's monkey-patching (a pytest worker running the
    daemon in-process), that class is per thread: every greenlet then shares one PostgreSQL
    connection while psycopg2 waits on the hub, and a second greenlet's query fails with
    "execute cannot be used while an asynchronous callback is in progress".
    """
    from gevent.local import local

    class GreenletConnectionState(peewee._ConnectionState, local):  # type: ignore[name-defined,misc]
        pass

    return GreenletConnectionState()


def _make_psycopg2_cooperative() -> bool:
    """Under gevent monkey-patching, let psycopg2 wait on gevent's hub instead of blocking it;
    whether it does (then each greenlet needs a connection of its own)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    if not monkey.is_module_patched("socket"):
        return False
    from gevent.socket import wait_read, wait_write
    from psycopg2 import OperationalError, extensions

    if extensions.get_wait_callback() is not None:
        return True

    # Every wait has a deadline: a server that stops answering without closing anything (a
    # frozen VM, a stalled disk; the kernel still acknowledges every byte, so no TCP timeout
    # fires) would otherwise hold a call for as long as it lasts. Raising here makes
    # psycopg2 close the connection (green_panic), so the pool never hands it out again.
    # (A new error each time: one shared instance would keep the last dead connection alive
    # through its traceback.)
    def wait(conn: Any) -> None:
        while True:
            state = conn.poll()
            if state == extensions.POLL_OK:
                return
            waiter = {extensions.POLL_READ: wait_read, extensions.POLL_WRITE: wait_write}.get(state)
            if waiter is None:
                raise OperationalError(f"unexpected psycopg2 poll state {state}")
            try:
                waiter(conn.fileno(), timeout=_PG_ANSWER_TIMEOUT_S)
            except TimeoutError:
                raise OperationalError(
                    f"no answer from the database within {_PG_ANSWER_TIMEOUT_S} s") from None

    extensions.set_wait_callback(wait)
    return True


def _check_connection(db: peewee.Database) -> None:
    """Connect once so a wrong URL fails at start-up, not on the first call."""
    with translate_errors(db):
        with db.connection_context():
            if isinstance(db, SqliteStore):
                _check_sqlite_settings(db)
            else:
                db.execute_sql("SELECT 1")


def _check_sqlite_settings(db: SqliteStore) -> None:
    if db.in_memory:
        return
    mode = db.execute_sql("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"{db.label}: WAL journal mode not available (got {mode!r})")
    if not os.access(db.database, os.W_OK):
        raise StoreError(_SQLITE_READONLY.format(label=db.label))


_SQLITE_READONLY = (
    "{label} is read-only: the fsrouter user must be able to write the file and its directory"
)


@contextmanager
def translate_errors(db: Any) -> Iterator[None]:
    """Turn driver errors about the database itself into :class:`StoreError`."""
    try:
        yield
    except Exception as exc:
        _raise_translated(db, exc)


def _raise_translated(db: Any, exc: BaseException) -> NoReturn:
    """Raise the :class:`StoreError` that stands for ``exc`` (from it), or ``exc`` itself."""
    translated = _translated(db, exc)
    if translated is None:
        raise exc
    raise translated from exc


def _translated(db: Any, exc: BaseException) -> StoreError | None:
    """The :class:`StoreError` that stands for ``exc``; None: ``exc`` goes on as it is."""
    if isinstance(exc, StoreError) or not isinstance(exc, Exception):
        return None
    label = getattr(db, "label", None) or getattr(getattr(db, "obj", None), "label", "database")
    if isinstance(exc, peewee.IntegrityError | peewee.DataError):
        return StoreInputError(f"{label} rejected the data: {_first_line(exc)}")
    if isinstance(exc, peewee.DatabaseError | peewee.InterfaceError):
        return StoreError(_describe(label, db, exc))
    if isinstance(exc, ValueError) and type(exc).__name__ == "MaxConnectionsExceeded":
        return StoreError(f"{label}: all pooled connections are in use")  # the pool's
    return None


def _describe(label: str, db: Any, exc: Exception) -> str:
    text = _first_line(_root_error(exc))
    lowered = text.lower()
    if "locked" in lowered:
        timeout = getattr(db, "busy_timeout_ms", None) or getattr(
            getattr(db, "obj", None), "busy_timeout_ms", "?"
        )
        return f"{label} is locked by another process or connection (waited {timeout} ms)"
    if "readonly" in lowered or "read-only" in lowered:
        real = db.obj if isinstance(db, peewee.DatabaseProxy) else db
        if isinstance(real, SqliteStore):
            return _SQLITE_READONLY.format(label=label)
        return f"{label} is read-only (a standby server?): {text}"
    if "unable to open database file" in lowered:
        return f"cannot open {label}: check the path and that its directory is writable"
    return f"{label} is unavailable: {text}"


def _root_error(exc: BaseException) -> BaseException:
    """The error to report: after "database or disk is full" SQLite has already rolled back,
    so peewee's own ROLLBACK fails ("cannot rollback - no transaction is active"), hiding
    the real reason further down the exception chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "cannot rollback" not in str(current):
            return current
        current = current.__cause__ or current.__context__
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class session:  # noqa: N801  (a context manager used like a function: with session(): ...)
    """One unit of store work: a connection for this greenlet and a transaction around it.

    ``immediate=True`` takes SQLite's write lock at BEGIN (no lock upgrade deadlocks).
    ``transaction=False``: no BEGIN and COMMIT, for work that is one SELECT (a statement is
    its own transaction in the autocommit mode peewee runs both databases in; inside an
    outer session it is part of that one's). The connection is released when the outermost
    session ends. Driver errors come out as :class:`StoreError` (:func:`translate_errors`).

    A class rather than nested generator context managers on the proxy: every store write of
    a call goes through here, and the layers cost more than the statement (bench/README.md).
    """

    __slots__ = ("_db", "_immediate", "_transaction", "_context", "_atomic")

    def __init__(self, db: Any = database_proxy, immediate: bool = False,
                 transaction: bool = True) -> None:
        self._db = db
        self._immediate = immediate
        self._transaction = transaction
        self._atomic: Any = None

    def __enter__(self) -> Any:
        db = self._db
        real = db.obj if isinstance(db, peewee.DatabaseProxy) else db
        if real is None:
            raise StoreError("the store is not open: call open_database() first")
        self._context = peewee.ConnectionContext(real)
        try:
            self._context.__enter__()
        except Exception as exc:
            _raise_translated(db, exc)
        if self._transaction:
            try:
                self._atomic = _transaction(real, self._immediate)
                self._atomic.__enter__()
            except BaseException as exc:
                self._atomic = None
                self._context.__exit__(None, None, None)
                _raise_translated(db, exc)
        return db

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> bool:
        try:
            try:
                if self._atomic is not None:
                    self._atomic.__exit__(kind, error, trace)  # commit, or roll back
            finally:
                self._context.__exit__(kind, error, trace)  # the connection goes back
        except BaseException as exc:  # the commit (or the release) failed
            _raise_translated(self._db, exc)
        if error is None:
            return False
        translated = _translated(self._db, error)
        if translated is None:
            return False  # the body's error goes on
        raise translated from error


def _transaction(real: Any, immediate: bool) -> Any:
    if immediate and isinstance(real, peewee.SqliteDatabase) and not real.in_transaction():
        return real.atomic(lock_type="IMMEDIATE")
    return real.atomic()


def close_database(db: peewee.Database) -> None:
    """Close every connection of ``db`` this process holds; unbind the models if bound to it."""
    if hasattr(db, "close_all"):
        db.close_all()  # the PostgreSQL pool: idle and in-use connections
    elif not db.is_closed():
        db.close()
    if isinstance(db, SqliteStore):
        db.close_keeper()
    if database_proxy.obj is db:
        database_proxy.initialize(None)
