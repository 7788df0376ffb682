"""``python -m bench.storecount``: the store statements and transactions per complete call.

The benchmark's hotline call (bench/scenario.py: menu, key 1, queue, a first phone that rings
out, a second that answers, 1 s of talk) through the real daemon and a real SQLite file, with
every statement the daemon's SQLite connections run counted by its first word (``BEGIN``,
``COMMIT``, ``INSERT``, ...). A ``sitecustomize`` module put first on the daemon's path sets
a trace callback on each connection (``sqlite3.Connection.set_trace_callback``) that appends
the word to a file; the counts over a batch of calls, divided by the calls, are printed::

    .venv/bin/python -m bench.storecount --calls 100

Counting costs CPU, so this gives no timing: ``python -m bench.cost`` does. ``--writes``
times the same call's store work in this process instead (:func:`hotline_writes`, CPU
microseconds per call on a SQLite file), a figure that a change of one transaction moves
visibly, unlike the daemon's ~7 ms per call::

    .venv/bin/python -m bench.storecount --writes --calls 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench import scenario
from bench.run import QUICK, Workspace, run_step

_HOOK = '''
import os, re, sqlite3
_literal = re.compile(r"'(?:[^']|'')*'|\\b\\d+\\b")
_out = open(os.environ["FSR_SQL_TRACE"], "a", buffering=1)
_connect = sqlite3.connect

def _traced(*args, **kwargs):
    conn = _connect(*args, **kwargs)
    tag = f"{os.getpid()}.{id(conn)} "
    conn.set_trace_callback(lambda sql: _out.write(
        tag + _literal.sub("?", " ".join(sql.split()))[:90] + "\\n"))
    return conn

sqlite3.connect = _traced
'''


def traced_env(root: Path, env: dict[str, str]) -> Path:
    """Make the processes started with ``env`` trace their SQLite statements; the trace file
    (one line per statement: the connection, then the statement with its literals as ``?``,
    cut to 90 characters)."""
    hook = root / "sqltrace-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOOK, "utf-8")
    trace = root / "sql.trace"
    trace.touch()
    env["FSR_SQL_TRACE"] = str(trace)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
    return trace


def trace_lines(trace: Path, start: int = 0) -> list[tuple[str, str]]:
    """(connection, statement) from line ``start`` of the trace on."""
    with open(trace, encoding="utf-8") as lines:
        return [tuple(line.rstrip("\n").split(" ", 1)) for line in list(lines)[start:]]


def statements(trace: Path, start: int) -> Counter[str]:
    """The statements traced from line ``start`` on."""
    return Counter(text for _, text in trace_lines(trace, start))


def transactions(lines: list[tuple[str, str]]) -> list[list[str]]:
    """The explicit transactions (BEGIN ... COMMIT or ROLLBACK) in the trace, each as its
    statements, in the order they ended; statements outside one are left out."""
    open_: dict[str, list[str]] = {}
    done: list[list[str]] = []
    for conn, text in lines:
        if text.startswith("BEGIN"):
            open_[conn] = []
        elif text in ("COMMIT", "ROLLBACK"):
            done.append(open_.pop(conn, []))
        elif conn in open_:
            open_[conn].append(text)
    return done


def count(root: Path, calls: int, rate: float) -> dict[str, object]:
    work = Workspace(root / "fsrouter", max_calls=20_000)
    trace = traced_env(root, work.env)
    app = work.start("fsrouter", pin=False)
    try:
        run_step(app, 20, 20, QUICK.speed, quiet_s=0)  # warm-up
        before = len(trace.read_text("utf-8").splitlines())
        step = run_step(app, rate, calls, QUICK.speed, quiet_s=0.5)
        texts = statements(trace, before)
    finally:
        app.stop()
    done = max(len(step.calls), 1)
    seen: Counter[str] = Counter()
    for text, n in texts.items():
        seen[text.split(None, 1)[0].upper()] += n
    total = sum(n for word, n in seen.items() if word not in ("BEGIN", "COMMIT"))
    return {"calls": done, "all_closed": step.all_closed,
            "per_call": {word: round(n / done, 2) for word, n in sorted(seen.items())},
            "commits_per_call": round(seen["COMMIT"] / done, 2),
            "statements_per_call": round(total / done, 2),
            "each_per_call": {text: round(n / done, 2) for text, n in texts.most_common()}}


def hotline_writes(n: int, now: datetime) -> None:
    """The store work of the benchmark's hotline call as the call flows do it (through the
    journal's ``create``/``settle``), for call ``n``: the route lookup, the record, the
    incident, two attempts and their results, the acceptance, the end; and the agent
    watcher's busy and free for each rung phone."""
    from fsrouter.resilience.journal import create, settle
    from fsrouter.store import queries

    uuid = f"call-{n}"
    queries.get_assignment(scenario.ROUTING_NUMBER)
    record = create(queries.create_call_record, uuid, scenario.ROUTING_NUMBER, "call_routing",
                    scenario.CALLER_NUMBER, scenario.CALLER_NAME, now, host="bench")
    incident = create(queries.create_incident, scenario.ROUTING_NUMBER, "1", "Datenbank",
                      scenario.CALLER_NUMBER, scenario.CALLER_NAME, uuid, now, answered_at=now)
    for seq, (user, result, cause) in enumerate((("anna", "no_answer", "NO_ANSWER"),
                                                 ("bernd", "answered", "NORMAL_CLEARING"))):
        busy = getattr(queries, "set_busy", None)
        if busy is not None:
            busy(user, now, True, f"leg-{n}-{seq}")
        else:
            queries.set_presence(user, now, busy=True, busy_call_uuid=f"leg-{n}-{seq}")
        attempt = queries.record_attempt(uuid, seq, user, scenario.PHONES[user], now,
                                         phone_type="mobile", incident_id=incident.id,
                                         leg_uuid=f"leg-{n}-{seq}", call_id=record.id)
        settle(queries.end_attempt, attempt.id, result, cause, now)
        if seq == 0:
            (busy or _presence_free)(user, now, False, None)
    settle(queries.accept_incident, incident.id, "bernd", now, call_uuid=uuid)
    if hasattr(queries, "close_call_resolving"):
        settle(queries.close_call_resolving, uuid, "bridged", "NORMAL_CLEARING", now, now,
               incident.id, "call ended")
    else:
        settle(queries.resolve_incident, incident.id, now, "resolved", "call ended")
        settle(queries.close_call, uuid, "bridged", "NORMAL_CLEARING", now, now)
    (getattr(queries, "set_busy", None) or _presence_free)("bernd", now, False, None)


