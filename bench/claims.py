"""What an agent claim costs a call: one claim and one release, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.claims [--calls 2000]

Each call claims a free agent (the INSERT ... ON CONFLICT of fsrouter/cluster/sql.py) and
releases it (one DELETE), each in its own transaction, as the call flows do; a third figure is
a claim that fails (the agent held by a live node: the busy path). PostgreSQL is a real server
on loopback (fsrouter.testing.postgres, started for the run). Prints microseconds per call
(median and 95th percentile) and writes bench/results_claims.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fsrouter.cluster import sql
from fsrouter.store import open_database, upgrade
from fsrouter.store.db import close_database
from fsrouter.testing.postgres import start_postgres

RESULTS = Path(__file__).with_name("results_claims.json")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(url: str, calls: int) -> dict[str, Any]:
    db = open_database(url)
    try:
        upgrade(db)
        sql.register_node("bench-a", "bench", 1, 600.0)
        sql.register_node("bench-b", "bench", 2, 600.0)
        assert sql.try_claim("held", "bench-b", "c", "l")
        both, claim_only, busy = [], [], []
        for n in range(calls):
            agent, leg = f"agent-{n % 50}", f"leg-{n}"
            began = time.perf_counter()
            assert sql.try_claim(agent, "bench-a", f"call-{n}", leg)
            claimed = time.perf_counter()
            assert sql.release_claim(agent, "bench-a", leg)
            done = time.perf_counter()
            assert not sql.try_claim("held", "bench-a", f"call-{n}", leg)
            refused = time.perf_counter()
            both.append((done - began) * 1e6)
            claim_only.append((claimed - began) * 1e6)
            busy.append((refused - done) * 1e6)
        return {name: {"median_us": round(statistics.median(v), 1),
                       "p95_us": round(_percentile(v, 0.95), 1)}
                for name, v in (("claim_and_release", both), ("claim", claim_only),
                                ("claim_refused", busy))}
    finally:
        close_database(db)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    results: dict[str, Any] = {"calls": args.calls, "python": platform.python_version(),
                               "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/claims.db", args.calls)
    server = start_postgres("fsrouter_bench_claims")
    try:
        results["postgresql"] = measure(server.url, args.calls)
    finally:
        server.stop()
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    for engine in ("sqlite", "postgresql"):
        for name, figures in results[engine].items():
            print(f"{engine:10} {name:18} median {figures['median_us']:8.1f} us   "
                  f"p95 {figures['p95_us']:8.1f} us")


if __name__ == "__main__":
    main()
