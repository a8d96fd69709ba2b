"""In-memory presence for a single server process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from ..presence import UserPresence
from ..types import SiteKey, UserKey
from .base import Listener
from .snapshots import decode_snapshot, encode_snapshot

__all__ = ["MemoryStore"]

T = TypeVar("T")


class MemoryStore:
    """Snapshots in a dict. `op` runs without an await, so each update is atomic."""

    node_id = ""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._users: dict[UserKey, UserPresence] = {}
        self._clock = clock
        # One counter for every user: a snapshot deleted when empty and made again later
        # still gets seqs above the old one's, so news of the old one is never taken for
        # news of the new (see `PresenceStore.update`). It follows the clock in microseconds,
        # as the Redis store's does, so that decisions made here while Redis is away fall
        # in order between the decisions made there.
        self._seq = 0

    def now(self) -> float:
        return self._clock()

    @property
    def healthy(self) -> bool:
        return True

    async def update(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        return self.update_now(key, op)

    def update_now(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        """`update` without the await, for callers on the event loop's thread."""
        up = self._users.get(key)
        if up is None:
            up = self._users[key] = UserPresence()
        now = self._clock()
        self._seq = max(self._seq + 1, int(now * 1_000_000))
        up.seq = self._seq
        try:
            return op(up, now)
        finally:
            if up.is_empty():
                del self._users[key]

    async def read(self, key: UserKey) -> UserPresence:
        """A copy made through the snapshot format the Redis store keeps: every field, in
        an eighth of the time `copy.deepcopy` takes (the seat check reads on every call)."""
        up = self._users.get(key)
        return decode_snapshot(encode_snapshot(up)) if up is not None else UserPresence()

    async def users(self, site: SiteKey) -> list[UserKey]:
        return [key for key in self._users if key[0] == site]

    async def start(self, listener: Listener) -> None:
        """Nothing to join: a memory store has one node."""

    async def publish(self, nodes: Iterable[str], payload: bytes) -> None:
        """No other node can hold a tab of this store's users."""

    async def broadcast_rules(self, site: SiteKey) -> None:
        """No other node to tell."""

    async def close(self) -> None:
        self._users.clear()
