"""The two-node tier: two real switches (``switch_pair``, shared by a module's tests), daemons
as real ``fsrouter run`` processes serving both, one real PostgreSQL (a database per test).

Every test here is marked ``realswitch`` and ``multinode`` by its module.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
import pytest

from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.postgres import PostgresServer, postgres_for_tests
from fsrouter.testing.realswitch import SwitchError, find_freeswitch
from fsrouter.testing.switchpair import SwitchPair
from tests.e2e.daemon import Daemon

AGENT_A = "+493040008100"  # alice's number
AGENT_B = "+493040008200"  # bob's number
CALLER = "+4915112345678"
ALICE_PHONE = f"loopback/{phone_number('answer', 200, 81)}/agents"
BOB_PHONE = f"loopback/{phone_number('answer', 200, 82)}/agents"
_databases = itertools.count(1)


def config() -> dict[str, Any]:
    """Two agents, each with a number of their own; they answer after 200 ms and stay."""
    return {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en"},
        "users": {
            "alice": {"name": "Alice", "extension": "1001",
                      "phones": [{"type": "sip", "dial_string": ALICE_PHONE}]},
            "bob": {"name": "Bob", "extension": "1002",
                    "phones": [{"type": "sip", "dial_string": BOB_PHONE}]},
        },
        "numbers": [{"number": AGENT_A, "type": "agent", "agent": "alice", "ring_timeout": 20},
                    {"number": AGENT_B, "type": "agent", "agent": "bob", "ring_timeout": 20}],
    }


class NodeDaemon(Daemon):
    """``fsrouter run`` serving both switches of the pair, its records in PostgreSQL; its
    numbers, people and cluster settings are ``settings`` (default: :func:`config`)."""

    def __init__(self, workdir: Path, pair: SwitchPair, db_url: str,
                 settings: dict[str, Any] | None = None) -> None:
        """``settings``: the configuration (default :func:`config`), without switch and
        database, which are the pair's and ``db_url``."""
        workdir.mkdir(parents=True, exist_ok=True)
        switches, env = pair.switches_config()
        first = pair["a"].esl_endpoint()
        super().__init__(workdir, {**(settings or config()), "switch": None,
                                   "switches": switches, "database": {"url": db_url}}, first)
        self.db_url = db_url
        self.env.update(env)

    def as_host(self, name: str) -> NodeDaemon:
        """Run under host name ``name`` (a UTS namespace): two daemons on this machine are
        two hosts, as in production (recovery and the mailer look at their host's rows)."""
        if os.geteuid() != 0 or not shutil.which("unshare"):
            pytest.skip("two host names on one machine need root and unshare (util-linux)")
        self.argv_prefix = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name]
        return self

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """``sql`` with ``?`` placeholders, on the PostgreSQL database."""
        with self.store():
            from fsrouter.store.db import database_proxy

            cursor = database_proxy.execute_sql(sql.replace("?", "%s"), args)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @contextlib.contextmanager
    def store(self) -> Iterator[Any]:
        from fsrouter.store import open_database, queries
        from fsrouter.store.db import close_database

        db = open_database(self.db_url)
        try:
            yield queries
        finally:
            close_database(db)

    def kill(self) -> None:
        """SIGKILL: the listener's socket closes with the process, nothing is drained."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.metrics_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 (loopback)
                return dict(json.loads(reply.read()))
        except urllib.error.HTTPError as error:  # 503 carries the same JSON
            return dict(json.loads(error.read()))

    def first_seen(self, call_uuid: str) -> float | None:
        """When this daemon first logged anything about ``call_uuid`` (Unix time)."""
        stamps = [stamp(line) for line in self.log_lines() if line.get("call_uuid") == call_uuid]
        return min(stamps) if stamps else None

    def events_named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == event]

    def wait_logged_with(self, event: str, timeout: float = 20.0, count: int = 1,
                         **fields: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.log_lines() if line.get("event") == event
                     and all(line.get(k) == v for k, v in fields.items())]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, (
                f"no {count}x {event} {fields} within {timeout} s\n{self.log()[-3000:]}")
            gevent.sleep(0.05)


def stamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def switch_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchPair]:
    """Two real switches for the module's tests (a test that kills one starts it again)."""
    freeswitch = find_freeswitch()
    if freeswitch is None:
        _unavailable("no FreeSWITCH found (set FSROUTER_FREESWITCH to its folder or binary)")
    pair = SwitchPair(tmp_path_factory.mktemp("pair"), freeswitch)
    try:
        pair.start()
    except (SwitchError, OSError) as error:
        _unavailable(f"FreeSWITCH did not start: {error}")
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_for_tests() as server:
        yield server


@pytest.fixture
def db_url(postgres: PostgresServer) -> str:
    """A fresh database of this test on the module's server."""
    return postgres.create_database(f"node_{os.getpid()}_{next(_databases)}")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"required when CI is set: {reason}", pytrace=False)
    pytest.skip(reason)
