"""The console's Now page under a large configuration (issue 20.6): 1,000 users, 100 numbers.

::

    .venv/bin/python -m bench.console                 # 300 requests of each, ~1 minute
    .venv/bin/python -m bench.console --requests 1000

A real ``fsrouter web`` process on loopback (port 0, read from its log) serves a generated
configuration: 1,000 users (100 of them agents with a SIP phone), 100 schedules and 50
policies as in ``bench/routing.py``, and 100 numbers: 80 hotlines with three options each
(240 options whose on-call state the page works out) and 20 queue numbers over 10 queues.
The SQLite database holds 100 calls in progress (60 hotline callers waiting or talking, 30
callers in the sales queues, 10 in a menu) and the agents' presence.

One client logs in through the log-in form (a session cookie, as a browser) and asks, one
request after the other on one keep-alive connection: the Now page (HTML) and its JSON
(what the page polls every 3 s). Reported: the first request of the server (nothing worked
out yet), then median, p95 and max of ``--requests`` of each, wall-clock at the client
(connection reused, whole body read), the server's CPU time per request (from /proc: what
the time would be on an idle core), and the first request after a run-time override is
added (the options of that schedule are worked out again).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from bench.routing import POLICIES, SCHEDULES, USERS, _policy, _schedule, _user
from bench.stats import percentile, rounded

HOTLINES, QUEUE_NUMBERS, QUEUES, AGENTS = 80, 20, 10, 100
PASSWORD = "bench-Console-pw-1"
RESULTS = Path(__file__).with_name("results_console.json")


def console_config(db_path: Path) -> dict[str, Any]:
    users = {f"u{i}": _user(i) for i in range(USERS)}
    for i in range(AGENTS):  # agents: a SIP phone and an extension
        users[f"u{i}"]["extension"] = f"{2000 + i}"
        users[f"u{i}"]["phones"].insert(0, {"type": "sip", "dial_string": f"user/{2000 + i}"})
    queues = {f"q{k}": {"agents": [f"u{k * 10 + j}" for j in range(10)]}
              for k in range(QUEUES)}
    hotlines = [{"number": f"+49304000{2000 + i}", "type": "call_routing", "options": [
        {"digit": k + 1, "label": f"Team {i}-{k + 1}",
         "policy": f"p{(i * 3 + k) % POLICIES}"} for k in range(3)]}
        for i in range(HOTLINES)]
    queue_numbers = [{"number": f"+49305000{3000 + i}", "type": "queue",
                      "queue": f"q{i % QUEUES}"} for i in range(QUEUE_NUMBERS)]
    return {
        "switch": {"password_env": "FSR_BENCH_ESL_PASSWORD"},
        "database": {"url": f"sqlite:///{db_path}"},
        "defaults": {"country": "DE", "timezone": "Europe/Berlin"},
        "users": users,
        "schedules": {f"s{i}": _schedule(i) for i in range(SCHEDULES)},
        "policies": {f"p{i}": _policy(i) for i in range(POLICIES)},
        "queues": queues,
        "numbers": hotlines + queue_numbers,
    }


def fill_database(config_path: Path) -> None:
    """Calls in progress and agents' presence, written through the store as the daemon does."""
    from fsrouter.config import load_config
    from fsrouter.store import open_database, queries
    from fsrouter.store.db import close_database

    config = load_config(config_path)
    db = open_database(config.database.url)
    now = datetime.now(UTC)
    try:
        for i in range(60):  # hotline callers: two of three waiting, one talking
            number, digit = f"+49304000{2000 + i}", str(i % 3 + 1)
            started = now - timedelta(seconds=10 * i)
            queries.create_call_record(f"hot-{i}", number, "call_routing", f"+4917{i:07d}",
                                       f"Caller {i}", started)
            incident = queries.create_incident(number, digit, "Team", f"+4917{i:07d}",
                                               f"Caller {i}", f"hot-{i}", started,
                                               answered_at=started)
            if i % 3 == 0:
                queries.accept_incident(incident.id, f"u{i}", started + timedelta(seconds=5))
        for i in range(30):
            queries.create_call_record(f"q-{i}", f"+49305000{3000 + i % QUEUE_NUMBERS}",
                                       "queue", f"+4916{i:07d}", None, now)
            queries.mark_answered(f"q-{i}", now)
        for i in range(10):
            queries.create_call_record(f"menu-{i}", f"+49304000{2000 + i}", "call_routing",
                                       f"+4915{i:07d}", None, now)
        for i in range(AGENTS):
            queries.set_presence(f"u{i}", now, state="logged_in" if i % 2 else "logged_out",
                                 busy=i % 4 == 1)
    finally:
        close_database(db)


