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
]

V = TypeVar("V")

_WHOLE_SITE = 5_000  # a site with more overrides than this is queried per hello instead


class SiteCache:
    """Sites' settings, each read at most once per `ttl` seconds; and the site of each
    secret key that called the API (`by_secret`), for as long."""

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._clock = clock
        self._ttl = ttl
        self._sites: dict[str, tuple[Site | None, float]] = {}
        self._secrets: dict[str, tuple[Site, float]] = {}

    async def by_secret(self, digest: str) -> Site | None:
        """The site whose secret keys (current or in their overlap) include the one whose
        keyed hash is `digest`, None if there is none. Only found sites are kept: unknown
        keys, which anybody can send, are read from the database each time and fill
        nothing."""
        now = self._clock()
        cached = self._secrets.get(digest)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        site = await self._db.site_by_secret_hash(digest)
        if len(self._secrets) > 10_000:
            self._secrets.clear()
        if site is None:
            self._secrets.pop(digest, None)
        else:
            self._secrets[digest] = (site, now)
        return site

    async def get(self, key: str) -> Site | None:
        """The site with this public key, None if there is none."""
        now = self._clock()
        cached = self._sites.get(key)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        site = await self._db.site(key)
        if len(self._sites) > 10_000:
            self._sites.clear()
        self._sites[key] = (site, now)
        return site

    def forget(self, key: str) -> None:
        """Read the site from the database next time (its secrets or settings changed)."""
        self._sites.pop(key, None)
        for digest in [d for d, (site, _) in self._secrets.items() if site.key == key]:
            del self._secrets[digest]


class PolicyCache:
    """Sites' policies (`signals.policies`), each read at most once per `ttl` seconds, at
    once again on the node that changed it (`forget`)."""

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._clock = clock
        self._ttl = ttl
        self._sites: dict[str, tuple[Policy, float]] = {}

    async def get(self, site: str) -> Policy:
        """The site's policy; the empty one (allow everything) if it has none."""
        now = self._clock()
        cached = self._sites.get(site)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        policy = await self._db.policy(site) or Policy()
        if len(self._sites) > 10_000:
            self._sites.clear()
        self._sites[site] = (policy, now)
        return policy

    def forget(self, site: str) -> None:
        """Read the site's policy from the database next time (it was just set)."""
        self._sites.pop(site, None)


class OverrideCache:
    """A site's overrides, read at most once per `ttl` seconds (as sites themselves are)."""

    def __init__(self, db: Database, clock: Callable[[], float], ttl: float) -> None:
        self._db = db
        self._clock = clock
        self._ttl = ttl
        self._sites: dict[str, tuple[dict[tuple[Scope, str], Override] | None, float]] = {}

    async def get(
        self, site: str, wanted: Mapping[Scope, str | None]
    ) -> dict[tuple[Scope, str], Override]:
        """The overrides of `site` for the given org, role and user."""
        now = self._clock()
        cached = self._sites.get(site)
        if cached is None or now - cached[1] >= self._ttl:
            every = await self._db.overrides(site)
            cached = (every if len(every) <= _WHOLE_SITE else None, now)
            if len(self._sites) > 10_000:
                self._sites.clear()
            self._sites[site] = cached
        kept = cached[0]
        if kept is None:  # too many to keep: ask for just these
            return await self._db.overrides(site, wanted)
        return {
            (scope, name): kept[(scope, name)]
            for scope, name in wanted.items()
            if name and (scope, name) in kept
        }

    def forget(self, site: str) -> None:
        """Overrides of `site` changed here: read them again on the next hello."""
        self._sites.pop(site, None)


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
        self._clock = clock
        self._ttl = ttl
        self._sites: dict[str, tuple[frozenset[str] | None, float]] = {}

    async def get(self, site: str, user: str) -> Suspension | None:
        """The user's suspension, None if the user is not suspended."""
        now = self._clock()
        cached = self._sites.get(site)
        if cached is None or now - cached[1] >= self._ttl:
            found = await self._db.suspensions(site, _WHOLE_SITE + 1)
            users = frozenset(s.user for s in found) if len(found) <= _WHOLE_SITE else None
            if len(self._sites) > 10_000:
                self._sites.clear()
            cached = self._sites[site] = (users, now)
        if cached[0] is not None and user not in cached[0]:
            return None
        return await self._db.suspension(site, user)

    def forget(self, site: str) -> None:
        """A suspension of `site` changed here: read them again on the next hello."""
        self._sites.pop(site, None)