def _presence_free(user: str, now: datetime, busy: bool, call_uuid: str | None) -> None:
    from fsrouter.store import queries

    queries.set_presence(user, now, busy=busy, busy_call_uuid=call_uuid)


def write_cost(root: Path, calls: int, repeat: int) -> dict[str, object]:
    """CPU microseconds per call of :func:`hotline_writes` in this process, on a SQLite file
    (median of ``repeat`` batches of ``calls``)."""
    from fsrouter.store.db import close_database, open_database
    from fsrouter.store.migrations import upgrade

    db = open_database(f"sqlite:///{root}/writes.db")
    upgrade(db)
    now = datetime.now(UTC)
    batches = []
    try:
        for n in range(20):
            hotline_writes(-n - 1, now)  # warm-up
        for batch in range(repeat):
            began = time.process_time()
            for n in range(calls):
                hotline_writes(batch * calls + n, now)
            batches.append(1e6 * (time.process_time() - began) / calls)
    finally:
        close_database(db)
    return {"us_per_call": round(sorted(batches)[len(batches) // 2], 1),
            "batches_us": [round(b, 1) for b in batches]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storecount",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--writes", action="store_true",
                        help="instead: time the call's store writes in this process")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    from fsrouter import logs

    logs.configure("warning", json=True)
    with tempfile.TemporaryDirectory(prefix="fsrouter-storecount-") as tmp:
        if args.writes:
            print(json.dumps(write_cost(Path(tmp), args.calls, args.repeat), indent=1))
        else:
            print(json.dumps(count(Path(tmp), args.calls, args.rate), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
