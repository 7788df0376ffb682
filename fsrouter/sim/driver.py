"""``SimSwitch``: the simulator behind the same driver as the real switch (RealSwitch).

Everything goes over the simulator's inbound event socket, exactly as with the real
FreeSWITCH: ``route_to`` is ``global_setvar fsrouter_target=...``, ``place_call`` is
``bgapi originate {...}loopback/<number>/public &park()``, ``send_dtmf`` is
``uuid_send_dtmf``, ``hangup`` is ``uuid_kill``, ``channels`` is ``show channels as json``::

    switch = SimSwitch(speed=20)
    switch.start()
    switch.route_to(daemon_port)
    caller = switch.place_call("+493012345678", "+4915112345678", "O'Brien, Jörg")
    switch.send_dtmf(caller, "2")
    switch.stop()

``switch.sim`` is the Simulator itself (faults, records, clock) for what a real switch
cannot do on demand.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from fsrouter.sim.faults import Faults
from fsrouter.sim.switch import Simulator
from fsrouter.testing.realswitch import UNROUTED_TARGET, Ports, RealSwitch, SwitchError


class SimSwitch(RealSwitch):
    """A RealSwitch whose process is a Simulator in this process (gevent, no threads)."""

    def __init__(self, workdir: Path | None = None, speed: float = 1.0,
                 faults: Faults | None = None) -> None:
        workdir = Path(workdir or tempfile.mkdtemp(prefix="fsr-simswitch-"))
        super().__init__(workdir, freeswitch=workdir)
        self.speed = speed
        self.faults = faults
        self.sim: Simulator | None = None

    def __repr__(self) -> str:  # never show the password
        return f"SimSwitch(speed={self.speed}, ports={self.ports})"

    @property
    def running(self) -> bool:
        return self.sim is not None and self.sim.inbound is not None

    @property
    def pid(self) -> int | None:
        return None

    def start(self, timeout: float = 5.0) -> None:
        """Start a fresh simulator and connect to its event socket like to a real switch."""
        if self.running:
            raise SwitchError("already running")
        began = time.monotonic()
        self.sim = Simulator(speed=self.speed, storage_dir=str(self.workdir / "storage"),
                             password=self.password, faults=self.faults)
        # As the real test config: public calls go nowhere until route_to() is called.
        self.sim.globals["fsrouter_target"] = UNROUTED_TARGET
        port = self.sim.start_inbound()
        self.ports = Ports(port, 0, 0, 0)
        self._wait_ready(began + timeout)
        self.ready_seconds = time.monotonic() - began

    def stop(self, grace: float = 0.0) -> None:
        self._drop_client()
        if self.sim is not None:
            self.sim.stop_inbound()

    def _kill(self) -> None:
        self.stop()
