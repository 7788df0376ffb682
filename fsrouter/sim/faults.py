"""Faults on demand for the outbound socket, the inbound server and originate."""

from __future__ import annotations

from dataclasses import dataclass, field

STEPS = ("after_connect", "in_menu", "in_queue", "agent_ringing", "bridged")


@dataclass
class Faults:
    drop_outbound_at: str = ""  # one of STEPS: the switch closes the call's socket there
    garbage_after_connect: bytes = b""  # raw bytes sent after the CHANNEL_DATA reply
    oversized_event_bytes: int = 0  # pad the next event with a header this large
    split_every_byte: bool = False  # write every frame one byte at a time
    slow_read_s: float = 0.0  # real seconds to pause between reads of commands
    swallow_background_job: bool = False  # never send BACKGROUND_JOB for an originate
    # Command words ("sendmsg", "api", "bgapi") a call's socket takes but never answers nor
    # carries out: from then on that socket is silent (no reply, no event), as a switch
    # whose listener thread hangs in a command. Counted in ``fired`` as "withheld:<word>".
    withhold_replies: tuple[str, ...] = ()
    fired: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.drop_outbound_at and self.drop_outbound_at not in STEPS:
            raise ValueError(f"unknown fault step {self.drop_outbound_at!r}; use one of {STEPS}")