class Client:
    """One keep-alive HTTP/1.1 connection with a session cookie."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        all_headers = {**(headers or {}), **({"Cookie": self.cookie} if self.cookie else {})}
        began = time.perf_counter()
        self.connection.request(method, path, body=body, headers=all_headers)
        response = self.connection.getresponse()
        data = response.read()
        took = time.perf_counter() - began
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data, took

    def log_in(self, name: str, password: str) -> None:
        _, page, _ = self.request("GET", "/login")
        match = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert match, "no CSRF token on the log-in page"
        self.csrf = match.group(1).decode()
        form = urlencode({"name": name, "password": password, "csrf_token": self.csrf,
                          "next": "/now"})
        status, _, _ = self.request("POST", "/login", form,
                                    {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, f"log-in answered {status}"
        _, page, _ = self.request("GET", "/account")  # the new session's token
        match = re.search(rb'<meta name="csrf-token" content="([^"]+)"', page)
        assert match, "no CSRF token after the log-in"
        self.csrf = match.group(1).decode()


def serve(config_path: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    log_path = workdir / "web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fsrouter", "--log-format", "json", "web", "-c",
             str(config_path), "--port", "0", "--secret-file", str(workdir / "web-secret")],
            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fsrouter web exited: {log_path.read_text()[-2000:]}")
        for line in log_path.read_text("utf-8", errors="replace").splitlines():
            if '"web.ready"' in line:
                return process, int(json.loads(line)["port"]), log_path
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("fsrouter web did not log web.ready within 120 s")


def summary(samples: list[float]) -> dict[str, float | None]:
    ms = [sample * 1000 for sample in samples]
    return {"median_ms": rounded(percentile(ms, 0.5), 1),
            "p95_ms": rounded(percentile(ms, 0.95), 1), "max_ms": rounded(max(ms), 1),
            "requests": len(ms)}


def run(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fsr-console-bench-") as tmp:
        workdir = Path(tmp)
        config_path = workdir / "console.yaml"
        config_path.write_text(yaml.safe_dump(console_config(workdir / "fsrouter.db"),
                                              sort_keys=False), "utf-8")
        fsrouter = [sys.executable, "-m", "fsrouter"]
        subprocess.run([*fsrouter, "db", "upgrade", "-c", str(config_path)], check=True,
                       capture_output=True)
        subprocess.run([*fsrouter, "web", "user", "add", "bench", "--role", "supervisor",
                        "--password-stdin", "-c", str(config_path)], input=PASSWORD + "\n",
                       text=True, check=True, capture_output=True)
        fill_database(config_path)
        process, port, _ = serve(config_path, workdir)
        try:
            client = Client(port)
            client.log_in("bench", PASSWORD)
            status, body, cold = client.request("GET", "/api/v1/now")
            assert status == 200, body[:300]
            data = json.loads(body)
            results: dict[str, Any] = {
                "users": USERS, "numbers": HOTLINES + QUEUE_NUMBERS,
                "hotline_options": len(data["hotlines"]), "calls": data["calls"],
                "agents": len(data["agents"]),
                "first_request_ms": rounded(cold * 1000, 1)}
            for name, path in (("now_page", "/now"), ("now_json", "/api/v1/now")):
                samples, size = [], 0
                cpu_before = _cpu_seconds(process.pid)
                for _ in range(requests):
                    status, body, took = client.request("GET", path)
                    assert status == 200, (path, status)
                    samples.append(took)
                    size = len(body)
                cpu = (_cpu_seconds(process.pid) - cpu_before) / requests * 1000
                # The server's CPU time per request: what the wall-clock figures would be on
                # an idle core (the machine may be shared).
                results[name] = {**summary(samples), "server_cpu_ms": rounded(cpu, 1),
                                 "bytes": size}
            override = json.dumps({"schedule": "s1", "user": "u5",
                                   "from": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                                   "to": (datetime.now(UTC) + timedelta(hours=5)).isoformat()})
            status, body, _ = client.request(
                "POST", "/api/v1/oncall/overrides", override,
                {"Content-Type": "application/json", "X-CSRF-Token": client.csrf})
            assert status == 201, body[:300]
            _, _, after = client.request("GET", "/api/v1/now")
            results["first_json_after_override_ms"] = rounded(after * 1000, 1)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per URL (default 300)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before = _load()
    results = run(max(args.requests, 20))
    # The machine may be shared: the load average says how busy it was.
    results["load_average"] = {"start": load_before, "end": _load()}
    results["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.output.write_text(json.dumps(results, indent=1) + "\n", "utf-8")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
