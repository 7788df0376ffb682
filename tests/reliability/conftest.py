"""Fixtures of the reliability suite: a daemon in this process against the simulator.

``sim_daemon(config, speed=..., faults=...)`` starts a :class:`Simulator` (its inbound event
socket on 127.0.0.1 port 0) and ``fsrouter.daemon.start_daemon`` wired to it, with a SQLite
file in ``tmp_path``. Calls are placed with ``SimDaemon.call`` (the simulator's own caller
scripts: DTMF at a step, a hang-up at a step), so a test can put a fault at an exact moment
and read both sides: what the switch received (``SwitchRecord``, ``SimDaemon.commands``) and
what the daemon wrote (``SimDaemon.rows``).

``SimDaemon.check_nothing_left`` is the invariant every fault test ends with: no channel of
the switch still up (no leg left ringing), every call record and attempt final, every
incident closed or open with its reason.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import pytest
import yaml

from fsrouter.daemon import Daemon, start_daemon
from fsrouter.sim import CallerScript, Faults, Simulator, SwitchRecord
from fsrouter.sim.outbound import OutboundSession as SimOutboundSession
from fsrouter.sim.wire import Command
from fsrouter.store import queries
from fsrouter.testing.phones import TEST_DIAL_TEMPLATE, phone_number
from fsrouter.testing.prompt_cache import with_shared_prompts
from fsrouter.testing.waiting import wait_for

HOTLINE = "+493040009000"
AGENT_NUMBER = "+493040009100"
QUEUE_NUMBER = "+493040009200"
CUSTOM_NUMBER = "+493040009300"
UNASSIGNED_NUMBER = "+493040009400"
VOICEMAIL_NUMBER = "+493040009500"  # an agent who is logged out: voicemail
CALLER = "+4915112345678"
MENU_TONE = "silence_stream://300"
HOLD = "silence_stream://-1"
PASSWORD = "reliability-esl-secret-4711"
# Agent phones are SIP dial strings; on-call staff are mobile numbers (TEST_DIAL_TEMPLATE).
AGENT_PHONE = f"loopback/{phone_number('hangup', 5000, 1)}/agents"
QUEUE_PHONE = f"loopback/{phone_number('hangup', 5000, 2)}/agents"
CUSTOM_PHONE = f"loopback/{phone_number('hangup', 1000, 3)}/agents"
VOICEMAIL_PHONE = f"loopback/{phone_number('answer', 100, 4)}/agents"


def phones(**numbers: str) -> dict[str, Any]:
    """users for ``hotline_config``: ``anna=phone_number("noanswer", 0, 10)``..."""
    return {uid: {"name": uid.title(), "phones": [{"type": "mobile", "number": number}]}
            for uid, number in numbers.items()}


def sip(behaviour: str, ms: int, n: int) -> str:
    """The dial string of a scripted SIP phone (``sip("noanswer", 0, 5)``)."""
    return f"loopback/{phone_number(behaviour, ms, n)}/agents"


def full_config(tmp_path: Path, hotline_users: dict[str, str] | None = None,
                ring_timeout: int = 5, agent_phone: str = AGENT_PHONE,
                queue_phone: str = QUEUE_PHONE, **extra: Any) -> dict[str, Any]:
    """One number of every route type: hotline (menu, 2 options), agent, queue, custom,
    unassigned, an agent with voicemail; feature codes are on by default. ``hotline_users``
    are the on-call people (id -> mobile number), rung in order."""
    oncall = hotline_users or {"olga": phone_number("hangup", 5000, 20)}
    users = phones(**oncall)
    users |= {
        "alice": {"name": "Alice", "extension": "1001", "email": "alice@example.test",
                  "phones": [{"type": "sip", "dial_string": agent_phone}]},
        "bob": {"name": "Bob", "extension": "1002", "email": "bob@example.test",
                "phones": [{"type": "sip", "dial_string": queue_phone}]},
        "vera": {"name": "Vera", "extension": "1003", "email": "vera@example.test",
                 "voicemail": {"greeting": "silence_stream://200"},
                 "phones": [{"type": "sip", "dial_string": VOICEMAIL_PHONE}]},
    }
    config: dict[str, Any] = {
        "defaults": {"dial_template": TEST_DIAL_TEMPLATE, "language": "en",
                     "voicemail_domain": "fsrouter.test"},
        "voicemail": {"directory": str(tmp_path / "voicemail"), "silence_seconds": 2,
                      "min_seconds": 0},
        "users": users,
        "policies": {"ops": {"levels": [{"targets": [{"user": u} for u in oncall],
                                         "ring_timeout": ring_timeout}],
                             "press_to_accept": False}},
        "queues": {"sales": {"hold_music": HOLD, "agents": ["bob"], "ring_timeout": 5,
                             "max_wait": 600}},
        "numbers": [
            {"number": HOTLINE, "type": "call_routing", "skip_menu_if_single": False,
             "menu": {"tries": 2, "timeout_s": 2, "invalid_prompt": MENU_TONE},
             "options": [
                 {"digit": 1, "label": "Datenbank", "prompt": MENU_TONE, "policy": "ops",
                  "hold_music": HOLD},
                 {"digit": 2, "label": "Netzwerk", "prompt": MENU_TONE, "policy": "ops",
                  "hold_music": HOLD}]},
            {"number": AGENT_NUMBER, "type": "agent", "agent": "alice", "ring_timeout": 5},
            {"number": QUEUE_NUMBER, "type": "queue", "queue": "sales"},
            {"number": CUSTOM_NUMBER, "type": "custom", "dial_string": CUSTOM_PHONE},
            {"number": UNASSIGNED_NUMBER, "type": "unassigned"},
            {"number": VOICEMAIL_NUMBER, "type": "agent", "agent": "vera", "ring_timeout": 5},
        ],
    }
    config.update(extra)
    return config


@dataclass
class Received:
    """One command the simulator received on a call's socket."""

    channel: str
    command: Command


