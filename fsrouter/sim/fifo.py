"""mod_fifo: callers wait in named queues; consumers (agent legs) pop one and bridge."""

from __future__ import annotations

import time
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
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sim.clock.now()))
        for key, value in (("fifo_position", str(len(queue))), ("fifo_priority", "0"),
                           ("fifo_status", "WAITING"), ("fifo_timestamp", stamp),
                           ("fifo_push_timestamp", stamp)):
            chan.set_var(key, value)
        music = rest[1] if len(rest) > 1 and rest[1] != "undef" else chan.get_var("fifo_music")
        if music:
            sim.note_prompt(chan, music)
        start = sim.clock.now()
        while chan.alive and not entry.serviced.is_set():
            gevent.wait([entry.serviced, chan.hungup], count=1)
        if entry in queue:
            queue.remove(entry)
        if not entry.serviced.is_set():
            chan.set_var("fifo_status", "ABORTED")
            sim.fire_fifo(chan, name, "abort")
            return NONE
        ms = int((sim.clock.now() - start) * 1000)
        ctx._playback_vars(ms)
        announce = rest[0] if rest and rest[0] != "undef" else ""
        if announce:
            ctx.play(announce, "")
        chan.fifo_entry = entry  # type: ignore[attr-defined]
        return NONE

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
