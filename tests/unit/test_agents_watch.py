"""AgentWatcher: busy state and 2-way VoIP learning from channel events, on a real SQLite store.

Events come from the real switch: the recorded trace ``outbound_agent_call.jsonl`` (an agent's
call placed by ``originate`` with ``fsr_agent``) and ``data/agent_phone_sip.jsonl`` (an agent's
SIP phone, digest-authenticated, calling a customer through the dialplan; an unauthenticated
caller with ``From: 1000``). Synthetic events vary them: other kinds, hostile headers, garbage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gevent
import pytest

from fsrouter.calls.agents import AgentWatcher
from fsrouter.config import Config
from fsrouter.esl import ConnectionClosed
from fsrouter.esl.protocol import EVENT_PLAIN, Event, FrameParser, parse_event
from fsrouter.store import queries
from fsrouter.store.db import close_database, open_database, session
from fsrouter.store.migrations import upgrade
from fsrouter.store.models import TwoWayMapping
from tests.sim.traces import load

SIP_RECORDING = Path(__file__).parent / "data" / "agent_phone_sip.jsonl"
OUR_NUMBER = "+493012345678"
CUSTOMER = "+4915112345678"
START = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


class Clock:
    """The watcher's ``now``: moves only when the test says so."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


def make_config(voicemail_domain: str = "fsrouter.test",
                url: str = "sqlite:////tmp/unused.db", without: str = "") -> Config:
    data: dict = {
        "switch": {"password": "test-secret-1"},
        "database": {"url": url},
        "defaults": {"country": "DE", "voicemail_domain": voicemail_domain},
        "users": {
            "alice": {"name": "Alice", "extension": "1000", "phones": [
                {"type": "sip", "dial_string": "user/1000"},
                {"type": "mobile", "number": "+4915199990001"}]},
            "bob": {"name": "Bob", "extension": "1001", "phones": [
                {"type": "sip", "dial_string": "user/2001@other.test"}]},
            "carol": {"name": "Carol"},
        },
        "two_way": {"max_age_hours": 48},
        "numbers": [{"number": OUR_NUMBER, "type": "agent", "agent": "alice", "two_way": True}],
    }
    if without:
        data["users"].pop(without)
        data["numbers"] = []
    return Config.model_validate(data, context={"region": "DE"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/store.db"
    db = open_database(url)
    upgrade(db)
    try:
        yield url
    finally:
        close_database(db)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(store: str) -> Config:
    return make_config(url=store)


@pytest.fixture
def watcher(config: Config, clock: Clock) -> Iterator[AgentWatcher]:
    watcher = AgentWatcher(lambda: config, clock)
    try:
        yield watcher
    finally:
        watcher.close()


def trace_events() -> list[Event]:
    """The inbound-events connection of outbound_agent_call.jsonl, as parsed events."""
    _, steps = load("outbound_agent_call.jsonl")
    data = "".join(s.data for s in steps if s.conn == "inbound-events"
                   and s.direction == "fs->app")
    frames = FrameParser().feed(data.encode())
    return [parse_event(f) for f in frames if f.content_type == EVENT_PLAIN]


def sip_events(scenario: str) -> list[Event]:
    lines = SIP_RECORDING.read_text(encoding="utf-8").splitlines()[1:]
    rows = [json.loads(line) for line in lines]
    return [Event(row["headers"]) for row in rows if row["scenario"] == scenario]


def with_headers(events: list[Event], **changes: str | None) -> list[Event]:
    """Copies of ``events`` with some headers set (``None`` removes one); ``_`` for ``-``."""
    out = []
    for event in events:
        headers = dict(event.headers)
        for name, value in changes.items():
            name = name.replace("__", "-")
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        out.append(Event(headers))
    return out


def event(name: str, uuid: str, **headers: str) -> Event:
    base = {"Event-Name": name, "Unique-ID": uuid}
    return Event(base | {k.replace("__", "-"): v for k, v in headers.items()})


def presence(user_id: str) -> tuple[bool, str | None, datetime] | None:
    row = queries.get_presence(user_id)
    return None if row is None else (row.busy, row.busy_call_uuid, row.updated_at)


def mapping(number: str, clock: Clock) -> tuple[str, str, datetime] | None:
    row = queries.lookup_two_way(number, clock())
    return None if row is None else (row.user_id, row.our_number, row.expires_at)


def mappings() -> int:
    with session():
        return TwoWayMapping.select().count()


def feed(watcher: AgentWatcher, events: list[Event]) -> None:
    for item in events:
        watcher.handle(item)


# ------------------------------------------------------------------- busy from the trace


def test_trace_makes_the_agent_busy_until_both_legs_hang_up(watcher, clock):
    create_a, create_b, answer_a, answer_b, done_a, done_b = trace_events()
    leg_a, leg_b = create_a.uuid, create_b.uuid
    assert create_a.get("variable_fsr_agent") == "alice"
    assert presence("alice") is None

    watcher.handle(create_a)
    assert presence("alice") == (True, leg_a, START)
    later = clock.advance(seconds=1)
    feed(watcher, [create_b, answer_a, answer_b, done_a])
    assert watcher.busy_calls("alice") == {leg_b}
    assert presence("alice") == (True, leg_a, START)  # no write between the transitions
    watcher.handle(done_b)
    assert presence("alice") == (False, None, later)
    assert not watcher.is_busy("alice")


def test_trace_destination_is_no_phone_number_so_no_mapping(watcher, clock):
    # The recorded call went to the scripted phone "answer-customer": nothing to call back.
    feed(watcher, trace_events())
    assert mappings() == 0


def test_trace_call_to_a_customer_is_learned_when_answered(watcher, clock):
    events = with_headers(trace_events(), Caller__Destination__Number="015112345678")
    create_a, create_b, answer_a, *rest = events
    feed(watcher, [create_a, create_b])
    assert mapping(CUSTOMER, clock) is None  # created, not yet at the customer's phone
    now = clock.advance(seconds=2)
    watcher.handle(answer_a)
    assert mapping(CUSTOMER, clock) == ("alice", OUR_NUMBER, now + timedelta(hours=48))
    feed(watcher, rest)
    assert not watcher.is_busy("alice")


def test_flipped_caller_id_after_answer_still_gives_our_number(watcher, clock):
    # The trace's HANGUP_COMPLETE shows the a-leg flipped (Caller-Caller-ID-Number: agents).
    *_, done_a, _ = with_headers(trace_events(), Caller__Destination__Number=CUSTOMER)
    assert done_a.get("variable_channel_cid_flipped") == "yes"
    flipped = Event(dict(done_a.headers) | {"Event-Name": "CHANNEL_ANSWER",
                                             "variable_origination_caller_id_number": "x"})
    watcher.handle(flipped)
    assert mapping(CUSTOMER, clock)[:2] == ("alice", OUR_NUMBER)


def test_a_leg_that_rings_teaches_a_mapping_one_that_fails_does_not(watcher, clock):
    create_a, *_ = with_headers(trace_events(), Caller__Destination__Number=CUSTOMER)
    ringing = Event(dict(create_a.headers) | {"Event-Name": "CHANNEL_PROGRESS"})
    feed(watcher, [create_a, ringing])
    assert mapping(CUSTOMER, clock)[0] == "alice"  # rang: a missed call the customer sees

    other = "+4915112340000"
    bob_leg = {**create_a.headers, "Unique-ID": "b0b-1", "variable_fsr_agent": "bob",
               "Caller-Destination-Number": other}
    queries.remember_two_way(other, "alice", OUR_NUMBER, clock(), timedelta(hours=1))
    watcher.handle(Event(bob_leg))
    watcher.handle(Event(bob_leg | {"Event-Name": "CHANNEL_HANGUP_COMPLETE",
                                    "Hangup-Cause": "USER_BUSY"}))
    assert mapping(other, clock)[0] == "alice"  # bob's attempt never reached the phone


@pytest.mark.parametrize("extra", [
    {"variable_fsr_kind": "oncall"},
    {"variable_fsr_incident": "42"},
    {"variable_fsr_kind": "agent"},
    {"variable_fsr_kind": "custom"},
])
def test_legs_fsrouter_placed_for_inbound_calls_make_busy_but_teach_nothing(
        watcher, clock, extra):
    events = with_headers(trace_events(), Caller__Destination__Number=CUSTOMER, **extra)
    feed(watcher, events[:4])
    assert watcher.is_busy("alice")
    assert mapping(CUSTOMER, clock) is None
    feed(watcher, events[4:])
    assert presence("alice")[0] is False


def test_kind_outbound_teaches(watcher, clock):
    events = with_headers(trace_events(), Caller__Destination__Number=CUSTOMER,
                          variable_fsr_kind="outbound")
    feed(watcher, events)
    assert mapping(CUSTOMER, clock)[0] == "alice"


def test_newest_agent_wins(watcher, clock):
    alice = with_headers(trace_events(), Caller__Destination__Number=CUSTOMER)
    bob = [Event(e.headers | {"Unique-ID": f"bob-{i}", "variable_fsr_agent": "bob"})
           for i, e in enumerate(alice)]
    feed(watcher, alice[:3])
    clock.advance(minutes=5)
    feed(watcher, bob[:3])
    assert mapping(CUSTOMER, clock)[0] == "bob"


@pytest.mark.parametrize("destination,reason", [
    ("1001", "internal extension"),
    ("*21", "feature code"),
    ("+4915199990001", "a user's own mobile"),
    (OUR_NUMBER, "one of our numbers"),
])
def test_destinations_that_are_no_customer_are_skipped(watcher, clock, destination, reason):
    events = with_headers(trace_events(), Caller__Destination__Number=destination)
    feed(watcher, events)
    assert mappings() == 0, reason
    assert presence("alice")[0] is False


def test_caller_id_that_is_no_phone_number_teaches_nothing(watcher, clock):
    events = with_headers(trace_events(), Caller__Destination__Number=CUSTOMER,
                          Caller__Caller__ID__Number="anonymous",
                          variable_origination_caller_id_number="anonymous")
    feed(watcher, events)
    assert mapping(CUSTOMER, clock) is None
    assert presence("alice")[0] is False


# ------------------------------------------------------------------- the SIP phone (recorded)


def test_phone_call_through_the_dialplan_makes_busy_and_teaches_the_mapping(watcher, clock):
    events = sip_events("agent_phone_calls_customer")
    phone = events[0]
    assert phone.get("variable_sip_authorized") == "true"
    assert phone.get("variable_user_name") == "1000"
    watcher.handle(phone)
    assert presence("alice")[:2] == (True, phone.uuid)

    out_leg = next(e for e in events if e.name == "CHANNEL_CREATE"
                   and e.get("Call-Direction") == "outbound")
    # What the customer sees is the dialplan's effective caller ID, not the extension:
    assert out_leg.get("Caller-Caller-ID-Number") == OUR_NUMBER
    assert out_leg.get("Caller-Orig-Caller-ID-Number") == "1000"
    for item in events:
        watcher.handle(item)
        if item.uuid == out_leg.uuid and item.name == "CHANNEL_CREATE":
            assert out_leg.uuid in watcher.busy_calls("alice")
            assert mapping(CUSTOMER, clock) is None
        if item.uuid == out_leg.uuid and item.name == "CHANNEL_PROGRESS":
            assert mapping(CUSTOMER, clock)[:2] == ("alice", OUR_NUMBER)
    assert presence("alice")[0] is False


def test_phone_of_another_directory_domain_is_nobody(store, clock):
    config = make_config(voicemail_domain="elsewhere.test", url=store)
    watcher = AgentWatcher(lambda: config, clock)
    feed(watcher, sip_events("agent_phone_calls_customer"))
    assert presence("alice") is None
    assert mapping(CUSTOMER, clock) is None


def test_unauthenticated_from_user_is_not_the_agent_but_ringing_her_phone_is(watcher, clock):
    events = sip_events("spoofed_from_user_on_open_profile")
    spoofed = events[0]
    assert spoofed.get("variable_sip_from_user") == "1000"
    assert spoofed.get("Caller-Caller-ID-Number") == "1000"
    assert spoofed.get("variable_user_name") is None
    watcher.handle(spoofed)
    assert not watcher.is_busy("alice") and presence("alice") is None

    to_phone = events[1]
    assert to_phone.get("variable_dialed_user") == "1000"
    watcher.handle(to_phone)  # the switch rings user/1000: alice's phone is in use
    assert watcher.busy_calls("alice") == {to_phone.uuid}
    feed(watcher, events[2:])
    assert presence("alice")[0] is False
    assert mappings() == 0


# ------------------------------------------------------------------- caller ID trust


def test_caller_id_never_makes_an_inbound_caller_an_agent(watcher, clock):
    watcher.handle(event("CHANNEL_CREATE", "in-1", Call__Direction="inbound",
                         Caller__Caller__ID__Number="1000",
                         Caller__Destination__Number=OUR_NUMBER))
    # A leg bridged from that caller copies the caller ID: still not alice's.
    watcher.handle(event("CHANNEL_CREATE", "out-1", Call__Direction="outbound",
                         Caller__Caller__ID__Number="1000",
                         variable_originating_leg_uuid="in-1",
                         Caller__Destination__Number=CUSTOMER))
    watcher.handle(event("CHANNEL_ANSWER", "out-1", Call__Direction="outbound",
                         Caller__Caller__ID__Number="1000", Other__Type="originator",
                         Other__Leg__Unique__ID="in-1"))
    assert not watcher.is_busy("alice") and presence("alice") is None


def test_caller_id_of_an_originate_nobody_bridged_names_the_agent(watcher, clock):
    watcher.handle(event("CHANNEL_CREATE", "c2c-1", Call__Direction="outbound",
                         Caller__Caller__ID__Number="1001",
                         Caller__Destination__Number=CUSTOMER))
    assert watcher.busy_calls("bob") == {"c2c-1"}
    # Its caller ID is the extension, not a number a customer could call back.
    watcher.handle(event("CHANNEL_ANSWER", "c2c-1", Call__Direction="outbound",
                         Caller__Caller__ID__Number="1001"))
    assert mapping(CUSTOMER, clock) is None
    watcher.handle(event("CHANNEL_HANGUP_COMPLETE", "c2c-1"))
    assert presence("bob")[0] is False


def test_directory_domain_of_a_dial_string_must_match(watcher, clock):
    watcher.handle(event("CHANNEL_CREATE", "d-1", Call__Direction="outbound",
                         variable_dialed_user="2001", variable_dialed_domain="fsrouter.test"))
    assert not watcher.is_busy("bob")
    watcher.handle(event("CHANNEL_CREATE", "d-2", Call__Direction="outbound",
                         variable_dialed_user="2001", variable_dialed_domain="OTHER.test"))
    assert watcher.busy_calls("bob") == {"d-2"}


def test_authenticated_from_user_counts_only_with_the_same_auth_user(watcher, clock):
    watcher.handle(event("CHANNEL_CREATE", "s-1", Call__Direction="inbound",
                         variable_sip_from_user="1000", variable_sip_authorized="true",
                         variable_sip_auth_username="1001",
                         variable_sip_auth_realm="fsrouter.test"))
    assert not watcher.is_busy("alice") and not watcher.is_busy("bob")
    watcher.handle(event("CHANNEL_CREATE", "s-2", Call__Direction="inbound",
                         variable_sip_from_user="1000", variable_sip_authorized="true",
                         variable_sip_auth_username="1000",
                         variable_sip_auth_realm="fsrouter.test"))
    assert watcher.busy_calls("alice") == {"s-2"}


# ------------------------------------------------------------------- garbage


HOSTILE = [
    "${system(touch /tmp/pwned)}", "1000\n1000", "\x00", "'; DROP TABLE agent_presence;--",
    "x" * 10_000, "+49 30 1234567\r\nEvent-Name: CHANNEL_CREATE", "\ud800", "алиса", "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_headers_never_raise_and_busy_nobody(watcher, clock, value):
    for name in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
                 "CHANNEL_HANGUP_COMPLETE"):
        watcher.handle(event(name, "h-1", Call__Direction=value,
                             Caller__Caller__ID__Number=value,
                             Caller__Destination__Number=value, variable_fsr_agent=value,
                             variable_user_name=value, variable_domain_name=value,
                             variable_originating_leg_uuid=value, Other__Type=value,
                             variable_fsr_kind=value, variable_channel_cid_flipped=value))
        watcher.handle(event(name, value, variable_fsr_agent="alice"))
    for user in ("alice", "bob", "carol"):
        assert presence(user) is None


def test_hostile_destination_of_a_real_agent_call_is_skipped(watcher, clock):
    for value in HOSTILE:
        events = with_headers(trace_events(), Caller__Destination__Number=value)
        feed(watcher, events)
    assert presence("alice")[0] is False
    assert mappings() == 0


def test_missing_headers_unknown_users_and_other_events_are_ignored(watcher, clock):
    garbage = [
        Event({}), Event({"Event-Name": "CHANNEL_CREATE"}),
        event("CHANNEL_CREATE", "u-1", variable_fsr_agent="mallory"),
        event("CHANNEL_CREATE", "u-2", variable_user_name="9999"),
        event("BACKGROUND_JOB", "u-3", variable_fsr_agent="alice"),
        event("CUSTOM", "u-4", variable_fsr_agent="alice"),
        event("CHANNEL_HANGUP_COMPLETE", "never-seen"),
        Event({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": None}),  # type: ignore[dict-item]
    ]
    feed(watcher, garbage)
    assert all(presence(user) is None for user in ("alice", "bob", "carol"))


def test_late_events_of_an_ended_channel_do_not_resurrect_it(watcher, clock):
    create_a, *_ = trace_events()
    watcher.handle(create_a)
    watcher.handle(event("CHANNEL_HANGUP_COMPLETE", create_a.uuid))
    watcher.handle(create_a)
    assert not watcher.is_busy("alice")


def test_store_failure_is_retried_and_never_raises(watcher, clock, store):
    watcher.store_retry_s = 0.05
    create_a, create_b, answer_a, answer_b, done_a, done_b = trace_events()
    with session() as db:
        db.execute_sql("ALTER TABLE agent_presence RENAME TO presence_away")
    watcher.handle(create_a)  # the write fails: logged, kept
    assert watcher.is_busy("alice")
    with session() as db:
        db.execute_sql("ALTER TABLE presence_away RENAME TO agent_presence")
    gevent.sleep(0.2)  # the retry writes what is still wanted
    assert presence("alice")[:2] == (True, create_a.uuid)
    feed(watcher, [create_b, answer_a, answer_b, done_a, done_b])
    assert presence("alice")[0] is False


def test_config_reload_without_the_agent_still_frees_her(store, clock):
    configs = [make_config(url=store)]
    watcher = AgentWatcher(lambda: configs[-1], clock)
    create_a, create_b, *_, done_a, done_b = trace_events()
    feed(watcher, [create_a, create_b])
    configs.append(make_config(url=store, without="alice"))
    feed(watcher, [done_a, done_b])
    assert presence("alice")[0] is False


# ------------------------------------------------------------------- resync (store side)


class IdleSwitch:
    """The replies of a switch as measured on 1.11.1: idle by default, else ``listing``."""

    def __init__(self, listing: str = '{"row_count": 0}') -> None:
        self.listing = listing
        self.commands: list[str] = []

    def api(self, cmd: str, timeout: float | None = None) -> str:
        self.commands.append(cmd)
        if cmd == "show channels as json":
            return self.listing
        return "-ERR No such channel!\n"


def test_resync_forgets_channels_whose_hangup_was_missed(watcher, clock):
    create_a, create_b, *_ = trace_events()
    feed(watcher, [create_a, create_b])
    assert presence("alice")[0] is True
    clock.advance(minutes=1)
    assert watcher.resync(IdleSwitch()) is True
    assert not watcher.is_busy("alice")
    assert presence("alice")[0] is False


@pytest.mark.parametrize("reply", ["-ERR no reply\n", "not json", '{"rows": 5}', "[1, 2]", ""])
def test_resync_that_cannot_read_the_switch_changes_nothing(watcher, clock, reply):
    create_a, *_ = trace_events()
    watcher.handle(create_a)
    assert watcher.resync(IdleSwitch(reply)) is False
    assert watcher.is_busy("alice")
    assert presence("alice")[0] is True


def test_resync_clears_a_stale_flag_of_a_single_host_store(watcher, clock):
    queries.set_presence("bob", clock(), busy=True, busy_call_uuid="from-before-a-restart")
    assert watcher.resync(IdleSwitch())
    assert presence("bob")[0] is False


def test_shared_store_keeps_another_hosts_flag_until_it_is_old(store, clock):
    config = make_config(url=store)
    watcher = AgentWatcher(lambda: config, clock, exclusive=False,
                           stale_after=timedelta(hours=12))
    queries.set_presence("bob", clock(), busy=True, busy_call_uuid="other-host-call")
    assert watcher.resync(IdleSwitch())
    assert presence("bob")[0] is True  # may be bob's call on the other switch
    clock.advance(hours=12)
    assert watcher.resync(IdleSwitch())
    assert presence("bob")[0] is False


def test_shared_store_clears_a_flag_of_our_own_missed_call_at_once(store, clock):
    config = make_config(url=store)
    watcher = AgentWatcher(lambda: config, clock, exclusive=False)
    create_a, *_ = trace_events()
    watcher.handle(create_a)
    assert watcher.resync(IdleSwitch())
    assert presence("alice")[0] is False


class ReplaySwitch(IdleSwitch):
    """Lists channels and answers ``uuid_dump`` with recorded headers (the real format)."""

    def __init__(self, channels: dict[str, dict[str, str]]) -> None:
        rows = [{"uuid": uuid} for uuid in channels]
        super().__init__(json.dumps({"row_count": len(rows), "rows": rows}))
        self.channels = channels

    def api(self, cmd: str, timeout: float | None = None) -> str:
        words = cmd.split()
        if words[0] == "uuid_dump" and words[1] in self.channels:
            self.commands.append(cmd)
            return json.dumps(self.channels[words[1]] | {"Event-Name": "CHANNEL_DATA"})
        return super().api(cmd, timeout)


def test_resync_finds_an_agent_call_that_started_while_away(watcher, clock):
    *_, answer_a, answer_b, _, _ = with_headers(trace_events(),
                                                Caller__Destination__Number=CUSTOMER)
    switch = ReplaySwitch({answer_a.uuid: answer_a.headers, answer_b.uuid: answer_b.headers,
                           "someone-else": {"Unique-ID": "someone-else"}})
    assert watcher.resync(switch)
    assert watcher.busy_calls("alice") == {answer_a.uuid, answer_b.uuid}
    assert presence("alice")[0] is True
    assert mapping(CUSTOMER, clock)[:2] == ("alice", OUR_NUMBER)  # it was answered
    # A second resync asks only about the agent's channels (still live), not about others.
    switch.commands.clear()
    assert watcher.resync(switch)
    assert sorted(c.split()[1] for c in switch.commands if c.startswith("uuid_dump")) == \
        sorted([answer_a.uuid, answer_b.uuid])
    assert watcher.busy_calls("alice") == {answer_a.uuid, answer_b.uuid}


@pytest.mark.parametrize("ending", [{"Channel-State": "CS_REPORTING"},
                                    {"Answer-State": "hangup"}])
def test_resync_forgets_a_channel_that_is_still_listed_but_ending(watcher, clock, ending):
    create_a, *_ = trace_events()
    watcher.handle(create_a)
    ending = create_a.headers | ending
    assert watcher.resync(ReplaySwitch({create_a.uuid: ending}))
    assert not watcher.is_busy("alice")
    assert presence("alice")[0] is False


def test_resync_forgets_channels_of_nobody_that_ended_while_away(watcher, clock):
    for i in range(3):
        watcher.handle(event("CHANNEL_CREATE", f"nobody-{i}", Call__Direction="inbound"))
    assert len(watcher._others) == 3  # remembered so that resync need not look them up
    assert watcher.resync(IdleSwitch())
    assert watcher._others == set()


def test_a_call_to_the_agents_phone_teaches_nothing(watcher, clock):
    # The switch dials user/1000 (dialed_user): a call *to* alice, not one she makes.
    for name in ("CHANNEL_CREATE", "CHANNEL_ANSWER"):
        watcher.handle(event(name, "to-alice", Call__Direction="outbound",
                             variable_dialed_user="1000", Caller__Destination__Number=CUSTOMER,
                             Caller__Caller__ID__Number=OUR_NUMBER))
    assert watcher.busy_calls("alice") == {"to-alice"}
    assert mapping(CUSTOMER, clock) is None


def test_resync_marks_busy_what_the_store_missed(watcher, clock, store):
    create_a, *_ = trace_events()
    watcher.handle(create_a)
    queries.set_presence("alice", clock(), busy=False)  # e.g. another process wrote
    assert watcher.resync(ReplaySwitch({create_a.uuid: create_a.headers}))
    assert presence("alice")[:2] == (True, create_a.uuid)


def test_a_hangup_that_arrives_while_resync_asks_the_switch_wins(watcher, clock):
    *_, answer_a, _, _, _ = trace_events()

    class HangsUpMeanwhile(ReplaySwitch):
        def api(self, cmd: str, timeout: float | None = None) -> str:
            reply = super().api(cmd, timeout)
            if cmd.startswith("uuid_dump"):  # the event is handled while resync waits
                watcher.handle(event("CHANNEL_HANGUP_COMPLETE", answer_a.uuid))
            return reply

    assert watcher.resync(HangsUpMeanwhile({answer_a.uuid: answer_a.headers}))
    assert not watcher.is_busy("alice")
    assert presence("alice") is None


def test_a_connection_lost_during_resync_changes_nothing(watcher, clock):
    create_a, *_ = trace_events()
    watcher.handle(create_a)

    class DropsDuringDumps(IdleSwitch):
        def api(self, cmd: str, timeout: float | None = None) -> str:
            if cmd.startswith("uuid_dump"):
                raise ConnectionClosed("inbound: peer closed the socket")
            return super().api(cmd, timeout)

    assert watcher.resync(DropsDuringDumps()) is False
    assert watcher.busy_calls("alice") == {create_a.uuid}
    assert presence("alice")[0] is True


def test_an_extension_two_users_share_names_nobody(store, clock):
    config = make_config(url=store)
    users = dict(config.users)
    users["dave"] = users["bob"].model_copy(update={"name": "Dave"})  # extension 1001 too
    shared = config.model_copy(update={"users": users})
    watcher = AgentWatcher(lambda: shared, clock)
    watcher.handle(event("CHANNEL_CREATE", "x-1", Call__Direction="inbound",
                         variable_user_name="1001", variable_domain_name="fsrouter.test"))
    watcher.handle(event("CHANNEL_CREATE", "x-2", Call__Direction="outbound",
                         Caller__Caller__ID__Number="1001"))
    assert not watcher.is_busy("bob") and not watcher.is_busy("dave")
    watcher.handle(event("CHANNEL_CREATE", "x-3", Call__Direction="inbound",
                         variable_user_name="1000", variable_domain_name="fsrouter.test"))
    assert watcher.busy_calls("alice") == {"x-3"}
