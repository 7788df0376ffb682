"""What the real switch sends the daemon per call, by connection and event name.

``python -m bench.events`` (or ``python -m bench --real-only --events``) starts the real
FreeSWITCH as ``python -m bench --real`` does, puts a byte-counting TCP proxy (:class:`Tap`)
on each of the daemon's two kinds of connection, and runs ``--calls`` calls of the
benchmark's menu-queue-agent flow at ``--rate``:

- **outbound**: the switch's ``socket`` application connects to the proxy (the switch is
  routed to it with ``route_to``), which connects to the daemon: one connection per call.
- **inbound**: the daemon's configuration names the proxy as the switch's event socket; the
  proxy connects to the switch. The agent watcher's connection (and any other inbound one
  the daemon opens).

The proxy passes every byte through unchanged and cuts what the switch sends into frames
(``Content-Length``): each ``text/event-plain`` frame counts under its ``Event-Name`` (CUSTOM
under its subclass), other frames under their ``Content-Type``; what the daemon sends counts
under the command's first word (``sendmsg`` under the application it executes). These
counts are deterministic for a given flow: they do not depend on the machine's load.

With ``--profile`` py-spy samples the daemon for the counted step (top functions by own
samples, as ``bench/hotpath.py`` summarises). Results go to ``bench/results_events.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import gevent
import gevent.server
import gevent.socket

from bench import hotpath
from bench.driver import AppProcess
from bench.realswitch import APPS, Bench, RealSettings, bench_config, run_step
from bench.stats import rounded

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results_events.json"
MAX_FRAME_HEAD = 64 * 1024  # the proxy gives up counting (not passing) past these
MAX_FRAME_BODY = 16 * 1024 * 1024
_NAME = re.compile(r"^Event-Name: ([^\n]*)$", re.M)
_SUBCLASS = re.compile(r"^Event-Subclass: ([^\n]*)$", re.M)
_ACTION = re.compile(r"^FIFO-Action: ([^\n]*)$", re.M)
_LENGTH = re.compile(r"^Content-Length: *([0-9]+)$", re.M)
_TYPE = re.compile(r"^Content-Type: *([^\n]*)$", re.M)


@dataclass
class Tally:
    """Frames and bytes by name, for one direction of one kind of connection."""

    frames: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    # Header bytes (up to the blank line): what mod_event_socket reads one recv() per byte in
    # a command (bench/switchcost.py); a body it reads in one.
    head_bytes: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, size: int, head: int = 0) -> None:
        self.frames[name] += 1
        self.bytes[name] += size
        self.head_bytes[name] += head

    def per_call(self, calls: int) -> list[dict[str, Any]]:
        """Rows by bytes, most first, with per-call figures."""
        rows = []
        for name, size in self.bytes.most_common():
            count = self.frames[name]
            rows.append({"name": name, "frames": count, "bytes": size,
                         "frames_per_call": rounded(count / calls, 2),
                         "bytes_per_call": round(size / calls),
                         "header_bytes_per_call": round(self.head_bytes[name] / calls),
                         "bytes_each": round(size / count)})
        return rows

    def totals(self, calls: int) -> dict[str, Any]:
        frames, size = sum(self.frames.values()), sum(self.bytes.values())
        return {"frames": frames, "bytes": size, "frames_per_call": rounded(frames / calls, 2),
                "bytes_per_call": round(size / calls),
                "header_bytes_per_call": round(sum(self.head_bytes.values()) / calls)}


class FrameCutter:
    """Cuts the switch's stream into frames and tallies them (never raises on garbage: it
    stops counting, the proxy keeps passing bytes)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.buf = b""
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buf += data
        while True:
            end = self.buf.find(b"\n\n")
            if end < 0:
                self.broken = len(self.buf) > MAX_FRAME_HEAD
                return
            head = self.buf[:end].decode("utf-8", "replace")
            match = _LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if length > MAX_FRAME_BODY:
                self.broken = True
                return
            size = end + 2 + length
            if len(self.buf) < size:
                return
            body = self.buf[end + 2:size].decode("utf-8", "replace")
            self.buf = self.buf[size:]
            self.tally.add(self.name(head, body), size, end + 2)

    def name(self, head: str, body: str) -> str:
        return frame_name(head, body)


