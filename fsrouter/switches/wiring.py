"""The daemon's side of several switches: one inbound event connection per switch, wired to
the one agent watcher and the one crash reconciliation (split from fsrouter.daemon, which
calls :func:`connect_switches` at start and :func:`close_switches` at the end).

Per switch (``switches:``, or the single ``switch:`` named "default"): an ``InboundClient``
that reconnects with backoff; after every connect the switch's Core-UUID is learnt (calls
are matched to their switch by it, fsrouter.switches), the watcher resynchronises that
switch's channels, and a reconciliation pass over every switch is scheduled. When the
connection closes, /health and the metrics say so; a switch still away after
:data:`SWITCH_GONE_S` has its agents' channels forgotten (its calls ended with it).
"""

from __future__ import annotations

from typing import Any

import gevent
import structlog

from fsrouter.config import Config
from fsrouter.switches import AnySwitch, SwitchLink, SwitchSet

log = structlog.get_logger(__name__)

# A switch whose event connection stays closed this long is taken as gone: its agents'
# channels are forgotten (a blip shorter than this keeps them; the reconnect resyncs).
SWITCH_GONE_S = 5.0


def switch_networks(config: Config) -> list[Any] | None:
    """The default ``listener.switch_addresses``: every switch's host (None when one of them
    is a name or not allowed: then every allowed peer counts as a switch, as before)."""
    from fsrouter.esl.outbound import host_networks

    networks: list[Any] = []
    for _name, switch in config.named_switches():
        found = host_networks(switch.host, config.listener.allow)
        if found is None:
            return None
        networks += [net for net in found if net not in networks]
    return networks or None


def connect_switches(daemon: Any, keepalive_s: float | None, keepalive_timeout: float,
                     backoff_max: float) -> None:
    """One inbound event connection per switch: agent presence, 2-way VoIP, switch health,
    and the reconciliation of records left open (after every (re)connect of any switch)."""
    from fsrouter.calls.agents import AgentWatcher
    from fsrouter.recovery import Recovery

    watcher = AgentWatcher(lambda: daemon.holder["config"], daemon.services.now)
    lease = daemon.parts.get("lease")  # the cluster node: recovery acts on its records only
    recovery = Recovery(daemon.services.host, daemon.services.now, daemon.live_calls,
                        can_adopt=daemon.accepting.is_set,
                        notify=lambda event, data: daemon.services.notify(event, data),
                        node=lease.node if lease is not None else None)
    switches = SwitchSet()
    daemon.switches = switches
    daemon.parts |= {"watcher": watcher, "recovery": recovery}
    anywhere = AnySwitch(switches)
    daemon.parts["anywhere"] = anywhere
    for name, endpoint in _switch_endpoints(daemon):
        link = switches.add(SwitchLink(name))
        _connect_switch(daemon, link, endpoint, watcher, recovery, anywhere,
                        (keepalive_s, keepalive_timeout, backoff_max))
    first = next(iter(switches))
    daemon.services.switch_api = first.api  # the lone switch's (a call's own is per call)
    daemon.parts["switch"] = first.client


def _switch_endpoints(daemon: Any) -> list[tuple[str, tuple[str, int, str]]]:
    """(name, (host, port, password)) of every switch; ``switch_endpoint`` (the demo's
    simulator) replaces the first."""
    named = daemon.config.named_switches()
    endpoints = [(name, (switch.host, switch.port, switch.resolve_password()))
                 for name, switch in named]
    if daemon.switch_endpoint is not None:
        endpoints[0] = (endpoints[0][0], daemon.switch_endpoint)
    return endpoints


def _connect_switch(daemon: Any, link: SwitchLink, endpoint: tuple[str, int, str],
                    watcher: Any, recovery: Any, anywhere: AnySwitch,
                    timing: tuple[float | None, float, float]) -> None:
    from fsrouter.esl import InboundClient

    name, switches = link.name, daemon.switches
    metrics = daemon.parts.get("metrics")
    if metrics is not None:  # a switch never reached shows as down, not as missing
        metrics.switch_each.labels(name).set(0)

    def on_connect(client: Any) -> None:
        link.connected_now(daemon.services.now())
        link.learn_identity()  # before any call of this switch needs it
        if metrics is not None:
            metrics.set_switch_state(name, True, switches.any_connected())
        lookout = gevent.spawn(_report_loss, daemon, link, client.conn, watcher)
        daemon.parts.setdefault("switch_lookouts", set()).add(lookout)
        lookout.link(daemon.parts["switch_lookouts"].discard)
        if daemon.services.claims is not None:  # hang-ups missed while disconnected
            daemon.services.claims.recheck()
        watcher.resync(client, name)
        # After the listener is up: adopted callers come back through it.
        recovery.schedule(anywhere, ready=daemon.accepting)

    host, port, password = endpoint
    keepalive_s, keepalive_timeout, backoff_max = timing
    client = InboundClient(host, port, password, events=[*watcher.EVENTS, *recovery.EVENTS],
                           on_reconnect=on_connect, keepalive_s=keepalive_s,
                           keepalive_timeout=keepalive_timeout, backoff_max=backoff_max)
    link.client = client
    client.on_event(watcher.for_switch(name))
    client.on_event(recovery.handle)
    if daemon.services.claims is not None:  # hang-ups of claimed agent legs
        client.on_event(daemon.services.claims.handle)
    client.start()
    daemon.parts[f"switch:{name}"] = client


def _report_loss(daemon: Any, link: SwitchLink, conn: Any, watcher: Any) -> None:
    """When the connection closes: report it; if the switch is still away after
    SWITCH_GONE_S, forget its agents' channels (they ended with the switch)."""
    conn.wait_closed(None)
    link.lost_now(daemon.services.now(), conn.close_reason)
    metrics = daemon.parts.get("metrics")
    if metrics is not None:
        metrics.set_switch_state(link.name, False, daemon.switches.any_connected())
    if daemon.stopping.is_set():
        return
    log.warning("switch.lost", switch=link.name, reason=link.last_error)
    if not daemon.stopping.wait(SWITCH_GONE_S) and not link.connected:
        log.warning("switch.gone", switch=link.name, seconds=SWITCH_GONE_S)
        watcher.drop_switch(link.name)


def switch_status(daemon: Any) -> dict[str, Any]:
    return daemon.switches.status() if daemon.switches is not None else {}


def close_switches(daemon: Any) -> None:
    """Stop every switch's connection and its lookout (at shutdown)."""
    gevent.killall(list(daemon.parts.get("switch_lookouts", ())), timeout=5)
    for name in [key for key in daemon.parts if key.startswith("switch:")]:
        daemon.parts[name].close()
