"""mod_loopback: ``loopback/<number>/<context>`` makes an a-leg (ours) and a b-leg (dialplan).

Observed on FreeSWITCH 1.11.1 (one loopback call into ``public``, all events): CHANNEL_CREATE
of the a-leg (outbound, ``loopback/<n>-a``, HIT-Dialplan false) then of the b-leg (inbound,
``loopback/<n>-b``); both carry ``variable_other_loopback_leg_uuid`` and
``variable_loopback_leg`` (A/B), no ``Other-Leg-*`` headers (the legs are not bridged). When the
b-leg answers, the a-leg answers first; the originate then returns ``+OK <a-uuid>``, the a-leg
flips its caller ID and runs its application. Hanging up one leg hangs up the other with the
same cause. DTMF sent on the a-leg arrives on the b-leg.

The ``public`` context is the shipped dialplan (freeswitch_conf/dialplan/fsrouter.xml):
``set app_disable_expand_variables=true``, ``socket ${fsrouter_target} async full``, and when
the socket app returns with the call still up: pre_answer, a SIT tone, hangup
NORMAL_TEMPORARY_FAILURE. A channel transferred back into ``public`` (``uuid_transfer``,
fsrouter/sim/transfer.py) runs the extension again from its first action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent
import gevent.socket
import structlog

from fsrouter.sim.channel import Channel, Profile
from fsrouter.sim.record import SwitchRecord

if TYPE_CHECKING:
    from fsrouter.sim.originate import OriginateRequest
    from fsrouter.sim.switch import Simulator

log = structlog.get_logger(__name__)
SIT = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"
DEFAULT_TARGET = "127.0.0.1:8084"
CONNECT_TIMEOUT = 60.0  # seconds; the real switch waits as long as the kernel does (~127 s)
EXEC = ("switch_core_session.c", "switch_core_session_exec", 2949)
EXEC_DONE = ("switch_core_session.c", "switch_core_session_exec", 2972)
CREATE = ("switch_core_state_machine.c", "switch_core_session_run", 626)


def make_pair(sim: Simulator, number: str, context: str, variables: dict[str, str],
              a_uuid: str, b_uuid: str, origin: Channel | None = None,
              caller_id: tuple[str, str] | None = None) -> tuple[Channel, Channel]:
    """Create both legs with the variables the real switch gives them; fire both CREATEs.

    ``origin``: the channel whose ``bridge`` dials this pair. As measured on 1.11.1, the a-leg
    then carries ``variable_originator``/``variable_originating_leg_uuid``, ``Other-Type:
    originator`` and that channel's ``Other-Leg-*`` from its CHANNEL_CREATE on; the b-leg
    does not. (A hang-up follows ``bridge_peer``, not ``other``: this does not tie the legs.)
    ``caller_id``: (name, number) both legs show unless ``origination_caller_id_*`` say
    otherwise (a ``bridge`` passes the caller's; no such variables are added, as on 1.11.1).
    """
    default_name, default_num = caller_id or ("", "0000000000")
    cid_num = variables.get("origination_caller_id_number", default_num)
    cid_name = variables.get("origination_caller_id_name", default_name)
    now = sim.clock.micros()
    a_prof = Profile("outbound", cid_name, cid_num, number, context, f"loopback/{number}-a",
                     a_uuid, callee_id_number=context, created_us=now)
    b_prof = Profile("inbound", cid_name, cid_num, number, context, f"loopback/{number}-b",
                     b_uuid, callee_id_number=context, created_us=now)
    a_vars = [("direction", "outbound"), ("is_outbound", "true"),
              ("session_id", str(sim.core.session_id())), ("read_codec", "L16"),
              ("read_rate", "8000"), ("write_codec", "L16"), ("write_rate", "8000"),
              ("channel_name", a_prof.channel_name), ("uuid", a_uuid), ("call_uuid", a_uuid)]
    a_vars += list(variables.items())
    if origin is not None:
        a_vars += [("originator", origin.uuid), ("originating_leg_uuid", origin.uuid)]
    a_vars += [("originate_early_media", "true"), ("originate_endpoint", "loopback"),
               ("other_loopback_leg_uuid", b_uuid), ("loopback_leg", "A")]
    b_vars = [("direction", "inbound"), ("uuid", b_uuid), ("call_uuid", b_uuid),
              ("session_id", str(sim.core.session_id())), ("channel_name", b_prof.channel_name),
              ("read_codec", "L16"), ("read_rate", "8000"), ("write_codec", "L16"),
              ("write_rate", "8000")]
    b_vars += [(k, v) for k, v in variables.items() if not k.startswith("originate_")]
    b_vars += [("other_loopback_leg_uuid", a_uuid), ("loopback_leg", "B")]
    a = sim.new_channel(a_prof, a_vars)
    a.hit_dialplan = False
    b = sim.new_channel(b_prof, b_vars)
    for leg in (a, b):
        leg.state, leg.call_state = "CS_INIT", "DOWN"
    a.loop_peer, b.loop_peer = b, a
    if origin is not None:
        a.other, a.other_type = origin, "originator"
    sim.loopback_peer[a_uuid] = b
    sim.fire(a, "CHANNEL_CREATE", CREATE)
    sim.fire(b, "CHANNEL_CREATE", CREATE)
    a.state, b.state = "CS_CONSUME_MEDIA", "CS_EXECUTE"
    return a, b


def dial_public(sim: Simulator, req: OriginateRequest, a_uuid: str, number: str,
                owner: str) -> str:
    """``originate loopback/<number>/public <app>``: a caller into the served dialplan."""
    from fsrouter.sim.channel import new_uuid

    a, b = make_pair(sim, number, "public", req.variables, a_uuid, new_uuid())
    sim.records[b.uuid] = SwitchRecord(b.uuid, number, b.profile.caller_id_number,
                                       b.profile.caller_id_name, started_at=sim.clock.now())
    gevent.spawn(run_public, sim, b, None)
    timeout = _seconds(req.variables.get("originate_timeout"), 60)
    return await_answer(sim, a, req, timeout)


def await_answer(sim: Simulator, a: Channel, req: OriginateRequest, timeout_s: int) -> str:
    """Block like originate: ``+OK <a>`` once answered (the app then runs), else -ERR."""
    gevent.wait([a.media, a.hungup], count=1, timeout=sim.clock.real(timeout_s))
    if a.alive and a.media.is_set():
        # originate returns a little after the answer: on 1.11.1 the b-leg's next
        # application (queued after a 20 ms park frame) started before the result and the
        # a-leg's own application.
        sim.clock.sleep(0.03)
        a.flip_caller_id()
        gevent.spawn(run_a_leg, sim, a, req)
        return f"+OK {a.uuid}"
    cause = a.hangup_cause if not a.alive else "NO_ANSWER"
    if a.alive:
        sim.hangup(a, cause)
    gevent.spawn(sim.finish, a)
    return f"-ERR {cause}"


def run_a_leg(sim: Simulator, a: Channel, req: OriginateRequest) -> None:
    if req.app:
        sim.run_app(a, req.app, req.app_arg)
    a.hungup.wait()
    sim.finish(a)


def run_public(sim: Simulator, b: Channel, target: str | None) -> None:
    """The b-leg's trip through the shipped ``public`` dialplan extension."""
    from fsrouter.sim.outbound import OutboundSession

    if target:
        b.public_target = target  # type: ignore[attr-defined]  # a transfer comes back here
    target = target or sim.globals.get("fsrouter_target") or DEFAULT_TARGET
    b.set_var("DP_MATCH", f"ARRAY::{target}|:{target}")
    b.set_var("call_uuid", b.uuid)
    if sim.dialplan_disables_expansion:
        sim.run_app(b, "set", "app_disable_expand_variables=true")
    arg = f"{target} async full"
    b.set_var("current_application_data", arg)
    b.set_var("current_application", "socket")
    sim.fire(b, "CHANNEL_EXECUTE", EXEC, [("Application", "socket"),
                                          ("Application-Data", arg)])
    if sim.on_mark is not None:
        sim.on_mark(b.uuid, "socket_open", target)
    sock = _connect_any(sim, target)
    if sock is not None and b.alive:
        b.set_var("socket_host", sock.getpeername()[0])
        b.socket_arg = arg  # type: ignore[attr-defined]
        session = OutboundSession(sim, sock, b)
        b.session = session  # type: ignore[attr-defined]
        gevent.spawn(session.serve)
        gevent.wait([b.hungup, session.returned, b.breaking], count=1)
        gevent.sleep(0)  # a park loop that is running handles the rest itself
        if session.park_loop is not None:
            return
        _socket_done(sim, b, arg)
        after_socket(sim, b, session.returned.is_set())
        sim.finish(b)
        session.end_of_call()
        return
    _socket_done(sim, b, arg)
    after_socket(sim, b, True)
    sim.finish(b)


def after_socket(sim: Simulator, b: Channel, returned: bool) -> None:
    """The rest of the extension once ``socket`` has returned, until the channel hangs up: the
    fallback actions when the daemon left the call or was never reached (``returned``), and
    after a transfer the dialplan again instead (the remaining actions are skipped)."""
    from fsrouter.sim.transfer import reroute

    if returned and b.transfer is None:
        fallback(sim, b)
    while b.alive:
        if b.transfer is not None:
            reroute(sim, b)
            return
        gevent.wait([b.hungup, b.breaking], count=1)


def _socket_done(sim: Simulator, b: Channel, arg: str) -> None:
    from fsrouter.sim.channel import new_uuid

    sim.fire(b, "CHANNEL_EXECUTE_COMPLETE", EXEC_DONE,
             [("Application", "socket"), ("Application-Data", arg),
              ("Application-Response", "_none_"), ("Application-UUID", new_uuid())])


def fallback(sim: Simulator, b: Channel) -> None:
    """The actions after ``socket``: the daemon is unreachable or left the call."""
    for app, arg in (("pre_answer", ""), ("playback", SIT),
                     ("hangup", "NORMAL_TEMPORARY_FAILURE")):
        if not b.ready:
            return
        sim.run_app(b, app, arg)


def _connect_any(sim: Simulator, target: str) -> gevent.socket.socket | None:
    """``host:port|host2:port2`` failover; only loopback addresses are ever dialled."""
    for item in target.split("|"):
        host, _, port = item.strip().rpartition(":")
        if not port.isdigit() or not host.startswith("127."):
            log.warning("sim.socket_target_refused", target=item[:80])
            continue
        try:
            # The real socket app connects blocking, with no timeout of its own
            # (mod_event_socket.c, socket_function): the kernel's SYN retries decide.
            sock = gevent.socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            log.info("sim.socket_connect_failed", target=item, error=str(exc))
            continue
        sock.settimeout(None)  # the timeout was for connecting; the call may idle for long
        return sock
    return None


def _seconds(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() else default
