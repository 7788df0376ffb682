"""The call session layer: one greenlet per call, turning routing decisions into ESL commands.

``handle_call`` is what the outbound listener runs for each call FreeSWITCH hands over.
"""

from __future__ import annotations

from typing import Any

import structlog

from fsrouter.logs import bind_call

log = structlog.get_logger(__name__)


def handle_call(session: Any) -> None:
    """Handle one call on its own greenlet.

    Call routing (menus, queues, escalation, inbound routes) is not wired in yet, so the call is
    handed back: closing the socket makes the dialplan continue with its fallback actions
    (``freeswitch_conf/dialplan/fsrouter.xml`` ends with a message and a hang-up), so the caller
    never waits on silence.
    """
    call_log = bind_call(log, call_uuid=session.uuid)
    call_log.warning(
        "call.not_routed",
        reason="call routing is not available in this build; the dialplan fallback runs",
        destination=session.channel.get("Caller-Destination-Number"),
    )
