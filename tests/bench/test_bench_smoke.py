"""The benchmark machinery at a tiny size, so it does not rot: real processes, the real
daemon, the simulator. It checks results (calls completed, database rows final, the
baselines sending what fsrouter sends), never timings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import run, scenario
from bench.report import evaluate, table

# Run alone, after the parallel part (see the Makefile): benchmark: pins processes to both cores.
pytestmark = pytest.mark.serial

TINY = replace(run.QUICK, apps=("fsrouter",), rates=(20.0,), latency_s=0.15, ramp_s=0.15,
               ramp_steps=1, waiting=4, waiting_step=2, probes=2, decisions=5, profile_s=0,
               warm_calls=2, speed=50.0, waiting_speed=5.0, settle_s=0.2, idle_s=0.3,
               quiet_s=0.1, pin=False)


def test_whole_run_at_a_tiny_size() -> None:
    results = run.run_all(TINY, say=lambda text: None)
    fsr = results["apps"]["fsrouter"]
    latency = fsr["load"]["latency"]["20"]
    assert latency["completed"] == latency["calls"] == 3
    assert latency["setup_ms"]["count"] == 3
    ramp = fsr["load"]["throughput"]["steps"]
    assert ramp and ramp[0]["completed"] == ramp[0]["calls"]
    assert fsr["load"]["exit_code"] == 0
    assert fsr["load"]["cpu"]["ms_per_complete_call"] > 0
    # Every call the load session placed (warm-up, latency, ramp) ended as bridged.
    store = fsr["load"]["store"]
    bridged = 2 + 3 + ramp[0]["calls"]
    assert store["call_records"] == {"bridged": bridged}
    assert store["attempts"] == {"no_answer": bridged, "answered": bridged}
    assert store["incidents"] == {"resolved": bridged}
    assert store["open_call_records"] == 0 and store["open_attempts"] == 0
    waiting = fsr["waiting"]
    assert waiting["waiting"] == 4 and waiting["in_queue"] == 4
    assert waiting["kb_per_waiting_caller"] is not None
    assert [n for n, _ in waiting["rss_kb_points"]] == [0, 2, 4]
    assert waiting["probes_completed"] == 2 and waiting["all_hung_up_closed"]
    assert waiting["channels_left_up"] == 0  # every ringing leg was cancelled
    # Warm-up and probes were bridged; the waiting callers hung up in the queue.
    assert waiting["store"]["call_records"] == {"bridged": 1 + 2, "abandoned_in_queue": 1 + 4}
    assert waiting["store"]["open_call_records"] == 0
    assert waiting["store"]["open_attempts"] == 0
    assert waiting["store"]["attempts"] == {"no_answer": 3, "answered": 3, "cancelled": 5}
    routing = results["routing"]
    assert (routing["users"], routing["schedules"], routing["numbers"]) == (1000, 100, 50)
    assert routing["mean_attempts_per_plan"] > 0
    results["targets"] = evaluate(results)
    assert "memory per waiting caller" in table(results)


def test_baselines_send_what_fsrouter_sends(tmp_path) -> None:
    work = run.Workspace(tmp_path, max_calls=50)
    seen = {}
    for kind in ("fsrouter", "floor", "greenswitch"):
        app = work.start(kind, pin=False)
        try:
            step = run.run_step(app, rate=20, count=2, speed=50, quiet_s=0)
        finally:
            assert app.stop() == 0, app.log()[-2000:]
        assert step.all_closed and step.completed == 2, kind
        record = step.calls[0].record
        seen[kind] = ([(a.name, a.arg) for a in record.apps],
                      [(leg.dial, leg.caller_id_number, leg.caller_id_name)
                       for leg in record.agent_legs])
    assert seen["floor"] == seen["fsrouter"]
    assert seen["greenswitch"] == seen["fsrouter"]
    apps, legs = seen["fsrouter"]
    assert [name for name, _ in apps] == ["set", "answer", "play_and_get_digits", "multiset",
                                          "fifo"]
    assert [dial.split("/")[1] for dial, _, _ in legs] == [
        scenario.PHONES["anna"], scenario.PHONES["bernd"]]
    assert all(number == scenario.ROUTING_NUMBER for _, number, _ in legs)