def frame_name(head: str, body: str) -> str:
    """An event's name (CUSTOM: its subclass), else the frame's Content-Type."""
    kind = _TYPE.search(head)
    content_type = kind.group(1).strip() if kind else ""
    if content_type == "text/event-plain":
        name = _NAME.search(body)
        event = unquote(name.group(1)) if name else "?"
        if event == "CUSTOM":
            sub = _SUBCLASS.search(body)
            event = f"CUSTOM {unquote(sub.group(1)) if sub else '?'}"
            action = _ACTION.search(body)
            if event == "CUSTOM fifo::info" and action:
                event += f" {unquote(action.group(1))}"
        return event
    if not content_type and _NAME.search(head):
        return "connect reply (channel data)"
    return content_type or "?"


def command_name(block: str) -> str:
    """What the daemon sent: the command's first word; a sendmsg, the app it executes."""
    line = block.split("\n", 1)[0].strip()
    word = line.split(" ", 1)[0] if line else "?"
    if word == "sendmsg":
        app = re.search(r"^execute-app-name: *(\S+)", block, re.M)
        verb = re.search(r"^call-command: *(\S+)", block, re.M)
        return f"sendmsg {app.group(1) if app else (verb.group(1) if verb else '?')}"
    if word in ("event", "filter", "api", "bgapi"):
        return " ".join(line.split(" ", 2)[:2]) if word in ("api", "bgapi") else line[:120]
    return word


class CommandCutter(FrameCutter):
    """Cuts what the daemon sends into commands (a block ended by a blank line, plus a
    body of ``Content-Length`` bytes for a sendmsg that carries one)."""

    def name(self, head: str, body: str) -> str:
        return command_name(head)


@dataclass
class Side:
    """The tallies of one kind of connection."""

    from_switch: Tally = field(default_factory=Tally)
    to_switch: Tally = field(default_factory=Tally)
    connections: int = 0


