"""Reads every hello needs, made cheap: sites and overrides cached per site, revocation
checks batched, suspensions cached per site. Without them each hello would wait for
database round trips of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from .db import Database
from .rules import Override, Scope
from .signals.history import Stored
from .signals.policies import Policy
from .sites import Site
from .suspension import Suspension

__all__ = [
    "Batched",
    "HistoryReads",
    "OverrideCache",
    "PolicyCache",
    "RevocationChecks",
    "SiteCache",
    "SuspensionCache",
    "Timed",
]

K = TypeVar("K")
V = TypeVar("V")

_WHOLE_SITE = 5_000  # a site with more overrides than this is queried per hello instead
_MOST_KEPT = 10_000  # a cache holding more than this many entries starts again empty


class Timed(Generic[K, V]):
    """Values read at most once per `ttl` seconds each: the caches below keep theirs here.
    Past `_MOST_KEPT` entries every one is dropped (a node serving that many sites reads
    them again, rather than growing without bound)."""

    def __init__(self, clock: Callable[[], float], ttl: float) -> None:
        self._clock = clock
        self._ttl = ttl
        self.kept: dict[K, tuple[V, float]] = {}

    async def get(
        self, key: K, read: Callable[[], Awaitable[V]], keep: Callable[[V], bool] | None = None
    ) -> V:
        """The value of `key`: kept if read less than `ttl` seconds ago, else `read()`,
        then kept unless `keep` says otherwise."""
        now = self._clock()
        cached = self.kept.get(key)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        value = await read()
        if keep is not None and not keep(value):
            self.kept.pop(key, None)
            return value
        if len(self.kept) > _MOST_KEPT:
            self.kept.clear()
        self.kept[key] = (value, now)
        return value

    def forget(self, key: K) -> None:
        self.kept.pop(key, None)


class SiteCache:
    """Sites' settings, each read at most once per `ttl` seconds; and the site of each
    secret key that called the seat check (`by_secret`), for as long."""

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._sites: Timed[str, Site | None] = Timed(clock, ttl)
        self._secrets: Timed[str, Site | None] = Timed(clock, ttl)

    async def by_secret(self, digest: str) -> Site | None:
        """The site whose secret keys (current or in their overlap) include the one whose
        keyed hash is `digest`, None if there is none. Only found sites are kept: unknown
        keys, which anybody can send, are read from the database each time and fill
        nothing."""
        return await self._secrets.get(
            digest, lambda: self._db.site_by_secret_hash(digest), keep=_found
        )

    async def get(self, key: str) -> Site | None:
        """The site with this public key, None if there is none."""
        return await self._sites.get(key, lambda: self._db.site(key))

    def forget(self, key: str) -> None:
        """Read the site from the database next time (its secrets or settings changed)."""
        self._sites.forget(key)
        kept = self._secrets.kept
        for digest in [d for d, (site, _) in kept.items() if site is not None and site.key == key]:
            del kept[digest]


def _found(site: Site | None) -> bool:
    return site is not None


class PolicyCache:
    """Sites' policies (`signals.policies`), each read at most once per `ttl` seconds, at
    once again on the node that changed it (`forget`)."""

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._sites: Timed[str, Policy] = Timed(clock, ttl)

    async def get(self, site: str) -> Policy:
        """The site's policy; the empty one (allow everything) if it has none."""

        async def read() -> Policy:
            return await self._db.policy(site) or Policy()

        return await self._sites.get(site, read)

    def forget(self, site: str) -> None:
        """Read the site's policy from the database next time (it was just set)."""
        self._sites.forget(site)


