"""Agent busy state and 2-way VoIP learning, from the switch's own channel events.

An :class:`AgentWatcher` listens on the inbound event connection (``EVENTS``) and keeps, per
agent (config user id), the set of live channels that are the agent's. The agent is busy while
that set is not empty; only the transitions (first channel, last channel gone) are written with
``queries.set_busy``. When an agent's own call to a customer reaches the customer's phone,
the customer's number is remembered with ``queries.remember_two_way`` so that the customer's
call back reaches the same agent. Wiring::

    watcher = AgentWatcher(lambda: services.config, services.now)
    client = InboundClient(host, port, password, on_reconnect=watcher.resync)
    watcher.attach(client)          # subscribes EVENTS, feeds every event to handle()
    client.start()

Whose channel is it? In this order, the first that answers:

1. ``variable_fsr_agent``: set by fsrouter's own originates (the ring legs to agents and
   on-call staff) or by the operator's dialplan. Only someone who can run ``originate`` on the
   event socket or write the dialplan can set a channel variable, so it is trusted.
2. The directory user of a phone: ``variable_user_name`` (+ ``variable_domain_name``), which
   mod_sofia sets only after the phone authenticated against the directory (measured: a digest-
   authenticated call has it together with ``variable_sip_authorized=true``; see
   tests/unit/data/agent_phone_sip.jsonl), and ``variable_dialed_user`` (+ ``dialed_domain``) of a
   leg the switch dials to ``user/<id>``. ``variable_sip_from_user`` counts only with
   ``variable_sip_authorized=true`` and the same ``sip_auth_username``: the From header of an
   unauthenticated call is whatever the caller writes (measured: a call into a public profile
   with ``From: 1000`` has ``sip_from_user=1000`` and no ``user_name``). The name must be a
   user's ``extension`` or the ``<id>`` of one of the user's ``user/<id>[@domain]`` phones, and
   the domain (when the channel has one) the phone's domain or ``defaults.voicemail_domain``.
3. A leg another agent channel originated (``variable_originating_leg_uuid``): the leg a
   phone's call creates towards the customer (``bridge`` in the dialplan). It carries the
   caller ID presented to the customer and the number dialled.
4. The caller ID number, only on an outbound leg that no other channel originated (an
   ``originate`` run over the authenticated event socket, e.g. click-to-call), equal to a
   user's extension. Caller ID is never trusted on an inbound leg or on a leg bridged from one:
   a customer can send any caller ID (``1000`` included), and a bridged leg copies it.

2-way VoIP: only outbound legs of an agent's own call teach a mapping, never legs fsrouter
placed for an inbound call (``fsr_incident`` set, or an ``fsr_kind`` other than ``outbound``:
``oncall`` escalation legs, ``agent`` contact-center legs, ``custom`` bridges), and never a leg
found by the directory (that is a call *to* the agent's phone). The customer is the leg's
destination (else what the agent dialled), normalised with ``defaults.country``; our number
is the caller ID the leg presents (``Caller-Caller-ID-Number`` before the switch flips it on
answer, else ``origination_caller_id_number`` / ``effective_caller_id_number``). Measured on a
bridged leg: ``Caller-Orig-Caller-ID-Number`` is the agent's extension, so it is not used.
A destination that is no phone number (an internal extension, a feature code), one of our own
numbers or a user's phone is skipped and logged.

When: the mapping is stored when the call *reaches the customer's phone*: the first of
CHANNEL_PROGRESS (it rings), CHANNEL_PROGRESS_MEDIA, CHANNEL_ANSWER or CHANNEL_BRIDGE, not only
on answer. A customer who missed the call sees our number and often calls back: that call
must reach the agent who tried. A leg that never got that far (a wrong number, a busy or
failing line) teaches nothing: the customer saw no call, and an older mapping stays.

Resync: after every (re)connect, :meth:`AgentWatcher.resync` rebuilds the sets from
``show channels as json`` and ``uuid_dump <uuid> json`` of each channel it has not seen and
of each agent channel it tracks (the listing trails the switch by ~0.5 s both ways: a channel
that just ended is still listed), forgets agent channels that are gone or hanging up, and
corrects the stored busy flags. A busy flag with no live channel here is cleared when this
watcher owns it (its call was one of ours, or the store is SQLite and so one host's), or once
it is older than ``stale_after``: with a shared PostgreSQL store it may be another host's call.
Run it now and then as well (e.g. every few minutes): it costs one ``uuid_dump`` per agent
channel, and only new channels beyond that.

Hostile input (any header may be missing or hold anything) never raises out of ``handle``.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import gevent
import gevent.lock
import structlog

from fsrouter.config import Config, normalise_number
from fsrouter.esl import ESLError, Event
from fsrouter.resilience import journal
from fsrouter.store import queries, replay

log = structlog.get_logger(__name__)

_UUID = re.compile(r"[A-Za-z0-9-]{1,64}")
_DIAL_USER = re.compile(r"user/([^@/]+)(?:@([^/]+))?")
# Events that say an outbound leg has reached the far phone (it rings, has media, answered).
_REACHED = frozenset({"CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
                      "CHANNEL_BRIDGE"})
_REACHED_STATES = frozenset({"RINGING", "EARLY", "ACTIVE", "HELD"})
_ENDED_STATES = frozenset({"CS_HANGUP", "CS_REPORTING", "CS_DESTROY"})
# fsr_kind values of legs that may teach a mapping ("" = not set by fsrouter).
LEARNING_KINDS = frozenset({"", "outbound"})
API_TIMEOUT = 10.0
STORE_RETRY_S = 5.0  # seconds before a failed busy-flag write is tried again
MAX_DUMPS = 2000  # channels looked up one by one per resync, at most
_RECENT = 20_000  # uuids remembered as ended / as ours
_SHORT = 40  # characters of hostile text in a log line


class ApiClient(Protocol):
    """What resync needs: ``api(cmd)`` on the switch (an InboundClient)."""

    def api(self, cmd: str, timeout: float | None = ...) -> str: ...


class EventSource(Protocol):
    """What attach needs (an InboundClient)."""

    def subscribe(self, events: list[str], timeout: float | None = ...) -> None: ...

    def on_event(self, callback: Callable[[Event], object]) -> None: ...


class Headers(Protocol):
    """A channel's headers: an :class:`Event` (values decoded when read) or a dict (a
    ``uuid_dump``)."""

    def get(self, name: str, default: str | None = None, /) -> str | None: ...


@dataclass
class Leg:
    """One live channel of an agent, and what it may teach about 2-way VoIP."""

    uuid: str
    user_id: str
    how: str  # fsr_agent | directory | linked | caller_id
    learns: bool  # an outbound leg of the agent's own call to a customer
    kind_ok: bool  # not a leg fsrouter placed for an inbound call (see LEARNING_KINDS)
    destination: str
    dialled: str  # what the originating leg dialled (linked legs), else ""
    our_number: str | None
    settled: bool = False  # the 2-way question for this leg is answered
    switch: str = ""  # the switch the channel is on (the daemon's switch name)


@dataclass(frozen=True)
class _Index:
    """Lookups built once per configuration."""

    users: frozenset[str]
    extensions: dict[str, str | None]  # extension -> user id (None: two users share it)
    directory: dict[str, list[tuple[str, frozenset[str]]]]  # name -> (user, allowed domains)
    own_numbers: frozenset[str]  # never a customer: our numbers and the users' phones


class _Recent:
    """A set that forgets its oldest members beyond ``size``."""

    def __init__(self, size: int = _RECENT) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items


def _short(value: str | None) -> str:
    return (value or "")[:_SHORT]


def _e164(value: str | None, country: str | None) -> str | None:
    """``value`` as E.164, or None (also for hostile text)."""
    if not value:
        return None
    try:
        return normalise_number(value, country)
    except ValueError:
        return None


def _originator(h: Headers) -> str:
    """The uuid of the channel that originated this one, or ''."""
    origin = h.get("variable_originating_leg_uuid") or ""
    if not origin and h.get("Other-Type") == "originator":
        origin = h.get("Other-Leg-Unique-ID") or ""
    return origin if _UUID.fullmatch(origin) else ""


def _presented_cid(h: Headers) -> str:
    """The caller ID number the leg shows the far end (the switch flips it after answer)."""
    if h.get("variable_channel_cid_flipped") == "yes":
        return h.get("Caller-Callee-ID-Number") or ""
    return h.get("Caller-Caller-ID-Number") or ""


def _our_number(h: Headers, country: str | None) -> str | None:
    for value in (_presented_cid(h), h.get("variable_origination_caller_id_number"),
                  h.get("variable_effective_caller_id_number")):
        number = _e164(value, country)
        if number is not None:
            return number
    return None


def _kind_ok(h: Headers) -> bool:
    return (not h.get("variable_fsr_incident")
            and (h.get("variable_fsr_kind") or "") in LEARNING_KINDS)


def _build_index(config: Config) -> _Index:
    extensions: dict[str, str | None] = {}
    directory: dict[str, list[tuple[str, frozenset[str]]]] = {}
    own = {entry.number for entry in config.numbers}
    default_domain = config.defaults.voicemail_domain.lower()
    for user_id, user in config.users.items():
        if user.extension:
            taken = user.extension in extensions
            extensions[user.extension] = None if taken else user_id
            directory.setdefault(user.extension, []).append((user_id,
                                                             frozenset({default_domain})))
        for phone in user.phones:
            if phone.number:
                own.add(phone.number)
            match = _DIAL_USER.fullmatch(phone.dial_string or "")
            if match:
                domains = frozenset({(match[2] or default_domain).lower()})
                directory.setdefault(match[1], []).append((user_id, domains))
    return _Index(frozenset(config.users), extensions, directory, frozenset(own))


class AgentWatcher:
    """Busy agents and 2-way mappings from channel events; see the module docstring."""

    EVENTS: tuple[str, ...] = ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
                               "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_HANGUP_COMPLETE")

    def __init__(
        self,
        config_source: Callable[[], Config],
        now: Callable[[], datetime],
        *,
        exclusive: bool | None = None,
        stale_after: timedelta = timedelta(hours=12),
    ) -> None:
        """``exclusive``: this watcher's switch is the only one writing presence (default:
        True for a SQLite store, False for PostgreSQL, which several hosts may share)."""
        self._config_source = config_source
        self._now = now
        self._exclusive = exclusive
        self.stale_after = stale_after
        self.store_retry_s = STORE_RETRY_S
        self._legs: dict[str, Leg] = {}
        self._busy: dict[str, dict[str, None]] = {}  # user -> live uuids, oldest first
        self._others: set[str] = set()  # live channels seen that are nobody's
        self._ended = _Recent()
        self._ours = _Recent()  # every agent channel this watcher tracked
        self._pending: dict[str, tuple[bool, str | None]] = {}  # store writes to retry
        self._lock = gevent.lock.RLock()  # state changes: events and the end of a resync
        self._resyncing = gevent.lock.Semaphore()  # one resync at a time
        self._retry: gevent.Greenlet | None = None
        self._index_for: Config | None = None
        self._index: _Index | None = None

    # -- public -------------------------------------------------------------------------------

    def attach(self, client: EventSource) -> None:
        """Subscribe ``client`` to :attr:`EVENTS` and feed its events to :meth:`handle`.

        Call :meth:`resync` after every (re)connect (``InboundClient(on_reconnect=...)``).
        """
        client.subscribe(list(self.EVENTS))
        client.on_event(self.handle)

    def handle(self, event: Event, switch: str = "") -> None:
        """Take one event (from ``switch``); never raises (a bad event is logged and
        ignored)."""
        try:
            with self._lock:
                self._flush()
                self._handle(event, switch)
        except Exception:
            log.exception("agents.event_failed", event_name=_short(event.name),
                          uuid=_short(event.uuid))

    def close(self) -> None:
        """Stop retrying failed store writes (at shutdown)."""
        if self._retry is not None:
            self._retry.kill(block=False)
            self._retry = None

    def busy_calls(self, user_id: str) -> frozenset[str]:
        """The live channels that make ``user_id`` busy (empty: free)."""
        return frozenset(self._busy.get(user_id, ()))

    def is_busy(self, user_id: str) -> bool:
        return bool(self._busy.get(user_id))

    def for_switch(self, switch: str) -> Callable[[Event], None]:
        """The event callback of one switch's connection (several switches feed one watcher:
        an agent is busy while any switch has one of the agent's channels)."""
        return lambda event: self.handle(event, switch)

    def drop_switch(self, switch: str) -> None:
        """Forget the channels of a switch that is gone (its calls ended with it); the next
        resync of that switch finds whatever is still up."""
        with self._lock:
            for uuid in [u for u, leg in self._legs.items() if leg.switch == switch]:
                self._drop(uuid, "switch_lost")

    def resync(self, client: ApiClient, switch: str = "") -> bool:
        """Rebuild the live sets of ``switch`` from it and correct the store; False if the
        switch could not be asked (then nothing changes). Never raises."""
        try:
            with self._resyncing:
                return self._resync(client, switch)
        except Exception:
            log.exception("agents.resync_failed")
            return False

    # -- events ------------------------------------------------------------------------------

    def _handle(self, event: Event, switch: str = "") -> None:
        name = event.name
        uuid = event.uuid or ""
        if name not in self.EVENTS or not _UUID.fullmatch(uuid):
            return
        if name == "CHANNEL_HANGUP_COMPLETE":
            self._ended.add(uuid)
            self._others.discard(uuid)
            self._drop(uuid, "hangup")
            return
        if uuid in self._ended:
            return
        # The event itself, not event.headers: a few lookups instead of decoding ~150
        # headers (the real switch's events are 4-10 KB; 13 against 70 µs per event).
        leg = self._see(uuid, event, first=name == "CHANNEL_CREATE", switch=switch)
        if leg is not None and name in _REACHED:
            self._learn(leg)

    def _see(self, uuid: str, h: Headers, first: bool, switch: str = "") -> Leg | None:
        """The agent leg of this channel (tracking it from now on), or None."""
        leg = self._legs.get(uuid)
        config = self._config()
        if leg is not None:
            if leg.our_number is None:
                leg.our_number = _our_number(h, config.defaults.country)
            return leg
        leg = self._identify(uuid, h, config, first)
        if leg is None:
            self._others.add(uuid)
            return None
        self._others.discard(uuid)
        leg.switch = switch
        self._add(leg)
        return leg

    def _identify(self, uuid: str, h: Headers, config: Config, first: bool) -> Leg | None:
        index = self._index_of(config)
        origin = _originator(h)
        origin_leg = self._legs.get(origin)
        found = (_by_variable(h, index, first) or _by_directory(h, index)
                 or (origin_leg and (origin_leg.user_id, "linked"))
                 or (not origin and _by_caller_id(h, index)) or None)
        if found is None:
            return None
        user_id, how = found
        kind_ok = _kind_ok(h) and (origin_leg is None or origin_leg.kind_ok)
        outbound = h.get("Call-Direction") == "outbound"
        return Leg(uuid, user_id, how, learns=outbound and kind_ok and how != "directory",
                   kind_ok=kind_ok, destination=h.get("Caller-Destination-Number") or "",
                   dialled=origin_leg.destination if origin_leg else "",
                   our_number=_our_number(h, config.defaults.country))

    # -- busy sets and the store --------------------------------------------------------------

    def _add(self, leg: Leg) -> None:
        self._legs[leg.uuid] = leg
        self._ours.add(leg.uuid)
        calls = self._busy.setdefault(leg.user_id, {})
        calls[leg.uuid] = None
        log.debug("agents.channel", user=leg.user_id, uuid=leg.uuid, how=leg.how)
        if len(calls) == 1:
            log.info("agents.busy", user=leg.user_id, uuid=leg.uuid, how=leg.how)
            self._write(leg.user_id, True, leg.uuid)

    def _drop(self, uuid: str, why: str) -> None:
        leg = self._legs.pop(uuid, None)
        if leg is None:
            return
        calls = self._busy.get(leg.user_id, {})
        calls.pop(uuid, None)
        if not calls:
            self._busy.pop(leg.user_id, None)
            log.info("agents.free", user=leg.user_id, uuid=uuid, why=why)
            self._write(leg.user_id, False, None)

    def _write(self, user_id: str, busy: bool, call_uuid: str | None) -> None:
        self._pending[user_id] = (busy, call_uuid)
        self._flush()

    def _flush(self) -> None:
        """Write the busy flags not yet stored; after a failure, try again in a while."""
        for user_id, (busy, call_uuid) in list(self._pending.items()):
            try:
                queries.set_busy(user_id, self._now(), busy, call_uuid)
            except Exception as exc:
                log.warning("agents.store_failed", user=user_id, busy=busy, error=str(exc))
                if self._retry is None or self._retry.dead:
                    self._retry = gevent.spawn_later(self.store_retry_s, self._flush_later)
                return
            if self._pending.get(user_id) == (busy, call_uuid):
                del self._pending[user_id]

    def _flush_later(self) -> None:
        with self._lock:
            self._retry = None
            self._flush()

    # -- 2-way VoIP ------------------------------------------------------------------------------

    def _learn(self, leg: Leg) -> None:
        if leg.settled or not leg.learns:
            return
        config = self._config()
        country = config.defaults.country
        customer = _e164(leg.destination, country) or _e164(leg.dialled, country)
        reason = self._no_mapping(leg, customer, config)
        if reason:
            leg.settled = True
            log.info("agents.two_way_skipped", user=leg.user_id, uuid=leg.uuid, reason=reason,
                     destination=_short(leg.destination), dialled=_short(leg.dialled))
            return
        assert customer is not None and leg.our_number is not None
        ttl = timedelta(hours=config.two_way.max_age_hours)
        # While the store is away the journal writes it later, unless a newer mapping for the
        # customer got there first (another node's, say): replay.remember_two_way_once.
        journal.settle(queries.remember_two_way, customer, leg.user_id, leg.our_number,
                       self._now(), ttl, later=replay.remember_two_way_once)
        leg.settled = True
        log.info("agents.two_way_learned", user=leg.user_id, customer=customer,
                 our_number=leg.our_number, uuid=leg.uuid)

    def _no_mapping(self, leg: Leg, customer: str | None, config: Config) -> str:
        """Why this leg teaches no mapping ('' when it does)."""
        if customer is None:
            return "destination is not a phone number"
        if leg.our_number is None:
            return "the caller ID shown is not a phone number"
        if customer in self._index_of(config).own_numbers or customer == leg.our_number:
            return "destination is one of our numbers or a user's phone"
        return ""

    # -- resync ----------------------------------------------------------------------------------

    def _ask(self, client: ApiClient, switch: str = ""
             ) -> tuple[set[str], dict[str, dict[str, str] | None], set[str]]:
        """The listed channels, dumps of those we do not know, and our channels that are gone;
        raises ESLError (lost connection) or ValueError (a listing we cannot read)."""
        listed = _list_channels(client)
        unknown = [uuid for uuid in listed if uuid not in self._legs
                   and uuid not in self._others and uuid not in self._ended]
        if len(unknown) > MAX_DUMPS:
            log.warning("agents.resync_truncated", unknown=len(unknown), looked_up=MAX_DUMPS)
        dumps = {uuid: _dump(client, uuid) for uuid in unknown[:MAX_DUMPS]}
        # The listing trails the switch by ~0.5 s both ways (a channel that just ended is still
        # listed): ask about each of our channels, which also shows one that is ending.
        mine = [uuid for uuid, leg in list(self._legs.items()) if leg.switch == switch]
        gone = {uuid for uuid in mine if not _alive(_dump(client, uuid))}
        return listed, dumps, gone

    def _resync(self, client: ApiClient, switch: str = "") -> bool:
        try:
            listed, dumps, gone = self._ask(client, switch)
        except (ESLError, ValueError) as exc:  # nothing changes without a full answer
            log.warning("agents.resync_failed", error=str(exc)[:200])
            return False
        with self._lock:
            self._flush()
            for uuid in gone:
                self._drop(uuid, "missed_hangup")
            self._others &= listed
            for uuid, headers in dumps.items():
                if headers is not None and uuid not in self._ended:
                    self._see_dump(uuid, headers, switch)
            self._reconcile_store(listed)
        log.info("agents.resynced", switch=switch, channels=len(listed), looked_up=len(dumps),
                 forgotten=len(gone), busy=sorted(self._busy))
        return True

    def _see_dump(self, uuid: str, headers: dict[str, str], switch: str = "") -> None:
        leg = self._see(uuid, headers, first=True, switch=switch)
        reached = (headers.get("Answer-State") in ("early", "answered")
                   or headers.get("Channel-Call-State") in _REACHED_STATES)
        if leg is not None and reached:
            self._learn(leg)

    def _reconcile_store(self, listed: set[str]) -> None:
        """Make the stored busy flags of the configured users match the live sets."""
        now = self._now()
        for user_id in sorted(self._index_of(self._config()).users):
            try:
                row = queries.get_presence(user_id)
            except Exception as exc:
                log.warning("agents.store_failed", user=user_id, error=str(exc))
                continue
            calls = self._busy.get(user_id)
            if calls and not (row is not None and row.busy):
                self._write(user_id, True, next(iter(calls)))
            elif not calls and row is not None and row.busy:
                if self._may_clear(row.busy_call_uuid, row.updated_at, now, listed):
                    log.info("agents.free", user=user_id, uuid=row.busy_call_uuid, why="resync")
                    self._write(user_id, False, None)
                else:
                    log.info("agents.busy_kept", user=user_id, uuid=row.busy_call_uuid,
                             reason="may be a call on another host")

    def _may_clear(self, call_uuid: str | None, updated_at: datetime, now: datetime,
                   listed: set[str]) -> bool:
        if self._is_exclusive() or call_uuid is None:
            return True
        if call_uuid in self._ours or call_uuid in listed:
            return True
        return now - updated_at >= self.stale_after

    # -- configuration ------------------------------------------------------------------------

    def _config(self) -> Config:
        return self._config_source()

    def _index_of(self, config: Config) -> _Index:
        if self._index is None or self._index_for is not config:
            self._index, self._index_for = _build_index(config), config
        return self._index

    def _is_exclusive(self) -> bool:
        if self._exclusive is not None:
            return self._exclusive
        return self._config().database.url.startswith("sqlite")


