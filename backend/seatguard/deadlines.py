"""A set of keys, each with a time at which something is due for it."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """Keys with due times, popped when due. Setting a key replaces its time."""

    def __init__(self) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: K) -> bool:
        return key in self._due

    def get(self, key: K) -> float | None:
        return self._due.get(key)

    def set(self, key: K, at: float | None) -> None:
        """Make `key` due at `at`; None forgets it.

        Entries replaced or forgotten stay in the heap until it is compacted, which happens
        once they outnumber the live ones: a forgotten key is let go of soon, not when its
        old time comes (keys can be tabs, which hold their sockets).
        """
        if at is None:
            self._due.pop(key, None)
        elif self._due.get(key) == at:
            return
        else:
            self._due[key] = at
            heapq.heappush(self._heap, (at, next(self._counter), key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def set_earlier(self, key: K, at: float) -> None:
        """Make `key` due at `at` unless it is due sooner already."""
        current = self._due.get(key)
        if current is None or at < current:
            self.set(key, at)

    def pop_due(self, now: float) -> list[K]:
        """Remove and return the keys due at `now` or earlier, soonest first."""
        due: list[K] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == at:
                del self._due[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(at, next(self._counter), key) for key, at in self._due.items()]
        heapq.heapify(self._heap)
