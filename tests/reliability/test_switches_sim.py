"""One daemon, two switches (issue 18.1 and 18.4), on two simulators over loopback TCP.

The daemon (this process) keeps an event connection to each simulator and takes the calls of
both on one listener. The switches are listed as ``[b, a]`` on purpose: the first listed
switch is the daemon's default event connection, so a call of ``a`` whose commands went to
the default instead of its own switch would show.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from fsrouter.daemon import Daemon, start_daemon
from fsrouter.esl import InboundClient
from fsrouter.sim import CallerScript, Faults, Press, Simulator, SwitchRecord
from fsrouter.store import queries
from fsrouter.switches import AnySwitch, SwitchLink, SwitchSet, Undecided
from fsrouter.testing.phones import phone_number
from fsrouter.testing.prompt_cache import with_shared_prompts
from fsrouter.testing.waiting import wait_for
from tests.reliability.conftest import (
    AGENT_NUMBER,
    CALLER,
    HOTLINE,
    PASSWORD,
    QUEUE_NUMBER,
    full_config,
    sip,
)

MENU_KEY = [Press("1", 0.3, "menu")]
NAMES = ("b", "a")  # configuration order: "b" is the first (the default connection)


class TwoSwitches:
    """Two simulators (``a``, ``b``) and one daemon serving both."""

    def __init__(self, tmp_path: Path, config: dict[str, Any], logs: list[dict[str, Any]],
                 faults: dict[str, Faults] | None = None) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.logs = logs
        self.faults = faults or {}
        self.sims: dict[str, Simulator] = {}
        self.ports: dict[str, int] = {}
        for name in NAMES:
            self.start_switch(name)
        self.daemon = self._start_daemon()
        for user in ("alice", "bob"):  # logged in and free, as the feature code does
            queries.set_presence(user, datetime.now(UTC), state="logged_in", busy=False)

    def start_switch(self, name: str) -> None:
        sim = Simulator(speed=1.0, storage_dir=str(self.tmp_path / f"storage-{name}"),
                        password=PASSWORD, faults=self.faults.get(name))
        self.ports[name] = sim.start_inbound(port=self.ports.get(name, 0))
        self.sims[name] = sim

    def _start_daemon(self) -> Daemon:
        switches = [{"name": name, "host": "127.0.0.1", "port": self.ports[name],
                     "password": PASSWORD} for name in NAMES]
        data = with_shared_prompts({"switches": switches, "metrics": {"enabled": False},
                                    **self.config})
        path = self.tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        daemon = start_daemon(path, database_url=f"sqlite:///{self.db_path}", listen_port=0)
        for name in NAMES:
            self.wait_served(daemon, name)
        return daemon

    def wait_served(self, daemon: Daemon, name: str) -> None:
        """Connected, identified and resynchronised (the watcher's first look at it)."""
        link = daemon.switches.links[name]
        wait_for(lambda: link.connected and link.core_uuid == self.sims[name].core.core_uuid
                 and any(e.get("event") == "agents.resynced" and e.get("switch") == name
                         for e in self.logs), 10, f"switch {name} served")

    @property
    def db_path(self) -> Path:
        return self.tmp_path / "fsrouter.db"

    def call(self, switch: str, number: str, script: CallerScript | None = None
             ) -> SwitchRecord:
        target = ("127.0.0.1", int(self.daemon.server.port))
        return self.sims[switch].place_call(target, number, CALLER, "Jane Caller", script)

    def caller(self, switch: str, record: SwitchRecord) -> Any:
        return self.sims[switch].channels[record.caller_uuid]

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(sql, args)]

    def record_of(self, record: SwitchRecord, timeout: float = 20.0) -> dict[str, Any]:
        return wait_for(lambda: self.rows("SELECT * FROM call_records WHERE call_uuid = ? "
                                          "AND ended_at IS NOT NULL", record.caller_uuid),
                        timeout, "the call record closed")[0]

    def crash(self, name: str) -> None:
        """Switch ``name`` dies: every socket resets, its channels vanish without an event."""
        sim = self.sims[name]
        sim.stop_inbound()
        sim.listeners.clear()
        sim.call_sockets.clear()
        for chan in list(sim.channels.values()):
            session = getattr(chan, "session", None)
            if session is not None:
                session.abort()
        for chan in list(sim.channels.values()):
            sim.hangup(chan, "CRASH")

    def events(self) -> list[str]:
        return [str(entry.get("event", "")) for entry in self.logs]

    def stop(self) -> None:
        self.daemon.request_stop("test over")
        self.daemon.shutdown(drain_seconds=5)
        for sim in self.sims.values():
            sim.stop_inbound()


