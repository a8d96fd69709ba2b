"""The presence store interface: where every user's snapshot lives and how nodes hear of
each other.

One process runs on `MemoryStore`; several share one truth through `RedisStore`. Both keep
the contract in tests/integration/test_store_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from ..presence import UserPresence
from ..types import SiteKey, UserKey

__all__ = ["Listener", "PresenceStore"]

T = TypeVar("T")


class Listener(Protocol):
    """What a store tells its node (the node implements this)."""

    async def notice(self, payload: bytes) -> None:
        """Another node changed a user whose tabs this node may hold."""
        ...

    async def reap(self, node: str, users: list[UserKey]) -> None:
        """`node` died: release the tabs it held of these users."""
        ...

    async def reconnected(self) -> None:
        """The link to the shared store is back after a loss: resynchronise every user."""
        ...

    async def refresh_rules(self, site: SiteKey) -> None:
        """Another node changed the rules of a site: apply them to the tabs held here."""
        ...


class PresenceStore(Protocol):
    """Holds every user's presence snapshot and applies operations to it atomically."""

    node_id: str
    """This process's name among the nodes sharing the store ("" when it is alone)."""

    def now(self) -> float:
        """The store's clock: the shared server's for shared stores, so nodes agree."""
        ...

    @property
    def healthy(self) -> bool:
        """Whether the store can be reached now."""
        ...

    async def update(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        """Run the pure `op` on the user's snapshot at the store's `now`, atomically.

        No other update of the same user interleaves: a shared store may run `op` more than
        once, on fresher snapshots, until its write wins. Before `op` runs, `seq` is raised
        above every earlier write's. A snapshot left empty is deleted. Raises
        `StoreUnavailable` when the store cannot be reached; then nothing was written.
        """
        ...

    async def read(self, key: UserKey) -> UserPresence:
        """A copy of one user's snapshot (empty if none)."""
        ...

    async def users(self, site: SiteKey) -> list[UserKey]:
        """Every user of a site that may have a snapshot (a superset is fine)."""
        ...

    async def start(self, listener: Listener) -> None:
        """Join the other nodes: leases, cross-node notices, resynchronisation."""
        ...

    async def publish(self, nodes: Iterable[str], payload: bytes) -> None:
        """Send a notice to other nodes (best effort: resynchronisation repairs losses)."""
        ...

    async def broadcast_rules(self, site: SiteKey) -> None:
        """Tell every other node that the rules of a site changed."""
        ...

    async def close(self) -> None:
        """Leave the other nodes and release connections."""
        ...
