"""mod_dptools ``bridge``: dial from a caller, bridge the leg that answers, and what the caller
is left with afterwards.

Measured on FreeSWITCH 1.11.1 (loopback legs into the test ``agents`` context) and read in
its source (mod_dptools.c audio_bridge_function, switch_ivr_originate.c,
switch_ivr_bridge.c, switch_channel.c switch_channel_handle_cause):

- The dialled leg shows the caller's caller ID (``effective_caller_id_*`` when set), unless
  the dial string's ``{origination_caller_id_*}`` says otherwise; no ``origination_*`` variable
  is added. Its a-leg names the caller in ``Other-Type: originator`` from CHANNEL_CREATE on.
- A caller not yet answered gets early media at once (CHANNEL_PROGRESS_MEDIA), and is answered
  when the leg answers.
- Failure: the caller gets ``originate_disposition`` = the cause, ``DIALSTATUS`` (BUSY,
  NOANSWER, CANCEL, ... else the cause), ``originate_failed_cause``, ``originated_legs`` and
  ``originate_causes`` (``<leg uuid>;<cause>``) and, from the leg's hang-up,
  ``last_bridge_hangup_cause``. Then switch_channel_handle_cause: the caller stays up with
  ``continue_on_fail=true`` (or a list naming the cause), or, with neither
  ``continue_on_fail`` nor ``failure_causes`` set, on NO_ANSWER, NO_USER_RESPONSE and
  ORIGINATOR_CANCEL; otherwise it is hung up with the cause, before the bridge's
  CHANNEL_EXECUTE_COMPLETE (which then carries ``Hangup-Cause``).
- Success: ``originate_disposition``/``DIALSTATUS`` = SUCCESS, ``originate_causes`` =
  ``<leg uuid>;NONE``, the caller takes the leg's callee ID, then CHANNEL_BRIDGE with
  ``last_bridge_to``, ``bridge_channel``, ``bridge_uuid`` and ``signal_bond``. The caller's
  hang-up ends the leg. When the leg hangs up, the caller gets ``last_bridge_hangup_cause`` and
  ``bridge_hangup_cause`` (the leg's cause), CHANNEL_UNBRIDGE, and is hung up with that cause
  only if ``hangup_after_bridge`` is true; otherwise its next application runs.

Not simulated: ``transfer_on_fail``, ``campon``, several legs (``,``/``|``) in one bridge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent

from fsrouter.sim.channel import Q850, Channel
from fsrouter.sim.originate import parse_originate

if TYPE_CHECKING:
    from fsrouter.sim.apps import AppContext
    from fsrouter.sim.switch import Simulator

# switch_ivr_originate.c:4065: DIALSTATUS for the causes it names; any other is the cause.
DIALSTATUS = {"ORIGINATOR_CANCEL": "CANCEL", "USER_BUSY": "BUSY", "NO_ANSWER": "NOANSWER",
              "DESTINATION_OUT_OF_ORDER": "INVALIDARGS", "INVALID_PROFILE": "INVALIDARGS",
              "CALL_REJECTED": "DONTCALL"}
# With neither continue_on_fail nor failure_causes set, these never hang the caller up.
ALWAYS_CONTINUE = ("NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL")
TRUE_WORDS = ("yes", "on", "true", "t", "enabled", "active", "allow")


def run(sim: Simulator, ctx: AppContext) -> None:
    """The ``bridge`` application on ``ctx.chan`` with the dial string ``ctx.arg``."""
    caller = ctx.chan
    req = parse_originate(ctx.arg + " &park()")
    req.app = req.app_arg = ""  # the bridged leg runs no application of its own
    req.origin = caller.uuid
    req.caller_id = caller_id_of(caller)
    result = sim.originate(req, caller.uuid)
    leg = sim.channels.get(req.leg_uuid)
    if leg is not None:
        caller.set_var("originated_legs", f"{leg.uuid};{leg.profile.callee_id_name};"
                                          f"{leg.profile.callee_id_number}")
    ok = result.startswith("+OK") and leg is not None
    if ok and caller.alive:
        answered(sim, caller, leg)
        return
    if ok and leg is not None:  # answered just as the caller hung up
        sim.hangup(leg, "ORIGINATOR_CANCEL")
        result = "-ERR ORIGINATOR_CANCEL"
    failed(sim, caller, result.split()[-1], leg)


def caller_id_of(chan: Channel) -> tuple[str, str]:
    """(name, number) a leg dialled from ``chan`` shows (switch_core_session.c:571)."""
    name = chan.get_var("effective_caller_id_name") or chan.profile.caller_id_name
    number = chan.get_var("effective_caller_id_number") or chan.profile.caller_id_number
    return name, number


def failed(sim: Simulator, caller: Channel, cause: str, leg: Channel | None) -> None:
    """Variables of a failed originate, then switch_channel_handle_cause."""
    caller.set_var("originate_disposition", cause)
    caller.set_var("DIALSTATUS", DIALSTATUS.get(cause, cause))
    if leg is not None:
        caller.set_var("originate_causes", f"{leg.uuid};{leg.hangup_cause or cause}")
    caller.set_var("originate_failed_cause", cause)
    if caller.alive and not continues_after_failure(caller, cause):
        sim.hangup(caller, cause)


def continues_after_failure(chan: Channel, cause: str) -> bool:
    """switch_channel_handle_cause: True when the caller stays up after a failed bridge."""
    if cause == "ATTENDED_TRANSFER":
        return False
    go_on = chan.get_var("continue_on_fail")
    failure_causes = chan.get_var("failure_causes")
    if not go_on and not failure_causes:
        return cause in ALWAYS_CONTINUE
    if failure_causes and not _names(failure_causes, cause):
        return True  # not a cause that counts as a failure
    if go_on:
        return _true(go_on) or _names(go_on, cause)
    return False


def _names(listing: str, cause: str) -> bool:
    """A comma list of cause names or Q.850 numbers that names ``cause`` (any case)."""
    number = str(Q850.get(cause, ""))
    return any(item.strip().upper() in (cause, number) for item in listing.split(","))


def _true(value: str) -> bool:
    """switch_true."""
    text = value.strip().lower()
    return text in TRUE_WORDS or (text.isdigit() and int(text) != 0)


def answered(sim: Simulator, caller: Channel, leg: Channel) -> None:
    """Bridge the caller to the leg that answered until one of them hangs up."""
    caller.set_var("originate_disposition", "SUCCESS")
    caller.set_var("DIALSTATUS", "SUCCESS")
    caller.set_var("originate_causes", f"{leg.uuid};NONE")
    # switch_channel_pass_callee_id: the caller shows whom it reached.
    for attr in ("callee_id_name", "callee_id_number"):
        if getattr(leg.profile, attr):
            setattr(caller.profile, attr, getattr(leg.profile, attr))
    sim.answer(caller)  # no-op when the caller was answered before
    connect(sim, caller, leg)
    sim.fire_bridge(caller, leg, "CHANNEL_BRIDGE")
    gevent.wait([caller.hungup, leg.hungup], count=1)
    cause = leg.hangup_cause if not leg.alive else caller.hangup_cause
    caller.set_var("bridge_hangup_cause", cause or "NORMAL_CLEARING")
    sim.fire_bridge(caller, leg, "CHANNEL_UNBRIDGE")
    caller.bridge_peer = None
    if caller.alive and _true(caller.get_var("hangup_after_bridge")):
        sim.hangup(caller, cause or "NORMAL_CLEARING")


def connect(sim: Simulator, caller: Channel, leg: Channel) -> None:
    """The bridge itself: headers, variables and who takes whom down."""
    caller.other, caller.other_type = leg, "originatee"
    leg.other, leg.other_type = caller, "originator"
    caller.bridge_peer = leg  # the caller hanging up ends the leg, not the other way round
    now = sim.clock.micros()
    caller.times["bridged"] = leg.times["bridged"] = now
    for key, value in (("last_bridge_to", leg.uuid), ("bridge_channel", leg.name),
                       ("bridge_uuid", leg.uuid), ("signal_bond", leg.uuid)):
        caller.set_var(key, value)
    leg.set_var("signal_bond", caller.uuid)
    rec = sim.record_for(caller)
    if rec is not None:
        rec.bridged_to.append(leg.uuid)
