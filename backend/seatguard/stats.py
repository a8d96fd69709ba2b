"""Figures a node keeps about itself for `/healthz`: how long admissions take."""

from __future__ import annotations

from collections import deque

__all__ = ["Latencies"]


class Latencies:
    """The last `size` durations of something, in seconds; percentiles in milliseconds."""

    def __init__(self, size: int = 2_000) -> None:
        self.size = size  # how many are kept
        self._values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._values.append(seconds)
        self.count += 1

    def summary(self, last: int | None = None) -> dict[str, float | int]:
        """Percentiles of the last `last` durations (all kept when None)."""
        values = list(self._values)
        ordered = sorted(values[-last:] if last else values)
        if not ordered:
            return {"count": 0}

        def ms(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)

        return {"count": self.count, "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0)}
