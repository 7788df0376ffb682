"""The call session layer: one greenlet per call, turning routing decisions into ESL commands.

:class:`CallHandler` is what the outbound listener runs for each call FreeSWITCH hands over:
it finds the number's route and runs that flow (``call_routing``, ``inbound``) to the end.
"""

from __future__ import annotations

from typing import Any

import structlog

from fsrouter.calls import features, inbound
from fsrouter.calls.call import Call
from fsrouter.calls.services import CallServices
from fsrouter.config import normalise_number

log = structlog.get_logger(__name__)

class CallHandler:
    """Routes each call to its flow; never lets an error leave a caller in silence."""

    def __init__(self, services: CallServices) -> None:
        self.services = services

    def __call__(self, session: Any) -> None:
        call = Call(session, self.services)
        call.metrics.call_started()
        try:
            self._route(call)
        except Exception:
            call.outcome = "failed"
            call.log.exception("call.failed")
            call.hangup("NORMAL_TEMPORARY_FAILURE")
        finally:
            call.metrics.call_ended(call.number, call.outcome)

    def _route(self, call: Call) -> None:
        config = self.services.config
        action = config.features.action(call.destination)
        if action is not None:
            features.run(call, action)
            return
        try:
            number = normalise_number(call.destination, config.defaults.country)
        except ValueError:
            number = ""
        entry = config.number_by_e164(number) if number else None
        call.number = number
        inbound.run(call, number, entry)
