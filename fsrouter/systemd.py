"""systemd integration without a dependency: ``sd_notify`` and the watchdog.

With ``Type=notify`` systemd waits for ``READY=1``, which the daemon sends only after the
listener is bound and the store is open. ``WatchdogSec`` makes systemd restart a daemon whose
event loop stops turning: the keep-alive is sent from a greenlet, so it stops when the hub is
blocked.
"""

from __future__ import annotations

import os
import socket

import gevent


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
    return True


def watchdog_interval() -> float | None:
    """Half the configured watchdog period in seconds, or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def start_watchdog() -> gevent.Greenlet | None:
    """Feed the watchdog from a greenlet while the event loop runs."""
    interval = watchdog_interval()
    if interval is None:
        return None

    def feed() -> None:
        while True:
            notify("WATCHDOG=1")
            gevent.sleep(interval)

    return gevent.spawn(feed)