def _by_variable(h: Headers, index: _Index, first: bool) -> tuple[str, str] | None:
    """Rule 1: ``fsr_agent`` naming a configured user."""
    agent = h.get("variable_fsr_agent")
    if not agent:
        return None
    if agent in index.users:
        return agent, "fsr_agent"
    if first:
        log.warning("agents.unknown_agent", fsr_agent=_short(agent), uuid=h.get("Unique-ID"))
    return None


def _by_directory(h: Headers, index: _Index) -> tuple[str, str] | None:
    """Rule 2: the directory user the switch authenticated or dialled (two configured users
    with the same name and domain: nobody, rather than maybe the wrong one)."""
    for name, domain in _directory_names(h):
        users = {user_id for user_id, domains in index.directory.get(name, ())
                 if not domain or domain.lower() in domains}
        if len(users) == 1:
            return users.pop(), "directory"
    return None


def _by_caller_id(h: Headers, index: _Index) -> tuple[str, str] | None:
    """Rule 4: an outbound leg nobody bridged (an ESL originate) showing an extension."""
    if h.get("Call-Direction") != "outbound":
        return None
    user_id = index.extensions.get(_presented_cid(h))
    return (user_id, "caller_id") if user_id else None


def _directory_names(h: Headers) -> Iterable[tuple[str, str]]:
    """(user, domain) pairs the switch vouches for (see the module docstring, rule 2)."""
    user_name = h.get("variable_user_name")
    if user_name:
        yield user_name, h.get("variable_domain_name") or ""
    dialed_user = h.get("variable_dialed_user")
    if dialed_user:
        yield dialed_user, h.get("variable_dialed_domain") or ""
    from_user = h.get("variable_sip_from_user") or ""
    if (from_user and h.get("variable_sip_authorized") == "true"
            and h.get("variable_sip_auth_username") == from_user):
        yield from_user, h.get("variable_sip_auth_realm") or ""


