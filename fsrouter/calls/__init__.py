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
from fsrouter.config.schema import CallRoutingNumber

log = structlog.get_logger(__name__)

SIT = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"


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
        call.log.warning("call.unassigned", destination=call.destination[:40],
                         reason="number not served" if entry is None else
                         f"route type {entry.type} is not handled by this build")
        call.run("pre_answer")
        call.run("playback", config.tone("sit"))
        call.hangup("UNALLOCATED_NUMBER")
