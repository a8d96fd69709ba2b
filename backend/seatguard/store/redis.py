"""Presence shared by several server processes through Redis.

Keys (prefix `sg`), every one with a time to live:

| key | type | what |
| --- | --- | --- |
| `sg:{<site>:<user>}:p` | hash | one user's snapshot: `t` write token, `d` (`snapshots.py`) |
| `sg:site:<site>:users` | set | users of a site that may have a snapshot (for revoking) |
| `sg:{nodes}` | sorted set | node id by lease expiry (ms, Redis clock) |
| `sg:{nodes}:<node>:users` | set | users whose tabs the node held (released if it dies) |
| `sg:{nodes}:<node>:reap` | string | claim of the node releasing a dead node's users |

Channel `sg:n:<node>` carries notices to one node; `sg:all` tells every node that a site's
rules changed. Site and user ids are percent-encoded,
so the hash tag `{<site>:<user>}` puts every key of one user in one Redis Cluster slot.

Each update reads the user's snapshot (a cached copy when this node wrote it last), runs
the pure operation on it, and writes it back with `lua/apply.lua`, a compare-and-set on a
random write token: a write that lost to another node's gets the winner's snapshot in
the same reply and runs the operation again on it. So every decision is made by the same
pure core as on one node, atomically, on the Redis server's clock (`TIME`), and two
logins in the same millisecond on two nodes are decided one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import StoreUnavailable, UnreadableSnapshot
from ..presence import Timing, UserPresence
from ..ratelog import RateLog
from ..types import SiteKey, UserKey
from .base import Listener
from .pipeline import AutoPipeline
from .snapshots import decode_snapshot, encode_snapshot

__all__ = ["RedisStore"]

log = logging.getLogger("seatguard")
_unreadable = RateLog(log)  # one line per user and attempt would flood the log

T = TypeVar("T")

_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_ATTEMPTS = 100  # compare-and-set rounds before giving up (contention of many nodes)
_CACHE_SIZE = 50_000  # snapshots this node wrote last, kept to skip a read
_INDEX_TTL_MS = 7 * 86400 * 1000  # a site's user index lives this long after its last join
_INDEX_EXPIRY_EVERY = 60.0  # seconds between renewals of an index set's time to live


def _script(name: str) -> str:
    return (resources.files("seatguard.store") / "lua" / name).read_text()


class RedisStore:
    """Snapshots in Redis, shared by every node started with the same `--redis-url`."""

    def __init__(
        self,
        url: str,
        *,
        timing: Timing,
        lease: float = 10.0,
        timeout: float = 2.0,
        node_id: str | None = None,
        prefix: str = "sg",
    ) -> None:
        self.node_id = node_id or secrets.token_hex(6)
        self._url = url
        self._timing = timing
        self._lease = lease
        self._timeout = timeout
        self._p = prefix
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._redis = aioredis.Redis.from_pool(pool)  # closes the pool with the client
        self._pipe = AutoPipeline(self._redis)
        self._apply = self._pipe.register(_script("apply.lua"))
        self._lease_script = self._pipe.register(_script("lease.lua"))
        self._reaped = self._pipe.register(_script("reaped.lua"))
        self._cache: dict[UserKey, tuple[bytes, bytes]] = {}  # key -> (token, snapshot)
        self._indexed: set[UserKey] = set()  # users already in this node's and site's sets
        self._expiry_due: dict[str, float] = {}  # index set -> when to set its TTL again
        self._pending: dict[UserKey, list[_Queued]] = {}  # operations waiting for a write
        self._draining: dict[UserKey, asyncio.Task[None]] = {}  # users being written
        self._offset = 0.0  # Redis clock minus this machine's
        self._healthy = True
        self._listener: Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._down = asyncio.Event()  # set while Redis cannot be reached

    # --- keys ---------------------------------------------------------------------------

    def _user_key(self, key: UserKey) -> str:
        return f"{self._p}:{{{quote(key[0], safe='')}:{quote(key[1], safe='')}}}:p"

    def _site_users(self, site: SiteKey) -> str:
        return f"{self._p}:site:{quote(site, safe='')}:users"

    @property
    def _nodes(self) -> str:
        return f"{self._p}:{{nodes}}"

    def _node_users(self, node: str) -> str:
        return f"{self._p}:{{nodes}}:{node}:users"

    async def _hand_over(self, message: dict[str, Any]) -> None:
        """A notice for this node, or news for every node (from another node)."""
        assert self._listener is not None
        channel = message.get("channel")
        if channel in (self._everyone, self._everyone.encode()):
            origin, _, site = bytes(message["data"]).decode().partition(" ")
            if origin != self.node_id:
                await self._listener.refresh_rules(site)
            return
        await self._listener.notice(message["data"])

    async def broadcast_rules(self, site: SiteKey) -> None:
        try:
            await self._pipe.call("PUBLISH", self._everyone, f"{self.node_id} {site}")
        except _LINK_ERRORS as exc:
            self._lost(exc)  # the others adopt the rules at their tabs' next hello

    @property
    def _everyone(self) -> str:
        return f"{self._p}:all"

    def _channel(self, node: str) -> str:
        return f"{self._p}:n:{node}"

    # --- clock and health ---------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._offset

    def _clock(self, seconds: Any, micros: Any) -> None:
        """Follow the Redis clock from a reply stamped by `TIME` (within a round trip)."""
        self._offset = int(seconds) + int(micros) / 1e6 - time.time()

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _lost(self, exc: BaseException) -> StoreUnavailable:
        if self._healthy:
            log.warning("Redis cannot be reached (%s); presence decisions wait for it", exc)
            self._healthy = False
            self._down.set()
        self._cache.clear()
        return StoreUnavailable(f"the presence store cannot be reached: {exc}")

    # --- snapshots ----------------------------------------------------------------------

    async def update(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        if not self._healthy:
            raise StoreUnavailable("the presence store cannot be reached")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((op, future))
        if key not in self._draining:
            task = asyncio.create_task(self._drain(key))
            self._draining[key] = task
        result: T = await future
        return result

    async def _drain(self, key: UserKey) -> None:
        """Write the user's queued operations, a batch per round trip, until none is left."""
        try:
            while batch := self._pending.pop(key, None):
                await self._commit(key, batch)
        finally:
            del self._draining[key]

    async def _commit(self, key: UserKey, batch: list[_Queued]) -> None:
        """Run a batch of operations in order on one snapshot and write it in one go.

        Operations queued while a write is under way form the next batch, so a node sends
        one compare-and-set per user at a time whatever its load: racing nodes each win
        a whole batch per round, and no operation waits behind another node's queue.
        """
        hkey = self._user_key(key)
        try:
            indexing = self._index(key)
            # A user this node did not write last is read from the first write's reply:
            # the compare-and-set of a snapshot assumed absent returns the real one.
            token, blob = self._cache.pop(key, (b"", b""))
            for _ in range(_MAX_ATTEMPTS):
                up = decode_snapshot(blob)
                now = self.now()
                results, failed = _run_batch(up, batch, now)
                if failed:  # an operation raised: it gets its error, the others run again
                    batch = [q for q in batch if q[1] not in failed]
                    for future, exc in failed.items():
                        if not future.done():
                            future.set_exception(exc)
                    if not batch:
                        return
                    continue
                empty = up.is_empty()
                new_token = secrets.token_hex(8).encode()
                new_blob = b"" if empty else encode_snapshot(up)
                reply = await self._pipe.script(
                    self._apply, [hkey], [token, new_token, new_blob, self._ttl_ms(up, now)]
                )
                self._clock(reply[1], reply[2])
                if reply[0] == 1:
                    if indexing:
                        await asyncio.gather(*indexing)
                        self._indexed.add(key)
                    if empty:
                        await self._pipe.call("SREM", self._site_users(key[0]), key[1])
                    else:
                        self._remember(key, new_token, new_blob)
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
                    return
                token, blob = reply[3], reply[4]
            error = StoreUnavailable(f"too many concurrent writes to {key}; try again")
        except _LINK_ERRORS as exc:
            error = self._lost(exc)
        except UnreadableSnapshot as exc:
            _left_as_is(key, exc)
            error = exc
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def _read(self, hkey: str) -> tuple[bytes, bytes]:
        token, blob = await self._pipe.call("HMGET", hkey, "t", "d")
        return _raw(token), _raw(blob)

    def _remember(self, key: UserKey, token: bytes, blob: bytes) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (token, blob)

    def _ttl_ms(self, up: UserPresence, now: float) -> int:
        """Long enough that a user with live tabs (synced often) never expires."""
        t = self._timing
        ttl = 2 * t.session_timeout + max(t.reload_grace, t.unload_grace, t.drop_grace) + 60.0
        for _, until in up.tombstones.values():
            ttl = max(ttl, until - now)
        return int(ttl * 1000)

    def _index(self, key: UserKey) -> list[asyncio.Future[Any]]:
        """Put a user in its site's set and this node's set, once per node (the replies
        come with the user's first write)."""
        if key in self._indexed:
            return []
        if len(self._indexed) > 4 * _CACHE_SIZE:
            self._indexed.clear()
        site_users, node_users = self._site_users(key[0]), self._node_users(self.node_id)
        writes = [
            self._pipe.call("SADD", site_users, key[1]),
            self._pipe.call("SADD", node_users, _encode_user(key)),
        ]
        # Each set's time to live is hours: setting it again once a minute is plenty (and
        # the lease renews this node's set anyway), instead of with every new user.
        now = time.monotonic()
        for name, ttl_ms in ((site_users, _INDEX_TTL_MS), (node_users, self._index_ttl_ms)):
            if self._expiry_due.get(name, 0.0) <= now:
                if len(self._expiry_due) > _CACHE_SIZE:
                    self._expiry_due.clear()
                self._expiry_due[name] = now + _INDEX_EXPIRY_EVERY
                writes.append(self._pipe.call("PEXPIRE", name, ttl_ms))
        return writes

    @property
    def _index_ttl_ms(self) -> int:
        return int(max(3600.0, 20 * self._lease) * 1000)

    async def read(self, key: UserKey) -> UserPresence:
        try:
            _, blob = await self._read(self._user_key(key))
        except _LINK_ERRORS as exc:
            raise self._lost(exc) from exc
        try:
            return decode_snapshot(blob)
        except UnreadableSnapshot as exc:
            _left_as_is(key, exc)
            raise

    async def users(self, site: SiteKey) -> list[UserKey]:
        try:
            found = [
                (site, raw.decode())
                async for raw in self._redis.sscan_iter(self._site_users(site), count=500)
            ]
        except _LINK_ERRORS as exc:
            raise self._lost(exc) from exc
        return found

    # --- nodes --------------------------------------------------------------------------

    async def start(self, listener: Listener) -> None:
        self._listener = listener
        try:
            await self._renew(first=True)
        except _LINK_ERRORS as exc:
            self._lost(exc)
        self._tasks = [
            asyncio.create_task(self._lease_forever(), name="seatguard-lease"),
            asyncio.create_task(self._notices_forever(), name="seatguard-notices"),
            asyncio.create_task(self._watch_link(), name="seatguard-redis-link"),
        ]

    async def publish(self, nodes: Iterable[str], payload: bytes) -> None:
        try:
            await asyncio.gather(
                *(self._pipe.call("PUBLISH", self._channel(node), payload) for node in nodes)
            )
        except _LINK_ERRORS as exc:
            self._lost(exc)  # lost notices are repaired by the receivers' resync

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(*_LINK_ERRORS, RedisError):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self._nodes, self.node_id)
                pipe.delete(self._node_users(self.node_id))
                await pipe.execute()
        await self._redis.aclose()

    async def _renew(self, *, first: bool = False) -> list[str]:
        """Renew this node's lease; return the nodes whose lease ran out."""
        lease_ms = int(self._lease * 1000)
        reply = await self._pipe.script(
            self._lease_script,
            [self._nodes, self._node_users(self.node_id)],
            [self.node_id, lease_ms, self._index_ttl_ms],
        )
        self._clock(reply[0], reply[1])
        if int(reply[2]) == 1 and not first:
            # Our lease ran out (a long pause or partition): others may have released our
            # tabs, so index our users again and tell the store what we hold.
            log.warning("this node's lease had lapsed; resynchronising its tabs")
            self._indexed.clear()
            self._expiry_due.clear()
            if self._listener is not None:
                await self._listener.reconnected()
        return [n.decode() for n in reply[3:] if n.decode() != self.node_id]

    async def _lease_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if not self._healthy:
                continue
            try:
                for dead in await self._renew():
                    await self._reap(dead)
            except _LINK_ERRORS as exc:
                self._lost(exc)
            except Exception:
                log.exception("lease renewal failed; retrying")

    async def _reap(self, dead: str) -> None:
        """Release a dead node's users, if no other node is doing it."""
        claim = f"{self._node_users(dead)[: -len(':users')]}:reap"
        if not await self._redis.set(claim, self.node_id, nx=True, px=60_000):
            return
        users: list[UserKey] = []
        async for raw in self._redis.sscan_iter(self._node_users(dead), count=500):
            users.append(_decode_user(raw))
        if users and self._listener is not None:
            await self._listener.reap(dead, users)
        await self._pipe.script(
            self._reaped, [self._nodes, self._node_users(dead), claim], [dead, self.node_id]
        )

    async def _watch_link(self) -> None:
        """While Redis cannot be reached, try it twice a second; when back, resync."""
        while True:
            await self._down.wait()
            await asyncio.sleep(0.5)
            try:
                await self._redis.ping()
                await self._renew(first=True)
            except _LINK_ERRORS:
                continue
            log.warning("Redis is reachable again; resynchronising")
            self._down.clear()
            self._indexed.clear()
            self._healthy = True
            if self._listener is not None:
                await self._listener.reconnected()

    async def _notices_forever(self) -> None:
        """Hand notices for this node to the listener; resync after a lost subscription."""
        client = aioredis.Redis.from_url(
            self._url, socket_connect_timeout=self._timeout, socket_timeout=None
        )
        lost = False
        try:
            while True:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self._channel(self.node_id), self._everyone)
                    if lost and self._listener is not None and self._healthy:
                        await self._listener.reconnected()  # notices may have been lost
                    lost = False
                    idle = 0.0
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is None:
                            idle += 1.0
                            if idle >= self._lease / 3:
                                await pubsub.ping()  # notice a dead link while quiet
                                idle = 0.0
                            continue
                        idle = 0.0
                        if message.get("type") == "message" and self._listener is not None:
                            await self._hand_over(message)
                except _LINK_ERRORS as exc:
                    lost = True
                    self._lost(exc)
                    await asyncio.sleep(0.5)
                finally:
                    with contextlib.suppress(*_LINK_ERRORS, RedisError):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        finally:
            await client.aclose()


_Queued = tuple[Callable[[UserPresence, float], Any], "asyncio.Future[Any]"]


def _run_batch(
    up: UserPresence, batch: list[_Queued], now: float
) -> tuple[list[Any], dict[asyncio.Future[Any], BaseException]]:
    """Run queued operations in order on one snapshot; collect results or the failures."""
    results: list[Any] = []
    failed: dict[asyncio.Future[Any], BaseException] = {}
    for op, future in batch:
        up.seq = max(up.seq + 1, int(now * 1_000_000))
        try:
            results.append(op(up, now))
        except Exception as exc:
            failed[future] = exc
            break  # the snapshot may be half changed: run the rest again without it
    return results, failed


def _left_as_is(key: UserKey, exc: UnreadableSnapshot) -> None:
    _unreadable(
        "cannot read the presence snapshot of %s (%s): it is left as is, and that user is "
        "unavailable on this node",
        key,
        exc,
    )


def _raw(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def _encode_user(key: UserKey) -> str:
    return f"{quote(key[0], safe='')}:{quote(key[1], safe='')}"


def _decode_user(raw: bytes) -> UserKey:
    site, _, user = raw.decode().partition(":")
    return (unquote(site), unquote(user))
