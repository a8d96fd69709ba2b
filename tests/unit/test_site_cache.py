"""The node's site cache (`lookups.SiteCache`) over a real SQLite database: sites by key,
and the site of each secret key that calls the seat check (`by_secret`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest

from seatguard.db import Database, open_database
from seatguard.lookups import _MOST_KEPT, SiteCache, Timed
from seatguard.presence import Rules
from seatguard.sealing import SecretBox
from seatguard.sites import Site, new_site
from tests.unit.fakes import Clock

pytestmark = pytest.mark.anyio

BOX = SecretBox.ephemeral()
T0 = 1_800_000_000.0


class Counted:
    """The database, counting the secret-key reads that reach it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.reads: list[str] = []

    async def site_by_secret_hash(self, digest: str) -> Site | None:
        self.reads.append(digest)
        return await self.db.site_by_secret_hash(digest)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await open_database(":memory:", BOX)
    yield database
    await database.close()


async def a_site(db: Database, name: str) -> tuple[Site, str]:
    """A stored site and the keyed hash of its secret key."""
    site, shown = new_site(name, ["*"], Rules(), client_settings=False, now=T0, box=BOX)
    await db.add_site(site)
    return site, BOX.digest(shown["secret"])


async def test_a_secret_keys_site_is_read_once_per_ttl(db: Database) -> None:
    clock = Clock(T0)
    counted = Counted(db)
    cache = SiteCache(counted, clock, ttl=2.0)  # type: ignore[arg-type]
    site, digest = await a_site(db, "Mine")
    for _ in range(3):
        found = await cache.by_secret(digest)
        assert found is not None and found.key == site.key
    assert counted.reads == [digest]
    clock.now += 2.0
    await cache.by_secret(digest)
    assert counted.reads == [digest, digest]


async def test_unknown_keys_are_read_every_time_and_kept_nowhere(db: Database) -> None:
    """Anybody can send a made-up key: each is a database read, none fills the cache."""
    counted = Counted(db)
    cache = SiteCache(counted, Clock(T0), ttl=2.0)  # type: ignore[arg-type]
    guesses = [BOX.digest(f"sk_guess{i}") for i in range(3)]
    for digest in guesses + guesses:
        assert await cache.by_secret(digest) is None
    assert counted.reads == guesses + guesses
    assert not cache._secrets.kept


async def test_forgetting_a_site_forgets_its_secret_keys_and_no_other(db: Database) -> None:
    counted = Counted(db)
    cache = SiteCache(counted, Clock(T0), ttl=2.0)  # type: ignore[arg-type]
    mine, my_digest = await a_site(db, "Mine")
    _, their_digest = await a_site(db, "Theirs")
    await cache.by_secret(my_digest)
    await cache.by_secret(their_digest)
    cache.forget(mine.key)  # its secret key was replaced here
    await cache.by_secret(my_digest)
    await cache.by_secret(their_digest)
    assert counted.reads == [my_digest, their_digest, my_digest]


async def test_a_cache_past_its_bound_starts_again_empty() -> None:
    """Every cache of `lookups` keeps its entries in a `Timed`: never more than its bound,
    however many sites a node serves (or keys it is sent)."""
    clock = Clock(T0)
    timed: Timed[int, int] = Timed(clock, ttl=2.0)
    reads: list[int] = []

    async def read(n: int) -> int:
        reads.append(n)
        return n * 2

    for n in range(_MOST_KEPT + 1):
        assert await timed.get(n, functools.partial(read, n)) == n * 2
    assert len(timed.kept) == _MOST_KEPT + 1
    await timed.get(-1, lambda: read(-1))
    assert list(timed.kept) == [-1]  # the bound passed: all dropped, the new one kept
    reads.clear()
    await timed.get(-1, lambda: read(-1))
    clock.now += 2.0
    await timed.get(-1, lambda: read(-1))
    assert reads == [-1]  # kept, then read again once `ttl` passed