class Tap:
    """A TCP proxy on loopback: ``accept`` side and ``upstream`` side, bytes passed as they
    come. ``switch_is_client`` says which side is the switch (outbound: the switch connects
    to us; inbound: we connect to the switch)."""

    def __init__(self, upstream: tuple[str, int], switch_is_client: bool) -> None:
        self.upstream = upstream
        self.switch_is_client = switch_is_client
        self.side = Side()
        self.counting = True
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._serve)
        self.server.start()

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def reset(self, keep_connections: bool) -> None:
        """Zero the tallies in place (open connections keep feeding them)."""
        for tally in (self.side.from_switch, self.side.to_switch):
            tally.frames.clear()
            tally.bytes.clear()
            tally.head_bytes.clear()
        if not keep_connections:
            self.side.connections = 0

    def stop(self) -> None:
        self.server.stop(timeout=1)

    def _serve(self, client: socket.socket, _address: Any) -> None:
        try:
            server = gevent.socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        if self.counting:
            self.side.connections += 1
        switch, app = (client, server) if self.switch_is_client else (server, client)
        events, commands = FrameCutter(self.side.from_switch), CommandCutter(self.side.to_switch)
        pumps = [gevent.spawn(self._pump, switch, app, events.feed),
                 gevent.spawn(self._pump, app, switch, commands.feed)]
        gevent.joinall(pumps, count=1)
        for sock in (client, server):
            _close(sock)
        gevent.joinall(pumps, timeout=2)

    def _pump(self, source: socket.socket, sink: socket.socket,
              count: Callable[[bytes], None]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.counting:
                    count(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def count_events(settings: RealSettings, calls: int, rate: float, profile: bool,
                 say: Callable[[str], None] = print, kind: str = "fsrouter") -> dict[str, Any]:
    """Run ``calls`` calls of application ``kind`` (bench/realswitch.py ``APPS``; only
    fsrouter opens an inbound connection) on the real switch through the two taps."""
    from bench.run import machine

    out: dict[str, Any] = {"machine": machine(), "app": kind, "calls": calls, "rate": rate}
    with tempfile.TemporaryDirectory(prefix="fsrouter-events-") as tmp:
        bench = Bench(settings, Path(tmp))
        taps: dict[str, Tap] = {}
        try:
            bench.start()
            host, esl_port, _ = bench.switch.esl_endpoint()
            taps["inbound"] = Tap((host, esl_port), switch_is_client=False)
            bench.config = bench_config(bench.root, taps["inbound"].port, settings.talk_ms)
            app = bench.start_app(kind)
            try:
                taps["outbound"] = Tap(("127.0.0.1", app.port), switch_is_client=True)
                bench.switch.route_to(taps["outbound"].port)
                out.update(_counted_step(bench, app, taps, calls, rate,
                                         Path(tmp) / "daemon.pyspy" if profile else None, say))
            finally:
                app.stop()
                bench.switch.route_to(1)
        finally:
            for tap in taps.values():
                tap.stop()
            bench.stop()
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    out["connections"] = {name: _side_figures(taps[name].side, calls)
                          for name in ("outbound", "inbound")}
    return out


def _counted_step(bench: Bench, app: AppProcess, taps: dict[str, Tap], calls: int,
                  rate: float, profile: Path | None,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """Warm up, zero the taps, then the counted calls (py-spy on the daemon if ``profile``
    names its output file)."""
    say(f"events: {bench.settings.warm_calls} warm-up calls ...")
    run_step(bench.caller, bench.pid, app, 5.0, bench.settings.warm_calls)
    for name, tap in taps.items():  # count the measured calls only
        tap.reset(keep_connections=name == "inbound")
    say(f"events: {calls} calls at {rate}/s through the taps ...")
    spy = hotpath.start(app.pid, calls / rate + 3, profile) if profile else None
    out: dict[str, Any] = {"step": run_step(bench.caller, bench.pid, app, rate, calls).summary()}
    if spy is not None and profile is not None:
        spy.wait(timeout=calls / rate + 60)
        out["profile"] = (hotpath.summarise(profile, top=20) if profile.exists() else
                          {"error": (spy.stderr.read() if spy.stderr else b"").decode()[-500:]})
    return out


def _side_figures(side: Side, calls: int) -> dict[str, Any]:
    return {"connections": side.connections,
            "from_switch": {"total": side.from_switch.totals(calls),
                            "by_name": side.from_switch.per_call(calls)},
            "to_switch": {"total": side.to_switch.totals(calls),
                          "by_name": side.to_switch.per_call(calls)}}


def table(result: dict[str, Any]) -> str:
    """Markdown: per connection kind, what the switch sent per call, by event name."""
    step = result.get("step", {})
    lines = [f"{result.get('app', 'fsrouter')}: {result['calls']} calls at {result['rate']}/s, "
             "completed "
             f"{step.get('completed', '?')}/{step.get('calls', '?')}; load average "
             f"{_load(result['machine'].get('load_average_at_start'))} at the start, "
             f"{_load(result['machine'].get('load_average_at_end'))} at the end", ""]
    for kind, side in result["connections"].items():
        lines += [f"**{kind}** ({side['connections']} connections), from the switch:", ""]
        lines += _tally_table(side["from_switch"], "event (or frame)")
        lines += [f"**{kind}**, to the switch:", ""]
        lines += _tally_table(side["to_switch"], "command", heads=True)
    profile = result.get("profile")
    if profile and "top_self_functions" in profile:
        lines += [f"py-spy, the daemon during the step ({profile['samples']} samples), "
                  "top functions by own samples:", "", "| function | % |", "|---|---|"]
        lines += [f"| `{f['function']}` | {f['percent']} |"
                  for f in profile["top_self_functions"]]
        lines += ["", "categories: " + ", ".join(
            f"{k} {v}" for k, v in profile["categories_percent"].items())]
    return "\n".join(lines)


def _tally_table(figures: dict[str, Any], what: str, heads: bool = False) -> list[str]:
    """Rows per name; with ``heads`` a column of header bytes (what the switch reads one
    recv() per byte in a command)."""
    head = " header bytes per call |" if heads else ""
    lines = [f"| {what} | per call | bytes per call |{head} bytes each |",
             "|---|---|---|" + ("---|" if heads else "") + "---|"]
    for row in figures["by_name"]:
        cell = f" {row.get('header_bytes_per_call', '?')} |" if heads else ""
        lines.append(f"| {row['name']} | {row['frames_per_call']} | "
                     f"{row['bytes_per_call']} |{cell} {row['bytes_each']} |")
    total = figures["total"]
    cell = f" {total.get('header_bytes_per_call', '?')} |" if heads else ""
    return [*lines, f"| **total** | {total['frames_per_call']} | {total['bytes_per_call']} |"
            f"{cell} |", ""]


def _load(values: Any) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--profile", action="store_true", help="py-spy the daemon too")
    parser.add_argument("--app", choices=sorted(APPS), default="fsrouter",
                        help="the application on the outbound socket")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, help="print an earlier result's table")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text("utf-8"))))
        return 0
    result = count_events(RealSettings(apps=(args.app,)), args.calls, args.rate,
                          args.profile, say=lambda text: print(text, file=sys.stderr),
                          kind=args.app)
    args.output.write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
