"""One daemon, several switches: which switch a call is on, and each switch's connection.

The daemon keeps one inbound event connection per configured switch (``switches:``, or the
single ``switch:`` named "default"). A :class:`SwitchLink` is one of them: its client, the
switch's identity and the state /health and metrics report. A :class:`SwitchSet` holds them all.

**Which switch is a call on?** The ``connect`` reply of a call's outbound socket carries the
whole channel, and every event FreeSWITCH sends starts with ``Core-UUID``: the uuid the switch
process made for itself at start (``runtime.uuid_str``; the traces in /work/shared/esl-traces/
show it on the connect reply's CHANNEL_DATA, and two runs of one switch have two different
ones). Each link learns its switch's uuid with ``api global_getvar core_uuid`` after every
(re)connect (measured on 1.11.1: it answers the same uuid as the events' ``Core-UUID``), and
:meth:`SwitchSet.identify` matches the two. Not ``FreeSWITCH-Switchname``: it defaults to the
host name (``vm`` in the traces, ``global_getvar switchname`` answers ``-ERR no reply``), so
two switches on one host, or two hosts cloned from one image, have the same name. Not the
peer address either: two switches on one host connect from the same address. A restarted
switch has a new uuid, learnt on the reconnect; a call that arrives before that is matched
after one refresh of every link's uuid.

:class:`AnySwitch` is the set seen as one ``api`` client, for crash reconciliation
(fsrouter.recovery), which looks up calls a previous process left open without knowing which
switch they were on: the first switch that has the channel answers, and a channel no reachable
switch has is "gone" only when every switch could be asked (otherwise :class:`Undecided`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from fsrouter.esl import ESLError

log = structlog.get_logger(__name__)

_UUID = re.compile(r"[0-9A-Za-z-]{8,64}")
PROBE_TIMEOUT = 2.0  # seconds a lost call waits to learn whether its switch is still there
_ERROR_CHARS = 200  # of a connection error kept for /health


class Undecided(ESLError):
    """A channel no reachable switch has, while some switch cannot be asked."""


@dataclass
class SwitchLink:
    """One switch: its inbound client (an ``InboundClient``) and what /health reports."""

    name: str
    client: Any = None
    core_uuid: str | None = None
    connected_since: datetime | None = None
    lost_since: datetime | None = None
    last_error: str | None = None
    connects: int = 0

    @property
    def connected(self) -> bool:
        return self.client is not None and bool(self.client.connected)

    def api(self, command: str, timeout: float | None = 10.0) -> str:
        if self.client is None:
            raise ESLError(f"switch {self.name} has no connection")
        return str(self.client.api(command, timeout))

    def learn_identity(self) -> str | None:
        """Ask the switch for its Core-UUID (after each connect); None if it gave none."""
        try:
            reply = self.api("global_getvar core_uuid", timeout=5.0).strip()
        except ESLError as error:
            log.warning("switch.identity_unknown", switch=self.name, error=str(error)[:200])
            return None
        if not _UUID.fullmatch(reply):
            log.warning("switch.identity_unknown", switch=self.name, reply=reply[:80])
            return None
        if reply != self.core_uuid:
            log.info("switch.identified", switch=self.name, core_uuid=reply)
        self.core_uuid = reply
        return reply

    def connected_now(self, now: datetime) -> None:
        self.connected_since = now
        self.lost_since = None
        self.connects += 1

    def lost_now(self, now: datetime, reason: str | None) -> None:
        self.lost_since = now
        self.connected_since = None
        self.last_error = (reason or "connection closed")[:_ERROR_CHARS]

    def alive(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """Whether the switch still answers (``api status``) within ``timeout`` seconds."""
        if not self.connected:
            return False
        try:
            return "UP" in self.api("status", timeout=timeout)
        except ESLError:
            return False

    def status(self) -> dict[str, Any]:
        """What /health shows for this switch."""
        return {"connected": self.connected,
                "since": _iso(self.connected_since if self.connected else self.lost_since),
                "last_error": self.last_error, "connects": self.connects}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass
class SwitchSet:
    """Every switch of the daemon, in configuration order."""

    links: dict[str, SwitchLink] = field(default_factory=dict)

    def __iter__(self) -> Iterator[SwitchLink]:
        return iter(list(self.links.values()))

    def __len__(self) -> int:
        return len(self.links)

    def add(self, link: SwitchLink) -> SwitchLink:
        self.links[link.name] = link
        return link

    def identify(self, channel: Mapping[str, str]) -> SwitchLink | None:
        """The switch a call's socket came from, by the connect reply's ``Core-UUID``; the
        only switch when there is one; None when no switch claims it."""
        core = channel.get("Core-UUID") or ""
        found = self._by_core(core)
        if found is None and core and len(self.links) > 1:
            for link in self:  # a switch restarted before our reconnect learnt its new uuid
                if link.connected:
                    link.learn_identity()
            found = self._by_core(core)
        if found is None and len(self.links) == 1:
            return next(iter(self.links.values()))
        return found

    def _by_core(self, core: str) -> SwitchLink | None:
        return next((link for link in self if core and link.core_uuid == core), None)

    def any_connected(self) -> bool:
        return any(link.connected for link in self)

    def status(self) -> dict[str, dict[str, Any]]:
        return {link.name: link.status() for link in self}


_UUID_ARG = re.compile(r"^(uuid_[a-z_]+) ([A-Za-z0-9-]{1,64})\b")


class AnySwitch:
    """The switches as one ``api`` client for reconciliation: ``uuid_*`` commands go to the
    switch that has the channel (found with ``uuid_dump`` and remembered)."""

    def __init__(self, switches: SwitchSet) -> None:
        self.switches = switches
        self._where: dict[str, str] = {}  # channel uuid -> switch name

    @property
    def connected(self) -> bool:
        return self.switches.any_connected()

    def api(self, command: str, timeout: float | None = 10.0) -> str:
        found = _UUID_ARG.match(command)
        if found is None:
            raise ESLError(f"not a channel command: {command[:40]!r}")
        uuid = found.group(2)
        known = self.switches.links.get(self._where.get(uuid, ""))
        if known is not None and known.connected:
            return known.api(command, timeout)
        return self._search(uuid, command, timeout)

    def _search(self, uuid: str, command: str, timeout: float | None) -> str:
        unreachable = []
        reply = ""
        for link in self.switches:
            try:
                reply = link.api(f"uuid_dump {uuid} json", timeout)
            except ESLError as error:
                unreachable.append(f"{link.name}: {str(error)[:80]}")
                continue
            if not reply.lstrip().startswith("-ERR"):
                self._where[uuid] = link.name
                return reply if command.startswith("uuid_dump ") else link.api(command, timeout)
        if unreachable:
            raise Undecided(f"channel {uuid} is on no reachable switch; cannot ask "
                            f"{', '.join(unreachable)}")
        return reply or "-ERR No such channel!"