@pytest.fixture
def two_switches(tmp_path: Path, capture_logs: list[dict[str, Any]]) -> Iterator[Any]:
    started: list[TwoSwitches] = []

    def start(config: dict[str, Any], faults: dict[str, Faults] | None = None) -> TwoSwitches:
        started.append(TwoSwitches(tmp_path, config, capture_logs, faults))
        return started[-1]

    yield start
    for run in started:
        run.stop()


def config(tmp_path: Path) -> dict[str, Any]:
    return full_config(tmp_path, queue_phone=sip("answer", 200, 31),
                       agent_phone=sip("answer", 200, 32))


def test_a_call_on_each_switch_reaches_its_agent_through_its_own_switch(two_switches,
                                                                       tmp_path):
    run = two_switches(config(tmp_path))
    script = {name: CallerScript(hangup_in="bridged", hangup_delay_s=1.0) for name in NAMES}
    records = {name: run.call(name, QUEUE_NUMBER, script[name]) for name in NAMES}
    for name, record in records.items():
        assert run.record_of(record)["outcome"] == "bridged"
        # The agent's leg was dialled on the caller's own switch, and only there.
        [leg] = record.agent_legs
        other = "a" if name == "b" else "b"
        assert leg.uuid in run.sims[name].channels
        assert leg.uuid not in run.sims[other].channels
    assert "call.switch_unknown" not in run.events()


def test_a_lost_socket_is_cleaned_up_on_the_calls_own_switch(two_switches, tmp_path):
    """Switch a drops the call's socket while the caller waits in the queue: the daemon
    ends the caller over a's event connection (uuid_kill), not over the default (b's)."""
    people = {"olga": phone_number("noanswer", 0, 33)}
    run = two_switches(full_config(tmp_path, people, ring_timeout=30),
                       faults={"a": Faults(drop_outbound_at="agent_ringing")})
    record = run.call("a", HOTLINE, CallerScript(presses=MENU_KEY))
    wait_for(lambda: record.faults, 10, "the socket drop")
    caller = run.caller("a", record)
    # At once (the ring timeout is 30 s): the daemon released the waiting caller on a.
    assert caller.hungup.wait(5), "the caller on switch a was left waiting"
    assert caller.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert run.record_of(record)["outcome"] == "socket_lost"  # switch a is still up


def test_an_agent_busy_on_one_switch_is_busy_for_a_call_on_the_other(two_switches, tmp_path):
    run = two_switches(config(tmp_path))
    watcher = run.daemon.parts["watcher"]
    # alice talks through switch a (a long call) and through switch b (a short one).
    run.sims["a"].agent_outbound_call("1001", "+4930111111", "+493040009100",
                                      {"fsr_agent": "alice"}, talk_ms=60_000)
    run.sims["b"].agent_outbound_call("1001", "+4930222222", "+493040009100",
                                      {"fsr_agent": "alice"}, talk_ms=500)
    wait_for(lambda: len(watcher.busy_calls("alice")) >= 3, 10, "alice's legs on both")
    # Her call on b ends; her call on a goes on: she stays busy.
    wait_for(lambda: all(leg not in run.sims["b"].channels or not
                         run.sims["b"].channels[leg].alive
                         for leg in watcher.busy_calls("alice") if leg in run.sims["b"].channels),
             10, "alice's call on b over")
    assert watcher.is_busy("alice")
    [presence] = run.rows("SELECT busy FROM agent_presence WHERE user_id = 'alice'")
    assert presence["busy"]
    # A caller on switch b for alice finds her busy (she talks through switch a).
    record = run.call("b", AGENT_NUMBER)
    row = run.record_of(record)
    assert row["outcome"] in ("busy_tone", "voicemail"), row
    assert record.agent_legs == []  # she was never rung
    # Switch a dies with her call: no hang-up event ever comes. Once a stays away longer
    # than a blip (SWITCH_GONE_S), her channels there are forgotten and she is free.
    run.crash("a")
    wait_for(lambda: not watcher.is_busy("alice"), 15, "alice free again")
    assert run.rows("SELECT busy FROM agent_presence WHERE user_id = 'alice'") == [
        {"busy": 0}]
    assert "switch.gone" in run.events()


