"""How calls end when nobody takes them: busy tone, SIT, a message, a voicemail."""

from __future__ import annotations

from fsrouter.calls.call import Call
from fsrouter.calls.media import finite_tone
from fsrouter.calls.voicemail import leave_voicemail
from fsrouter.config.schema import Fallback
from fsrouter.resilience.journal import Ref

# The busy tone plays this many cycles (~1 s each) before the call ends.
BUSY_LOOPS = 5


def busy_tone(call: Call) -> str:
    """The national busy tone as early media (no answer, no charge), then USER_BUSY."""
    call.run("pre_answer")
    call.run("playback", finite_tone(call.services.config.tone("busy"), BUSY_LOOPS))
    # Our cause, not the agent's: mod_sofia otherwise answers a SIP caller with the SIP code
    # the agent's phone gave the bridge (480, 487, 503 ...) instead of 486 (1.11.1, measured).
    call.run("set", "sip_ignore_remote_cause=true")
    call.hangup("USER_BUSY")
    return "busy_tone"


def fallback(call: Call, spec: Fallback, incident_id: int | Ref | None = None) -> str:
    """A caller nobody took: a voicemail (linked to the incident), a message, or a short busy
    tone; then the call ends. Returns what the caller got."""
    config = call.services.config
    if spec.kind == "voicemail" and spec.target:
        got = leave_voicemail(call, spec.target, incident_id=incident_id)
    elif spec.kind == "message" and spec.target:
        call.run("playback", spec.target)
        got = "message"
    else:
        call.run("playback", finite_tone(config.tone("busy"), 3))
        got = "busy_tone"
    call.hangup()
    return got


def not_in_service(call: Call, number: str, behaviour: str, reason: str) -> None:
    """The disconnected-line tone (SIT) then hang-up, or a 404 before answer."""
    call.log.warning("call.unassigned", destination=call.destination[:40], reason=reason)
    if number:
        call.open_record(number, "unassigned")
    try:
        if behaviour == "404":
            call.run("respond", "404")
        else:
            call.run("pre_answer")
            call.run("playback", call.services.config.tone("sit"))
        call.hangup("UNALLOCATED_NUMBER")
    finally:
        call.outcome = "unassigned"
        if number:
            call.close_record("unassigned")
