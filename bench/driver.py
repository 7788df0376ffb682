"""The switch side of the benchmark: the simulator places calls at a rate and times them.

Times come from the simulator's ``on_mark`` hook (fsrouter.sim.switch): ``socket_open`` when
the switch starts connecting to the application, each command as it is read, and
``socket_closed`` when the application is done with the call. Setup latency is the time from
``socket_open`` to the ``sendmsg`` that executes ``answer``; event lag is the time from the
simulator publishing the menu's CHANNEL_EXECUTE_COMPLETE to the application's next command.

The application under test runs as another process (:class:`AppProcess`), pinned to CPU 0
when there are two CPUs; the simulator runs here, on CPU 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import gevent
import gevent.event

from bench.scenario import CALLER_NAME, CALLER_NUMBER, ROUTING_NUMBER, caller_script
from fsrouter.sim import Simulator, SwitchRecord

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
MENU_APP = "play_and_get_digits"


def open_loop(rate: float, count: int, place: Callable[[], T]) -> list[T]:
    """Open loop: call i is placed at start + i/rate, however the earlier ones fare."""
    start = time.perf_counter()
    placed = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        placed.append(place())
    return placed


@dataclass
class CallTimes:
    """One caller, as the switch saw it (perf_counter seconds; 0.0 = not yet)."""

    uuid: str
    placed: float
    record: SwitchRecord
    opened: float = 0.0
    answer_cmd: float = 0.0
    menu_done: float = 0.0
    after_menu: float = 0.0
    closed: float = 0.0

    @property
    def setup_ms(self) -> float | None:
        if not (self.opened and self.answer_cmd):
            return None
        return (self.answer_cmd - self.opened) * 1000

    @property
    def event_lag_ms(self) -> float | None:
        if not (self.menu_done and self.after_menu):
            return None
        return (self.after_menu - self.menu_done) * 1000

    @property
    def completed(self) -> bool:
        """The complete call: one no-answer, one bridged answer, the socket closed after."""
        legs = [leg.result.split(" ")[0:2] for leg in self.record.agent_legs]
        return (bool(self.closed) and bool(self.record.bridged_to)
                and [leg[0] for leg in legs] == ["-ERR", "+OK"] and legs[0][1] == "NO_ANSWER")


@dataclass
class SimSide:
    """A fresh simulator pointed at one application port."""

    port: int
    speed: float
    calls: dict[str, CallTimes] = field(default_factory=dict)
    sim: Simulator = field(init=False)
    closed: int = 0

    def __post_init__(self) -> None:
        self.sim = Simulator(speed=self.speed, storage_dir=tempfile.mkdtemp(prefix="fsr-bench-"))
        self.sim.on_mark = self._mark
        self.sim.listeners.append(self._on_event)
        self._progress = gevent.event.Event()

    def _mark(self, uuid: str, what: str, detail: str) -> None:
        times = self.calls.get(uuid)
        if times is None:
            return
        now = time.perf_counter()
        if what == "socket_open":
            times.opened = now
        elif what == "command":
            if not times.answer_cmd and detail == "sendmsg answer":
                times.answer_cmd = now
            if times.menu_done and not times.after_menu:
                times.after_menu = now
        elif what == "socket_closed" and not times.closed:
            times.closed = now
            self.closed += 1
            self._progress.set()

    def _on_event(self, headers: object, head: dict[str, str], body: str | None) -> None:
        if head.get("Event-Name") != "CHANNEL_EXECUTE_COMPLETE":
            return
        times = self.calls.get(head.get("Unique-ID", ""))
        if times is not None and head.get("Application") == MENU_APP and not times.menu_done:
            times.menu_done = time.perf_counter()

    def place(self, digit: str) -> CallTimes:
        record = self.sim.place_call(("127.0.0.1", self.port), ROUTING_NUMBER, CALLER_NUMBER,
                                     CALLER_NAME, caller_script(digit))
        times = CallTimes(record.caller_uuid, time.perf_counter(), record)
        self.calls[times.uuid] = times
        return times

    def place_at_rate(self, rate: float, count: int, digit: str) -> list[CallTimes]:
        return open_loop(rate, count, lambda: self.place(digit))

    def wait_closed(self, calls: list[CallTimes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(not c.closed for c in calls):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._progress.clear()
            self._progress.wait(min(left, 0.5))
        return True

    def waiting(self) -> int:
        """Callers in any queue of the simulator's mod_fifo."""
        return sum(self.sim.fifos.count(name) for name in self.sim.fifos.queues)

    def hang_up(self, calls: list[CallTimes], rate: float = 1000.0) -> None:
        for i, times in enumerate(calls):
            chan = self.sim.channels.get(times.uuid)
            if chan is not None and chan.alive:
                self.sim.hangup(chan, "NORMAL_CLEARING")
            if i % max(int(rate / 100), 1) == 0:
                gevent.sleep(0.01)

    def channels_up(self) -> int:
        """Channels of the simulator still up (a leg left ringing counts)."""
        return sum(1 for chan in self.sim.channels.values() if chan.alive)

    def stop(self) -> None:
        """Stop timing and hang up whatever is still up, so nothing keeps running here."""
        self.sim.on_mark = None
        for chan in list(self.sim.channels.values()):
            if chan.alive:
                self.sim.hangup(chan, "NORMAL_CLEARING")


def pin_here(cpu: int) -> bool:
    """Pin this process to ``cpu`` if the machine has it; False when it does not."""
    if not hasattr(os, "sched_setaffinity") or cpu >= (os.cpu_count() or 1):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


class AppProcess:
    """``python -m bench.apps KIND CONFIG FLOW``, pinned to CPU 0 when ``pin`` is set."""

    def __init__(self, kind: str, config: Path, flow: Path, env: dict[str, str],
                 pin: bool) -> None:
        self.kind = kind
        self.log_path = config.parent / f"{kind}.log"
        cpu0 = pin and (os.cpu_count() or 1) >= 2
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.apps", kind, str(config), str(flow)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if cpu0 else None)
        self.port = self._read_port()

    def _read_port(self) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{self.kind} did not start: {line!r}\n{self.log()[-3000:]}")
        return int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