class OverrideCache:
    """A site's overrides, read at most once per `ttl` seconds (as sites themselves are)."""

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._sites: Timed[str, dict[tuple[Scope, str], Override] | None] = Timed(clock, ttl)

    async def get(
        self, site: str, wanted: Mapping[Scope, str | None]
    ) -> dict[tuple[Scope, str], Override]:
        """The overrides of `site` for the given org, role and user."""

        async def read() -> dict[tuple[Scope, str], Override] | None:
            every = await self._db.overrides(site)
            return every if len(every) <= _WHOLE_SITE else None

        kept = await self._sites.get(site, read)
        if kept is None:  # too many to keep: ask for just these
            return await self._db.overrides(site, wanted)
        return {
            (scope, name): kept[(scope, name)]
            for scope, name in wanted.items()
            if name and (scope, name) in kept
        }

    def forget(self, site: str) -> None:
        """Overrides of `site` changed here: read them again on the next hello."""
        self._sites.forget(site)


class Batched(Generic[V]):
    """Reads by (site, item) where reads waiting together share one query per site:
    `fetch(site, items)` gives the value of each item found; the others get `missing`."""

    def __init__(
        self, fetch: Callable[[str, list[str]], Awaitable[Mapping[str, V]]], missing: V
    ) -> None:
        self._fetch = fetch
        self._missing = missing
        self._pending: dict[str, dict[str, list[asyncio.Future[V]]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, site: str, item: str) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(site, {}).setdefault(item, []).append(future)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                for site, items in pending.items():
                    try:
                        found = await self._fetch(site, list(items))
                    except Exception as exc:
                        for futures in items.values():
                            for future in futures:
                                if not future.done():
                                    future.set_exception(exc)
                        continue
                    for item, futures in items.items():
                        value = found.get(item, self._missing)
                        for future in futures:
                            if not future.done():
                                future.set_result(value)
        finally:
            self._task = None


class RevocationChecks:
    """What the database says was revoked: `await revoked(site, session, now)`, where checks
    waiting together share one query, and each user's cut-off for identity tokens."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._now = 0.0
        self._batch: Batched[bool] = Batched(self._revoked, False)

    async def revoked(self, site: str, session: str, now: float) -> bool:
        self._now = max(self._now, now)
        return await self._batch.get(site, session)

    async def _revoked(self, site: str, sessions: list[str]) -> dict[str, bool]:
        return dict.fromkeys(await self._db.revoked_sessions(site, sessions, self._now), True)

    async def user_revoked_before(self, site: str, user: str) -> float | None:
        """The user's cut-off: identity tokens issued before it are refused; None if none."""
        return await self._db.user_revoked_before(site, user)


class HistoryReads:
    """Users' stored device and network histories (`signals.history`), for the policy's
    judgements at hello: `await get(site, user)`, reads waiting together sharing one query
    (a storm of logins reads them in a few queries, not one each)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batch: Batched[Stored | None] = Batched(self._read, None)

    async def _read(self, site: str, users: list[str]) -> dict[str, Stored]:
        return await self._db.histories(site, users)

    async def get(self, site: str, user: str) -> Stored | None:
        return await self._batch.get(site, user)


class SuspensionCache:
    """Who is suspended, for hellos: each site's suspended users read at most once per
    `ttl` seconds; a user found there is read again from the database on every hello.

    So a lift anywhere lets the user in at once on every node (nothing positive is kept),
    and a suspension is seen by every node within `ttl`, at once on the node that wrote it
    (`forget`); meanwhile the mark in the user's presence snapshot refuses their joins
    (`presence.suspend`). A database that cannot be read fails the hello (closed): a
    suspension is never missed because the database was down.
    """

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._sites: Timed[str, frozenset[str] | None] = Timed(clock, ttl)

    async def get(self, site: str, user: str) -> Suspension | None:
        """The user's suspension, None if the user is not suspended."""

        async def read() -> frozenset[str] | None:
            found = await self._db.suspensions(site, _WHOLE_SITE + 1)
            return frozenset(s.user for s in found) if len(found) <= _WHOLE_SITE else None

        users = await self._sites.get(site, read)
        if users is not None and user not in users:
            return None
        return await self._db.suspension(site, user)

    def forget(self, site: str) -> None:
        """A suspension of `site` changed here: read them again on the next hello."""
        self._sites.forget(site)
