"""The switch's end of an outbound Event Socket (the dialplan ``socket ... async full`` app)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import gevent
import gevent.event
import gevent.queue
import structlog
from gevent import socket

from fsrouter.sim import loopback, wire
from fsrouter.sim.api import run_api
from fsrouter.sim.channel import Channel
from fsrouter.sim.wire import Command, Headers

if TYPE_CHECKING:
    from fsrouter.sim.switch import Simulator

log = structlog.get_logger(__name__)
MYEVENTS = frozenset({
    "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER",
    "CHANNEL_APPLICATION", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK", "DTMF",
    "TALK", "NOTALK", "DETECTED_SPEECH", "CHANNEL_HOLD", "CHANNEL_UNHOLD"})
STOP = object()


class EventFilter:
    """Subscriptions (``event``/``nixevent``/``myevents``) and ``filter`` of one connection."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        self.all = False
        self.filters: list[tuple[str, str]] = []
        self.plain = True

    def subscribe(self, words: list[str]) -> None:
        custom = False
        for word in words:
            if word in ("plain", "json", "xml"):
                self.plain = word == "plain"
            elif word == "ALL":
                self.all = True
            elif word == "CUSTOM":
                custom = True
            elif custom:
                self.subclasses.add(word)
            else:
                self.names.add(word)

    def unsubscribe(self, words: list[str]) -> None:
        for word in words:
            self.names.discard(word)
            self.subclasses.discard(word)
            if word == "ALL":
                # mod_event_socket clears every event type (myevents' own-channel restriction
                # and the CUSTOM subclasses stay).
                self.all = False
                self.names.clear()

    def wants(self, head: dict[str, str]) -> bool:
        name = head.get("Event-Name", "")
        if name == "CUSTOM":
            ok = self.all or head.get("Event-Subclass", "") in self.subclasses
        else:
            ok = self.all or name in self.names
        if not ok:
            return False
        if not self.filters:
            return True
        return any(_filter_hit(head.get(k, ""), v) for k, v in self.filters)


def _filter_hit(value: str, pattern: str) -> bool:
    if pattern.startswith("/") and pattern.endswith("/") and len(pattern) > 1:
        try:
            return re.search(pattern[1:-1], value) is not None
        except re.error:
            return False
    return value == pattern


