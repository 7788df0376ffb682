"""Small statistics for the benchmark: percentiles, a least-squares slope, rounding, and
what a step's calls say."""

from __future__ import annotations

import math
import statistics
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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def median_of(values: Sequence[Any]) -> Any:
    """Runs of the same measurement, combined leaf by leaf: numbers to their median (rounded),
    dicts key by key (keys all runs have), equal values kept, differing texts joined with
    " / "; anything else (lists that differ, e.g. a ramp's steps) to None (the runs keep it)."""
    if values and all(_number(v) for v in values):
        if all(v == values[0] for v in values):
            return values[0]
        return rounded(statistics.median(values), 3)
    if values and all(isinstance(v, dict) for v in values):
        keys = [k for k in values[0] if all(k in v for v in values)]
        return {k: median_of([v[k] for v in values]) for k in keys}
    if all(v == values[0] for v in values):
        return values[0] if values else None
    if all(isinstance(v, list) and len(v) == len(values[0]) and all(map(_number, v))
           for v in values):  # e.g. load averages: element by element
        return [median_of(column) for column in zip(*values, strict=True)]
    if all(isinstance(v, str) for v in values):
        return " / ".join(dict.fromkeys(values))
    return None


def spread_of(values: Sequence[Any]) -> Any:
    """The same walk as :func:`median_of`, numbers to ``[min, max]``; None where no number."""
    if values and all(_number(v) for v in values):
        return [rounded(min(values), 3), rounded(max(values), 3)]
    if values and all(isinstance(v, dict) for v in values):
        keys = [k for k in values[0] if all(k in v for v in values)]
        out = {k: spread_of([v[k] for v in values]) for k in keys}
        return {k: v for k, v in out.items() if v is not None} or None
    return None
