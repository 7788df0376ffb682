"""A throwaway real PostgreSQL server for tests.

::

    with running_postgres() as server:
        db = open_database(server.url)

The server lives in a fresh temporary directory, listens only on 127.0.0.1 on a free port
(its unix socket stays in that directory), runs with durability off (tests do not need it)
and is stopped and deleted on exit. PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` system user via ``runuser``. When no PostgreSQL binaries are
found and we are root on Debian, Debian's ``postgresql`` package is installed with apt-get.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import structlog

log = structlog.get_logger(__name__)

_SERVER_USER = "postgres"  # system user of Debian's package; used when we are root
_START_TIMEOUT_S = 30
# A password with URL-special characters, so every user of the URL must quote it right.
_PASSWORD_PREFIX = "p@ss:w/rd%"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass
class PostgresServer:
    """A running throwaway server; :meth:`stop` ends it and removes its files."""

    bin_dir: Path
    base_dir: Path
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    run_as: str | None

    @property
    def url(self) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(self.dbname, safe='')}"
        )

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def create_database(self, name: str) -> str:
        """Create another database on this server and return its URL."""
        _run_pg(self, "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return self.url.rsplit("/", 1)[0] + "/" + quote(name, safe="")

    def halt(self) -> None:
        """Stop the server but keep its data (a database restart or outage; see resume)."""
        ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_user(ctl, self.run_as), capture_output=True, timeout=60, check=False)
        log.info("postgres.halted", port=self.port)

    def resume(self) -> None:
        """Start a halted server again on the same port and data."""
        _start(self)
        log.info("postgres.resumed", port=self.port)

    def freeze(self) -> list[int]:
        """SIGSTOP the server and its backends: connections stay open and the kernel still
        accepts new ones, but nothing answers (a frozen VM, a stalled disk). Returns the
        PIDs for :meth:`thaw`."""
        pids = self._pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        log.info("postgres.frozen", port=self.port, processes=len(pids))
        return pids

    def thaw(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        log.info("postgres.thawed", port=self.port)

    def _pids(self) -> list[int]:
        """The postmaster (first line of postmaster.pid) and its children, from /proc."""
        master = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == master:
                children.append(int(stat.parent.name))
        return [master, *children]

    def stop(self) -> None:
        ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"]
        subprocess.run(_as_user(ctl, self.run_as), capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        log.info("postgres.stopped", port=self.port)


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned dirs."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def ensure_installed() -> Path:
    """Find PostgreSQL, installing Debian's package when we may; else PostgresUnavailable."""
    found = find_bin_dir()
    if found:
        return found
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        raise PostgresUnavailable(
            "PostgreSQL (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; "
            "install it (Debian: apt-get install postgresql)"
        )
    _apt_install_postgresql()
    found = find_bin_dir()
    if not found:
        raise PostgresUnavailable("apt-get installed postgresql but initdb is still missing")
    return found


def _apt_install_postgresql() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another process (a parallel test worker installing SIPp, say) may hold the dpkg lock.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    install = ["apt-get", *lock, "install", "-y", "--no-install-recommends", "postgresql"]
    log.info("postgres.installing")
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", *lock, "update"], env=env, capture_output=True, check=False)
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PostgresUnavailable(f"apt-get install postgresql failed: {result.stderr[-500:]}")


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_postgres(dbname: str = "fsrouter_test", attempts: int = 3) -> PostgresServer:
    """Start a server and create ``dbname``; retries on a new port if the port got taken."""
    bin_dir = ensure_installed()
    run_as = _server_user()
    last_error = ""
    for _ in range(attempts):
        server = _init_cluster(bin_dir, run_as, dbname)
        try:
            _start(server)
            server.create_database(dbname)
            log.info("postgres.started", port=server.port, data_dir=str(server.data_dir))
            return server
        except PostgresUnavailable as exc:
            last_error = str(exc)
            server.stop()
    raise PostgresUnavailable(f"PostgreSQL did not start: {last_error}")


@contextmanager
def running_postgres(dbname: str = "fsrouter_test") -> Iterator[PostgresServer]:
    server = start_postgres(dbname)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def postgres_for_tests() -> Iterator[PostgresServer]:
    """A server of the caller's own (a test or fixture), stopped after. Without one the test
    fails when env ``CI`` is set (a CI run must not pass by skipping its PostgreSQL tier),
    else it is skipped with the reason."""
    import pytest  # only tests call this; the package does not need pytest

    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield server
    finally:
        server.stop()


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no {_SERVER_USER!r} user to run PostgreSQL as"
        ) from None
    if not shutil.which("runuser"):
        raise PostgresUnavailable("running as root but runuser (util-linux) is missing")
    return _SERVER_USER


def _init_cluster(bin_dir: Path, run_as: str | None, dbname: str) -> PostgresServer:
    # Not under pytest's tmp_path: that is root-only (0700) and the server user must reach it.
    base = Path(tempfile.mkdtemp(prefix="fsrouter-pg-"))
    server = PostgresServer(
        bin_dir=bin_dir,
        base_dir=base,
        port=free_port(),
        user="fsrouter",
        password=_PASSWORD_PREFIX + secrets.token_hex(8),
        dbname=dbname,
        run_as=run_as,
    )
    pwfile = base / "pwfile"
    pwfile.write_text(server.password + "\n")
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    pwfile.chmod(0o600)
    initdb = [
        str(bin_dir / "initdb"),
        "-D",
        str(server.data_dir),
        "-U",
        server.user,
        f"--pwfile={pwfile}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]
    result = subprocess.run(_as_user(initdb, run_as), capture_output=True, text=True, check=False)
    pwfile.unlink()
    if result.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {result.stderr.strip()[-500:]}")
    return server


def _start(server: PostgresServer) -> None:
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-p {server.port}",
            f"-k {server.base_dir}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
    )
    ctl = [
        str(server.bin_dir / "pg_ctl"),
        "-D",
        str(server.data_dir),
        "-l",
        str(server.base_dir / "server.log"),
        "-o",
        options,
        "-w",
        "-t",
        str(_START_TIMEOUT_S),
        "start",
    ]
    result = subprocess.run(_as_user(ctl, server.run_as), capture_output=True, text=True)
    if result.returncode != 0:
        raise PostgresUnavailable(f"pg_ctl start failed: {_tail(server.base_dir / 'server.log')}")


def _run_pg(server: PostgresServer, tool: str, *args: str) -> None:
    env = {**os.environ, "PGPASSWORD": server.password}
    cmd = [str(server.bin_dir / tool), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{tool} failed: {result.stderr.strip()[-500:]}")


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _tail(path: Path, limit: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"(no server log: {exc.strerror})"
