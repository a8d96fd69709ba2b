"""In-memory presence for a single server process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..presence import UserPresence
from ..types import UserKey

__all__ = ["MemoryStore"]

T = TypeVar("T")


class MemoryStore:
    """Snapshots in a dict. `op` runs without an await, so each update is atomic."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._users: dict[UserKey, UserPresence] = {}
        self._clock = clock

    async def update(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        up = self._users.get(key)
        if up is None:
            up = self._users[key] = UserPresence()
        try:
            return op(up, self._clock())
        finally:
            if up.is_empty():
                del self._users[key]

    async def keys(self) -> list[UserKey]:
        return list(self._users)

    async def close(self) -> None:
        self._users.clear()
