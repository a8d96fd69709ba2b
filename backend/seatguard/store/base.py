"""The presence store interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ..presence import UserPresence
from ..types import UserKey

__all__ = ["PresenceStore"]

T = TypeVar("T")


class PresenceStore(Protocol):
    """Holds every user's presence snapshot and applies operations to it atomically."""

    async def update(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        """Run the pure `op` on the user's snapshot at the store's `now`, atomically.

        No other update of the same user interleaves; a snapshot left empty is deleted.
        `now` is the store's clock (the shared server's, for shared stores), so every
        node decides on one timeline.
        """
        ...

    async def keys(self) -> list[UserKey]:
        """Every user with a snapshot, for the expiry sweep."""
        ...

    async def close(self) -> None: ...
