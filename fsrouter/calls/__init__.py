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
from fsrouter.store import StoreError

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
        except StoreError as error:
            # The store refused the call's own record (full, read-only, locked for too long):
            # refuse the call at once (503) so the caller's network can try elsewhere; writes
            # of calls already under way wait for the store (calls.pending).
            call.outcome = "failed"
            call.log.error("call.refused_store_unavailable", error=str(error)[:300])
            call.hangup("NORMAL_TEMPORARY_FAILURE")
        except Exception:
            call.outcome = "failed"
            call.log.exception("call.failed")
            call.hangup("NORMAL_TEMPORARY_FAILURE")
        finally:
            if call.lost.is_set():
                call.release_lost()
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
