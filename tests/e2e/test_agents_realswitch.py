"""AgentWatcher on the REAL FreeSWITCH, and the same scenarios on the simulator.

The watcher has its own event connection (``InboundClient`` with ``on_reconnect=resync``) and a
SQLite store in tmp_path. Agents' calls are loopback legs to the scripted phones of the test
switch: an ``originate`` carrying ``fsr_agent`` (what fsrouter and the trace do), and a "phone"
leg that is directory user 1000@fsrouter.test (``user_name``/``domain_name``, as mod_sofia sets
them after digest auth; see tests/unit/data/agent_phone_sip.jsonl) bridging out to a customer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from fsrouter.calls.agents import AgentWatcher
from fsrouter.calls.services import utc_now
from fsrouter.config import Config
from fsrouter.esl import InboundClient
from fsrouter.store import queries
from fsrouter.store.db import close_database, open_database
from fsrouter.store.migrations import upgrade
from fsrouter.testing.phones import phone_number
from fsrouter.testing.realswitch import RealSwitch
from fsrouter.testing.waiting import wait_for

OUR_NUMBER = "+493012345678"
WAIT = 10.0  # seconds; every wait below ends as soon as its condition holds


def busy(user_id: str) -> bool | None:
    row = queries.get_presence(user_id)
    return None if row is None else row.busy


def learned(customer: str) -> tuple[str, str] | None:
    row = queries.lookup_two_way(customer, utc_now())
    return None if row is None else (row.user_id, row.our_number)


class Watching:
    """A watcher with its own event connection to ``switch``."""

    def __init__(self, switch: RealSwitch, store_url: str) -> None:
        self.switch = switch
        self.config = Config.model_validate({
            "switch": {"password": "test-secret-1"},
            "database": {"url": store_url},
            "defaults": {"country": "DE", "voicemail_domain": "fsrouter.test"},
            "users": {
                "alice": {"name": "Alice", "extension": "1000",
                          "phones": [{"type": "sip", "dial_string": "user/1000"}]},
                "bob": {"name": "Bob", "extension": "1001"},
            },
        }, context={"region": "DE"})
        self.watcher = AgentWatcher(lambda: self.config, utc_now)
        self.resyncs = 0
        self.client = self.connect()

    def connect(self) -> InboundClient:
        host, port, password = self.switch.esl_endpoint()
        client = InboundClient(host, port, password, on_reconnect=self._resync,
                               backoff_initial=0.1, connect_timeout=3.0)
        self.watcher.attach(client)
        before = self.resyncs
        client.start()
        wait_for(lambda: self.resyncs > before, WAIT, "connect and resync")
        return client

    def _resync(self, client: InboundClient) -> None:
        assert self.watcher.resync(client)
        self.resyncs += 1

    def close(self) -> None:
        self.client.close()
        self.watcher.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/store.db"
    db = open_database(url)
    upgrade(db)
    try:
        yield url
    finally:
        close_database(db)


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.realswitch)])
def switch(request: pytest.FixtureRequest) -> RealSwitch:
    """The simulator, then the real switch (in the ``realswitch`` tier), same scenarios."""
    if request.param == "real":
        return request.getfixturevalue("real_switch")
    return request.getfixturevalue("sim_switch")


@pytest.fixture
def watching(switch: RealSwitch, store: str) -> Iterator[Watching]:
    setup = Watching(switch, store)
    try:
        yield setup
    finally:
        setup.close()


def test_agent_call_with_caller_id_teaches_the_mapping(watching: Watching):
    switch = watching.switch
    customer = phone_number("answer", 0, 21)
    # As outbound_agent_call.jsonl: an originate with caller ID and fsr_agent.
    call = switch.originate(f"loopback/{customer}/agents", "&park()",
                            {"origination_caller_id_number": OUR_NUMBER, "fsr_agent": "alice"})
    assert call.result(WAIT).startswith("+OK")
    wait_for(lambda: busy("alice"), WAIT, "alice busy")
    assert wait_for(lambda: learned(customer), WAIT, "the mapping") == ("alice", OUR_NUMBER)
    switch.hangup(call.uuid)
    wait_for(lambda: busy("alice") is False, WAIT, "alice free")
    assert not watching.watcher.is_busy("alice")


def test_agent_leg_busy_while_live_free_after_hangup(watching: Watching):
    switch = watching.switch
    call = switch.originate(f"loopback/answer-0-{switch.fresh_id()}/agents", "&park()",
                            {"fsr_agent": "alice", "fsr_kind": "agent",
                             "origination_caller_id_number": OUR_NUMBER})
    assert call.result(WAIT).startswith("+OK")
    try:
        wait_for(lambda: busy("alice"), WAIT, "alice busy")
        legs = watching.watcher.busy_calls("alice")
        assert call.uuid in legs
        # Both legs of the loopback pair carry fsr_agent (loopback copies the variables), and
        # the switch may announce either first on a loaded machine: the row names one of them.
        assert queries.get_presence("alice").busy_call_uuid in legs
        assert busy("bob") is None
    finally:
        switch.hangup(call.uuid)  # a failure above must not leave alice busy for the next test
    wait_for(lambda: busy("alice") is False, WAIT, "alice free")


def test_phone_of_directory_user_bridging_out_teaches_the_mapping(watching: Watching):
    switch = watching.switch
    customer = phone_number("answer", 0, 22)
    bridge = f"'&bridge({{origination_caller_id_number={OUR_NUMBER}}}loopback/{customer}/agents)'"
    phone = switch.originate(f"loopback/answer-0-{switch.fresh_id()}/agents", bridge,
                             {"user_name": "1000", "domain_name": "fsrouter.test",
                              "origination_caller_id_number": "1000"})
    assert phone.result(WAIT).startswith("+OK")
    wait_for(lambda: busy("alice"), WAIT, "alice busy")
    assert wait_for(lambda: learned(customer), WAIT, "the mapping") == ("alice", OUR_NUMBER)
    assert len(watching.watcher.busy_calls("alice")) >= 3  # phone, and the leg it bridged to
    switch.hangup(phone.uuid)  # the bridge ends, every leg hangs up
    wait_for(lambda: busy("alice") is False, WAIT, "alice free")


def test_resync_after_a_dropped_connection(watching: Watching):
    switch = watching.switch
    alice = switch.originate(f"loopback/answer-0-{switch.fresh_id()}/agents", "&park()",
                             {"fsr_agent": "alice"})
    assert alice.result(WAIT).startswith("+OK")
    wait_for(lambda: busy("alice"), WAIT, "alice busy")

    watching.client.close()  # the event connection is gone: what happens now is missed
    switch.hangup(alice.uuid)
    switch.wait_hangup(alice.uuid, WAIT)
    customer = phone_number("answer", 0, 23)
    bob = switch.originate(f"loopback/{customer}/agents", "&park()",
                           {"fsr_agent": "bob", "origination_caller_id_number": OUR_NUMBER})
    assert bob.result(WAIT).startswith("+OK")
    gevent.sleep(0.2)
    assert busy("alice") is True and busy("bob") is None  # nobody told the store

    watching.client = watching.connect()  # reconnect: on_reconnect resyncs
    assert busy("alice") is False
    assert busy("bob") is True
    assert learned(customer) == ("bob", OUR_NUMBER)  # answered while we were away
    switch.hangup(bob.uuid)
    wait_for(lambda: busy("bob") is False, WAIT, "bob free")