def _list_channels(client: ApiClient) -> set[str]:
    """The uuids ``show channels as json`` lists; ValueError for a reply that is not that."""
    reply = client.api("show channels as json", timeout=API_TIMEOUT)
    data = json.loads(reply)
    rows = data.get("rows", []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"show channels: unexpected reply {reply[:80]!r}")
    uuids = (row.get("uuid") for row in rows if isinstance(row, dict))
    return {uuid for uuid in uuids if isinstance(uuid, str) and _UUID.fullmatch(uuid)}


def _dump(client: ApiClient, uuid: str) -> dict[str, str] | None:
    """The channel's headers and variables (``uuid_dump <uuid> json``), None if it is gone
    (``-ERR No such channel!``); ESLError when the switch cannot be asked."""
    reply = client.api(f"uuid_dump {uuid} json", timeout=API_TIMEOUT)
    try:
        data = json.loads(reply)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(key): value if isinstance(value, str) else str(value)
            for key, value in data.items()}


def _alive(dump: dict[str, str] | None) -> bool:
    """A dumped channel that is not gone nor past its hang-up (CHANNEL_HANGUP_COMPLETE is sent
    in CS_REPORTING, before the session is destroyed)."""
    return (dump is not None and dump.get("Answer-State") != "hangup"
            and dump.get("Channel-State") not in _ENDED_STATES)
