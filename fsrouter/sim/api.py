"""API commands (``api`` / ``bgapi``) with the real switch's reply texts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent

from fsrouter.sim import transfer
from fsrouter.sim.originate import OriginateError, parse_originate, split_args
from fsrouter.sim.wire import serialize_event

if TYPE_CHECKING:
    from fsrouter.sim.channel import Channel
    from fsrouter.sim.switch import Simulator

ApiFunc = Callable[["Simulator", str, str], str]
BROADCAST_SYNTAX = "<uuid> <path> [aleg|bleg|holdb|both]"
SETVAR_SYNTAX = "<uuid> <var> [value]"
TRANSFER_SYNTAX = "<uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]"
DTMF_DIGITS = "0123456789*#ABCDabcd"


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


def api_uuid_dump(sim: Simulator, arg: str, owner: str) -> str:
    """``uuid_dump <uuid> [json]``: the channel as a CHANNEL_DATA event (plain: URL-encoded)."""
    args = arg.split()
    if not args:
        return "-USAGE: <uuid> [format]\n"
    chan = sim.channels.get(args[0])
    if chan is None or not chan.alive:
        return "-ERR No such channel!\n"
    headers = chan.event("CHANNEL_DATA", ("mod_commands.c", "uuid_dump_function", 6495))
    if args[1:2] == ["json"]:
        return json.dumps(dict(headers), separators=(",", ":"))
    return serialize_event(headers).decode("utf-8", "surrogateescape")


def api_uuid_getvar(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    chan = sim.channels.get(args[0]) if args else None
    if chan is None or len(args) < 2:
        return "-ERR No such channel!\n"
    return chan.get_var(args[1], "_undef_")


def api_uuid_setvar(sim: Simulator, arg: str, owner: str) -> str:
    """``uuid_setvar <uuid> <var> [value]`` (mod_commands.c uuid_setvar_function): without a
    value the variable is unset; the value is the rest of the line."""
    args = [word for word in arg.split(" ", 2) if word] if arg else []
    if len(args) not in (2, 3):
        return f"-USAGE: {SETVAR_SYNTAX}\n"
    chan = sim.channels.get(args[0])
    if chan is None or not chan.alive:
        return "-ERR No such channel!\n"
    chan.set_var(args[1], args[2] if len(args) == 3 else None)
    return "+OK\n"


def api_uuid_transfer(sim: Simulator, arg: str, owner: str) -> str:
    """``uuid_transfer <uuid> [-bleg|-both] <dest> [<dialplan>] [<context>]`` (mod_commands.c
    transfer_function); what the channel does then: fsrouter/sim/transfer.py."""
    args = [word for word in arg.split(" ") if word]
    if not 2 <= len(args) <= 5:
        return f"-USAGE: {TRANSFER_SYNTAX}\n"
    chan = sim.channels.get(args[0])
    if chan is None or not chan.alive:
        return "-ERR No such channel!\n"
    legs, rest = "", args[1:]
    if rest[0].startswith("-"):
        legs, rest = rest[0][1:].lower(), rest[1:]
    dest, dialplan, context = (rest + ["", "", ""])[:3]
    partner = sim.channels.get(chan.get_var("bridge_uuid") or chan.get_var("signal_bond"))
    targets = [chan]
    if legs == "bleg" and partner is not None and partner.alive:
        targets = [partner]
    elif legs == "both" and partner is not None and partner.alive:
        targets = [partner, chan]
    if any(transfer.bridged(leg) for leg in targets):
        return "-ERR transfer of a bridged channel is not simulated\n"
    ok = all(transfer.session_transfer(sim, leg, dest, dialplan, context) for leg in targets)
    return "+OK\n" if ok else "-ERR\n"


def api_uuid_send_dtmf(sim: Simulator, arg: str, owner: str) -> str:
    args = arg.split()
    chan = sim.channels.get(args[0]) if args else None
    if chan is None or not chan.alive or len(args) < 2:
        return "-ERR Cannot locate session!\n"
    target = sim.loopback_peer.get(chan.uuid, chan)
    for digit in args[1].split("@")[0]:
        sim.send_dtmf(target, digit)
    return f"+OK {args[0]} sent DTMF {args[1]}.\n"


def api_uuid_recv_dtmf(sim: Simulator, arg: str, owner: str) -> str:
    """``uuid_recv_dtmf <uuid> <digits>``: DTMF as if it came in on that channel (mod_commands.c
    uuid_recv_dtmf_function; the running application, e.g. mod_fifo's hold music, gets it)."""
    args = arg.split()
    if len(args) < 2:
        return "-USAGE: <uuid> <dtmf_data>\n"
    chan = sim.channels.get(args[0])
    if chan is None or not chan.alive:
        return "-ERR Cannot locate session!\n"
    for digit in args[1].split("@")[0]:
        if digit in DTMF_DIGITS:
            sim.send_dtmf(chan, digit.upper())
    return f"+OK {args[0]} received DTMF {args[1]}.\n"


def api_uuid_broadcast(sim: Simulator, arg: str, owner: str) -> str:
    """``uuid_broadcast <uuid> <path> [aleg|bleg|holdb|both]`` (switch_ivr_broadcast).

    ``path`` plays with ``playback`` unless written ``app::args``; ``app!cause::args`` hangs
    the channel up after. ``aleg`` (the default, with ``holdb``) runs it on the channel itself,
    ``bleg`` on its bridged partner, ``both`` on each. It runs at once, inside whatever the
    channel is doing (park, record...), as the real switch's queued ``execute`` message does.
    """
    args = [word for word in arg.split(" ") if word]
    if len(args) < 2:
        return f"-USAGE: {BROADCAST_SYNTAX}\n"
    chan = sim.channels.get(args[0])
    if chan is None or not chan.alive:
        return "-ERR invalid uuid\n"
    app, path, cause = "playback", args[1], ""
    colon = path.find(":")
    if colon >= 0 and path[colon + 1:colon + 2] == ":":
        app, path = path[:colon], path[colon + 2:]
        app, bang, cause = app.partition("!")
        cause = cause or ("normal_clearing" if bang else "")
    legs = args[2].lower() if len(args) > 2 else "aleg holdb"
    partner = sim.channels.get(chan.get_var("signal_bond")) or chan.bridge_peer
    if ("bleg" in legs or "both" in legs) and "holdb" not in legs and partner is not None:
        gevent.spawn(_broadcast, sim, partner, app, path, "")
    on_self = "aleg" in legs or "both" in legs
    if on_self or cause:
        gevent.spawn(_broadcast, sim, chan, app if on_self else "", path, cause.upper())
    return "+OK Message sent\n"


def _broadcast(sim: Simulator, chan: Channel, app: str, path: str, cause: str) -> None:
    me = gevent.getcurrent()
    chan.nested.append(me)  # runs inside the channel's current application, if any
    try:
        if app:
            sim.run_app(chan, app, path)
        if cause:
            sim.run_app(chan, "hangup", cause)
    finally:
        chan.nested.remove(me)


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
    "uuid_getvar": api_uuid_getvar, "uuid_setvar": api_uuid_setvar,
    "uuid_transfer": api_uuid_transfer, "uuid_send_dtmf": api_uuid_send_dtmf,
    "uuid_dump": api_uuid_dump, "uuid_bridge": api_uuid_bridge, "show": api_show,
    "uuid_recv_dtmf": api_uuid_recv_dtmf, "uuid_broadcast": api_uuid_broadcast,
    "fifo": api_fifo, "status": api_status,
    "global_setvar": api_global_setvar, "global_getvar": api_global_getvar, "fsctl": api_fsctl,
}


def run_api(sim: Simulator, line: str, owner: str = "") -> str:
    name, _, arg = line.strip().partition(" ")
    func = APIS.get(name)
    if func is None:
        return f"-ERR {name} Command not found!\n"
    return func(sim, arg.strip(), owner)


__all__ = ["run_api", "split_args"]
