"""Identifiers the switch sends, checked where they enter: a channel UUID is a UUID.

fsrouter puts channel UUIDs it reads from the switch into commands (``uuid_kill <uuid>``,
``uuid_getvar``, ``uuid_recv_dtmf``, ``uuid_dump``, ``sendmsg <uuid>``) and, before issue 22,
into a file name (the voicemail recording). Whoever speaks on the socket chooses them: a peer
that answered ``connect`` with ``Unique-ID: abe%2F..%2F..%2F..%2Ftmp%2Fx`` had the daemon
delete ``/tmp/x.wav``. So every channel identifier is checked at the protocol boundary:

- the ``Unique-ID`` of the ``connect`` reply (the call socket's own channel): anything but a
  UUID ends the connection with a logged reason (:mod:`fsrouter.esl.outbound`);
- the channel identifiers of every event (:data:`CHANNEL_ID_HEADERS`): an event carrying a
  bad one is dropped with a logged reason (:mod:`fsrouter.esl.connection`). Dropped, not the
  connection ended: any event-socket client can ``sendevent`` such an event (the stall test
  floods ``Unique-ID: fsr-flood``) and every listener subscribed to it would otherwise be cut
  off, the daemon's event connection over and over. Such an event is never about one of our
  channels (ours have UUIDs), so nothing it could have told us is lost.

``Job-UUID`` and ``Application-UUID`` are not checked: they are only looked up among the
uuid4s we chose ourselves (``bgapi`` / ``sendmsg`` ``Event-UUID``), never sent back.

What is accepted: 8-4-4-4-12 hex digits, either case. FreeSWITCH makes them with
``switch_uuid_format`` (lower case: every trace in /work/shared/esl-traces, e.g.
``1733efbb-1105-4fc4-a8af-6c950f354d64``). A dialplan or originate string may set
``origination_uuid`` to any text, and the switch then uses it as the channel's Unique-ID;
fsrouter does not serve such channels (set ``origination_uuid`` to a UUID, as fsrouter's own
originates do). Upper case is accepted and kept as sent: the switch finds a channel by the
exact string, and hex digits of either case are inert in a path or a command.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fsrouter.esl.protocol import ProtocolError

UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")

# The event headers naming a channel that the daemon reads (calls/call.py, calls/agents.py):
# what could reach a command. Each costs a look through the event (~2 us for an absent one
# in a 3 KB event), so the list holds only those. (recovery.py reads Other-Leg-Unique-ID and
# variable_signal_bond from ``uuid_dump`` replies, and checks them there.)
CHANNEL_ID_HEADERS = (
    "Unique-ID",
    "Other-Leg-Unique-ID",
    "variable_fifo_target",
    "variable_originating_leg_uuid",
)


class BadIdentifier(ProtocolError):
    """The switch named a channel with something that is not a UUID."""


def is_uuid(value: object) -> bool:
    """True for 8-4-4-4-12 hex digits (either case), nothing around them."""
    return isinstance(value, str) and UUID.fullmatch(value) is not None


def check_uuid(value: str | None, what: str) -> str:
    """``value`` when it is a UUID; else :class:`BadIdentifier` naming ``what``."""
    if value is None or not is_uuid(value):
        shown = "nothing" if value is None else repr(value[:80])
        raise BadIdentifier(f"{what} is not a UUID: {shown}")
    return value


def bad_identifier(get: Callable[[str], str | None]) -> str | None:
    """The first channel-identifier header whose value is no UUID (``get`` reads a header:
    ``Event.get`` or a dict's ``get``), as ``"Name: 'value'"``; None when all are fine."""
    for name in CHANNEL_ID_HEADERS:
        value = get(name)
        if value is not None and value != "" and not is_uuid(value):
            return f"{name}: {value[:80]!r}"
    return None
