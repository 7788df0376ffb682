"""The call session layer: one greenlet per call, turning routing decisions into ESL commands.

:class:`CallHandler` is what the outbound listener runs for each call FreeSWITCH hands over:
it finds the number's route and runs that flow (``call_routing``, ``inbound``) to the end.
"""

from __future__ import annotations

from typing import Any

import structlog

from fsrouter.calls import call_routing
from fsrouter.calls.call import Call
from fsrouter.calls.services import CallServices
from fsrouter.config import normalise_number
from fsrouter.config.schema import CallRoutingNumber, UnassignedNumber
from fsrouter.store import queries

log = structlog.get_logger(__name__)

class CallHandler:
    """Routes each call to its flow; never lets an error leave a caller in silence."""

    def __init__(self, services: CallServices) -> None:
        self.services = services

    def __call__(self, session: Any) -> None:
        call = Call(session, self.services)
        try:
            self._route(call)
        except Exception:
            call.log.exception("call.failed")
            call.hangup("NORMAL_TEMPORARY_FAILURE")

    def _route(self, call: Call) -> None:
        config = self.services.config
        try:
            number = normalise_number(call.destination, config.defaults.country)
        except ValueError:
            number = ""
        entry = config.number_by_e164(number) if number else None
        if isinstance(entry, CallRoutingNumber):
            call_routing.run(call, entry)
            return
        if isinstance(entry, UnassignedNumber):
            not_in_service(call, number, entry.behaviour, "number is unassigned")
            return
        reason = ("number not served" if entry is None
                  else f"route type {entry.type} is not handled by this build")
        not_in_service(call, number, "sit", reason)


def not_in_service(call: Call, number: str, behaviour: str, reason: str) -> None:
    """The disconnected-line tone (SIT) then hang-up, or a 404 before answer."""
    call.log.warning("call.unassigned", destination=call.destination[:40], reason=reason)
    now = call.services.now
    if number:
        queries.create_call_record(call.uuid, number, "unassigned", call.caller_number,
                                   call.caller_name, now(), host=call.services.host)
    try:
        if behaviour == "404":
            call.run("respond", "404")
        else:
            call.run("pre_answer")
            call.run("playback", call.services.config.tone("sit"))
        call.hangup("UNALLOCATED_NUMBER")
    finally:
        if number:
            queries.finish_call(call.uuid, "unassigned", call.hangup_cause, now())
