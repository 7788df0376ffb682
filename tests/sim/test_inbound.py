"""The simulator's inbound event socket, spoken to over real loopback TCP."""

from __future__ import annotations

import pytest
from gevent import socket

from fsrouter.esl import AuthError, ConnectionClosed, InboundClient
from fsrouter.sim import Simulator

from .traces import Reader, event_headers

GOODBYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


@pytest.fixture
def sim() -> Simulator:
    simulator = Simulator(speed=50, password="s3cret")
    simulator.start_inbound()
    yield simulator
    simulator.stop_inbound()


def raw(sim: Simulator) -> Reader:
    assert sim.inbound is not None
    reader = Reader(socket.create_connection(("127.0.0.1", sim.inbound.port)))
    reader.until(1)
    assert reader.frames[0] == b"Content-Type: auth/request\n\n"
    return reader


def command(reader: Reader, line: str, frames: int = 1) -> list[bytes]:
    start = len(reader.frames)
    reader.sock.sendall(line.encode() + b"\n\n")
    reader.until(start + frames)
    return reader.frames[start:]


def login(sim: Simulator) -> Reader:
    reader = raw(sim)
    assert command(reader, "auth s3cret") == [b"Content-Type: command/reply\n"
                                              b"Reply-Text: +OK accepted\n\n"]
    return reader


def test_wrong_password_gets_err_invalid_then_close(sim: Simulator) -> None:
    reader = raw(sim)
    got = command(reader, "auth ClueCon", frames=2)
    assert got[0] == b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"
    assert got[1].endswith(GOODBYE) and b"text/disconnect-notice" in got[1]
    reader.until(4, timeout=2)
    assert reader.eof
    with pytest.raises(AuthError):
        InboundClient("127.0.0.1", sim.inbound.port, "wrong").connect()


def test_commands_before_auth_are_refused_and_connection_stays(sim: Simulator) -> None:
    reader = raw(sim)
    assert command(reader, "api status") == [b"Content-Type: command/reply\n"
                                             b"Reply-Text: -ERR command not found\n\n"]
    assert b"+OK accepted" in command(reader, "auth s3cret")[0]


def test_api_and_bgapi_with_own_job_uuid(sim: Simulator) -> None:
    client = InboundClient("127.0.0.1", sim.inbound.port, "s3cret", events=["BACKGROUND_JOB"])
    client.connect()
    assert "is ready" in client.api("status")
    assert client.api("global_setvar fsrouter_target=127.0.0.1:9") == "+OK"
    assert client.api("global_getvar fsrouter_target") == "127.0.0.1:9"
    assert client.api("bogus x") == "-ERR bogus Command not found!\n"
    assert client.api("uuid_kill 11111111-2222-3333-4444-555555555555") == \
        "-ERR No such channel!\n"
    job = client.bgapi("status", job_uuid="0b0e6f2c-7d43-4c5e-9f55-000000000001")
    assert job.job_uuid == "0b0e6f2c-7d43-4c5e-9f55-000000000001"
    assert "is ready" in job.wait(5)
    client.close()


def test_bgapi_reply_carries_job_uuid_header(sim: Simulator) -> None:
    reader = login(sim)
    got = command(reader, "bgapi status\nJob-UUID: my-own-job")
    assert got == [b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: my-own-job\n"
                   b"Job-UUID: my-own-job\n\n"]


def events_of(reader: Reader) -> list[str]:
    return [dict(event_headers(f))["Event-Name"] for f in reader.frames
            if b"text/event-plain" in f.partition(b"\n\n")[0]]


def test_event_subscription_filters_and_unsubscribe(sim: Simulator) -> None:
    reader = login(sim)
    assert b"+OK event listener enabled plain" in command(reader, "event plain CHANNEL_CREATE")[0]
    assert sim.agent_outbound_call("1001", "c1", "+493012345678", talk_ms=50).startswith("+OK")
    reader.until(4)
    reader.pump(0.1)  # the call is over: no other event type may have arrived
    assert events_of(reader) == ["CHANNEL_CREATE", "CHANNEL_CREATE"]
    assert b"+OK events nixed" in command(reader, "nixevent CHANNEL_CREATE")[0]
    assert b"+OK filter added. [Unique-ID]=[nobody]" in command(reader,
                                                                  "filter Unique-ID nobody")[0]
    assert b"+OK event listener enabled plain" in command(reader, "event plain ALL")[0]
    sim.agent_outbound_call("1001", "c2", "+493012345678", talk_ms=50)
    reader.pump(0.1)
    assert events_of(reader) == ["CHANNEL_CREATE", "CHANNEL_CREATE"]  # the filter held all
    assert b"filter deleted" in command(reader, "filter delete Unique-ID nobody")[0]
    sim.agent_outbound_call("1001", "c3", "+493012345678", talk_ms=50)
    reader.pump(0.1)
    assert events_of(reader).count("CHANNEL_HANGUP_COMPLETE") == 2
    assert b"-ERR not controlling a session" in command(reader, "linger")[0]
    assert b"+OK no longer listening" in command(reader, "noevents")[0]
    count = len(events_of(reader))
    sim.agent_outbound_call("1001", "c4", "+493012345678", talk_ms=50)
    reader.pump(0.1)
    assert len(events_of(reader)) == count
    got = command(reader, "exit", frames=2)
    assert b"+OK bye" in got[0] and got[1].endswith(GOODBYE)


def test_all_events_reach_subscriber_with_custom_subclass(sim: Simulator) -> None:
    client = InboundClient("127.0.0.1", sim.inbound.port, "s3cret")
    client.connect()
    client.subscribe(["CHANNEL_HANGUP_COMPLETE", "CUSTOM", "vm::maintenance"])
    assert sim.agent_outbound_call("1001", "c3", "+493012345678", talk_ms=100).startswith("+OK")
    first = client.conn.next_event(5)
    second = client.conn.next_event(5)
    assert {first.name, second.name} == {"CHANNEL_HANGUP_COMPLETE"}
    assert {first.get("variable_loopback_leg"), second.get("variable_loopback_leg")} == {"A", "B"}
    client.close()


def test_inbound_restart_drops_clients_and_comes_back_on_same_port(sim: Simulator) -> None:
    client = InboundClient("127.0.0.1", sim.inbound.port, "s3cret")
    client.connect()
    port = sim.inbound.port
    assert sim.restart_inbound(down_s=0.05) == port
    assert client.conn.wait_closed(2)
    with pytest.raises(ConnectionClosed):
        client.conn.next_event(1)
    again = InboundClient("127.0.0.1", port, "s3cret")
    again.connect()
    assert "is ready" in again.api("status")
    assert "inbound_restart" in sim.faults.fired
    again.close()