class Connection:
    """Shared plumbing: a writer greenlet, frame output with optional faults."""

    def __init__(self, sim: Simulator, sock: socket.socket) -> None:
        self.sim = sim
        self.sock = sock
        # mod_event_socket sets TCP_NODELAY; without it Nagle + delayed ACK add ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.out: gevent.queue.Queue[bytes | object] = gevent.queue.Queue()
        self.filter = EventFilter()
        self.closed = False
        self.writer = gevent.spawn(self._write_loop)

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.out.put(data)

    def _write_loop(self) -> None:
        while True:
            item = self.out.get()
            if item is STOP:
                break
            data = bytes(item)  # type: ignore[arg-type]
            # Several queued frames go out in one write, as FreeSWITCH's do.
            while not self.out.empty() and self.out.peek() is not STOP:
                data += bytes(self.out.get())  # type: ignore[arg-type]
            try:
                self._write(data)
            except OSError:
                break
        self._close_socket()

    def _write(self, data: bytes) -> None:
        if self.sim.faults.split_every_byte:
            for i in range(len(data)):
                self.sock.sendall(data[i:i + 1])
                gevent.sleep(0)
        else:
            self.sock.sendall(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.out.put(STOP)

    def abort(self) -> None:
        """Drop the TCP connection at once (a crash or network fault)."""
        self.closed = True
        self._close_socket()
        self.out.put(STOP)  # the writer greenlet ends too (it would wait for ever)

    def _close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def api_reply(self, cmd: Command, owner: str) -> None:
        arg = cmd.line[4:]
        self.send(wire.api_response(run_api(self.sim, arg, owner)))

    def bgapi(self, cmd: Command, owner: str) -> None:
        job = cmd.header("Job-UUID") or _new_uuid()
        text = cmd.line[6:].strip()
        self.send(wire.command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
        gevent.spawn(self._run_job, job, text, owner)

    def _run_job(self, job: str, text: str, owner: str) -> None:
        result = run_api(self.sim, text, owner)
        if self.sim.faults.swallow_background_job and text.startswith("originate"):
            self.sim.faults.fired.append("swallow_background_job")
            return
        name, _, arg = text.partition(" ")
        head = self.sim.core.base("BACKGROUND_JOB", "mod_event_socket.c", "api_exec", 1569)
        head.append(("Job-UUID", job))
        if owner:
            head.append(("Job-Owner-UUID", owner))
        head += [("Job-Command", name), ("Job-Command-Arg", arg)]
        self.sim.publish(head, result)


def _new_uuid() -> str:
    from fsrouter.sim.channel import new_uuid

    return new_uuid()


class OutboundSession(Connection):
    """One call's socket: commands from the daemon, events of this channel to it."""

    def __init__(self, sim: Simulator, sock: socket.socket, chan: Channel) -> None:
        super().__init__(sim, sock)
        self.chan = chan
        self.connected = False
        self.linger: int | None = None
        self.inbox: gevent.queue.Queue[Command | None] = gevent.queue.Queue()
        self.parked = False
        self.park_loop: gevent.Greenlet | None = None
        self.returned = gevent.event.Event()  # the socket app returned, the call is still up
        self.hung = False  # Faults.withhold_replies hit: this socket answers nothing more
        # The socket of a transferred channel's earlier trip through the dialplan: while its
        # daemon stays connected it keeps getting the channel's events (measured on 1.11.1).
        self.earlier = sim.call_sockets.get(chan.uuid)
        sim.call_sockets[chan.uuid] = self.offer

    def send(self, data: bytes) -> None:
        if not self.hung:
            super().send(data)

    # events ---------------------------------------------------------------------------
    def offer(self, headers: Headers, head: dict[str, str], body: str | None) -> None:
        if self.earlier is not None:
            self.earlier(headers, head, body)
        if self.filter.wants(head):
            faults = self.sim.faults
            if faults.oversized_event_bytes and "oversized_event" not in faults.fired:
                faults.fired.append("oversized_event")
                headers = headers + [("X-Sim-Padding", "x" * faults.oversized_event_bytes)]
            self.send(wire.event_plain(headers, body))

    # commands -------------------------------------------------------------------------
    def serve(self) -> None:
        reader = wire.CommandReader()
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    break
                if self.sim.faults.slow_read_s:
                    gevent.sleep(self.sim.faults.slow_read_s)
                for cmd in reader.feed(data):
                    self.handle(cmd)
        except (OSError, wire.FrameError) as exc:
            log.info("sim.outbound_read_error", error=str(exc), uuid=self.chan.uuid)
        if self.sim.on_mark is not None:
            self.sim.on_mark(self.chan.uuid, "socket_closed", "")
        self.detach()

    def detach(self) -> None:
        """The daemon went away: the running app ends, then the socket app returns and the
        dialplan goes on (SIT, NORMAL_TEMPORARY_FAILURE; seen on 1.11.1)."""
        if self.sim.call_sockets.get(self.chan.uuid) == self.offer:
            if self.earlier is not None:
                self.sim.call_sockets[self.chan.uuid] = self.earlier
            else:
                del self.sim.call_sockets[self.chan.uuid]
        self.close()
        if self.chan.alive:
            self.returned.set()
        self.inbox.put(None)

    def handle(self, cmd: Command) -> None:
        word = cmd.line.split(" ", 1)[0]
        if self.sim.on_mark is not None:
            self.sim.on_mark(self.chan.uuid, "command", f"{word} {cmd.header('execute-app-name')}")
        if not self.connected and word != "connect":
            self.connected = True  # the first command's reply is swallowed unless connect
            return
        if self.hung or word in self.sim.faults.withhold_replies:
            if not self.hung:
                self.sim.faults.fired.append(f"withheld:{word}")
            self.hung = True  # the listener thread is stuck: nothing more goes out
            return
        handler = getattr(self, "cmd_" + word, None)
        if handler is None:
            self.send(wire.command_reply("-ERR command not found"))
            return
        handler(cmd)

    def cmd_connect(self, cmd: Command) -> None:
        self.connected = True
        self.send(wire.channel_data_reply(self.channel_data()))
        if self.sim.faults.garbage_after_connect:
            self.sim.faults.fired.append("garbage_after_connect")
            self.send(self.sim.faults.garbage_after_connect)
        self.sim.step(self.chan, "after_connect")

    def channel_data(self) -> Headers:
        chan = self.chan
        head = chan.core.base("CHANNEL_DATA", "mod_event_socket.c", "parse_command", 2018)
        head += chan.profile.headers("Channel-", chan.times)
        head += chan.basic_headers() + chan.var_headers()
        return head + [("Content-Type", "command/reply"), ("Reply-Text", "+OK\n"),
                       ("Socket-Mode", "async"), ("Control", "full")]

    def cmd_myevents(self, cmd: Command) -> None:
        self.filter.names |= MYEVENTS
        self.send(wire.command_reply("+OK Events Enabled"))

    def cmd_linger(self, cmd: Command) -> None:
        arg = cmd.line[6:].strip()
        self.linger = int(arg) if arg.isdigit() else -1
        text = f"+OK will linger {arg} seconds" if arg.isdigit() else "+OK will linger"
        self.send(wire.command_reply(text))

    def cmd_nolinger(self, cmd: Command) -> None:
        self.linger = None
        self.send(wire.command_reply("+OK will not linger"))

    def cmd_event(self, cmd: Command) -> None:
        words = cmd.line.split()[1:]
        self.filter.subscribe(words)
        fmt = "plain" if self.filter.plain else words[0] if words else "plain"
        self.send(wire.command_reply(f"+OK event listener enabled {fmt}"))

    def cmd_nixevent(self, cmd: Command) -> None:
        self.filter.unsubscribe(cmd.line.split()[1:])
        self.send(wire.command_reply("+OK events nixed"))

    def cmd_noevents(self, cmd: Command) -> None:
        self.filter = EventFilter()
        self.send(wire.command_reply("+OK no longer listening for events"))

    def cmd_filter(self, cmd: Command) -> None:
        words = cmd.line.split(" ", 2)[1:]
        if words and words[0] == "delete":
            self.filter.filters = [f for f in self.filter.filters if f[0] != words[1:2][0]]
            self.send(wire.command_reply(f"+OK filter deleted. [{' '.join(words[1:])}]"))
            return
        if words and words[0] == "add":
            words = " ".join(words[1:]).split(" ", 1)
        if len(words) < 2:
            self.send(wire.command_reply("-ERR invalid syntax"))
            return
        self.filter.filters.append((words[0], words[1]))
        self.send(wire.command_reply(f"+OK filter added. [{words[0]}]=[{words[1]}]"))

    def cmd_resume(self, cmd: Command) -> None:
        self.chan.set_var("socket_resume", "true")
        self.send(wire.command_reply("+OK"))

    def cmd_exit(self, cmd: Command) -> None:
        self.send(wire.command_reply("+OK bye"))
        self.detach()

    def cmd_getvar(self, cmd: Command) -> None:
        self.send(wire.command_reply(self.chan.get_var(cmd.line[7:].strip())))

    def cmd_api(self, cmd: Command) -> None:
        self.api_reply(cmd, self.chan.uuid)

    def cmd_bgapi(self, cmd: Command) -> None:
        self.bgapi(cmd, self.chan.uuid)

    def cmd_sendmsg(self, cmd: Command) -> None:
        target = cmd.line[8:].strip()
        if target and target != self.chan.uuid and target in self.sim.channels:
            self.send(wire.command_reply("+OK"))
            return
        self.send(wire.command_reply("+OK"))
        what = cmd.header("call-command")
        if what == "hangup":
            self.sim.hangup(self.chan, cmd.header("hangup-cause") or "NORMAL_CLEARING")
            return
        if what == "execute":
            if (self.chan.app_depth > 0 and not self.chan.event_lock and self.park_loop
                    and self.chan.get_var("current_application") in PARSES_MESSAGES):
                # Without event-lock the running application's media loop parses queued
                # messages (switch_ivr_parse_all_events): the new one runs nested, at once.
                # Applications without a media loop (answer, set, multiset, ...) parse none:
                # a message sent with them in one write waits for the park loop, in order.
                gevent.spawn(self.run_one, cmd)
                return
            self.inbox.put(cmd)
            if self.park_loop is None:
                self.park_loop = gevent.spawn(self.run_park)

    # the session thread -------------------------------------------------------------------
    def run_park(self) -> None:
        sim, chan = self.sim, self.chan
        sim.fire(chan, "CHANNEL_PARK", ("switch_ivr.c", "switch_ivr_park", 1002))
        bridged = False
        while chan.ready and not bridged:
            cmd = self.inbox.get()
            if cmd is None or not chan.ready:  # the daemon left, a hang-up or a transfer
                break
            sim.clock.sleep(0.02)  # the park loop's 20 ms frame
            chan.event_lock = cmd.header("event-lock") == "true"
            self.run_one(cmd)
            chan.event_lock = False
            bridged = getattr(chan, "fifo_entry", None) is not None and chan.alive
        chan.set_var("current_loop", None)
        chan.set_var("total_loops", None)
        sim.fire(chan, "CHANNEL_UNPARK", ("switch_ivr.c", "switch_ivr_park", 1213))
        sim.fire(chan, "CHANNEL_EXECUTE_COMPLETE", ("switch_core_session.c",
                                                    "switch_core_session_exec", 2972),
                 [("Application", "socket"), ("Application-Data", self.socket_arg()),
                  ("Application-Response", "_none_"), ("Application-UUID", _new_uuid())])
        if bridged:
            sim.set_state(chan, "CS_HIBERNATE")
            chan.fifo_entry.hibernated.set()  # type: ignore[attr-defined]
            # The "bridged" step fires when the consumer has bridged us (fifo_bridge), not
            # here: serviced is not yet talking, and a caller scripted to hang up when
            # bridged must not leave before the bridge on a loaded machine.
        elif chan.alive:
            loopback.after_socket(sim, chan, self.returned.is_set())
        chan.hungup.wait()
        sim.finish(chan)
        if bridged:
            sim.fire_fifo(chan, getattr(chan, "fifo_name", ""), "bridge-caller-stop",
                          _talk_hold(chan, sim.clock.micros()))
        self.end_of_call()

    def run_one(self, cmd: Command) -> None:
        name = cmd.header("execute-app-name")
        arg = cmd.body if cmd.header("content-type") == "text/plain" else cmd.header(
            "execute-app-arg")
        self.sim.step(self.chan, _step_for(name, arg))
        if self.chan.alive:
            self.sim.run_app(self.chan, name, arg, cmd.header("Event-UUID"))

    def socket_arg(self) -> str:
        return getattr(self.chan, "socket_arg", "127.0.0.1:8084 async full")

    def end_of_call(self) -> None:
        if self.closed:
            return
        if self.linger is None:
            self.send(wire.disconnect_notice(self.chan.uuid, self.chan.name))
            self.close()
            return
        self.send(wire.linger_notice(self.chan.uuid, self.chan.name, self.linger))
        if self.linger >= 0:
            gevent.spawn_later(self.sim.clock.real(self.linger), self.close)


def _talk_hold(chan: Channel, now_us: int) -> Headers:
    """mod_fifo's talk and hold times (hold is time on hold during the bridge, none here)."""
    talk = max(now_us - chan.times.get("bridged", now_us), 0)
    out: Headers = []
    for kind, us in (("Talk", talk), ("Hold", 0)):
        out += [(f"FIFO-Caller-{kind}-Time-us", str(us)),
                (f"FIFO-Caller-{kind}-Time-ms", str(us // 1000)),
                (f"FIFO-Caller-{kind}-Time-s", str(us // 1_000_000))]
    return out


# Applications whose media loop runs switch_ivr_parse_all_events (switch_ivr_play_say.c,
# switch_ivr.c sleep/park, switch_ivr_bridge.c, mod_fifo's hold loop, mod_voicemail).
PARSES_MESSAGES = frozenset({"playback", "play_and_get_digits", "read", "record", "sleep",
                             "park", "speak", "fifo", "bridge", "voicemail"})


def _step_for(app: str, arg: str) -> str:
    if app in ("play_and_get_digits", "read"):
        return "in_menu"
    if app == "fifo" and " in" in arg:
        return "in_queue"
    return ""
