"""Faults on demand, each seen from a real fsrouter.esl OutboundServer app over loopback TCP."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from fsrouter.esl import ESLError, ESLTimeout, OutboundServer, OutboundSession
from fsrouter.sim import CallerScript, Faults, Press, Simulator
from fsrouter.sim.faults import STEPS
from fsrouter.sim.record import SwitchRecord

MENU = "1 1 1 3000 # silence_stream://2000 silence_stream://250 fsr_choice ^[1-3]$"


class QueueApp:
    """answer, menu, fifo in, one agent via bgapi originate, wait for the end."""

    def __init__(self, agent: str = "answer-100-bob", job_wait: float = 1.0) -> None:
        self.agent = agent
        self.job_wait = job_wait
        self.error: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.choice: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.job_result: gevent.event.AsyncResult = gevent.event.AsyncResult()

    def __call__(self, session: OutboundSession) -> None:
        try:
            self.flow(session)
        except ESLError as exc:
            self.error.set(exc)
            raise
        self.error.set(None)

    def flow(self, session: OutboundSession) -> None:
        session.execute("answer").wait(5)
        done = session.execute("play_and_get_digits", MENU).wait(5)
        self.choice.set(done.get("variable_fsr_choice"))
        session.execute("fifo", "fsr_q1 in undef silence_stream://1000")
        while session.next_event(5).get("FIFO-Action") != "push":
            pass
        job = session.bgapi("originate {origination_uuid=%s,fifo_bridge_uuid=%s,"  # noqa: UP031
                            "fifo_bridge_uuid_required=true}loopback/%s/agents "
                            "'&fifo(fsr_q1 out nowait)'"
                            % ("7c9e6679-7425-40de-944b-e07fc1f90ae7", session.uuid, self.agent))
        try:
            self.job_result.set(job.wait(self.job_wait))
        except ESLTimeout as exc:
            self.job_result.set(exc)
        while True:
            if session.next_event(10).name == "CHANNEL_HANGUP_COMPLETE":
                return


def call(sim: Simulator, app: QueueApp, script: CallerScript) -> tuple[OutboundServer,
                                                                      SwitchRecord]:
    server = OutboundServer("127.0.0.1", 0, app, 10)
    server.start()
    record = sim.place_call(("127.0.0.1", server.port), "+493012345678", "+4915112345678",
                            "Jane", script)
    return server, record


def wait_end(sim: Simulator, record: SwitchRecord, timeout: float = 5.0) -> str:
    caller = sim.channels[record.caller_uuid]
    assert caller.hungup.wait(timeout), "the caller leg never ended"
    return caller.hangup_cause


def normal_script() -> CallerScript:
    return CallerScript(presses=[Press("2", 0.1, "menu")], hangup_in="bridged",
                        hangup_delay_s=0.5)


def test_normal_call_without_faults() -> None:
    sim = Simulator(speed=50)
    app = QueueApp()
    server, record = call(sim, app, normal_script())
    assert app.choice.get(timeout=5) == "2"
    assert app.job_result.get(timeout=5).startswith("+OK 7c9e6679")
    assert wait_end(sim, record) == "NORMAL_CLEARING"
    assert app.error.get(timeout=5) is None
    assert record.bridged_to == ["7c9e6679-7425-40de-944b-e07fc1f90ae7"]
    assert server.stop(timeout=10), "a call session never ended"


# What the caller ends with when the switch drops the call's socket at each step. Before the
# bridge the dialplan's fallback runs once the current application ends (seen on 1.11.1);
# in the queue the fifo app keeps the caller until someone ends it.
DROP_CAUSES = {"after_connect": "NORMAL_TEMPORARY_FAILURE", "in_menu": "NORMAL_TEMPORARY_FAILURE",
               "in_queue": None, "agent_ringing": "NORMAL_CLEARING", "bridged": "NORMAL_CLEARING"}


@pytest.mark.parametrize("step", STEPS)
def test_drop_outbound_socket_at_each_step(step: str) -> None:
    sim = Simulator(speed=50, faults=Faults(drop_outbound_at=step))
    app = QueueApp()
    server, record = call(sim, app, normal_script())
    if step != "after_connect":  # there the app's own setup fails first
        assert isinstance(app.error.get(timeout=5), ESLError)  # it saw the socket close
    else:
        wait_end(sim, record)  # the handler never runs: its setup fails on the dropped socket
    assert record.faults == [f"drop_outbound:{step}"]
    cause = DROP_CAUSES[step]
    if cause is None:
        gevent.sleep(0.1)
        assert sim.channels[record.caller_uuid].alive  # still waiting in the fifo
        assert sim.fifos.count("fsr_q1") == 1
        sim.hangup(sim.channels[record.caller_uuid], "NORMAL_CLEARING")
        cause = "NORMAL_CLEARING"
    assert wait_end(sim, record) == cause
    assert server.stop(timeout=10), "a call session never ended"


@pytest.mark.parametrize("faults", [
    Faults(garbage_after_connect=b"\x00\xffnot: esl\n\nmore garbage\n\n"),
    Faults(oversized_event_bytes=5 * 1024 * 1024),
], ids=["garbage", "oversized"])
def test_bad_frames_make_the_app_drop_and_the_caller_gets_the_fallback(faults: Faults) -> None:
    sim = Simulator(speed=50, faults=faults)
    app = QueueApp()
    server, record = call(sim, app, normal_script())
    assert wait_end(sim, record) == "NORMAL_TEMPORARY_FAILURE"
    assert faults.fired
    assert server.stop(timeout=10), "a call session never ended"


@pytest.mark.parametrize("faults", [Faults(split_every_byte=True), Faults(slow_read_s=0.005)],
                         ids=["split-every-byte", "slow-read"])
def test_call_survives_split_writes_and_slow_reads(faults: Faults) -> None:
    sim = Simulator(speed=50, faults=faults)
    app = QueueApp()
    server, record = call(sim, app, normal_script())
    assert app.choice.get(timeout=10) == "2"
    assert app.job_result.get(timeout=10).startswith("+OK")
    assert wait_end(sim, record, 10) == "NORMAL_CLEARING"
    assert server.stop(timeout=10), "a call session never ended"


def test_swallowed_background_job_times_out_but_the_bridge_happens() -> None:
    sim = Simulator(speed=50, faults=Faults(swallow_background_job=True))
    app = QueueApp(job_wait=0.1)
    script = normal_script()
    script.hangup_delay_s = 20  # 0.4 s real: the job wait (0.1 s) ends first
    server, record = call(sim, app, script)
    assert isinstance(app.job_result.get(timeout=5), ESLTimeout)
    assert "swallow_background_job" in sim.faults.fired
    assert record.agent_legs[0].result.startswith("+OK")
    assert wait_end(sim, record) == "NORMAL_CLEARING"
    assert server.stop(timeout=10), "a call session never ended"


class LogApp:
    """A careless app that puts the caller ID name into an application argument."""

    def __call__(self, session: OutboundSession) -> None:
        name = session.channel.get("Caller-Caller-ID-Name", "")
        session.execute("log", f"INFO caller {name}").wait(5)
        session.execute("hangup", "NORMAL_CLEARING").wait(5)


@pytest.mark.parametrize("hardened", [True, False])
def test_injection_is_expanded_and_recorded_only_without_hardening(hardened: bool) -> None:
    sim = Simulator(speed=50)
    sim.dialplan_disables_expansion = hardened
    server = OutboundServer("127.0.0.1", 0, LogApp(), 10)
    server.start()
    hostile = "${system(touch /tmp/fsr-sim-never)}"
    record = sim.place_call(("127.0.0.1", server.port), "+493012345678", "+4915112345678",
                            hostile)
    assert wait_end(sim, record) == "NORMAL_CLEARING"
    log_run = next(run for run in record.apps if run.name == "log")
    assert log_run.raw_arg == f"INFO caller {hostile}"
    if hardened:
        assert record.injections == [] and log_run.arg == log_run.raw_arg
    else:
        assert record.injections == [log_run] and log_run.arg == "INFO caller "
    assert server.stop(timeout=10), "a call session never ended"
