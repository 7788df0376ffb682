"""Replay the app side of each real-switch trace against the simulator, over its own ports.

Everything the app sent in the trace is sent again: the inbound connections go to the
simulator's inbound event socket (auth, ``bgapi originate ... loopback/<n>/public``, DTMF,
uuid_kill), the outbound connection is the one the simulated ``public`` dialplan opens to our
listener. Before each app command we wait for the frames the real switch had sent by then
(so DTMF goes out only after the menu's CHANNEL_EXECUTE). The frames received must have the
trace's shape: same frames in the same order, same header names in the same order.
"""

from __future__ import annotations

import re

import gevent
import pytest
from gevent import socket

from fsrouter.esl import InboundClient
from fsrouter.sim import Simulator

from .traces import Reader, event_headers, expected_frames, load, shape, split_frames

OUTBOUND_TRACES = ["ivr_queue_escalation.jsonl", "hangup_in_ivr.jsonl",
                   "invalid_then_timeout.jsonl", "caller_abandons_in_queue.jsonl",
                   "busy_tone_and_voicemail.jsonl"]
UNIQUE_ID = re.compile(rb"\nUnique-ID: ([0-9a-f-]{36})\n")


class Replay:
    """Drives one trace; ``readers`` holds one Reader per trace connection name."""

    def __init__(self, sim: Simulator, inbound_port: int, listener: socket.socket) -> None:
        self.sim = sim
        self.port = inbound_port
        self.listener = listener
        self.readers: dict[str, Reader] = {}
        self.subst: dict[str, str] = {}

    def reader(self, conn: str) -> Reader:
        if conn not in self.readers:
            if conn == "outbound":
                sock, _ = self.listener.accept()
            else:
                sock = socket.create_connection(("127.0.0.1", self.port))
            self.readers[conn] = Reader(sock)
        return self.readers[conn]

    def send(self, conn: str, data: str, trace_caller: str) -> None:
        reader = self.reader(conn)
        if conn == "outbound" and data.startswith("connect"):
            reader.sock.sendall(data.encode())
            reader.until(1)
            match = UNIQUE_ID.search(reader.frames[0])
            assert match, "connect reply without Unique-ID"
            self.subst[trace_caller] = match.group(1).decode()
            return
        for old, new in self.subst.items():
            data = data.replace(old, new)
        reader.sock.sendall(data.encode())

    def close(self) -> None:
        for reader in self.readers.values():
            reader.sock.close()


def run_trace(name: str, speed: float = 50.0) -> tuple[Replay, dict[str, list[bytes]]]:
    meta, steps = load(name)
    expected = {c: expected_frames(steps, c) for c in {s.conn for s in steps}}
    trace_caller = ""
    if expected.get("outbound"):
        match = UNIQUE_ID.search(expected["outbound"][0])
        trace_caller = match.group(1).decode() if match else ""
    sim = Simulator(speed=speed, password="ClueCon")
    port = sim.start_inbound()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    admin = InboundClient("127.0.0.1", port, "ClueCon")
    admin.connect()
    assert admin.api(f"global_setvar fsrouter_target=127.0.0.1:{listener.getsockname()[1]}")
    admin.close()
    replay = Replay(sim, port, listener)
    sent: dict[str, str] = {}
    for step in steps:
        if step.direction == "fs->app":
            sent[step.conn] = sent.get(step.conn, "") + step.data
            continue
        for conn, reader in replay.readers.items():
            reader.until(len(split_frames(sent.get(conn, "").encode())[0]))
        replay.send(step.conn, step.data, trace_caller)
    for conn, reader in replay.readers.items():
        reader.until(len(expected[conn]))
    listener.close()
    sim.stop_inbound()
    return replay, expected


@pytest.mark.parametrize("trace", OUTBOUND_TRACES)
def test_frames_match_trace(trace: str) -> None:
    replay, expected = run_trace(trace)
    try:
        for conn, reader in replay.readers.items():
            got = [shape(f) for f in reader.frames]
            want = [shape(f) for f in expected[conn]]
            assert [g[0] for g in got] == [w[0] for w in want], conn
            assert got == want, conn
    finally:
        replay.close()


def test_outbound_agent_call_events_match_trace() -> None:
    """The inbound-events view of an agent's own call: shapes and the variables 2-way needs."""
    replay, expected = run_trace("outbound_agent_call.jsonl")
    try:
        got = replay.readers["inbound-events"].frames
        want = expected["inbound-events"]
        assert [shape(f) for f in got] == [shape(f) for f in want]
        for mine, real in zip(got, want, strict=True):
            mine_vars = [n for n, _ in event_headers(mine) if n.startswith("variable_")]
            real_vars = [n for n, _ in event_headers(real) if n.startswith("variable_")]
            assert set(real_vars) <= set(mine_vars), set(real_vars) - set(mine_vars)
        create = next(dict(event_headers(f)) for f in got if shape(f)[0] == "CHANNEL_CREATE")
        assert create["variable_fsr_agent"] == "alice"
        assert create["Caller-Caller-ID-Number"] == "%2B493012345678"
    finally:
        replay.close()


def test_agent_outbound_call_helper_matches_trace_events() -> None:
    """``Simulator.agent_outbound_call`` gives subscribers what the trace shows."""
    _, steps = load("outbound_agent_call.jsonl")
    want = [shape(f)[0] for f in expected_frames(steps, "inbound-events")
            if b"text/event-plain" in f.partition(b"\n\n")[0]]
    sim = Simulator(speed=50)
    port = sim.start_inbound()
    client = InboundClient("127.0.0.1", port, sim.password)
    client.connect()
    client.subscribe(["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
                      "CHANNEL_HANGUP_COMPLETE"])
    result = sim.agent_outbound_call("1001", "customer", "+493012345678",
                                     variables={"fsr_agent": "alice"})
    assert result.startswith("+OK ")
    events = [client.conn.next_event(5) for _ in want]
    assert [e.name for e in events] == want
    assert all(e.get("variable_fsr_agent") == "alice" for e in events)
    assert {e.get("Caller-Orig-Caller-ID-Number") for e in events} == {"+493012345678"}
    legs = {e.get("variable_loopback_leg") for e in events}
    assert legs == {"A", "B"}
    client.close()
    sim.stop_inbound()
    gevent.sleep(0)