def test_switch_a_dies_switch_b_goes_on_and_a_is_served_again_when_back(two_switches,
                                                                        tmp_path):
    run = two_switches(config(tmp_path))
    on_b = run.call("b", QUEUE_NUMBER, CallerScript(hangup_in="bridged", hangup_delay_s=4.0))
    on_a = run.call("a", HOTLINE)  # listens to the menu
    wait_for(lambda: on_b.bridged_to, 10, "the call on b bridged")
    wait_for(lambda: run.rows("SELECT id FROM call_records WHERE call_uuid = ?",
                              on_a.caller_uuid), 10, "the call on a in the menu")
    run.crash("a")
    row = run.record_of(on_a)
    assert (row["outcome"], row["hangup_cause"]) == ("switch_lost", "SWITCH_LOST")
    # The call on b was not touched: it ends when its caller hangs up, as a conversation.
    assert run.caller("b", on_b).hungup.wait(10)
    assert run.caller("b", on_b).hangup_cause == "NORMAL_CLEARING"
    assert run.record_of(on_b)["outcome"] == "bridged"
    status = run.daemon.switches.status()
    assert status["a"]["connected"] is False and status["a"]["last_error"]
    assert status["b"]["connected"] is True
    # Switch a comes back (a new process: a new Core-UUID): reconnected, identified anew,
    # and its calls are served again.
    run.start_switch("a")
    run.wait_served(run.daemon, "a")
    again = run.call("a", QUEUE_NUMBER, CallerScript(hangup_in="bridged", hangup_delay_s=0.5))
    assert run.record_of(again)["outcome"] == "bridged"
    assert "call.switch_unknown" not in run.events()


def _client(sim: Simulator) -> InboundClient:
    assert sim.inbound is not None
    client = InboundClient("127.0.0.1", sim.inbound.port, PASSWORD)
    client.connect()
    return client


def test_identify_and_any_switch_ask_the_switch_that_has_the_channel(tmp_path):
    sims = {name: Simulator(speed=10.0, storage_dir=str(tmp_path / name), password=PASSWORD)
            for name in NAMES}
    for sim in sims.values():
        sim.start_inbound()
    switches = SwitchSet()
    try:
        for name, sim in sims.items():
            switches.add(SwitchLink(name, client=_client(sim))).learn_identity()
        for name, sim in sims.items():
            assert switches.identify({"Core-UUID": sim.core.core_uuid}).name == name
        assert switches.identify({"Core-UUID": "0000dead-beef"}) is None
        leg = _park(sims["a"])
        anywhere = AnySwitch(switches)
        assert '"Unique-ID"' in anywhere.api(f"uuid_dump {leg} json")
        assert anywhere.api(f"uuid_kill {leg} NORMAL_CLEARING").startswith("+OK")
        wait_for(lambda: not sims["a"].channels[leg].alive, 5, "the leg killed on a")
        assert anywhere.api("uuid_dump 1234abcd-0000 json").startswith("-ERR")
        # Switch b cannot be asked: a channel that a does not have is undecided, not gone.
        sims["b"].stop_inbound()
        wait_for(lambda: not switches.links["b"].connected, 5, "b's connection closed")
        with pytest.raises(Undecided):
            anywhere.api("uuid_dump 1234abcd-0000 json")
    finally:
        for link in switches:
            link.client.close()
        for sim in sims.values():
            sim.stop_inbound()


def _park(sim: Simulator) -> str:
    """A parked channel on ``sim`` (a loopback call to a phone that answers and stays)."""
    from fsrouter.sim.originate import OriginateRequest

    dial = f"loopback/{phone_number('answer', 100, 34)}/agents"
    reply = sim.originate(OriginateRequest(variables={}, dial=dial, app="park", app_arg=""))
    assert reply.startswith("+OK"), reply
    return reply.split()[1]


def test_a_record_left_open_waits_for_the_switch_that_cannot_be_asked(two_switches,
                                                                     tmp_path):
    """Crash reconciliation with two switches: a call a previous process left open, that
    switch b does not have, is not closed while switch a (where it may still be up) cannot
    be asked; a's return schedules the pass that closes it."""
    run = two_switches(config(tmp_path))
    services = run.daemon.services
    left = "5e1f0c3a-0000-4000-8000-00000000beef"
    queries.create_call_record(left, QUEUE_NUMBER, "queue", CALLER, "Jane Caller",
                               services.now(), host=services.host)
    run.sims["a"].stop_inbound()  # a's event socket goes away; its calls would go on
    wait_for(lambda: not run.daemon.switches.links["a"].connected, 5, "a unreachable")
    recovery = run.daemon.parts["recovery"]
    report = recovery.reconcile(AnySwitch(run.daemon.switches))
    assert report is not None and report.undecided == [left]
    assert run.rows("SELECT ended_at FROM call_records WHERE call_uuid = ?", left) == [
        {"ended_at": None}]
    run.sims["a"].start_inbound(port=run.ports["a"])
    row = wait_for(lambda: run.rows("SELECT outcome FROM call_records WHERE call_uuid = ? "
                                    "AND ended_at IS NOT NULL", left), 15, "the record closed")
    assert row == [{"outcome": "lost_in_restart"}]
