"""Sockets that hold call slots hostage (issue 22.4), in another process, as an attacker is.

    python -m tests.reliability.slot_holder HOST PORT SOCKETS SOURCES SECONDS

Opens SOCKETS connections to HOST:PORT, spread over the SOURCES source addresses (a comma
list, e.g. 127.0.0.5 or 127.0.0.10,127.0.0.11), never answers anything, and reconnects each
one as soon as the other side closes it, for SECONDS; then prints how many connections it
made and exits. Plain non-blocking sockets and one ``selectors`` loop.
"""

from __future__ import annotations

import errno
import selectors
import socket
import sys
import time


def open_one(sel: selectors.BaseSelector, target: tuple[str, int], source: str) -> None:
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    err = sock.connect_ex(target)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(err, f"connect from {source}")
    sel.register(sock, selectors.EVENT_READ, source)


def main(host: str, port: int, count: int, sources: list[str], seconds: float) -> None:
    target = (host, port)
    sel = selectors.DefaultSelector()
    made = 0
    for i in range(count):
        open_one(sel, target, sources[i % len(sources)])
        made += 1
    end = time.monotonic() + seconds
    waiting: list[str] = []  # sources whose reconnect failed for a moment
    while time.monotonic() < end:
        for source in waiting[:]:
            try:
                open_one(sel, target, source)
                made += 1
                waiting.remove(source)
            except OSError:
                break
        for key, _ in sel.select(timeout=0.1):
            sock = key.fileobj
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if data:
                continue  # the daemon's ``connect``: never answered
            sel.unregister(sock)
            sock.close()  # type: ignore[union-attr]
            try:
                open_one(sel, target, key.data)
                made += 1
            except OSError:
                waiting.append(key.data)  # out of ephemeral ports for a moment
    print(made, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(","),
         float(sys.argv[5]))
