"""The three applications under test, each run as its own process by the benchmark.

    python -m bench.apps fsrouter    CONFIG FLOW   the real daemon (start_daemon), logs at warning
    python -m bench.apps floor       CONFIG FLOW   our protocol layer alone, same commands
    python -m bench.apps greenswitch CONFIG FLOW   the same flow as a plain greenswitch app
    python -m bench.apps rawfloor    CONFIG FLOW   a bare gevent StreamServer, same flow

Each prints ``PORT <n>`` once it listens on 127.0.0.1, runs until SIGTERM (or until its
parent, the benchmark, is gone), and exits 0. Like ``fsrouter run`` they monkey-patch first.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from bench.scenario import Flow  # noqa: E402
from fsrouter.esl.commands import execute_headers, new_id  # noqa: E402
from fsrouter.esl.outbound import CALL_EVENTS, setup_commands  # noqa: E402
from fsrouter.esl.protocol import encode_command  # noqa: E402

STEP_TIMEOUT = 30.0  # seconds any one step may take (as fsrouter's step_timeout)
# The floor asks the switch for what fsrouter asks, as fsrouter does: the whole start in one
# write (fsrouter.esl.outbound.setup_commands), long arguments as a body and 16-digit ids
# (fsrouter.esl.commands: header bytes are what the switch reads one by one).
SETUP_COMMANDS = setup_commands(10, CALL_EVENTS)
SETUP = b"".join(encode_command(command) for command in SETUP_COMMANDS)
JOB_GRACE = 15.0  # seconds past the ring timeout before a missing job result counts as failed


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def _wait_for_stop() -> None:
    """Until SIGTERM, or until the benchmark that started us is gone (never left behind)."""
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            break


# --- fsrouter -------------------------------------------------------------------------------


def run_fsrouter(config_path: Path) -> None:
    from fsrouter import logs
    from fsrouter.daemon import start_daemon

    logs.configure("warning", json=True)
    daemon = start_daemon(config_path, listen_port=0)
    _announce(daemon.server.port)
    _wait_for_stop()
    daemon.request_stop("benchmark finished")
    daemon.shutdown(drain_seconds=5)


# --- floor: our protocol layer, no routing, store or logging ------------------------------


class FloorCall:
    """One call through the same commands as fsrouter, straight on the ESL session."""

    def __init__(self, session: Any, flow: Flow) -> None:
        self.session = session
        self.flow = flow
        self.queued = gevent.event.Event()
        self.bridged = gevent.event.Event()
        self.gone = gevent.event.Event()
        session.on_event(self._on_event)

    def _on_event(self, event: Any) -> None:
        if event.uuid != self.session.uuid:
            return
        if event.name == "CUSTOM":
            action = event.get("FIFO-Action")
            if action == "push":
                self.queued.set()
            elif action == "bridge-caller-start":
                self.bridged.set()
        elif event.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            self.gone.set()

    def run(self) -> None:
        session, flow = self.session, self.flow
        session.execute("answer").wait(STEP_TIMEOUT)
        digit = self._menu()
        if digit not in flow.queues:
            session.hangup()
            return
        for app, arg in flow.queue_args(digit):  # in order; only the queue's push is waited for
            session.execute(app, arg)
        gevent.wait([self.queued, self.gone], count=1, timeout=STEP_TIMEOUT)
        for dial, ring_timeout in flow.phones[digit]:
            if self._ring(digit, dial, ring_timeout):
                break
        self.gone.wait()

    def _menu(self) -> str | None:
        done = self.session.execute("play_and_get_digits", self.flow.menu_arg).wait(
            STEP_TIMEOUT + 120)
        return done.get(f"variable_{self.flow.menu_variable}")

    def _ring(self, digit: str, dial: str, ring_timeout: int) -> bool:
        """Ring one phone; True when it is over (bridged, or the caller hung up)."""
        session, leg = self.session, str(uuidlib.uuid4())
        command = self.flow.leg_command(digit, session.uuid,
                                        session.channel.get("Caller-Caller-ID-Name", ""),
                                        dial, ring_timeout, leg)
        job = session.bgapi(command)
        waiter = gevent.spawn(job.wait, ring_timeout + JOB_GRACE)
        gevent.wait([waiter, self.gone], count=1)
        if not waiter.ready():  # the caller hung up: stop the ringing leg, as fsrouter does
            waiter.kill()
            session.api(f"uuid_kill {leg} ORIGINATOR_CANCEL")
            return True
        if waiter.successful() and waiter.value.startswith("+OK"):
            gevent.wait([self.bridged, self.gone], count=1, timeout=STEP_TIMEOUT)
            return True
        return self.gone.is_set()


def run_floor(flow: Flow) -> None:
    from fsrouter import logs
    from fsrouter.esl.outbound import OutboundServer

    logs.configure("warning", json=True)  # the protocol layer's own info lines stay quiet

    def handler(session: Any) -> None:
        FloorCall(session, flow).run()

    server = OutboundServer("127.0.0.1", 0, handler, max_calls=100_000)
    server.start()
    _announce(server.port)
    _wait_for_stop()
    server.stop(timeout=5)


# --- rawfloor: a bare gevent StreamServer, one greenlet per call ---------------------------


class RawFloorCall:
    """The same flow on a raw socket: one greenlet, blocking reads, no dispatcher.

    Framing and event parsing are fsrouter.esl's ``FrameParser`` and ``parse_event`` (pure
    functions, no Connection, no extra greenlets); commands are bytes written straight to the
    socket. Events that arrive while waiting for something else are kept in order.
    """

    def __init__(self, sock: Any, flow: Flow) -> None:
        from fsrouter.esl.protocol import FrameParser

        self.sock = sock
        self.flow = flow
        self.parser = FrameParser()
        self.frames: list[Any] = []
        self.events: list[Any] = []
        self.uuid = ""
        self.gone = False
        sock.settimeout(STEP_TIMEOUT + 120)

    def _frame(self) -> Any:
        while not self.frames:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the switch closed the socket")
            self.frames.extend(self.parser.feed(data))
        return self.frames.pop(0)

    def _reply(self, command: bytes) -> Any:
        """Send one command; its reply (events read meanwhile are kept for later)."""
        self.sock.sendall(command)
        return self._next_reply()

    def _next_reply(self) -> Any:
        from fsrouter.esl.protocol import parse_event

        while True:
            frame = self._frame()
            kind = frame.content_type
            if kind in ("command/reply", "api/response"):
                return frame
            if kind == "text/event-plain":
                self._keep(parse_event(frame))
            elif kind == "text/disconnect-notice":
                self.gone = True

    def _keep(self, event: Any) -> None:
        if event.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE") and event.uuid == self.uuid:
            self.gone = True
        self.events.append(event)

    def _wait(self, match: Any) -> Any:
        """The first event ``match`` accepts, or None once the caller is gone."""
        from fsrouter.esl.protocol import parse_event

        while True:
            for i, event in enumerate(self.events):
                if match(event):
                    return self.events.pop(i)
            self.events.clear()
            if self.gone:
                return None
            frame = self._frame()
            if frame.content_type == "text/event-plain":
                self._keep(parse_event(frame))
            elif frame.content_type == "text/disconnect-notice":
                self.gone = True

    def _execute(self, app: str, arg: str, wait: bool = True) -> Any:
        app_uuid = new_id()
        self._reply(encode_command("sendmsg", *execute_headers(app, arg, app_uuid)))
        if not wait:
            return None
        return self._wait(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE"
                          and e.get("Application-UUID") == app_uuid)

    def run(self) -> None:
        flow = self.flow
        connect = self._reply(SETUP)
        self.uuid = connect.headers.get("Unique-ID", "")
        caller_name = connect.headers.get("Caller-Caller-ID-Name", "")
        for _ in range(len(SETUP_COMMANDS) - 1):
            self._next_reply()
        self._execute("answer", "")
        done = self._execute("play_and_get_digits", flow.menu_arg)
        digit = done.get(f"variable_{flow.menu_variable}") if done is not None else None
        if digit not in flow.queues:
            self._reply(b"sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n")
            return
        for app, arg in flow.queue_args(digit):  # in order; only the queue's push is waited for
            self._execute(app, arg, wait=False)
        self._wait(lambda e: e.get("FIFO-Action") == "push" and e.uuid == self.uuid)
        for dial, ring_timeout in flow.phones[digit]:
            if self._ring(digit, caller_name, dial, ring_timeout):
                break
        self._wait(lambda e: False)  # until the caller is gone

    def _ring(self, digit: str, caller_name: str, dial: str, ring_timeout: int) -> bool:
        """Ring one phone; True when it is over (bridged, or the caller hung up)."""
        job, leg = new_id(), str(uuidlib.uuid4())
        command = self.flow.leg_command(digit, self.uuid, caller_name, dial, ring_timeout, leg)
        self._reply(encode_command(f"bgapi {command}", {"Job-UUID": job}))
        result = self._wait(lambda e: e.name == "BACKGROUND_JOB" and e.job_uuid == job)
        if result is None:  # the caller hung up: stop the ringing leg, as fsrouter does
            self.sock.sendall(f"api uuid_kill {leg} ORIGINATOR_CANCEL\n\n".encode())
            return True
        if result.body.startswith("+OK"):
            self._wait(lambda e: e.get("FIFO-Action") == "bridge-caller-start"
                       and e.uuid == self.uuid)
            return True
        return self.gone


def run_rawfloor(flow: Flow) -> None:
    from gevent.server import StreamServer

    def handle(sock: Any, address: Any) -> None:
        try:
            RawFloorCall(sock, flow).run()
            sock.sendall(b"exit\n\n")
        except (OSError, ConnectionError):
            pass  # the switch closed the socket (caller gone): nothing left to do
        finally:
            sock.close()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    _announce(server.server_port)
    _wait_for_stop()
    server.stop(timeout=5)


# --- greenswitch as shipped ---------------------------------------------------------------


class GreenswitchHotline:
    """The same call flow as a plain greenswitch ``OutboundESLServer`` application, written
    the way its README writes one (``run`` -> ``handle_call``, blocking helpers)."""

    flow: Flow

    def __init__(self, session: Any) -> None:
        self.session = session
        self.queued = gevent.event.Event()
        self.bridged = gevent.event.Event()
        self.gone = gevent.event.Event()
        self.jobs: dict[str, gevent.event.AsyncResult] = {}

    def run(self) -> None:
        try:
            self.handle_call()
        except Exception:
            logging.exception("Exception raised when handling call")
            self.session.stop()

    def on_fifo(self, event: Any) -> None:
        action = event.headers.get("FIFO-Action")
        if action == "push":
            self.queued.set()
        elif action == "bridge-caller-start":
            self.bridged.set()

    def on_job(self, event: Any) -> None:
        result = self.jobs.pop(event.headers.get("Job-UUID", ""), None)
        if result is not None:
            # greenswitch folds an event's body into its last header: take what follows.
            body = next((v.split("\n", 1)[1] for v in event.headers.values() if "\n" in v), "")
            result.set(body.strip())

    def on_hangup(self, event: Any) -> None:
        self.gone.set()

    def handle_call(self) -> None:
        flow, session = self.flow, self.session
        session.myevents()
        session.linger()
        session.send("event plain BACKGROUND_JOB CUSTOM fifo::info")
        session.register_handle("BACKGROUND_JOB", self.on_job)
        session.register_handle("fifo::info", self.on_fifo)
        session.register_handle("CHANNEL_HANGUP", self.on_hangup)
        session.answer()
        event = session.call_command("play_and_get_digits", flow.menu_arg, block=True,
                                     response_timeout=STEP_TIMEOUT + 120)
        digit = event.headers.get(f"variable_{flow.menu_variable}") if event else None
        if digit not in flow.queues:
            session.hangup()
            session.stop()
            return
        for app, arg in flow.queue_args(digit):
            session.call_command(app, arg)
        self.queued.wait(STEP_TIMEOUT)
        for dial, ring_timeout in flow.phones[digit]:
            if self._ring(digit, dial, ring_timeout):
                break
        self.gone.wait()
        session.stop()

    def _ring(self, digit: str, dial: str, ring_timeout: int) -> bool:
        """Ring one phone; True when it is over (bridged, or the caller hung up)."""
        job, leg = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        command = self.flow.leg_command(
            digit, self.session.uuid, self.session.session_data.get("Caller-Caller-ID-Name", ""),
            dial, ring_timeout, leg)
        result = self.jobs[job] = gevent.event.AsyncResult()
        self.session.send(f"bgapi {command}\nJob-UUID: {job}")
        gevent.wait([result, self.gone], count=1, timeout=ring_timeout + JOB_GRACE)
        if not result.ready():  # the caller hung up: stop the ringing leg, as fsrouter does
            self.session.send(f"api uuid_kill {leg} ORIGINATOR_CANCEL")
            return True
        if result.get().startswith("+OK"):
            self.bridged.wait(STEP_TIMEOUT)
            return True
        return self.gone.is_set()


def _free_port() -> int:
    """greenswitch refuses port 0 (it takes a falsy bound port for a failure): probe one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_greenswitch(flow: Flow) -> None:
    import greenswitch

    logging.basicConfig(level=logging.WARNING)
    GreenswitchHotline.flow = flow
    server = greenswitch.OutboundESLServer(bind_address="127.0.0.1", bind_port=_free_port(),
                                           application=GreenswitchHotline,
                                           max_connections=100_000)
    listener = gevent.spawn(server.listen)
    while not server._running and not listener.dead:
        gevent.sleep(0.01)
    if listener.dead:
        raise SystemExit(f"greenswitch could not listen: {listener.exception!r}")
    _announce(server.bound_port)
    _wait_for_stop()
    server.stop()
    # listen() joins every call's greenlet; as shipped some never end: after a linger
    # disconnect-notice greenswitch fails the pending commands but leaves their slots in its
    # reply list, so the reply to ``exit`` fills a dead slot and ``stop()`` waits forever.
    listener.join(timeout=1)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("fsrouter", "floor", "greenswitch", "rawfloor"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, config_path, flow_path = argv[0], Path(argv[1]), Path(argv[2])
    if kind == "fsrouter":
        run_fsrouter(config_path)
    elif kind == "floor":
        run_floor(Flow.load(flow_path))
    elif kind == "rawfloor":
        run_rawfloor(Flow.load(flow_path))
    else:
        run_greenswitch(Flow.load(flow_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