@dataclass
class SimDaemon:
    """The daemon (this process) and the simulator it talks to; see the module docstring."""

    tmp_path: Path
    config: dict[str, Any]
    speed: float = 10.0
    faults: Faults | None = None
    sim: Simulator = field(init=False)
    daemon: Daemon = field(init=False)
    commands: list[Received] = field(default_factory=list)
    db_dir: Path | None = None  # where the SQLite file lives (default: tmp_path)

    @property
    def db_path(self) -> Path:
        return (self.db_dir or self.tmp_path) / "fsrouter.db"

    def start(self) -> SimDaemon:
        self.sim = Simulator(speed=self.speed, storage_dir=str(self.tmp_path / "storage"),
                             password=PASSWORD, faults=self.faults)
        port = self.sim.start_inbound()
        self.daemon = self.start_daemon(port)
        return self

    def start_daemon(self, esl_port: int) -> Daemon:
        path = self.tmp_path / "config.yaml"
        data = with_shared_prompts({"switch": {"host": "127.0.0.1", "port": esl_port,
                                               "password": PASSWORD},
                                    "metrics": {"enabled": False}, **self.config})
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        resyncs = self.log_events().count("agents.resynced")
        daemon = start_daemon(path, database_url=f"sqlite:///{self.db_path}", listen_port=0)
        assert daemon.parts["switch"].wait_connected(5), "no event connection to the simulator"
        # The first resync clears busy flags no live channel explains: a test that marks an
        # agent busy must do so after it.
        wait_for(lambda: self.log_events().count("agents.resynced") > resyncs, 5,
                 "the watcher's first resync")
        return daemon

    @property
    def port(self) -> int:
        return int(self.daemon.server.port)

    def call(self, number: str, name: str = "Jane Caller", caller: str = CALLER,
             script: CallerScript | None = None) -> SwitchRecord:
        """A caller dialling ``number``; the simulator hands the call to the daemon."""
        return self.sim.place_call(("127.0.0.1", self.port), number, caller, name, script)

    def caller(self, record: SwitchRecord) -> Any:
        return self.sim.channels[record.caller_uuid]

    def wait_ended(self, record: SwitchRecord, timeout: float = 20.0) -> dict[str, Any]:
        """The caller's leg has ended and the daemon's call record is final; that record."""
        assert self.caller(record).hungup.wait(timeout), "the caller's leg never ended"
        rows = self.wait_rows("SELECT * FROM call_records WHERE call_uuid = ? AND ended_at "
                              "IS NOT NULL", record.caller_uuid, timeout=timeout)
        return rows[0]

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        # closing(): a sqlite3 connection's own "with" commits but never closes.
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(sql, args)]

    def wait_rows(self, sql: str, *args: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        return wait_for(lambda: self.rows(sql, *args), timeout, f"rows for {sql}")

    def live_channels(self) -> list[Any]:
        return [chan for chan in self.sim.channels.values() if chan.alive]

    def check_nothing_left(self, timeout: float = 10.0) -> None:
        """No leg still up, every record final, every open incident with a reason."""
        wait_for(lambda: not self.live_channels() and not self.open_rows(), timeout,
                 "no live channel and no open row", quiet=True)
        assert [c.name for c in self.live_channels()] == []
        assert self.open_rows() == []

    def open_rows(self) -> list[str]:
        problems = [f"call {r['call_uuid']} not ended" for r in self.rows(
            "SELECT call_uuid FROM call_records WHERE ended_at IS NULL OR outcome IS NULL")]
        problems += [f"attempt {r['id']} not ended" for r in self.rows(
            "SELECT id FROM attempts WHERE ended_at IS NULL OR result IS NULL")]
        problems += [f"incident {r['id']} open without a reason" for r in self.rows(
            "SELECT id FROM incidents WHERE state IN ('open', 'accepted') "
            "AND outcome_reason IS NULL")]
        return problems

    def login(self, *users: str, busy: bool = False) -> None:
        """Agents logged in (and free unless ``busy``), as the feature code or CLI does."""
        for user in users:
            queries.set_presence(user, datetime.now(UTC), state="logged_in", busy=busy)

    def crash_switch(self) -> int:
        """The switch process dies: every socket resets, its channels vanish without a single
        event. Returns the event-socket port (a restarted switch listens there again)."""
        old = self.sim
        assert old.inbound is not None
        port = old.inbound.port
        old.stop_inbound()
        old.listeners.clear()
        old.call_sockets.clear()
        for chan in list(old.channels.values()):
            session = getattr(chan, "session", None)
            if session is not None:
                session.abort()
        for chan in list(old.channels.values()):
            old.hangup(chan, "CRASH")  # ends its greenlets; nobody hears the events
        return port

    def start_switch(self, port: int) -> None:
        """A fresh switch (nothing survives a restart) on the same event-socket port."""
        self.sim = Simulator(speed=self.speed, storage_dir=str(self.tmp_path / "storage"),
                             password=PASSWORD, faults=self.faults)
        self.sim.start_inbound(port=port)

    def log_events(self) -> list[str]:
        return [entry.get("event", "") for entry in self.logs]

    logs: list[dict[str, Any]] = field(default_factory=list)

    def stop(self) -> None:
        self.daemon.request_stop("test over")
        self.daemon.shutdown(drain_seconds=5)
        self.sim.stop_inbound()


@pytest.fixture
def record_commands(monkeypatch: pytest.MonkeyPatch) -> list[Received]:
    """Every command any simulated call socket receives, in order (line, headers, body)."""
    seen: list[Received] = []
    original = SimOutboundSession.handle

    def handle(self: SimOutboundSession, cmd: Command) -> None:
        seen.append(Received(self.chan.uuid, cmd))
        original(self, cmd)

    monkeypatch.setattr(SimOutboundSession, "handle", handle)
    return seen


@pytest.fixture
def sim_daemon(tmp_path: Path, capture_logs: list[dict[str, Any]]
               ) -> Iterator[Callable[..., SimDaemon]]:
    """``sim_daemon(config, speed=10, faults=None)``: a started SimDaemon, stopped afterwards."""
    started: list[SimDaemon] = []

    def start(config: dict[str, Any], speed: float = 10.0, faults: Faults | None = None,
              db_dir: Path | None = None) -> SimDaemon:
        runner = SimDaemon(tmp_path, config, speed, faults, db_dir=db_dir,
                           logs=capture_logs).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


@pytest.fixture
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog entry of this test as a dict (the daemon logs in this process)."""
    import structlog

    entries: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        entries.append(dict(event_dict, level=method))
        return event_dict

    config = structlog.get_config()
    processors = list(config["processors"])
    structlog.configure(processors=[keep, *processors])
    try:
        yield entries
    finally:
        structlog.configure(processors=processors)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (a disk that can fill up or turn read-only); needs CAP_SYS_ADMIN."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def remount(directory: Path, mode: str) -> None:
    """``mode`` "ro" or "rw": the file system turns read-only under the running daemon."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


@dataclass
class SwitchDaemon:
    """The daemon in this process against a real FreeSWITCH (``real_switch``): the test can
    reach into it (stall a callback, read its client) while the switch is the real one."""

    tmp_path: Path
    switch: Any  # fsrouter.testing.realswitch.RealSwitch
    config: dict[str, Any]
    daemon: Daemon = field(init=False)
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.tmp_path / "fsrouter.db"

    def start(self) -> SwitchDaemon:
        host, port, password = self.switch.esl_endpoint()
        path = self.tmp_path / "config.yaml"
        data = with_shared_prompts({"switch": {"host": host, "port": port, "password": password},
                                    "metrics": {"enabled": False}, **self.config})
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        resyncs = self.events().count("agents.resynced")
        self.daemon = start_daemon(path, database_url=f"sqlite:///{self.db_path}",
                                   listen_port=0)
        assert self.daemon.parts["switch"].wait_connected(10), "no event connection"
        wait_for(lambda: self.events().count("agents.resynced") > resyncs, 10, "first resync")
        self.switch.route_to(self.daemon.server.port)
        return self

    @property
    def client(self) -> Any:
        return self.daemon.parts["switch"]

    def events(self) -> list[str]:
        return [entry.get("event", "") for entry in self.logs]

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(sql, args)]

    def login(self, *users: str) -> None:
        for user in users:
            queries.set_presence(user, datetime.now(UTC), state="logged_in")

    def busy(self, user: str) -> bool:
        rows = self.rows("SELECT busy FROM agent_presence WHERE user_id = ?", user)
        return bool(rows and rows[0]["busy"])

    def daemon_leg(self, caller: str) -> str:
        """The uuid the daemon knows a caller by: the loopback leg in the ``public`` context."""
        def leg() -> str | None:
            dump = _json(self.switch.api(f"uuid_dump {caller} json")) or {}
            return dump.get("variable_other_loopback_leg_uuid")
        return str(wait_for(leg, 10, "the caller's channel and its partner"))

    def stop(self) -> None:
        self.daemon.request_stop("test over")
        self.daemon.shutdown(drain_seconds=5)


def _json(text: str) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@pytest.fixture
def switch_daemon(tmp_path: Path, real_switch: Any, capture_logs: list[dict[str, Any]]
                  ) -> Iterator[Callable[[dict[str, Any]], SwitchDaemon]]:
    """``switch_daemon(config)``: the daemon in this process on the session's real switch."""
    started: list[SwitchDaemon] = []

    def start(config: dict[str, Any]) -> SwitchDaemon:
        runner = SwitchDaemon(tmp_path, real_switch, config, logs=capture_logs).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()
    deadline = time.monotonic() + 10
    while real_switch.channels() and time.monotonic() < deadline:
        gevent.sleep(0.1)
