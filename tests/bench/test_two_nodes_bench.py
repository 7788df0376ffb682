"""The two-node benchmark (bench/twonodes.py) at a tiny size, so it cannot rot.

It checks results, never timings: in both topologies every call placed completes, set-up
latency was measured for each; one node registered in its database, two in the shared one,
and every call of a topology left its call record in PostgreSQL; the daemons exit cleanly and
the table names both topologies.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from bench import twonodes
from fsrouter.testing.postgres import PostgresUnavailable
from fsrouter.testing.realswitch import find_freeswitch

pytestmark = [pytest.mark.serial, pytest.mark.realswitch, pytest.mark.multinode]

TINY = replace(twonodes.QUICK, rates=(4.0,), latency_s=1.0, ramp_start=4.0, ramp_s=1.0,
               ramp_steps=1, warm_calls=2, talk_ms=200)


def test_one_node_and_two_nodes_in_one_run() -> None:
    if find_freeswitch() is None:
        if os.environ.get("CI"):
            pytest.fail("real FreeSWITCH required when CI is set", pytrace=False)
        pytest.skip("no FreeSWITCH found (set FSROUTER_FREESWITCH)")
    try:
        results = twonodes.run_repeated(TINY, 1, say=lambda text: None)
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not available: {error}")
    run = results["runs"][0]
    assert run["machine"]["cpu_count"] and len(run["machine"]["load_average_at_end"]) == 3
    for key, nodes in (("one_node", 1), ("two_nodes", 2)):
        part = run[key]
        assert part["nodes_in_database"] == nodes, (key, part)
        assert part["daemon_exit_codes"] == [0] * nodes
        assert part["warm_up_completed"] == "2/2", (key, part)
        steps = [*part["latency"].values(), *part["throughput"]["steps"]]
        for step in steps:
            assert step["completed"] == step["calls"] == 4, (key, step)
            assert step["setup_ms"]["count"] == 4 and step["setup_ms"]["p95"] >= 0
            assert step["first_apps"] == {"answer": 4}
        assert part["throughput"]["sustained_calls_per_s"] is not None
        # Every call of the topology (the warm-up's too) has its record in PostgreSQL.
        assert part["calls_placed"] == 2 + 4 * len(steps)
        assert part["call_records_in_database"] == part["calls_placed"], (key, part)
    text = twonodes.table(results)
    assert "| one node |" in text and "| two nodes |" in text
