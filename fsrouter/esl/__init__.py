"""FreeSWITCH Event Socket: wire protocol, connections, outbound server, inbound client.

``protocol`` is pure (bytes in, frames out); ``connection`` adds one gevent socket with
reply/job/execution correlation; ``outbound`` serves the switch's per-call ``socket``
connections; ``inbound`` is the reconnecting client of the switch's event socket.
"""

from fsrouter.esl.connection import (
    Connection,
    ConnectionClosed,
    ESLError,
    ESLTimeout,
    Execution,
    Job,
)
from fsrouter.esl.inbound import AuthError, InboundClient, NotConnected
from fsrouter.esl.outbound import OutboundServer, OutboundSession
from fsrouter.esl.pending import CommandError
from fsrouter.esl.protocol import (
    Command,
    CommandParser,
    Event,
    Frame,
    FrameParser,
    ProtocolError,
    UnsafeCommand,
    encode_command,
    encode_event,
    encode_frame,
    parse_event,
)

__all__ = [
    "AuthError",
    "Command",
    "CommandError",
    "CommandParser",
    "Connection",
    "ConnectionClosed",
    "ESLError",
    "ESLTimeout",
    "Event",
    "Execution",
    "Frame",
    "FrameParser",
    "InboundClient",
    "Job",
    "NotConnected",
    "OutboundServer",
    "OutboundSession",
    "ProtocolError",
    "UnsafeCommand",
    "encode_command",
    "encode_event",
    "encode_frame",
    "parse_event",
]
