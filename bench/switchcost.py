"""``python -m bench.switchcost``: what an Event Socket client costs the real switch.

Three figures, each from the switch process's CPU time (utime + stime, ``/proc``) on a real
FreeSWITCH started as the benchmark starts it, with nothing else talking to it:

1. **A command's header bytes against its body bytes.** mod_event_socket reads a command's
   header lines one ``recv()`` of one byte at a time and yields the CPU after each byte
   (``read_packet`` in mod_event_socket.c: ``mlen = 1``, then ``switch_os_yield()``), but a
   ``Content-Length`` body in one ``recv()``. The same harmless command (``noevents``) is sent
   ``--commands`` times bare, with 1,000 bytes in a header line, and with 1,000 bytes as a
   body; each waits for its reply.
2. **An idle connection.** A listener thread with nothing to read polls its socket with a
   20 ms timeout (``switch_poll(..., 20000)``) and runs its loop each time: 50 idle
   connections against none, ``--seconds`` each. A call's outbound socket is such a listener
   for the whole call.
3. Nothing else: the switch's own idle CPU is the ``0 connections`` line.

Usage::

    .venv/bin/python -m bench.switchcost                 # ~1 minute
    .venv/bin/python -m bench.switchcost --json bench/results_switchcost.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from gevent import socket

from bench.realswitch import process_cpu
from fsrouter.testing.realswitch import RealSwitch

PAD = 1000  # bytes of the padded variants
IDLE_CONNECTIONS = 50


MAX_FRAME = 1 << 20  # bytes: the replies here are a few hundred; more is not the switch


def _read_frame(sock: Any, buf: bytes) -> tuple[bytes, bytes]:
    """One frame (its header block) and what followed it."""
    while b"\n\n" not in buf:
        buf = _more(sock, buf)
    head, buf = buf.split(b"\n\n", 1)
    length = 0
    for line in head.split(b"\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length > MAX_FRAME:
        raise ConnectionError(f"a frame of {length} bytes")
    while len(buf) < length:
        buf = _more(sock, buf)
    return head, buf[length:]


def _more(sock: Any, buf: bytes) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the switch closed the connection")
    if len(buf) + len(data) > MAX_FRAME:
        raise ConnectionError(f"more than {MAX_FRAME} bytes without a whole frame")
    return buf + data


def _open(switch: RealSwitch) -> tuple[Any, bytes]:
    host, port, password = switch.esl_endpoint()
    sock = socket.create_connection((host, port), timeout=10)
    _, buf = _read_frame(sock, b"")  # auth/request
    sock.sendall(f"auth {password}\n\n".encode())
    _, buf = _read_frame(sock, buf)
    return sock, buf


def command_cost(switch: RealSwitch, payload: bytes, count: int) -> dict[str, float]:
    """Switch CPU and wall time per command for ``count`` commands, each waited for."""
    assert switch.pid is not None
    sock, buf = _open(switch)
    try:
        cpu, began = process_cpu(switch.pid), time.perf_counter()
        for _ in range(count):
            sock.sendall(payload)
            _, buf = _read_frame(sock, buf)
        return {"bytes": len(payload),
                "switch_cpu_us": round((process_cpu(switch.pid) - cpu) / count * 1e6, 1),
                "wall_us": round((time.perf_counter() - began) / count * 1e6, 1)}
    finally:
        sock.close()


def idle_cost(switch: RealSwitch, connections: int, seconds: float) -> dict[str, float]:
    """Switch CPU per second with ``connections`` authenticated, idle connections open."""
    assert switch.pid is not None
    opened = [_open(switch)[0] for _ in range(connections)]
    try:
        time.sleep(1.0)  # let them settle into their poll loops
        cpu, began = process_cpu(switch.pid), time.perf_counter()
        time.sleep(seconds)
        per_s = (process_cpu(switch.pid) - cpu) / (time.perf_counter() - began)
        return {"connections": connections, "switch_cpu_ms_per_s": round(per_s * 1e3, 2)}
    finally:
        for sock in opened:
            sock.close()


def measure(commands: int, seconds: float) -> dict[str, Any]:
    pad = "x" * PAD
    variants = {"bare": b"noevents\n\n",
                "header": f"noevents\nX-Pad: {pad}\n\n".encode(),
                "body": f"noevents\nContent-Length: {PAD}\n\n{pad}".encode()}
    with tempfile.TemporaryDirectory() as tmp, RealSwitch(Path(tmp)) as switch:
        time.sleep(2.0)  # start-up work done
        result: dict[str, Any] = {"commands": {name: command_cost(switch, payload, commands)
                                               for name, payload in variants.items()}}
        idle = [idle_cost(switch, n, seconds) for n in (0, IDLE_CONNECTIONS, 0)]
    cmd = result["commands"]
    result["header_byte_us"] = round(
        (cmd["header"]["switch_cpu_us"] - cmd["bare"]["switch_cpu_us"]) / PAD, 3)
    result["body_byte_us"] = round(
        (cmd["body"]["switch_cpu_us"] - cmd["bare"]["switch_cpu_us"]) / PAD, 3)
    base = (idle[0]["switch_cpu_ms_per_s"] + idle[2]["switch_cpu_ms_per_s"]) / 2
    result["idle"] = idle
    result["idle_connection_ms_per_s"] = round(
        (idle[1]["switch_cpu_ms_per_s"] - base) / IDLE_CONNECTIONS, 3)
    result["load_average"] = os.getloadavg()
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| command | bytes | switch CPU per command (us) | wall per command (us) |",
             "|---|---|---|---|"]
    for name, row in result["commands"].items():
        lines.append(f"| noevents, {name} | {row['bytes']} | {row['switch_cpu_us']} | "
                     f"{row['wall_us']} |")
    lines += ["", f"- a header byte: {result['header_byte_us']} us of switch CPU; "
              f"a body byte: {result['body_byte_us']} us",
              f"- an idle connection: {result['idle_connection_ms_per_s']} ms of switch CPU "
              f"per second (idle runs: {result['idle']})",
              f"- load average at the end: {result['load_average']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.commands, args.seconds)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
