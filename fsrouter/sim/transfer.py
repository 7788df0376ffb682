"""``uuid_transfer``: a channel leaves what it is doing and runs the dialplan again.

As switch_ivr_session_transfer (switch_ivr.c) does on 1.11.1, and as measured there (a caller
in ``play_and_get_digits`` or ``fifo ... in`` whose daemon socket had died, then
``uuid_setvar`` + ``uuid_transfer <uuid> <number> XML public``):

- At once, in the API call: ``max_forwards`` (or ``max_session_transfers``) is counted down
  from 70 (at 0 the channel is hung up with EXCHANGE_ROUTING_ERROR and the reply is ``-ERR``),
  ``signal_bond`` is cleared, the caller profile is replaced by a copy with the new
  destination, ``Caller-Dialplan`` as given (``XML``; a new channel shows ``xml``),
  ``Caller-RDNIS`` = the number dialled before, ``Caller-Transfer-Source`` =
  ``<epoch>:<new uuid>:bl_xfer:<ext>/<context>/<dialplan>``, ``Caller-Profile-Index`` 2 and
  its own ``Caller-Profile-Created-Time``; ``transfer_history`` and ``transfer_source`` carry
  the same text. Every later event shows the new profile, even the interrupted application's.
- The channel is no longer ready: the running application ends (its CHANNEL_EXECUTE_COMPLETE
  follows; ``play_and_get_digits`` leaves ``read_result=failure``, ``fifo`` fires its
  ``abort`` with ``fifo_status=ABORTED``), the socket application's park loop ends
  (CHANNEL_UNPARK, CHANNEL_EXECUTE_COMPLETE of ``socket``) and the rest of the extension (the
  fallback tone) is skipped. DTMF not yet read is dropped.
- CHANNEL_STATE CS_ROUTING, then CS_EXECUTE, and the new extension runs from its first action.

The simulator's dialplan is the shipped ``public`` context (fsrouter/sim/loopback.py); a
transfer anywhere else finds no extension and ends the call with NO_ROUTE_DESTINATION. Not
simulated: transferring a bridged channel (its partner would be hung up with BLIND_TRANSFER);
the API refuses it so that no test can rely on it by accident.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fsrouter.sim.channel import Channel, new_uuid
from fsrouter.sim.fifo import _atoi

if TYPE_CHECKING:
    from fsrouter.sim.switch import Simulator

DEFAULT_FORWARDS = 70


def bridged(chan: Channel) -> bool:
    """Is the channel in a bridge (its transfer is not simulated)?"""
    return chan.bridge_peer is not None and chan.bridge_peer.alive


def session_transfer(sim: Simulator, chan: Channel, extension: str, dialplan: str,
                     context: str) -> bool:
    """Send ``chan`` to ``extension`` in ``dialplan``/``context`` (empty: its own); False when
    the transfer limit is reached (the channel is then hung up)."""
    name = "max_session_transfers" if chan.get_var("max_session_transfers") else "max_forwards"
    text = chan.get_var(name)
    forwards = _atoi(text) - 1 if text else DEFAULT_FORWARDS
    if forwards <= 0:
        sim.hangup(chan, "EXCHANGE_ROUTING_ERROR")
        return False
    chan.set_var(name, str(forwards))
    old = chan.profile
    own_dialplan = "" if old.dialplan.lower() == "inline" else old.dialplan
    dialplan = dialplan or chan.get_var("force_transfer_dialplan") or own_dialplan or "XML"
    context = context or chan.get_var("force_transfer_context") or old.context or "default"
    extension = extension or "service"
    source = f"{int(sim.clock.now())}:{new_uuid()}:bl_xfer:{extension}/{context}/{dialplan}"
    chan.profile = dataclasses.replace(
        old, dialplan=dialplan, context=context, destination_number=extension,
        rdnis=old.destination_number, transfer_source=source, index=old.index + 1,
        profile_created_us=sim.clock.micros())
    chan.set_var("signal_bond", None)
    chan.set_var("transfer_history", _push(chan.get_var("transfer_history"), source))
    chan.set_var("transfer_source", source)
    chan.transfer = (extension, dialplan, context)
    chan.breaking.set()
    chan.dtmf.put(None)  # whatever waits for a key returns
    session = getattr(chan, "session", None)
    if session is not None:
        session.inbox.put(None)  # the socket application's park loop ends
    return True


def reroute(sim: Simulator, chan: Channel) -> None:
    """The transferred channel's next trip through the dialplan (in the caller's greenlet,
    to the end of the call)."""
    from fsrouter.sim import loopback

    assert chan.transfer is not None
    extension, dialplan, context = chan.transfer
    chan.transfer = None
    while not chan.dtmf.empty():  # switch_core_session_reset flushes DTMF
        chan.dtmf.get_nowait()
    chan.breaking.clear()
    chan.call_state = "RINGING"
    sim.set_state(chan, "CS_ROUTING")
    chan.call_state = "ACTIVE"
    sim.set_state(chan, "CS_EXECUTE")
    if dialplan.lower() == "xml" and context == "public":
        loopback.run_public(sim, chan, getattr(chan, "public_target", None))
        return
    sim.hangup(chan, "NO_ROUTE_DESTINATION")
    sim.finish(chan)


def _push(stack: str, value: str) -> str:
    """SWITCH_STACK_PUSH onto a variable: the second value makes it an ``ARRAY::``."""
    if not stack:
        return value
    if stack.startswith("ARRAY::"):
        return f"{stack}|:{value}"
    return f"ARRAY::{stack}|:{value}"

