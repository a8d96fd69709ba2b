"""The garbage collector, kept off the hot path at many connections.

CPython's collector walks every tracked object of its oldest generation in one pause, and
it does so each time that generation has grown by a quarter. At 10,000 open tabs that is
about 240,000 objects and a pause of 100 to 300 ms on a small machine, in which no frame is
answered: the tail of every admission and heartbeat latency.

Nearly all a node holds lives as long as a tab, and a closed tab's objects are freed by
reference counting (a socket breaks its own cycles when it closes), so there is little for
the collector to find among them. The `Collector` therefore moves every tracked object into
CPython's permanent generation (`gc.freeze()`, which costs no walk) every `freeze_interval`
seconds: automatic collections then walk only what was allocated since. The oldest
generation is left to the freezes (its threshold is raised so that CPython does not walk it
between two of them) and the middle one is kept small, so that no automatic collection
walks more than a few thousand objects: the longest pause at 10,000 tabs measured 3 to 8
ms, where Python's own thresholds gave 30 to 50 ms. Every `full_interval` seconds it
unfreezes everything and runs one full collection, so that cycles formed among long-lived
objects are still found; that pause is rare, timed, and reported by `/healthz`, with the
longest pause of any collection.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["THRESHOLDS", "Collector", "CollectorStats"]

THRESHOLDS = (700, 5, 1000)
"""CPython's collection thresholds while the node freezes (its own are 700, 10, 10)."""

log = logging.getLogger("seatguard")


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """What `/healthz` shows of the collector."""

    frozen: int  # objects in the permanent generation, out of the collector's reach
    full_passes: int  # full collections run by the node since start-up
    last_full_ms: float | None  # how long the last one paused the process
    last_found: int | None  # unreachable objects it freed
    collections: int  # collections of any generation since start-up, full passes included
    longest_pause_ms: float  # the longest of them


class Collector:
    """Freezes survivors often and walks everything rarely; call `step()` from a timer.

    `freeze_interval` of 0 leaves CPython's collector as it ships (only the start-up
    freeze is done); `full_interval` of 0 never unfreezes.
    """

    def __init__(
        self,
        freeze_interval: float,
        full_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if freeze_interval < 0 or full_interval < 0:
            raise ValueError("collector intervals must not be negative")
        self.freeze_interval = freeze_interval
        self.full_interval = full_interval
        self._clock = clock
        self._next_freeze = 0.0
        self._next_full = 0.0
        self._passes = 0
        self._last_ms: float | None = None
        self._last_found: int | None = None
        self._began = 0.0
        self._count = 0
        self._longest = 0.0
        self._thresholds: tuple[int, int, int] | None = None  # Python's, while ours apply

    def _timed(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        elif self._began:
            self._count += 1
            self._longest = max(self._longest, time.perf_counter() - self._began)

    def start(self) -> None:
        """Collect once and freeze what start-up built (modules, app, caches); from now on
        time every collection."""
        gc.collect()
        gc.freeze()
        now = self._clock()
        self._next_freeze = now + self.freeze_interval
        self._next_full = now + self.full_interval
        if self._timed not in gc.callbacks:
            gc.callbacks.append(self._timed)
        if self.freeze_interval and self._thresholds is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(*THRESHOLDS)

    def stop(self) -> None:
        """Hand every object back to the collector (the process may go on without us)."""
        gc.unfreeze()
        self.freeze_interval = 0.0
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)

    def step(self) -> None:
        """Do what is due: a full pass, else a freeze."""
        if not self.freeze_interval:
            return
        now = self._clock()
        if self.full_interval and now >= self._next_full:
            self.full_pass()
        elif now >= self._next_freeze:
            gc.freeze()
            self._next_freeze = now + self.freeze_interval

    def full_pass(self) -> int:
        """Unfreeze, collect everything, freeze again; returns the objects freed."""
        began = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        took = (time.perf_counter() - began) * 1000
        now = self._clock()
        self._next_full = now + self.full_interval
        self._next_freeze = now + self.freeze_interval
        self._passes += 1
        self._last_ms, self._last_found = round(took, 2), found
        log.info("full garbage collection: %d objects freed in %.1f ms", found, took)
        return found

    def stats(self) -> CollectorStats:
        return CollectorStats(
            gc.get_freeze_count(),
            self._passes,
            self._last_ms,
            self._last_found,
            self._count,
            round(self._longest * 1000, 3),
        )
