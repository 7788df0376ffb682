"""Receivers that drip their answer one byte at a time, and the sender runs against them, in a
process monkey-patched by gevent as the daemon is (``python -m tests.notify.dripping
SCENARIO DB_URL DRIP_INTERVAL DRIP_FOR DEADLINE``). Prints one JSON line of what it measured.

- ``webhook``: two webhooks get the same event, the first a receiver that drips header lines
  (each byte well within any per-read timeout) for ``DRIP_FOR`` seconds, the second a healthy
  one. One pass: how long the slow try took, when the healthy delivery arrived, the rows.
- ``smtp``: an SMTP server that drips its greeting the same way; one mailer pass.

Only loopback sockets on ports the kernel picks.
"""

from gevent import monkey

monkey.patch_all()

import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from fsrouter.config import Config  # noqa: E402
from fsrouter.notify.mail import Mailer  # noqa: E402
from fsrouter.notify.webhooks import Webhooks  # noqa: E402
from fsrouter.notify.worker import utc_now  # noqa: E402
from fsrouter.store import queries  # noqa: E402
from fsrouter.store.db import open_database  # noqa: E402
from fsrouter.store.migrations import upgrade  # noqa: E402
from fsrouter.store.models import Voicemail  # noqa: E402


class Dripper:
    """A loopback server: reads what the client sends first (up to ``expect`` bytes or the
    request's end), then writes ``line`` over and over, one byte every ``interval`` seconds,
    for ``drip_for`` seconds, then closes."""

    def __init__(self, line: bytes, interval: float, drip_for: float, prefix: bytes = b"",
                 read_first: bool = True) -> None:
        self.line, self.interval, self.drip_for = line, interval, drip_for
        self.prefix, self.read_first = prefix, read_first
        self.closed_by_client: list[float] = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, address: Any) -> None:
        if self.read_first:
            sock.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                data += chunk
        end = time.monotonic() + self.drip_for
        stream = self.prefix
        try:
            while time.monotonic() < end:
                if not stream:
                    stream = self.line
                sock.sendall(stream[:1])
                stream = stream[1:]
                gevent.sleep(self.interval)
        except OSError:  # the client closed the connection: the deadline did its work
            self.closed_by_client.append(time.monotonic())
        finally:
            sock.close()


class Healthy:
    """An HTTP receiver that answers 204 at once and notes when each request arrived."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, address: Any) -> None:
        sock.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += sock.recv(4096)
        self.arrived.append(time.monotonic())
        sock.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        sock.close()


def closed_after(dripper: Dripper, start: float) -> float | None:
    """Seconds from ``start`` until the sender's side of the dripping connection was seen
    closed (the dripper's next write fails), waiting up to 5 s for it."""
    with gevent.Timeout(5, False):
        while not dripper.closed_by_client:
            gevent.sleep(0.05)
    return dripper.closed_by_client[0] - start if dripper.closed_by_client else None


def config(data: dict[str, Any]) -> Config:
    return Config.model_validate({"switch": {"password": "s3cret-esl"}, **data},
                                 context={"region": "DE"})


def webhook(interval: float, drip_for: float, deadline: int) -> dict[str, Any]:
    slow = Dripper(b"X-Drip: a\r\n", interval, drip_for, prefix=b"HTTP/1.1 200 OK\r\n")
    healthy = Healthy()
    hooks = config({"webhooks": [
        {"url": f"http://127.0.0.1:{slow.port}/slow", "timeout": deadline},
        {"url": f"http://127.0.0.1:{healthy.port}/healthy", "timeout": 5},
    ]})
    sender = Webhooks(lambda: hooks)
    slow_id, healthy_id = sender.enqueue("incident.created", {"n": 1})
    start = time.monotonic()
    delivered = sender.deliver_pending()
    ended = time.monotonic()
    slow_row, healthy_row = queries.get_outbox(slow_id), queries.get_outbox(healthy_id)
    return {
        "delivered": delivered,
        "pass_s": ended - start,
        "slow_closed_s": closed_after(slow, start),
        "healthy_arrived_s": healthy.arrived[0] - start if healthy.arrived else None,
        "slow": {"state": slow_row.state, "attempts": slow_row.attempts,
                 "error": slow_row.last_error,
                 "next_in_s": (slow_row.next_at - utc_now()).total_seconds()},
        "healthy": {"state": healthy_row.state, "attempts": healthy_row.attempts},
    }


def smtp(interval: float, drip_for: float, deadline: int) -> dict[str, Any]:
    slow = Dripper(b"220-drip\r\n", interval, drip_for, read_first=False)
    mail_config = config({
        "users": {"anna": {"name": "Anna Schmidt", "email": "anna@beispiel.de"}},
        "smtp": {"host": "127.0.0.1", "port": slow.port, "from": "fsrouter@beispiel.de"},
    })
    recording = Path(tempfile.mkdtemp()) / "vm.wav"
    recording.write_bytes(b"RIFF....WAVE")
    row = queries.record_voicemail("anna", str(recording), utc_now(), call_uuid="c-1")
    options: dict[str, Any] = {"smtp_timeout": 30}
    if "deadline" in inspect.signature(Mailer).parameters:  # absent before the fix
        options["deadline"] = deadline
    mailer = Mailer(lambda: mail_config, **options)
    start = time.monotonic()
    sent = mailer.send_pending()
    ended = time.monotonic()
    after = Voicemail.get_by_id(row.id)
    return {
        "sent": sent,
        "session_s": ended - start,
        "closed_s": closed_after(slow, start),
        "row": {"attempts": after.email_attempts, "error": after.email_error,
                "retry": after.email_next_at is not None, "emailed": after.emailed_at is not None},
    }


def main() -> None:
    scenario, db_url = sys.argv[1], sys.argv[2]
    interval, drip_for, deadline = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    upgrade(open_database(db_url))
    run = {"webhook": webhook, "smtp": smtp}[scenario]
    print(json.dumps(run(interval, drip_for, deadline)))


if __name__ == "__main__":
    main()
