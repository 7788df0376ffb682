"""Channel model: caller profile, variables in FreeSWITCH order, and event headers.

Header order and sets are taken from the real-switch traces (/work/shared/esl-traces):
base event headers, basic channel data, the caller profile, the other leg, then
``variable_*`` for the event types that carry them, then event-specific headers.
"""

from __future__ import annotations

import itertools
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.queue

from fsrouter.sim.clock import Clock
from fsrouter.sim.wire import Headers

STATE_NUMBERS = {"CS_NEW": 0, "CS_INIT": 2, "CS_ROUTING": 3, "CS_EXECUTE": 4,
                 "CS_EXCHANGE_MEDIA": 5, "CS_SOFT_EXECUTE": 6, "CS_CONSUME_MEDIA": 7,
                 "CS_HIBERNATE": 8, "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11,
                 "CS_DESTROY": 12}
# Event types whose headers include the channel variables (switch_channel.c:2786 list).
EVENTS_WITH_VARS = frozenset({
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_DATA", "CUSTOM", "CHANNEL_PROGRESS", "CHANNEL_ORIGINATE",
})
Q850 = {"NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_ANSWER": 19, "UNALLOCATED_NUMBER": 1,
        "NO_USER_RESPONSE": 18, "CALL_REJECTED": 21, "ORIGINATOR_CANCEL": 487,
        "DESTINATION_OUT_OF_ORDER": 27, "NORMAL_TEMPORARY_FAILURE": 41,
        "USER_NOT_REGISTERED": 606, "SUBSCRIBER_ABSENT": 20, "LOSE_RACE": 502,
        "MANAGER_REQUEST": 503, "RECOVERY_ON_TIMER_EXPIRE": 102, "NO_ROUTE_DESTINATION": 3,
        "EXCHANGE_ROUTING_ERROR": 25}


@dataclass
class Core:
    """Switch identity and the event sequence shared by all channels."""

    clock: Clock
    core_uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    hostname: str = "sim"
    ipv4: str = "127.0.0.1"
    ipv6: str = "::1"
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _session_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def base(self, name: str, file: str, func: str, line: int) -> Headers:
        now = self.clock.now()
        local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        gmt = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
        return [("Event-Name", name), ("Core-UUID", self.core_uuid),
                ("FreeSWITCH-Hostname", self.hostname), ("FreeSWITCH-Switchname", self.hostname),
                ("FreeSWITCH-IPv4", self.ipv4), ("FreeSWITCH-IPv6", self.ipv6),
                ("Event-Date-Local", local), ("Event-Date-GMT", gmt),
                ("Event-Date-Timestamp", str(int(now * 1_000_000))),
                ("Event-Calling-File", file), ("Event-Calling-Function", func),
                ("Event-Calling-Line-Number", str(line)), ("Event-Sequence", str(next(self._seq)))]

    def session_id(self) -> int:
        return next(self._session_ids)


@dataclass
class Profile:
    """switch_caller_profile fields, in the order FreeSWITCH serialises them."""

    direction: str
    caller_id_name: str
    caller_id_number: str
    destination_number: str
    context: str
    channel_name: str
    uuid: str
    callee_id_name: str = "Outbound Call"
    callee_id_number: str = ""
    logical_direction: str = ""
    orig_caller_id_name: str | None = None  # None: the same as the caller ID
    orig_caller_id_number: str | None = None
    created_us: int = 0
    # What a transfer changes (switch_ivr_session_transfer clones the profile): the dialplan
    # as given to it ("XML"; a new channel's is "xml"), the number dialled before (RDNIS),
    # the transfer source, the profile's index and its own creation time.
    dialplan: str = "xml"
    rdnis: str = ""
    transfer_source: str = ""
    index: int = 1
    profile_created_us: int = 0  # 0: the channel's creation

    def headers(self, prefix: str, times: dict[str, int], with_index: bool = True) -> Headers:
        items = [("Direction", self.direction),
                 ("Logical-Direction", self.logical_direction or self.direction),
                 ("Dialplan", self.dialplan), ("Caller-ID-Name", self.caller_id_name),
                 ("Caller-ID-Number", self.caller_id_number),
                 ("Orig-Caller-ID-Name", _or(self.orig_caller_id_name, self.caller_id_name)),
                 ("Orig-Caller-ID-Number", _or(self.orig_caller_id_number,
                                               self.caller_id_number)),
                 ("Callee-ID-Name", self.callee_id_name),
                 ("Callee-ID-Number", self.callee_id_number), ("ANI", self.caller_id_number),
                 ("Destination-Number", self.destination_number), ("Unique-ID", self.uuid),
                 ("Source", "mod_loopback"), ("Transfer-Source", self.transfer_source),
                 ("Context", self.context), ("RDNIS", self.rdnis),
                 ("Channel-Name", self.channel_name)]
        if with_index:
            items.append(("Profile-Index", str(self.index)))
        items.append(("Profile-Created-Time",
                      str(self.profile_created_us or times.get("created", 0))))
        for key in ("Created", "Answered", "Progress", "Progress-Media", "Hangup", "Transfer",
                    "Resurrect", "Bridged"):
            items.append((f"Channel-{key}-Time", str(times.get(key.lower(), 0))))
        items += [("Channel-Last-Hold", "0"), ("Channel-Hold-Accum", "0"), ("Screen-Bit", "true"),
                  ("Privacy-Hide-Name", "false"), ("Privacy-Hide-Number", "false")]
        # FreeSWITCH leaves out headers whose value is empty (e.g. no caller ID name).
        return [(prefix + name, value) for name, value in items if value != ""]


