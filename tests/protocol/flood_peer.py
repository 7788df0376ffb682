"""A peer in another process that streams events without pause (issue 22.2).

It must be another process: a flooder greenlet in the test's own process only runs when the
reader under test yields, so the socket would drain and the reader would block by itself. A
real switch (or a hostile peer) is another process and never waits for us.

    python -m tests.protocol.flood_peer SECONDS serve           # prints its port, floods
                                                  # whoever connects (an inbound connection)
    python -m tests.protocol.flood_peer SECONDS call HOST PORT  # dials a listener as the
                                                  # switch's socket app, answers the session
                                                  # start, floods once a line comes on stdin

Plain blocking sockets and a thread per direction: the flood goes on while commands are
answered (``+OK`` to each; a lock keeps every write a whole frame). Each flood stops after
SECONDS (the socket stays open), so a reader that never yields gets its process back and the
test can fail instead of hanging; the process runs until killed.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from fsrouter.esl.protocol import CommandParser, encode_event, encode_frame
from tests.protocol.esl_peer import CALLER_UUID, recorded_connect_reply

# TALK/NOTALK as a channel with voice detection streams them, headers as FreeSWITCH sends.
_HEADERS = {
    "Event-Name": "TALK", "Core-UUID": "2ea9d9d4-6a4c-4f1e-9b7c-2f4f3a1b0c11",
    "FreeSWITCH-Hostname": "switch", "FreeSWITCH-Switchname": "switch",
    "FreeSWITCH-IPv4": "127.0.0.1", "Event-Date-Local": "2026-12-05 12:00:00",
    "Event-Date-GMT": "Sat, 05 Dec 2026 12:00:00 GMT", "Event-Date-Timestamp": "1796385600000000",
    "Event-Calling-File": "switch_core_io.c",
    "Event-Calling-Function": "switch_core_session_read_frame",
    "Event-Calling-Line-Number": "300", "Event-Sequence": "1", "Channel-State": "CS_EXECUTE",
    "Channel-Call-State": "ACTIVE", "Channel-State-Number": "4", "Channel-Name":
    "loopback/+493040009100-b", "Unique-ID": CALLER_UUID, "Call-Direction": "inbound",
    "Answer-State": "answered", "Caller-Caller-ID-Name": "Jane Caller",
    "Caller-Caller-ID-Number": "+4915112345678", "Caller-Destination-Number": "+493040009100",
    "Caller-Context": "public", "Caller-Unique-ID": CALLER_UUID,
}
SECONDS = float(sys.argv[1]) if __name__ == "__main__" else 0.0
BLOCK = b"".join(encode_event(_HEADERS) for _ in range(256))  # ~256 KB per write


def flood(sock: socket.socket, lock: threading.Lock) -> None:
    end = time.monotonic() + SECONDS
    try:
        while time.monotonic() < end:
            with lock:
                sock.sendall(BLOCK)
    except OSError:
        pass


def answer(sock: socket.socket, lock: threading.Lock, first: bytes = b"") -> None:
    """``+OK`` to every command (a whole frame per write, under the lock)."""
    parser = CommandParser()
    data = first
    while True:
        for _ in parser.feed(data):
            with lock:
                sock.sendall(encode_frame({"Content-Type": "command/reply", "Reply-Text": "+OK"}))
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return


def call(host: str, port: int) -> None:
    sock = socket.create_connection((host, port))
    parser = CommandParser()
    while not parser.feed(sock.recv(65536)):  # the application's ``connect``
        pass
    sock.sendall(recorded_connect_reply())
    lock = threading.Lock()
    threading.Thread(target=answer, args=(sock, lock), daemon=True).start()
    sys.stdin.readline()  # the test is ready to watch
    flood(sock, lock)
    time.sleep(3600)  # the socket stays open until the process is killed


def serve() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        lock = threading.Lock()
        threading.Thread(target=flood, args=(sock, lock), daemon=True).start()
        threading.Thread(target=answer, args=(sock, lock), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[2] == "serve":
        serve()
    else:
        call(sys.argv[3], int(sys.argv[4]))
