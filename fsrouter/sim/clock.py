"""Simulated time: every delay in the simulator goes through a Clock with a speed factor.

``Clock(speed=1000)`` makes a 20 s ring take 20 ms of real time; ``Clock(1)`` is real time
for differential runs against a real switch.
"""

from __future__ import annotations

import time

import gevent


class Clock:
    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self._real0 = time.monotonic()
        self._epoch0 = time.time()

    def now(self) -> float:
        """Simulated wall-clock seconds since the Unix epoch."""
        return self._epoch0 + (time.monotonic() - self._real0) * self.speed

    def micros(self) -> int:
        return int(self.now() * 1_000_000)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time (yields to other greenlets even for 0)."""
        gevent.sleep(max(seconds, 0.0) / self.speed)

    def real(self, seconds: float) -> float:
        """Real seconds that ``seconds`` of simulated time take (for timeouts)."""
        return max(seconds, 0.0) / self.speed