class Channel:
    """One call leg. Variables keep FreeSWITCH's order: setting a variable moves it last."""

    def __init__(self, core: Core, profile: Profile, variables: list[tuple[str, str]]) -> None:
        self.core = core
        self.profile = profile
        self.uuid = profile.uuid
        self.name = profile.channel_name
        self.variables: dict[str, str] = {}
        for key, value in variables:
            self.variables[key] = value
        self.state = "CS_EXECUTE"
        self.call_state = "RINGING"
        self.answer_state = "ringing"
        self.hangup_cause = ""
        self.hit_dialplan = True
        self.times: dict[str, int] = {"created": profile.created_us, "created_": 0}
        self.times["created"] = profile.created_us
        # ``other``: the leg named in this leg's Other-Type/Other-Leg-* headers (the bridged
        # leg, or the caller whose ``bridge`` dials this leg). ``bridge_peer``: the leg this
        # one's hang-up takes down with it (for ``bridge``, the caller's hang-up ends the agent
        # leg but not the other way round: hangup_after_bridge decides).
        self.other: Channel | None = None
        self.other_type = ""
        self.bridge_peer: Channel | None = None
        self.dtmf: gevent.queue.Queue[str] = gevent.queue.Queue()
        self.hungup = gevent.event.Event()
        self.answered = gevent.event.Event()
        self.media = gevent.event.Event()  # answered or early media: originate returns
        self.digits_dialed = ""
        # mod_loopback pairs: the other leg, whether this leg only mirrors its peer (the
        # b-leg of a scripted phone) and whether CHANNEL_HANGUP_COMPLETE was already sent.
        self.loop_peer: Channel | None = None
        self.app_depth = 0  # applications running (nested ones count too)
        # Greenlets running an application inside the current one (uuid_broadcast): the
        # outer application completes only after them, as on the switch's one thread.
        self.nested: list[gevent.Greenlet] = []
        self.event_lock = False  # the running application was sent with event-lock: true
        self.shadow = False
        self.finished = False
        # uuid_transfer (fsrouter/sim/transfer.py): where the channel goes next, and set until
        # it gets there: what it runs is interrupted, as CF_TRANSFER makes a channel not ready.
        self.transfer: tuple[str, str, str] | None = None  # (extension, dialplan, context)
        self.breaking = gevent.event.Event()

    # variables -----------------------------------------------------------------------
    def set_var(self, name: str, value: str | None) -> None:
        self.variables.pop(name, None)
        if value is not None and value != "":
            self.variables[name] = value

    def get_var(self, name: str, default: str = "") -> str:
        return self.variables.get(name, default)

    def flip_caller_id(self) -> None:
        """An answered loopback a-leg shows the far end as caller (switch_channel.c:3291)."""
        prof = self.profile
        self.set_var("pre_transfer_caller_id_name", prof.caller_id_name)
        self.set_var("pre_transfer_caller_id_number", prof.caller_id_number)
        self.set_var("channel_cid_flipped", "yes")
        prof.orig_caller_id_name = _or(prof.orig_caller_id_name, prof.caller_id_name)
        prof.orig_caller_id_number = _or(prof.orig_caller_id_number, prof.caller_id_number)
        prof.callee_id_name, prof.caller_id_name = prof.caller_id_name, prof.callee_id_name
        prof.callee_id_number, prof.caller_id_number = (prof.caller_id_number,
                                                        prof.callee_id_number)

    @property
    def alive(self) -> bool:
        return not self.hungup.is_set()

    @property
    def ready(self) -> bool:
        """switch_channel_ready: up and not being transferred (applications stop otherwise)."""
        return self.alive and not self.breaking.is_set()

    # events --------------------------------------------------------------------------
    def basic_headers(self) -> Headers:
        head = [("Channel-State", self.state), ("Channel-Call-State", self.call_state),
                ("Channel-State-Number", str(STATE_NUMBERS.get(self.state, 4))),
                ("Channel-Name", self.name), ("Unique-ID", self.uuid),
                ("Call-Direction", self.profile.direction),
                ("Presence-Call-Direction", self.profile.direction),
                ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
                ("Channel-Call-UUID", self.uuid), ("Answer-State", self.answer_state)]
        if self.hangup_cause:
            head.append(("Hangup-Cause", self.hangup_cause))
        head += [("Channel-Read-Codec-Name", "L16"), ("Channel-Read-Codec-Rate", "8000"),
                 ("Channel-Read-Codec-Bit-Rate", "128000"), ("Channel-Write-Codec-Name", "L16"),
                 ("Channel-Write-Codec-Rate", "8000"), ("Channel-Write-Codec-Bit-Rate", "128000")]
        head += self.profile.headers("Caller-", self.times)
        if self.other is not None:
            head.append(("Other-Type", self.other_type))
            head += self.other.profile.headers("Other-Leg-", {}, with_index=False)
        return head

    def var_headers(self) -> Headers:
        return [(f"variable_{k}", v) for k, v in self.variables.items()]

    def event(self, name: str, where: tuple[str, str, int], extra: Headers | None = None,
              subclass: str = "") -> Headers:
        """Headers of a channel event in the order the real switch sends them."""
        head = self.core.base(name, *where)
        if subclass:
            head.insert(0, ("Event-Subclass", subclass))
        if name == "CHANNEL_HANGUP_COMPLETE":
            head.append(("Hangup-Cause", self.hangup_cause))
        head += self.basic_headers()
        if name in EVENTS_WITH_VARS:
            head += self.var_headers()
        return head + (extra or [])


def _or(value: str | None, default: str) -> str:
    return default if value is None else value


def new_uuid() -> str:
    return str(uuidlib.uuid4())
