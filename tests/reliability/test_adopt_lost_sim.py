"""An adopted caller lost on the way back to us is recorded as such (issue 22 point 7).

On the real switch the new ``socket`` app of an adopted caller could return at once (the old
socket's listener thread clearing CF_CONTROLLED, see fsrouter.recovery) and the dialplan's
fallback hung up the caller before our ``answer``: the record then said
``hangup_before_answer`` for a call answered long before, with no warning, and the incident
stayed open with no reason. Here the simulator (in this test's hub, ``fsrouter run`` as a
process, as in test_restart_sim.py) makes the same thing happen on purpose: the adopted
caller's channel hangs up when our ``answer`` for it arrives.
"""

from __future__ import annotations

import signal

import pytest

from fsrouter.sim.outbound import OutboundSession
from fsrouter.sim.wire import Command
from tests.reliability.test_restart_realswitch import Caller, leg_of, logged, outage_on

pytestmark = pytest.mark.serial  # like the other restart tests: fsrouter run as a process


def test_an_adopted_caller_gone_before_our_answer_is_not_a_hangup_before_answer(
        sim_switch, tmp_path, monkeypatch):
    with outage_on(sim_switch, tmp_path) as (daemon, switch, watcher):
        daemon.start()
        switch.route_to(daemon.port)
        caller = Caller(switch, watcher, "4")  # dora's phone rings for 30 s
        leg_of(watcher, "dora")
        [before] = daemon.wait_for("SELECT * FROM call_records WHERE call_uuid = ? AND "
                                   "answered_at IS NOT NULL AND incident_id IS NOT NULL",
                                   caller.b)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()

        original = OutboundSession.handle

        def handle(self: OutboundSession, cmd: Command) -> None:
            # The fault: the adopted caller's channel goes down as our answer arrives.
            if (self.chan.uuid == caller.b and cmd.header("execute-app-name") == "answer"
                    and self.chan.alive):
                self.sim.hangup(self.chan, "NORMAL_TEMPORARY_FAILURE")
            original(self, cmd)

        monkeypatch.setattr(OutboundSession, "handle", handle)
        daemon.log_path = tmp_path / "daemon-restarted.log"
        daemon.start()
        assert logged(daemon, "recovery.done")["adopted"] == [caller.b]
        [record] = daemon.wait_for("SELECT * FROM call_records WHERE call_uuid = ? AND "
                                   "ended_at IS NOT NULL", caller.b)
        assert (record["outcome"], record["answered_at"]) == (
            "lost_in_restart", before["answered_at"])
        [incident] = daemon.rows("SELECT * FROM incidents WHERE id = ?", record["incident_id"])
        assert (incident["state"], incident["outcome_reason"]) == ("open", "lost_in_restart")
        warned = logged(daemon, "call.adoption_lost")
        assert warned["level"] == "warning" and warned["call_uuid"] == caller.b
        assert daemon.stop() == 0
