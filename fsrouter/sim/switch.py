"""The simulated switch: channels, the event bus, originate/phones, bridging."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import gevent
import gevent.socket
import structlog

from fsrouter.sim import bridge, cdr, loopback
from fsrouter.sim.apps import APPS, NONE, AppContext
from fsrouter.sim.channel import Channel, Core, Profile, new_uuid
from fsrouter.sim.clock import Clock
from fsrouter.sim.expand import expand
from fsrouter.sim.faults import Faults
from fsrouter.sim.fifo import Fifos
from fsrouter.sim.inbound import InboundServer
from fsrouter.sim.originate import OriginateRequest, PhoneBehaviour, behaviour_for, dial_target
from fsrouter.sim.record import AgentLeg, AppRun, SwitchRecord
from fsrouter.sim.scripts import CallerScript
from fsrouter.sim.wire import Headers

log = structlog.get_logger(__name__)
Listener = Callable[[Headers, dict[str, str], "str | None"], None]
EXEC = ("switch_core_session.c", "switch_core_session_exec", 2949)
EXEC_DONE = ("switch_core_session.c", "switch_core_session_exec", 2972)
STATE = ("switch_channel.c", "switch_channel_perform_set_running_state", 2409)

MIRRORED_VARS = ("current_application_data", "current_application", "playback_last_offset_pos",
                 "playback_seconds", "playback_ms", "playback_samples",
                 "current_application_response")


class Simulator:
    """A FreeSWITCH stand-in. See fsrouter/sim/__init__.py for the public entry points."""

    def __init__(self, speed: float = 1000.0, storage_dir: str | None = None,
                 password: str = "ClueCon", faults: Faults | None = None) -> None:
        self.clock = Clock(speed)
        self.core = Core(self.clock)
        self.channels: dict[str, Channel] = {}
        self.loopback_peer: dict[str, Channel] = {}
        self.listeners: list[Listener] = []  # inbound event-socket clients: every event
        # Outbound (per-call) sockets only get their own channel's events: indexed by uuid
        # so that thousands of calls do not each look at every event.
        self.call_sockets: dict[str, Listener] = {}
        self.fifos = Fifos()
        self.phones: dict[str, str] = {}
        self.records: dict[str, SwitchRecord] = {}
        self.leg_records: dict[str, SwitchRecord] = {}  # agent leg uuid -> caller's record
        # core_uuid: as on the real switch (its events' Core-UUID; fsrouter.switches).
        self.globals: dict[str, str] = {"domain": "fsrouter.test",
                                        "core_uuid": self.core.core_uuid}
        self.faults = faults or Faults()
        self.password = password
        self.storage_dir = storage_dir or tempfile.mkdtemp(prefix="fsr-sim-")
        self.file_ms = 1000
        self.known_files: set[str] | None = None
        self.voicemail_greetings: dict[str, str] = {}
        self.voicemail_max_ms = 5000
        self.voicemail_hook: Callable[[dict[str, str]], None] | None = None
        self.session_count = 0
        self.inbound: InboundServer | None = None  # set by start_inbound()
        # The shipped public dialplan sets app_disable_expand_variables=true; tests of the
        # injection recorder turn this off to see what an unhardened switch would expand.
        self.dialplan_disables_expansion = True
        # Benchmarks set this to time a call's steps: (caller channel uuid, what, detail) with
        # what = socket_open (the switch starts connecting to the daemon), command (one
        # received, detail "sendmsg answer" etc.) or socket_closed. None costs nothing.
        self.on_mark: Callable[[str, str, str], None] | None = None

    # bus --------------------------------------------------------------------------
    def publish(self, headers: Headers, body: str | None = None) -> None:
        head = dict(headers)
        for listener in list(self.listeners):
            listener(headers, head, body)
        for key in {head.get("Unique-ID"), head.get("Job-Owner-UUID")}:
            own = self.call_sockets.get(key or "")
            if own is not None:
                own(headers, head, body)

    def fire(self, chan: Channel, name: str, where: tuple[str, str, int],
             extra: Headers | None = None, subclass: str = "") -> None:
        self.publish(chan.event(name, where, extra, subclass))

    def fire_dtmf(self, chan: Channel, digit: str) -> None:
        chan.digits_dialed += digit
        head = chan.core.base("DTMF", "switch_channel.c", "switch_channel_dequeue_dtmf", 678)
        head += chan.basic_headers()
        head += [("DTMF-Digit", digit), ("DTMF-Duration", "2000"), ("DTMF-Source", "UNKNOWN")]
        self.publish(head)

    def fire_fifo(self, chan: Channel, name: str, action: str, extra: Headers | None = None,
                  line: int = 2743) -> None:
        lines = {"abort": 2866, "timeout": 2866, "bridge-caller-start": 3403,
                 "bridge-caller-stop": 3499}
        where = ("mod_fifo.c", "fifo_function", lines.get(action, line))
        self.fire(chan, "CUSTOM", where, [("FIFO-Name", name), ("FIFO-Action", action)]
                  + (extra or []), subclass="fifo::info")

    def set_state(self, chan: Channel, state: str) -> None:
        chan.state = state
        self.publish(chan.core.base("CHANNEL_STATE", *STATE) + chan.basic_headers())

    def step(self, chan: Channel, step: str) -> None:
        on_step(self, chan, step)

    def place_call(self, target: tuple[str, int], number: str, caller_number: str,
                   caller_name: str = "", script: CallerScript | None = None) -> SwitchRecord:
        return place_call_on(self, target, number, caller_number, caller_name, script)

    # inbound event socket -----------------------------------------------------------
    def start_inbound(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve the inbound event socket (auth with ``self.password``); returns the port."""
        if self.inbound is not None:
            raise RuntimeError("the inbound event socket is already running")
        self.inbound = InboundServer(self, host, port)
        self.inbound.start()
        return self.inbound.port

    def stop_inbound(self) -> None:
        """Drop every event-socket client and stop listening (calls keep running)."""
        if self.inbound is not None:
            self.inbound.stop()
            self.inbound = None

    def restart_inbound(self, down_s: float = 0.0) -> int:
        """Fault: the event socket goes away for ``down_s`` real seconds, same port after."""
        if self.inbound is None:
            raise RuntimeError("the inbound event socket is not running")
        host, port = self.inbound.host, self.inbound.port
        self.stop_inbound()
        self.faults.fired.append("inbound_restart")
        gevent.sleep(down_s)
        return self.start_inbound(host, port)

    def agent_outbound_call(self, agent_ext: str, customer_number: str, caller_id_number: str,
                            variables: dict[str, str] | None = None,
                            talk_ms: int = 1500) -> str:
        """An agent's own call to a customer (2-way VoIP); returns the originate result.

        Produces on the event socket what outbound_agent_call.jsonl shows: both loopback legs
        with ``origination_caller_id_number`` and the custom variables (e.g. ``fsr_agent``).
        The customer is a scripted phone ``answer-<customer_number>`` in ``agents``.
        """
        block = {"origination_caller_id_number": caller_id_number, **(variables or {}),
                 "agent_talk_ms": str(talk_ms), "fsr_agent_ext": agent_ext}
        req = OriginateRequest(variables=block, dial=f"loopback/answer-{customer_number}/agents",
                               app="playback", app_arg=f"silence_stream://{talk_ms}")
        return self.originate(req)

    # records ----------------------------------------------------------------------
    def record_for(self, chan: Channel) -> SwitchRecord | None:
        return self.records.get(chan.uuid)

    def note_prompt(self, chan: Channel, path: str) -> None:
        rec = self.record_for(chan)
        if rec is not None:
            rec.prompts.append(path)

    def missing_file(self, path: str) -> bool:
        if self.known_files is None:
            return False
        # file_string://a!b plays each part: like the switch, a missing part is an error.
        parts = path.removeprefix("file_string://").split("!")
        return any(part not in self.known_files and not os.path.exists(part)
                   and not part.startswith(("tone_stream://", "silence_stream://"))
                   for part in parts)

    # channel life -----------------------------------------------------------------
    def new_channel(self, profile: Profile, variables: list[tuple[str, str]]) -> Channel:
        chan = Channel(self.core, profile, variables)
        self.channels[chan.uuid] = chan
        self.session_count += 1
        return chan

    def answer(self, chan: Channel) -> None:
        if chan.answer_state == "answered" or not chan.alive:
            return
        peer = chan.loop_peer
        if peer is not None and chan.get_var("loopback_leg") == "B" and peer.alive:
            self.answer(peer)  # mod_loopback marks the a-leg answered first
        chan.answer_state = "answered"
        chan.times["answered"] = self.clock.micros()
        self.fire(chan, "CHANNEL_ANSWER", ("switch_channel.c",
                                           "switch_channel_perform_mark_answered", 3848))
        chan.call_state = "ACTIVE"
        chan.set_var("endpoint_disposition", "ANSWER")
        chan.answered.set()
        chan.media.set()

    def pre_answer(self, chan: Channel) -> None:
        if chan.answer_state != "ringing":
            return
        peer = chan.loop_peer
        if peer is not None and chan.get_var("loopback_leg") == "B" and peer.alive:
            self.pre_answer(peer)  # originate_early_media=true: the a-leg gets media too
        chan.answer_state = "early"
        chan.times["progress-media"] = self.clock.micros()
        self.fire(chan, "CHANNEL_PROGRESS_MEDIA", ("switch_channel.c",
                                                   "switch_channel_perform_mark_pre_answered",
                                                   3652))
        chan.call_state = "EARLY"
        chan.media.set()

    def hangup(self, chan: Channel, cause: str = "NORMAL_CLEARING") -> None:
        if not chan.alive:
            return
        partner = chan.other
        if partner is not None and partner.alive:
            # switch_channel_set_variable_partner (switch_channel.c:3430): the bridged leg, or
            # the caller whose bridge rang this leg, learns why it ended.
            partner.set_var("last_bridge_hangup_cause", cause)
        chan.hangup_cause = cause
        chan.answer_state = "hangup"
        chan.times["hangup"] = self.clock.micros()
        self.fire(chan, "CHANNEL_HANGUP", ("switch_channel.c", "switch_channel_perform_hangup",
                                           3447))
        chan.hungup.set()
        chan.dtmf.put(None)
        rec = self.record_for(chan) or self.leg_records.get(chan.uuid)
        if rec is not None:
            rec.hangup_causes[chan.uuid] = cause
            for leg in rec.agent_legs:
                if leg.uuid == chan.uuid:
                    leg.hangup_cause = cause
        bridged = chan.bridge_peer
        if bridged is not None and bridged.alive:
            gevent.spawn(self.hangup, bridged, "NORMAL_CLEARING")
        peer = chan.loop_peer
        if peer is not None and peer.alive:
            gevent.spawn(self._hangup_peer, peer, cause)

    def _hangup_peer(self, peer: Channel, cause: str) -> None:
        self.hangup(peer, cause)
        if peer.shadow:
            # The far leg of a scripted phone reports the application its peer ran.
            other = peer.loop_peer
            for name in MIRRORED_VARS:
                if other is not None and other.get_var(name):
                    peer.set_var(name, other.get_var(name))
            if other is not None and hasattr(other, "last_app"):
                peer.last_app = other.last_app  # type: ignore[attr-defined]
            self.finish(peer)

    def finish(self, chan: Channel) -> None:
        """CS_HANGUP -> CS_REPORTING -> CHANNEL_HANGUP_COMPLETE, as the session thread does."""
        if chan.finished:
            return
        chan.finished = True
        self.set_state(chan, "CS_HANGUP")
        chan.call_state = "HANGUP"
        self.set_state(chan, "CS_REPORTING")
        cdr.add_vars(chan, self.clock.now())
        self.fire(chan, "CHANNEL_HANGUP_COMPLETE", ("switch_core_state_machine.c",
                                                    "switch_core_session_reporting_state", 943))
        rec = self.record_for(chan)
        if rec is not None:
            rec.ended_at = self.clock.now()

    def send_dtmf(self, chan: Channel, digit: str) -> None:
        if not chan.alive:
            return
        if chan.app_depth > 0:
            chan.dtmf.put(digit)
        else:
            self.fire_dtmf(chan, digit)  # the park loop dequeues and drops it

    def transfer(self, chan: Channel, target: str) -> None:
        chan.set_var("transfer_target", target)
        self.hangup(chan, "NORMAL_CLEARING")

    # applications -----------------------------------------------------------------
    def run_app(self, chan: Channel, name: str, raw_arg: str, app_uuid: str = "") -> None:
        """switch_core_session_exec: expand, EXECUTE, run, EXECUTE_COMPLETE."""
        if not chan.alive:
            # A message queued to a channel that has hung up is never run (no events at all),
            # as the real switch shows for a hangup sent after the caller left voicemail.
            return
        if chan.get_var("app_disable_expand_variables") == "true":
            arg, injected = raw_arg, False
        else:
            arg, injected = expand(raw_arg, lambda v: chan.get_var(v, self.globals.get(v, "")))
        rec = self.record_for(chan)
        if rec is not None:
            rec.apps.append(AppRun(name, arg, raw_arg, injected))
            if injected:
                log.warning("sim.injection", app=name, uuid=chan.uuid)
        func = APPS.get(name)
        if func is None:
            # Invalid Application: the switch logs it and hangs the channel up.
            self.hangup(chan, "DESTINATION_OUT_OF_ORDER")
            return
        app_uuid = app_uuid or new_uuid()
        chan.set_var("current_loop", "1")
        chan.set_var("total_loops", "1")
        chan.set_var("current_application", name)
        chan.set_var("current_application_data", arg)
        chan.set_var("current_application_response", None)  # switch_core_session.c:2947
        extra = [("Application", name)] + ([("Application-Data", arg)] if arg else [])
        self.fire(chan, "CHANNEL_EXECUTE", EXEC, extra + [("Application-UUID", app_uuid)])
        chan.set_var("current_application_data", arg)
        chan.set_var("current_application", name)
        chan.app_depth += 1
        try:
            response = func(AppContext(self, chan, name, arg)) or NONE
        finally:
            chan.app_depth -= 1
        current = gevent.getcurrent()
        inner = [run for run in chan.nested if run is not current]
        if inner:
            gevent.joinall(inner)  # what a uuid_broadcast started inside this app ends first
        chan.last_app = (name, arg)  # type: ignore[attr-defined]
        if response != NONE:
            chan.set_var("current_application_response", response)
        # The header is the variable: an application run inside this one (a uuid_broadcast
        # into park) leaves its response here too, as on the real switch.
        response = chan.get_var("current_application_response", NONE)
        self.fire(chan, "CHANNEL_EXECUTE_COMPLETE", EXEC_DONE,
                  extra + [("Application-Response", response), ("Application-UUID", app_uuid)])

    # originate / phones --------------------------------------------------------------
    def register_phone(self, dial: str, behaviour: str) -> None:
        """Map ``user/1001`` or ``sofia/...`` to a scripted-phone name like ``answer-500-bob``."""
        self.phones[dial] = behaviour

    def _behaviour(self, dial: str) -> tuple[PhoneBehaviour | None, str, str]:
        endpoint, name, context = dial_target(dial)
        if endpoint == "loopback":
            return behaviour_for(name), name, context
        mapped = self.phones.get(dial)
        if mapped is None:
            cause = "USER_NOT_REGISTERED" if endpoint == "user" else "UNALLOCATED_NUMBER"
            return PhoneBehaviour("gone", 0, ident=cause), name, context
        return behaviour_for(mapped), name, "agents"

    def originate(self, req: OriginateRequest, owner: str = "") -> str:
        """Blocking originate; returns ``+OK <uuid>`` or ``-ERR <CAUSE>``."""
        beh, name, context = self._behaviour(req.dial)
        v = req.variables
        leg_uuid = v.get("origination_uuid") or new_uuid()
        req.leg_uuid = leg_uuid
        if dial_target(req.dial)[0] == "loopback" and context == "public":
            return loopback.dial_public(self, req, leg_uuid, name, owner)
        default_name, default_num = req.caller_id or ("FreeSWITCH", "0000000000")
        cid_num = v.get("origination_caller_id_number", default_num)
        cid_name = v.get("origination_caller_id_name", default_name)
        rec = self._record_for_originate(v, owner)
        leg = AgentLeg(req.dial, cid_num, cid_name, "", leg_uuid)
        if rec is not None:
            rec.agent_legs.append(leg)
            self.leg_records[leg_uuid] = rec
            caller = self.channels.get(rec.caller_uuid)
            if caller is not None:
                gevent.spawn(self.step, caller, "agent_ringing")
        result = self._dial(beh, req, leg_uuid, name, context, cid_num, cid_name)
        leg.result = result
        return result

    def _record_for_originate(self, v: dict[str, str], owner: str) -> SwitchRecord | None:
        return self.records.get(v.get("fifo_bridge_uuid", "")) or self.records.get(owner)

    def _dial(self, beh: PhoneBehaviour | None, req: OriginateRequest, leg_uuid: str,
              name: str, context: str, cid_num: str, cid_name: str) -> str:
        if beh is None:
            return "-ERR NO_ROUTE_DESTINATION"
        if beh.kind == "gone" and beh.ident in ("USER_NOT_REGISTERED", "UNALLOCATED_NUMBER"):
            return f"-ERR {beh.ident}"
        timeout = _int(req.variables.get("leg_timeout")) or _int(
            req.variables.get("originate_timeout")) or 60
        origin = self.channels.get(req.origin)
        chan, shadow = loopback.make_pair(self, name, context, req.variables, leg_uuid,
                                          new_uuid(), origin=origin, caller_id=req.caller_id)
        shadow.shadow = True
        if origin is not None:
            # Measured on 1.11.1: a caller not yet answered gets early media as soon as its
            # bridge has created the loopback leg, ringback set or not (busy phones too).
            self.pre_answer(origin)
        began = self.clock.now()
        cause = self._ring(chan, beh, timeout, origin)
        if cause:
            if chan.alive:
                self.hangup(chan, cause)
            gevent.spawn(self.finish, chan)
            return f"-ERR {cause}"
        self.answer(chan)
        shadow.set_var("DP_MATCH", f"ARRAY::{name}|:{name.partition('-')[2]}")
        shadow.set_var("call_uuid", shadow.uuid)
        shadow.set_var("current_application", "answer")
        self.answer(shadow)
        if origin is None:
            # An originate without a caller flips the answered leg's caller ID; a leg a
            # ``bridge`` placed keeps the caller's (measured on 1.11.1).
            chan.flip_caller_id()
        talk_ms = _int(chan.get_var("agent_talk_ms")) or _int(chan.get_var("talk_ms"))
        if beh.kind in ("hangup", "press") or talk_ms:
            gevent.spawn(self._phone_actions, chan, beh, talk_ms)
        if req.variables.get("group_confirm_key") and not self._confirm(chan, req.variables):
            # Measured on 1.11.1: a leg that answered but did not press the key is not hung up;
            # originate waits for its timeout (NO_ANSWER) unless the phone hangs up first.
            left = max(0.0, timeout - (self.clock.now() - began))
            phone_hung_up = chan.hungup.wait(self.clock.real(left))
            cause = chan.hangup_cause if phone_hung_up else "NO_ANSWER"
            if chan.alive:
                self.hangup(chan, cause)
            gevent.spawn(self.finish, chan)
            return f"-ERR {cause}"
        gevent.spawn(self._run_leg, chan, req)
        return f"+OK {leg_uuid}"

    def _confirm(self, chan: Channel, variables: dict[str, str]) -> bool:
        """group_confirm_key: the answered leg must press the key after the prompt."""
        ctx = AppContext(self, chan, "group_confirm", "")
        key = variables["group_confirm_key"]
        wait_ms = _int(variables.get("group_confirm_read_timeout")) or 5000
        chan.app_depth += 1  # digits now go to our queue, not straight to a DTMF event
        try:
            _, digit = ctx.play(variables.get("group_confirm_file", "silence_stream://10"),
                                "0123456789*#")
            digit = digit or ctx.next_digit(wait_ms) or ""
        finally:
            chan.app_depth -= 1
        return chan.alive and digit == key

    def _ring(self, chan: Channel, beh: PhoneBehaviour, timeout_s: int,
              origin: Channel | None = None) -> str:
        """Ring; '' when answered, else the hang-up cause."""
        if beh.kind in ("busy", "gone"):
            return self._ended(chan, origin, beh.ring_ms / 1000) or (
                "USER_BUSY" if beh.kind == "busy" else "UNALLOCATED_NUMBER")
        ring_s = timeout_s + 1 if beh.kind == "noanswer" else beh.ring_ms / 1000
        if ring_s > timeout_s:
            return self._ended(chan, origin, timeout_s) or "NO_ANSWER"
        return self._ended(chan, origin, ring_s)

    def _ended(self, chan: Channel, origin: Channel | None, seconds: float) -> str:
        """Wait up to ``seconds`` for the ringing leg to end: its hang-up cause, or
        ORIGINATOR_CANCEL when the caller whose ``bridge`` rings it hung up first; '' if
        neither happened."""
        waits = [chan.hungup] + ([origin.hungup] if origin is not None else [])
        gevent.wait(waits, count=1, timeout=self.clock.real(seconds))
        if not chan.alive:
            return chan.hangup_cause
        if origin is not None and not origin.alive:
            return "ORIGINATOR_CANCEL"
        return ""

    def _run_leg(self, chan: Channel, req: OriginateRequest) -> None:
        if req.app:
            self.run_app(chan, req.app, req.app_arg)
        else:
            chan.hungup.wait()
        if chan.alive and not chan.other:
            chan.hungup.wait()
        self.finish(chan)

    def _phone_actions(self, chan: Channel, beh: PhoneBehaviour, talk_ms: int) -> None:
        if beh.kind == "press":
            self.clock.sleep(beh.after_ms / 1000)
            self.send_dtmf(chan, beh.digit)
        if beh.kind == "hangup" or talk_ms:
            # The phone (b-leg) answers ~20 ms after the a-leg and counts from there.
            wait_ms = (beh.after_ms if beh.kind == "hangup" else talk_ms) + 20
            if not chan.hungup.wait(self.clock.real(wait_ms / 1000)):
                self.hangup(chan, "NORMAL_CLEARING")

    # bridging ---------------------------------------------------------------------------
    def fifo_bridge(self, caller: Channel, agent: Channel, fifo_name: str) -> None:
        if not caller.alive:
            self.hangup(agent, "NORMAL_CLEARING")
            return
        now = self.clock.micros()
        caller.other, caller.other_type = agent, "originator"
        agent.other, agent.other_type = caller, "originatee"
        caller.bridge_peer, agent.bridge_peer = agent, caller
        caller.set_var("fifo_status", "TALKING")
        caller.set_var("fifo_target", agent.uuid)
        caller.set_var("fifo_role", "caller")
        self.fire_fifo(caller, fifo_name, "bridge-caller-start")
        caller.times["bridged"] = now
        self.set_state(caller, "CS_CONSUME_MEDIA")
        self.set_state(caller, "CS_EXCHANGE_MEDIA")
        for key, value in (("fifo_initiated_bridge", "true"), ("fifo_bridge_role", "caller"),
                           ("last_bridge_to", agent.uuid), ("bridge_channel", agent.name),
                           ("bridge_uuid", agent.uuid), ("signal_bond", agent.uuid)):
            caller.set_var(key, value)
        caller.fifo_name = fifo_name  # type: ignore[attr-defined]
        rec = self.record_for(caller)
        if rec is not None:
            rec.bridged_to.append(agent.uuid)
        self.fire_bridge(agent, caller, "CHANNEL_BRIDGE")
        self.step(caller, "bridged")
        gevent.wait([caller.hungup, agent.hungup], count=1)
        self.fire_bridge(agent, caller, "CHANNEL_UNBRIDGE")
        for leg in (caller, agent):
            if leg.alive:
                self.hangup(leg, "NORMAL_CLEARING")

    def fire_bridge(self, a: Channel, b: Channel, name: str) -> None:
        """CHANNEL_(UN)BRIDGE on the originating leg: Bridge-A/B-Unique-ID before its data."""
        head = a.event(name, ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge",
                              1694 if name == "CHANNEL_BRIDGE" else 1811))
        at = len(a.core.base(name, "", "", 0))
        head[at:at] = [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]
        self.publish(head)

    def direct_bridge(self, a: Channel, b: Channel) -> None:
        a.other, a.other_type, b.other, b.other_type = b, "originatee", a, "originator"
        a.bridge_peer, b.bridge_peer = b, a
        rec = self.record_for(a) or self.record_for(b)
        if rec is not None:
            rec.bridged_to.append(b.uuid if self.record_for(a) else a.uuid)
        hold = [leg for leg in (a, b) if getattr(leg, "fifo_entry", None) is None]
        for leg in hold:
            leg.dtmf.put(None)

    def bridge_app(self, ctx: AppContext) -> None:
        bridge.run(self, ctx)

    def voicemail_left(self, chan: Channel, box: str, domain: str, path: str, ms: int) -> None:
        rec = self.record_for(chan)
        if rec is not None:
            rec.voicemails.append(path)
        head = self.core.base("CUSTOM", "mod_voicemail.c", "deliver_vm", 2296)
        head.insert(0, ("Event-Subclass", "vm::maintenance"))
        info = {"VM-Action": "leave-message", "VM-User": box, "VM-Domain": domain,
                "VM-Caller-ID-Name": chan.profile.caller_id_name,
                "VM-Caller-ID-Number": chan.profile.caller_id_number, "VM-File-Path": path,
                "VM-Flags": "", "VM-Folder": "inbox", "VM-UUID": chan.uuid,
                "VM-Message-Len": str(ms // 1000), "VM-Timestamp": str(int(self.clock.now()))}
        self.publish(head + list(info.items()))
        if self.voicemail_hook is not None:
            self.voicemail_hook(info)


def place_call_on(sim: Simulator, target: tuple[str, int], number: str, caller_number: str,
                  caller_name: str, script: CallerScript | None) -> SwitchRecord:
    """A loopback caller into ``public`` whose socket goes to ``target`` (not the global)."""
    from fsrouter.sim.originate import OriginateRequest

    variables = {"origination_uuid": new_uuid(), "origination_caller_id_number": caller_number}
    if caller_name:
        variables["origination_caller_id_name"] = caller_name
    a, chan = loopback.make_pair(sim, number, "public", variables, variables["origination_uuid"],
                                 new_uuid())
    rec = SwitchRecord(chan.uuid, number, caller_number, caller_name,
                       started_at=sim.clock.now())
    sim.records[chan.uuid] = rec
    chan.script = script or CallerScript()  # type: ignore[attr-defined]
    host, port = target
    gevent.spawn(loopback.run_public, sim, chan, f"{host}:{port}")
    park = OriginateRequest(variables={}, dial=f"loopback/{number}/public", app="park")
    gevent.spawn(loopback.await_answer, sim, a, park, 3600)
    gevent.spawn(_caller_timeline, sim, chan)
    return rec


def _caller_timeline(sim: Simulator, chan: Channel) -> None:
    script: CallerScript = chan.script  # type: ignore[attr-defined]
    for press in script.presses:
        if press.after == "start":
            gevent.spawn(_press_later, sim, chan, press)
    if script.hangup_at_s is not None:
        if not chan.hungup.wait(sim.clock.real(script.hangup_at_s)):
            sim.hangup(chan, "NORMAL_CLEARING")


def _press_later(sim: Simulator, chan: Channel, press: object) -> None:
    sim.clock.sleep(press.at_s)  # type: ignore[attr-defined]
    for digit in press.digits:  # type: ignore[attr-defined]
        sim.send_dtmf(chan, digit)


def on_step(sim: Simulator, chan: Channel, step: str) -> None:
    """A caller reached ``step``: fire scripted presses, hang-ups and faults tied to it."""
    script = getattr(chan, "script", None)
    if not step or script is None:
        return
    rec = sim.record_for(chan)
    if sim.faults.drop_outbound_at == step and rec is not None:
        rec.faults.append("drop_outbound:" + step)
        sim.faults.fired.append(step)
        chan.session.abort()  # type: ignore[attr-defined]
    menu = "menu" if step == "in_menu" else step
    for press in script.presses:
        if press.after == menu:
            gevent.spawn(_press_later, sim, chan, press)
    if script.hangup_in == step:
        gevent.spawn_later(sim.clock.real(script.hangup_delay_s), sim.hangup, chan,
                           "NORMAL_CLEARING")


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0
