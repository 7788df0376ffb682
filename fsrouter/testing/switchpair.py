"""Two real FreeSWITCH processes side by side, for the two-node tests (issue 18).

Each switch is a :class:`RealSwitch` in a folder of its own, so each has its own event
socket, SIP and RTP ports (RTP ranges claimed per switch: fsrouter.testing.ports) and its own
Core-UUID; both run the shipped dialplan. Example::

    pair = SwitchPair(tmp_path)
    pair.start()                                   # both at once
    pair.route_failover({"a": port_a, "b": port_b})  # a: daemon A first, then B; b: B, A
    caller = pair["a"].place_call("+493012345678")
    pair.kill("a"); pair.restart("a")              # SIGKILL, then the same ports again
    pair.stop()

:meth:`SwitchPair.switches_config` is the ``switches:`` list of a daemon serving both (the
passwords in environment variables, as an installation keeps them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gevent

from fsrouter.testing.realswitch import RealSwitch, SwitchError

NAMES = ("a", "b")


class SwitchPair:
    """Switches ``a`` and ``b``; see the module docstring."""

    def __init__(self, workdir: Path, freeswitch: Path | None = None,
                 switch_params: Mapping[str, str] | None = None) -> None:
        self.switches = {name: RealSwitch(Path(workdir) / f"fs-{name}", freeswitch,
                                          switch_params=switch_params)
                         for name in NAMES}

    def __getitem__(self, name: str) -> RealSwitch:
        return self.switches[name]

    def __iter__(self) -> Iterator[tuple[str, RealSwitch]]:
        return iter(self.switches.items())

    def start(self, timeout: float = 30.0) -> None:
        """Start both switches at once; if one fails, stop both and raise its error."""
        jobs = [gevent.spawn(switch.start, timeout) for switch in self.switches.values()]
        gevent.joinall(jobs)
        failed = next((job.exception for job in jobs if job.exception is not None), None)
        if failed is not None:
            self.stop()
            raise failed if isinstance(failed, SwitchError | OSError) else SwitchError(
                f"a switch of the pair did not start: {failed}")

    def stop(self) -> None:
        for switch in self.switches.values():
            switch.stop(grace=0)

    def kill(self, name: str) -> None:
        """SIGKILL switch ``name``: no hang-up is sent, every socket of it just closes."""
        self.switches[name].kill()

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start ``name`` again after a kill or stop: same folder, ports and daemon targets."""
        self.switches[name].start(timeout)

    def route_failover(self, ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
        """Each switch offers its calls to its own daemon first, the other one second
        (``fsrouter_target`` = ``local|other``, as freeswitch_conf/ documents it)."""
        for name, switch in self.switches.items():
            other = next(n for n in NAMES if n != name)
            switch.route_to(ports[name], host, failover=((host, ports[other]),))

    def switches_config(self, env_prefix: str = "FSROUTER_ESL_PASSWORD"
                        ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The ``switches:`` list of a daemon serving both, and the environment holding the
        passwords it names (``<prefix>_A``, ``<prefix>_B``)."""
        entries, env = [], {}
        for name, switch in self.switches.items():
            host, port, password = switch.esl_endpoint()
            variable = f"{env_prefix}_{name.upper()}"
            entries.append({"name": name, "host": host, "port": port, "password_env": variable})
            env[variable] = password
        return entries, env
