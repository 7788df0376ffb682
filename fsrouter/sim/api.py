"""API commands (``api`` / ``bgapi``) with the real switch's reply texts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from fsrouter.sim.originate import OriginateError, parse_originate, split_args

if TYPE_CHECKING:
    from fsrouter.sim.switch import Simulator

ApiFunc = Callable[["Simulator", str, str], str]


def api_originate(sim: Simulator, arg: str, owner: str) -> str:
    try:
        req = parse_originate(arg)
    except OriginateError as exc:
        return f"-ERR {exc.cause}\n"
    return sim.originate(req, owner) + "\n"


def api_uuid_kill(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    chan = sim.channels.get(args[0]) if args else None
    if chan is None or not chan.alive:
        return "-ERR No such channel!\n"
    sim.hangup(chan, args[1] if len(args) > 1 else "NORMAL_CLEARING")
    return "+OK\n"


def api_uuid_exists(sim: Simulator, arg: str, owner: str) -> str:
    chan = sim.channels.get(arg.strip())
    return "true" if chan is not None and chan.alive else "false"


def api_uuid_getvar(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    chan = sim.channels.get(args[0]) if args else None
    if chan is None or len(args) < 2:
        return "-ERR No such channel!\n"
    return chan.get_var(args[1], "_undef_")


def api_uuid_send_dtmf(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    chan = sim.channels.get(args[0]) if args else None
    if chan is None or not chan.alive or len(args) < 2:
        return "-ERR Cannot locate session!\n"
    target = sim.loopback_peer.get(chan.uuid, chan)
    for digit in args[1].split("@")[0]:
        sim.send_dtmf(target, digit)
    return f"+OK {args[0]} sent DTMF {args[1]}.\n"


def api_uuid_bridge(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    if len(args) < 2 or args[0] not in sim.channels or args[1] not in sim.channels:
        return "-ERR Invalid uuid\n"
    sim.direct_bridge(sim.channels[args[0]], sim.channels[args[1]])
    return f"+OK {args[1]}\n"


def api_show(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    if not args or args[0] != "channels":
        return "-USAGE: show channels\n"
    cols = ["uuid", "direction", "created", "created_epoch", "name", "state", "cid_name",
            "cid_num", "dest", "application", "application_data", "callstate", "callee_name",
            "callee_num", "context"]
    rows = []
    for chan in sim.channels.values():
        if not chan.alive:
            continue
        epoch = chan.profile.created_us // 1_000_000
        rows.append([chan.uuid, chan.profile.direction, "", str(epoch), chan.name, chan.state,
                     chan.profile.caller_id_name, chan.profile.caller_id_number,
                     chan.profile.destination_number, chan.get_var("current_application"),
                     chan.get_var("current_application_data"), chan.call_state, "", "",
                     chan.profile.context])
    if args[-2:] == ["as", "json"]:
        data: dict[str, object] = {"row_count": len(rows)}
        if rows:
            data["rows"] = [dict(zip(cols, row, strict=True)) for row in rows]
        return json.dumps(data)
    lines = [",".join(cols)] + [",".join(row) for row in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} total.\n"


def api_fifo(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    if len(args) >= 1 and args[0] == "count":
        names = args[1:] or sorted(sim.fifos.queues)
        out = []
        for name in names:
            if name not in sim.fifos.queues:
                continue
            out.append(f"{name}:0:{sim.fifos.count(name)}:0:0:0")
        return "\n".join(out) + "\n" if out else "none\n"
    return "-ERR unsupported\n"


def api_status(sim: Simulator, arg: str, owner: str) -> str:
    alive = sum(1 for c in sim.channels.values() if c.alive)
    return ("UP 0 years, 0 days, 0 hours, 0 minutes, 1 second, 0 milliseconds, 0 microseconds\n"
            "FreeSWITCH (Version 1.11.1 -sim) is ready\n"
            f"{sim.session_count} session(s) since startup\n"
            f"{alive} session(s) - peak {alive}, last 5min {alive}\n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0\n"
            "1000 session(s) max\nmin idle cpu 0.00/100.00\n")


def api_global_setvar(sim: Simulator, arg: str, owner: str) -> str:
    name, _, value = arg.partition("=")
    sim.globals[name.strip()] = value
    return "+OK"


def api_global_getvar(sim: Simulator, arg: str, owner: str) -> str:
    return sim.globals.get(arg.strip(), "")


def api_fsctl(sim: Simulator, arg: str, owner: str) -> str:
    return "+OK\n"


APIS: dict[str, ApiFunc] = {
    "originate": api_originate, "uuid_kill": api_uuid_kill, "uuid_exists": api_uuid_exists,
    "uuid_getvar": api_uuid_getvar, "uuid_send_dtmf": api_uuid_send_dtmf,
    "uuid_bridge": api_uuid_bridge, "show": api_show, "fifo": api_fifo, "status": api_status,
    "global_setvar": api_global_setvar, "global_getvar": api_global_getvar, "fsctl": api_fsctl,
}


def run_api(sim: Simulator, line: str, owner: str = "") -> str:
    name, _, arg = line.strip().partition(" ")
    func = APIS.get(name)
    if func is None:
        return f"-ERR {name} Command not found!\n"
    return func(sim, arg.strip(), owner)


__all__ = ["run_api", "split_args"]
