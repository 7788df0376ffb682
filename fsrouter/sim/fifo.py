"""mod_fifo: callers wait in named queues; consumers (agent legs) pop one and bridge.

A waiting caller (``fifo <name> in``) leaves the queue, as in mod_fifo.c fifo_function
(1.11.1, measured too), by hanging up, by a transfer (``uuid_transfer``: an ``abort``), by a
key in ``fifo_caller_exit_key`` (pressed by the caller or injected with ``uuid_recv_dtmf``: a
DTMF event, the key written back to the variable, ``fifo_status=ABORTED``, FIFO-Action
``abort``) or when ``fifo_orbit_exten=
<exten>:<seconds>`` runs out (whole epoch seconds, so after seconds-1 to seconds;
``fifo_status=TIMEOUT``, FIFO-Action ``timeout``; ``_continue_`` returns to the caller's
next application, any other extension is a transfer). Either way the caller stays up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gevent.event

from fsrouter.sim.channel import Channel

if TYPE_CHECKING:
    from fsrouter.sim.apps import AppContext

NONE = "_none_"


@dataclass(eq=False)  # identity: ``in``/``remove`` on long queues must not compare fields
class Waiting:
    chan: Channel
    serviced: gevent.event.Event = field(default_factory=gevent.event.Event)
    hibernated: gevent.event.Event = field(default_factory=gevent.event.Event)
    consumer: Channel | None = None


class Fifos:
    def __init__(self) -> None:
        self.queues: dict[str, list[Waiting]] = {}
        self.consumers: dict[str, int] = {}

    def count(self, name: str) -> int:
        return len(self.queues.get(name, []))

    def caller_in(self, ctx: AppContext, name: str, rest: list[str]) -> str:
        sim, chan = ctx.sim, ctx.chan
        if not (rest[2:3] and rest[2] in ("early", "noans")):
            sim.answer(chan)
        queue = self.queues.setdefault(name, [])
        entry = Waiting(chan)
        queue.append(entry)
        sim.fire_fifo(chan, name, "push", [("FIFO-Slot", "1")])
        stamp = _stamp(sim.clock.now())
        for key, value in (("fifo_position", str(len(queue))), ("fifo_priority", "0"),
                           ("fifo_status", "WAITING"), ("fifo_timestamp", stamp),
                           ("fifo_push_timestamp", stamp)):
            chan.set_var(key, value)
        music = rest[1] if len(rest) > 1 and rest[1] != "undef" else chan.get_var("fifo_music")
        if music:
            sim.note_prompt(chan, music)
        start = sim.clock.now()
        left = self._wait(ctx, entry)
        if entry in queue:
            queue.remove(entry)
        if not entry.serviced.is_set():
            if left == "transfer":  # the hold music stopped (measured: before the status)
                ctx._playback_vars(int((sim.clock.now() - start) * 1000))
            timeout = left == "orbit"
            chan.set_var("fifo_status", "TIMEOUT" if timeout else "ABORTED")
            chan.set_var("fifo_timestamp", _stamp(sim.clock.now()))
            sim.fire_fifo(chan, name, "timeout" if timeout else "abort")
            if chan.ready and (timeout or _true(chan.get_var("fifo_caller_exit_to_orbit"))):
                _orbit(ctx)
            return NONE
        ms = int((sim.clock.now() - start) * 1000)
        ctx._playback_vars(ms)
        announce = rest[0] if rest and rest[0] != "undef" else ""
        if announce:
            ctx.play(announce, "")
        chan.fifo_entry = entry  # type: ignore[attr-defined]
        return NONE

    def _wait(self, ctx: AppContext, entry: Waiting) -> str:
        """Hold the caller until serviced (''), hung up ('gone'), transferred ('transfer'), an
        exit key ('key') or the orbit time ('orbit'), as mod_fifo.c fifo_function's caller
        loop (~line 2790)."""
        sim, chan = ctx.sim, ctx.chan
        exit_keys = chan.get_var("fifo_caller_exit_key")
        pressed = gevent.event.Event()
        # The hold music's input callback: every digit is dequeued (a DTMF event), an exit
        # key ends the wait and is written back to fifo_caller_exit_key (moh_on_dtmf).
        keys = gevent.spawn(_read_keys, ctx, exit_keys, pressed)
        try:
            # A transfer (uuid_transfer) takes the caller out as an abort does (measured).
            gevent.wait([entry.serviced, chan.hungup, pressed, chan.breaking], count=1,
                        timeout=_orbit_wait(chan, sim.clock.now(), sim.clock.real))
        finally:
            keys.kill()
        if entry.serviced.is_set():
            return ""
        if not chan.alive:
            return "gone"
        if not chan.ready:
            return "transfer"
        return "key" if pressed.is_set() else "orbit"

    def consumer_out(self, ctx: AppContext, names: str, rest: list[str]) -> str:
        sim, agent = ctx.sim, ctx.chan
        wanted = agent.get_var("fifo_bridge_uuid")
        required = agent.get_var("fifo_bridge_uuid_required") == "true"
        entry = self._pop(names.split(","), wanted, required)
        if entry is None:
            # "already answered": the consumer gives up and the agent leg ends.
            sim.hangup(agent, "NORMAL_CLEARING")
            return NONE
        caller = entry.chan
        caller.set_var("fifo_serviced_by", agent.uuid)
        caller.set_var("fifo_serviced_uuid", agent.uuid)
        sim.fire_fifo(caller, names.split(",")[0], "caller_pop", line=3224)
        entry.consumer = agent
        entry.serviced.set()
        entry.hibernated.wait(sim.clock.real(5))
        sim.fifo_bridge(caller, agent, names.split(",")[0])
        return NONE

    def _pop(self, names: list[str], wanted: str, required: bool) -> Waiting | None:
        for name in names:
            for entry in self.queues.get(name, []):
                if entry.chan.alive and (not wanted or entry.chan.uuid == wanted):
                    self.queues[name].remove(entry)
                    return entry
        if wanted and not required:
            return self._pop(names, "", False)
        return None


def _read_keys(ctx: AppContext, exit_keys: str, pressed: gevent.event.Event) -> None:
    while True:
        digit = ctx.next_digit(-1)
        if digit is None:
            return
        if exit_keys and digit in exit_keys:
            ctx.chan.set_var("fifo_caller_exit_key", digit)
            pressed.set()
            return


def _orbit_wait(chan: Channel, now: float, real: Callable[[float], float]) -> float | None:
    """Real seconds until ``fifo_orbit_exten=<exten>:<seconds>`` (60 s without seconds) takes
    the caller out of the queue, None without the variable. mod_fifo counts in whole epoch
    seconds (switch_epoch_time_now), so the wait is between seconds-1 and seconds."""
    orbit = chan.get_var("fifo_orbit_exten")
    if not orbit:
        return None
    _, _, text = orbit.partition(":")
    seconds = _atoi(text) if text else 60
    if seconds < 0:
        seconds = 60
    return real(max(int(now) + seconds - now, 0.0))


def _orbit(ctx: AppContext) -> None:
    """After the orbit time (or an exit key with fifo_caller_exit_to_orbit): the orbit
    announcement, then a transfer to the orbit extension unless it is ``_continue_``."""
    chan = ctx.chan
    exten = chan.get_var("fifo_orbit_exten").partition(":")[0]
    if not exten:
        return
    announce = chan.get_var("fifo_orbit_announce")
    if announce:
        ctx.play(announce, "")
    if exten != "_continue_" and chan.alive:
        ctx.sim.transfer(chan, exten)


def _atoi(text: str) -> int:
    """C atoi: the leading (signed) digits, 0 when there are none."""
    digits = ""
    for index, char in enumerate(text.strip()):
        if char.isdigit() or (index == 0 and char in "+-"):
            digits += char
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def _true(value: str) -> bool:
    return value.strip().lower() in ("yes", "on", "true", "t", "enabled", "active", "allow")


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
