"""Small statistics for the benchmark: percentiles, a least-squares slope, rounding, and
what a step's calls say."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None for fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, median, p99 and max, rounded for the report."""
    return {"count": len(values), "median": rounded(median(values)),
            "p99": rounded(percentile(values, 0.99)),
            "max": rounded(max(values) if values else None)}


class StepFigures:
    """For a step (simulator or real switch): ``calls`` placed at ``rate`` over ``placed_s``
    seconds, each with ``completed`` and ``setup_ms`` (None when it was not measured)."""

    rate: float
    calls: Sequence[Any]
    placed_s: float

    def counts(self) -> dict[str, Any]:
        """The head of a step's summary: offered and placed rates, calls, completed."""
        count = len(self.calls)
        placed_rate = (count - 1) / self.placed_s if count > 1 and self.placed_s else None
        return {"offered_per_s": self.rate, "calls": count, "completed": self.completed,
                "placed_per_s": rounded(placed_rate, 1)}

    def ms_per_call(self, seconds: float) -> float | None:
        return rounded(1000 * seconds / max(len(self.calls), 1))

    @property
    def completed(self) -> int:
        return sum(c.completed for c in self.calls)

    @property
    def setup_ms(self) -> list[float]:
        return [c.setup_ms for c in self.calls if c.setup_ms is not None]

    @property
    def p99_ms(self) -> float:
        return percentile(self.setup_ms, 0.99) or float("inf")
