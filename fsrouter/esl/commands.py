"""Commands on an ESL connection: writing them, and waiting for their replies.

:class:`Commands` is the writing half of :class:`fsrouter.esl.connection.Connection` (which
reads the socket and fills the reply slots these methods wait on). Replies come back in the
order commands were written, so each command takes a slot in a FIFO while holding the write
lock. Background jobs are matched by the ``Job-UUID`` we choose, application runs by the
``Event-UUID`` we choose (see the connection module).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.lock

from fsrouter.esl.ids import is_uuid
from fsrouter.esl.pending import CommandError, ConnectionClosed, ESLTimeout, Execution, Job, _wait
from fsrouter.esl.protocol import Frame, UnsafeCommand, encode_command

_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]+$")
_CAUSE = re.compile(r"^[A-Z_]{1,64}$")
_APP = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
# mod_event_socket reads a command's header lines one byte per recv() and yields the CPU
# after each byte (read_packet in mod_event_socket.c), but a Content-Length body in one
# recv(): measured on the real switch, 1.25 us of switch CPU per header byte against 0.02 per
# body byte (bench/README.md). So an application argument longer than this travels as a
# ``text/plain`` body (the header pair costs about this many bytes), and the ids we choose
# for executions and jobs are 16 hex digits (64 random bits), not 36-character UUIDs.
_BODY_ARG_BYTES = 28


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def new_id() -> str:
    """An id for an execution or a job: only ever looked up among our own (esl/ids.py)."""
    return os.urandom(8).hex()


_EVENT_NAME = re.compile(r"[A-Za-z0-9_:.\-]{1,64}")


def events_command(names: Sequence[str]) -> str:
    """``event plain <names>``; :class:`UnsafeCommand` for a name that is no plain token."""
    for name in names:
        if not _EVENT_NAME.fullmatch(name):
            raise UnsafeCommand(f"bad event name {name!r}")
    return "event plain " + " ".join(names)


def execute_headers(app: str, arg: str | None, app_uuid: str
                    ) -> tuple[dict[str, str], str | None]:
    """The ``sendmsg`` headers (and body) that execute ``app`` with ``arg``: an argument with
    a newline, or longer than ``_BODY_ARG_BYTES``, travels as a ``text/plain`` body."""
    if not _APP.match(app):
        raise UnsafeCommand(f"bad application name {app!r}")
    headers = {"call-command": "execute", "execute-app-name": app, "Event-UUID": app_uuid}
    if arg is not None and (len(arg) > _BODY_ARG_BYTES or "\n" in arg or "\r" in arg):
        headers["content-type"] = "text/plain"
        return headers, arg
    if arg:
        headers["execute-app-arg"] = arg
    return headers, None


class Commands:
    """The command half of a connection (a mixin of ``Connection``, which owns these)."""

    sock: Any
    name: str
    close_reason: str | None
    _write_lock: gevent.lock.Semaphore
    _replies: list[gevent.event.AsyncResult]
    _jobs: dict[str, Job]
    _executions: dict[str, Execution]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def close(self, reason: str = "closed by us") -> None:
        raise NotImplementedError

    def send(
        self,
        cmd: str,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        timeout: float | None = 10.0,
    ) -> Frame:
        """Write one command and wait for its ``command/reply`` or ``api/response``."""
        data = encode_command(cmd, headers, body)  # refuses injected newlines before queuing
        [slot] = self._queue_slots(data, 1, timeout)
        return _wait(slot, timeout, f"reply to {cmd.split(' ', 1)[0]!r}")

    def send_many(self, cmds: list[str], timeout: float | None = 10.0) -> Iterator[Frame]:
        """Write several commands in one write; their replies, in order, as they come, all
        within ``timeout`` (the switch answers in order: one write and one wake-up instead of
        one per command). The caller may stop at a bad reply (and close the connection)."""
        return self._send_frames([encode_command(cmd) for cmd in cmds],
                                 [cmd.split(" ", 1)[0] for cmd in cmds], timeout)

    def _send_frames(self, frames: list[bytes], names: list[str], timeout: float | None
                     ) -> Iterator[Frame]:
        deadline = None if timeout is None else time.monotonic() + timeout
        slots = self._queue_slots(b"".join(frames), len(frames), timeout)
        return (_wait(slot, _left(deadline), f"reply to {name!r}")
                for slot, name in zip(slots, names, strict=True))

    def _queue_slots(self, data: bytes, count: int, timeout: float | None
                     ) -> list[gevent.event.AsyncResult]:
        """Write ``data`` (``count`` commands) and take a reply slot for each, in order."""
        slots = [gevent.event.AsyncResult() for _ in range(count)]
        with self._write_lock:
            if self.closed:
                raise ConnectionClosed(f"{self.name}: {self.close_reason}")
            self._replies.extend(slots)
            self._write(data, timeout)
        return slots

    def _write(self, data: bytes, timeout: float | None) -> None:
        """Write ``data`` whole (holding the write lock), or close the connection."""
        try:
            with gevent.Timeout(timeout):
                self.sock.sendall(data)
        except gevent.Timeout:
            # A half-written command would corrupt the stream: the connection is done.
            self.close(f"write timed out after {timeout} s")
            raise ESLTimeout(f"{self.name}: write timed out after {timeout} s") from None
        except OSError as exc:
            self.close(f"write failed: {exc}")
            raise ConnectionClosed(f"{self.name}: write failed: {exc}") from exc

    def command(self, cmd: str, timeout: float | None = 10.0) -> str:
        """Send a command that must succeed; return its Reply-Text or raise CommandError."""
        reply = self.send(cmd, timeout=timeout)
        text = reply.reply_text
        if text.startswith("-ERR") or text.startswith("-USAGE"):
            raise CommandError(f"{cmd.split(' ', 1)[0]}: {text}")
        return text

    def api(self, cmd: str, timeout: float | None = 10.0) -> str:
        """Run ``api <cmd>`` and return the response body as the switch sent it."""
        return self.send(f"api {cmd}", timeout=timeout).body

    def bgapi(self, cmd: str, job_uuid: str | None = None, timeout: float | None = 10.0) -> Job:
        """Start ``bgapi <cmd>`` with our own Job-UUID; the result comes via ``Job.wait``.

        The connection must be subscribed to BACKGROUND_JOB events (``events(...)``).
        """
        job = Job(job_uuid or new_id(), cmd)
        self._jobs[job.job_uuid] = job  # before sending: the result may follow the reply at once
        try:
            reply = self.send(f"bgapi {cmd}", {"Job-UUID": job.job_uuid}, timeout=timeout)
        except Exception:
            self._jobs.pop(job.job_uuid, None)
            raise
        if not reply.reply_text.startswith("+OK"):
            self._jobs.pop(job.job_uuid, None)
            raise CommandError(f"bgapi refused: {reply.reply_text}")
        return job

    def execute(
        self,
        app: str,
        arg: str | None = None,
        uuid: str | None = None,
        event_lock: bool = False,
        timeout: float | None = 10.0,
    ) -> Execution:
        """Queue an application with ``sendmsg``; ``Execution.wait`` gives its completion.

        An argument containing a newline, or longer than ``_BODY_ARG_BYTES``, travels as a
        ``text/plain`` body (a newline never inline; a body costs the switch far less).
        The argument is NOT sanitised here: callers must keep caller-controlled text out of
        it (see fsrouter.esl.escape); ``${...}`` in it is expanded by the switch.
        """
        run, data = self._execute_frame(app, arg, uuid, event_lock)
        return self._queue_runs([(run, data)], timeout)[0]

    def execute_many(self, runs: Sequence[tuple[str, str | None]], timeout: float | None = 10.0
                     ) -> list[Execution]:
        """Queue several applications in one write; the switch runs them in the order given
        (each ``Execution`` completes as ``execute``'s does). One write and one wake-up
        instead of one per application, and no wait between them in the switch."""
        return self._queue_runs([self._execute_frame(app, arg, None, False) for app, arg in runs],
                                timeout)

    def _execute_frame(self, app: str, arg: str | None, uuid: str | None, event_lock: bool
                       ) -> tuple[Execution, bytes]:
        run = Execution(new_id(), app)
        headers, body = execute_headers(app, arg, run.app_uuid)
        if event_lock:
            headers["event-lock"] = "true"
        return run, encode_command(self._sendmsg_line(uuid), headers, body)

    def _queue_runs(self, built: list[tuple[Execution, bytes]], timeout: float | None
                    ) -> list[Execution]:
        runs = [run for run, _ in built]
        for run in runs:
            self._executions[run.app_uuid] = run
        try:
            replies = list(self._send_frames([data for _, data in built],
                                             [f"execute {run.app}" for run in runs], timeout))
        except Exception:
            for run in runs:
                self._executions.pop(run.app_uuid, None)
            raise
        refused = [(run, reply) for run, reply in zip(runs, replies, strict=True)
                   if not reply.reply_text.startswith("+OK")]
        if refused:
            for run in runs:
                self._executions.pop(run.app_uuid, None)
            run, reply = refused[0]
            raise CommandError(f"execute {run.app} refused: {reply.reply_text}")
        return runs

    def hangup(
        self, cause: str = "NORMAL_CLEARING", uuid: str | None = None, timeout: float | None = 10.0
    ) -> None:
        """Hang the channel up via ``sendmsg call-command: hangup``."""
        if not _CAUSE.match(cause):
            raise UnsafeCommand(f"bad hangup cause {cause!r}")
        headers = {"call-command": "hangup", "hangup-cause": cause}
        reply = self.send(self._sendmsg_line(uuid), headers, timeout=timeout)
        if not reply.reply_text.startswith("+OK"):
            raise CommandError(f"hangup refused: {reply.reply_text}")

    @staticmethod
    def _sendmsg_line(uuid: str | None) -> str:
        if uuid is None:
            return "sendmsg"
        if not is_uuid(uuid):  # a channel is named by a UUID (esl/ids.py), nothing else
            raise UnsafeCommand(f"bad channel uuid {uuid!r}")
        return f"sendmsg {uuid}"

    # -- subscriptions ----------------------------------------------------------------------

    def myevents(self, timeout: float | None = 10.0) -> str:
        return self.command("myevents", timeout)

    def linger(self, seconds: int | None = None, timeout: float | None = 10.0) -> str:
        """Ask the switch to keep the socket open (and events flowing) after hangup."""
        if seconds is None:
            return self.command("linger", timeout)
        return self.command(f"linger {int(seconds)}", timeout)

    def events(self, names: list[str], timeout: float | None = 10.0) -> str:
        """Subscribe with ``event plain <names>``.

        E.g. ``["BACKGROUND_JOB", "CUSTOM", "fifo::info"]``.
        """
        return self.command(events_command(names), timeout)

    def filter(self, header: str, value: str, timeout: float | None = 10.0) -> str:
        if not _TOKEN.match(header) or not value or any(c in value for c in "\r\n\x00"):
            raise UnsafeCommand(f"bad filter {header!r} {value!r}")
        return self.command(f"filter {header} {value}", timeout)
