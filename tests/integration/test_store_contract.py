"""One contract, two presence stores: in memory, and in a real Redis shared by nodes.

Every test in the first part runs against both (`nodes` gives one store per node: one for
memory, three sharing a throwaway Redis server). The second part is what only a shared
store has: notices between nodes, leases, a lost and recovered link, and its keys.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis

from seatguard import presence
from seatguard.errors import StoreUnavailable, UnreadableSnapshot
from seatguard.presence import Arrival, Rules, SeatState, Timing, UserPresence
from seatguard.store import MemoryStore, PresenceStore
from seatguard.store.redis import RedisStore
from seatguard.types import SiteKey, UserKey
from tests.helpers import RedisServer, scaled

pytestmark = pytest.mark.anyio

TIMING = Timing(session_timeout=30, reload_grace=5)


class Heard:
    """A listener that writes down what its store told it."""

    def __init__(self) -> None:
        self.notices: list[bytes] = []
        self.reaped: list[tuple[str, list[UserKey]]] = []
        self.refreshed: list[SiteKey] = []
        self.reconnects = 0
        self.changed = asyncio.Event()

    async def notice(self, payload: bytes) -> None:
        self.notices.append(payload)
        self.changed.set()

    async def reap(self, node: str, users: list[UserKey]) -> None:
        self.reaped.append((node, users))
        self.changed.set()

    async def reconnected(self) -> None:
        self.reconnects += 1
        self.changed.set()

    async def refresh_rules(self, site: SiteKey) -> None:
        self.refreshed.append(site)
        self.changed.set()

    async def until(self, check: Callable[[], bool], within: float = 5) -> None:
        with anyio.fail_after(scaled(within)):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def redis_store(url: str, prefix: str, **options: Any) -> RedisStore:
    return RedisStore(url, timing=TIMING, prefix=prefix, **options)


@pytest.fixture(params=["memory", "redis"])
async def nodes(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[list[PresenceStore]]:
    """The stores of the nodes under test: one in memory, or three sharing one Redis."""
    if request.param == "memory":
        stores: list[PresenceStore] = [MemoryStore(time.time)]
    else:
        prefix = "t" + secrets.token_hex(4)
        stores = [redis_store(redis_server.url, prefix) for _ in range(3)]
    for store in stores:
        await store.start(Heard())
    yield stores
    for store in stores:
        await store.close()


def user() -> UserKey:
    return ("site-" + secrets.token_hex(3), "user-" + secrets.token_hex(3))


def joiner(session: str, rules: Rules) -> Callable[[UserPresence, float], SeatState]:
    """An operation: one tab of a new browser session joins; its state is the result."""

    def op(up: UserPresence, now: float) -> SeatState:
        presence.join(up, Arrival(session, session + "-t", session + "-d"), rules=rules, now=now)
        return up.state(session)

    return op


# --- the contract ------------------------------------------------------------------------


async def test_an_update_is_kept_and_reads_are_copies(nodes: list[PresenceStore]) -> None:
    key = user()
    assert await nodes[0].update(key, joiner("s-one", Rules())) is SeatState.admitted
    for store in nodes:
        copy = await store.read(key)
        assert list(copy.sessions) == ["s-one"]
        copy.sessions.clear()
    assert list((await nodes[-1].read(key)).sessions) == ["s-one"]


async def test_seq_rises_with_every_write_on_every_node(nodes: list[PresenceStore]) -> None:
    key = user()
    seqs = []

    def seq_after(session: str) -> Callable[[UserPresence, float], int]:
        def op(up: UserPresence, now: float) -> int:
            joiner(session, Rules())(up, now)
            return up.seq

        return op

    for i in range(6):
        seqs.append(await nodes[i % len(nodes)].update(key, seq_after(f"s{i}-session")))
    assert seqs == sorted(seqs) and len(set(seqs)) == 6


async def test_seq_keeps_rising_after_an_empty_snapshot_is_deleted(
    nodes: list[PresenceStore],
) -> None:
    """The node orders news by seq: a user whose presence emptied (the last session
    ended) and who comes back must not get seqs that news of the old snapshot still has."""
    key = user()
    seqs = []

    def join_then(empty: bool) -> Callable[[UserPresence, float], int]:
        def op(up: UserPresence, now: float) -> int:
            joiner("s-again", Rules())(up, now)
            if empty:
                up.sessions.clear()
                up.seats.clear()
            return up.seq

        return op

    for i in range(6):
        store = nodes[i % len(nodes)]
        seqs.append(await store.update(key, join_then(empty=i % 2 == 0)))
        if i % 2 == 0:
            assert (await store.read(key)).is_empty()
    assert seqs == sorted(seqs) and len(set(seqs)) == 6


async def test_the_store_clock_is_the_time(nodes: list[PresenceStore]) -> None:
    for store in nodes:
        assert abs(store.now() - time.time()) < 1.0
        assert await store.update(user(), lambda up, now: now) == pytest.approx(time.time(), abs=1)


async def test_an_empty_snapshot_is_deleted(nodes: list[PresenceStore]) -> None:
    key = user()
    await nodes[0].update(key, joiner("s-gone", Rules()))
    assert await nodes[-1].users(key[0]) == [key]

    def log_out(up: UserPresence, now: float) -> None:
        presence.logout(up, session="s-gone", now=now)

    await nodes[-1].update(key, log_out)
    assert (await nodes[0].read(key)).sessions == {}
    assert await nodes[0].users(key[0]) == []


async def test_users_are_listed_per_site(nodes: list[PresenceStore]) -> None:
    site = "site-" + secrets.token_hex(3)
    keys = [(site, f"u{i}") for i in range(5)]
    for i, key in enumerate(keys):
        await nodes[i % len(nodes)].update(key, joiner(f"s{i}-session", Rules()))
    await nodes[0].update(user(), joiner("elsewhere", Rules()))
    for store in nodes:
        assert sorted(await store.users(site)) == keys


@pytest.mark.parametrize(
    ("rules", "seated"), [(Rules(limit=1), 1), (Rules("device-limit", 3), 3)], ids=["1", "dev3"]
)
async def test_two_hundred_joins_at_once_on_every_node_seat_exactly_the_limit(
    nodes: list[PresenceStore], rules: Rules, seated: int
) -> None:
    """200 browsers of one user join at the same instant, spread over the nodes."""
    for _ in range(5):
        key = user()
        sessions = [f"s{i:03d}-{secrets.token_hex(2)}" for i in range(200)]
        devices = {s: f"dev{i % 7}" for i, s in enumerate(sessions)}

        def op(session: str, device: str) -> Callable[[UserPresence, float], SeatState]:
            def join(up: UserPresence, now: float) -> SeatState:
                presence.join(up, Arrival(session, "t", device), rules=rules, now=now)
                return up.state(session)

            return join

        with anyio.fail_after(scaled(60)):
            states = await asyncio.gather(
                *(
                    nodes[i % len(nodes)].update(key, op(s, devices[s]))
                    for i, s in enumerate(sessions)
                )
            )
        final = await nodes[0].read(key)
        assert len(final.sessions) == 200
        assert len(final.seats) == seated
        admitted = [s for s, st in zip(sessions, states, strict=True) if st is SeatState.admitted]
        assert sorted(admitted) == sorted(
            s for s in final.sessions if final.state(s) is SeatState.admitted
        )
        if rules.mode == "concurrence":
            assert len(admitted) == 1


async def test_interleaved_writers_lose_no_update(nodes: list[PresenceStore]) -> None:
    """Each node keeps its last write cached; writes of the others must not be lost."""
    key = user()
    for i in range(30):
        await nodes[i % len(nodes)].update(key, joiner(f"w{i:02d}-session", Rules(limit=100)))
    assert len((await nodes[0].read(key)).sessions) == 30


# --- what only a shared store has --------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return "t" + secrets.token_hex(4)


async def test_a_notice_reaches_the_node_it_is_for(redis_server: RedisServer, prefix: str) -> None:
    a, b = redis_store(redis_server.url, prefix), redis_store(redis_server.url, prefix)
    heard_a, heard_b = Heard(), Heard()
    await a.start(heard_a)
    await b.start(heard_b)
    try:
        await asyncio.sleep(0.2)  # the subscriptions are made in the background
        await a.publish([b.node_id], b"for b")
        await heard_b.until(lambda: heard_b.notices == [b"for b"])
        assert heard_a.notices == []
    finally:
        await a.close()
        await b.close()


async def test_changed_rules_reach_every_other_node(redis_server: RedisServer, prefix: str) -> None:
    a, b, c = (redis_store(redis_server.url, prefix) for _ in range(3))
    heard_a, heard_b, heard_c = Heard(), Heard(), Heard()
    await a.start(heard_a)
    await b.start(heard_b)
    await c.start(heard_c)
    try:
        await asyncio.sleep(0.2)  # the subscriptions are made in the background
        await a.broadcast_rules("site-x")
        await heard_b.until(lambda: heard_b.refreshed == ["site-x"])
        await heard_c.until(lambda: heard_c.refreshed == ["site-x"])
        assert heard_a.refreshed == []  # the node that changed them has applied them
    finally:
        for store in (a, b, c):
            await store.close()


async def test_a_dead_node_is_reaped_once_its_lease_runs_out(
    redis_server: RedisServer, prefix: str
) -> None:
    # Timeline: node A (lease 0.6 s) holds two users and dies without a word at t=0; node B
    # renews every 0.2 s and, once A's lease ran out, releases A's users exactly once.
    a = redis_store(redis_server.url, prefix, lease=scaled(0.6))
    b = redis_store(redis_server.url, prefix, lease=scaled(0.6))
    heard = Heard()
    await a.start(Heard())
    keys = [user(), user()]
    for key in keys:
        await a.update(key, joiner("s-of-a", Rules()))
    for task in a._tasks:  # die: stop renewing, leave everything behind
        task.cancel()
    await b.start(heard)
    try:
        await heard.until(lambda: bool(heard.reaped), within=5)
        [(node, users)] = heard.reaped
        assert node == a.node_id and sorted(users) == sorted(keys)
        await asyncio.sleep(scaled(1.0))
        assert len(heard.reaped) == 1
    finally:
        await b.close()
        await a._redis.aclose()


async def test_every_key_has_a_time_to_live_and_one_user_one_hash_tag(
    redis_server: RedisServer, prefix: str
) -> None:
    store = redis_store(redis_server.url, prefix)
    await store.start(Heard())
    key = ("site:{odd}", "user}{:x")
    try:
        await store.update(key, joiner("s-ttl-check", Rules()))
        raw = aioredis.Redis.from_url(redis_server.url)
        names = [k.decode() async for k in raw.scan_iter(f"{prefix}:*")]
        assert names
        for name in names:
            assert await raw.pttl(name) > 0, name
        [snapshot] = [n for n in names if n.endswith(":p")]
        tag = snapshot[snapshot.index("{") + 1 : snapshot.index("}")]
        assert tag == "site%3A%7Bodd%7D:user%7D%7B%3Ax"
        await raw.aclose()
    finally:
        await store.close()


async def test_a_lost_link_fails_fast_and_resyncs_when_redis_is_back(
    tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> None:
    server = RedisServer(tmp_path_factory.mktemp("redis-restart"))
    server.start()
    store = redis_store(server.url, prefix, timeout=scaled(1))
    heard = Heard()
    await store.start(heard)
    try:
        key = user()
        await store.update(key, joiner("s-before", Rules()))
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.update(key, joiner("s-during", Rules()))
        assert not store.healthy
        with pytest.raises(StoreUnavailable):  # fails at once while the link is down
            await store.update(key, joiner("s-during", Rules()))
        server.start()
        await heard.until(lambda: heard.reconnects >= 1, within=10)
        assert store.healthy
        # Redis kept nothing: the node's resync is what rebuilds the snapshot.
        assert await store.update(key, joiner("s-after", Rules())) is SeatState.admitted
    finally:
        await store.close()
        server.stop()


# --- formats of other releases (rolling upgrades) -----------------------------------------


@pytest.mark.parametrize(
    "blob",
    [
        msgspec.msgpack.encode({"v": 2, "sessions": "kept elsewhere"}),  # a newer node's
        b"\xc1 not msgpack",  # not a snapshot at all
    ],
    ids=["newer-format", "not-msgpack"],
)
async def test_a_snapshot_this_node_cannot_read_is_left_alone_and_only_its_user_waits(
    redis_server: RedisServer, prefix: str, blob: bytes
) -> None:
    store = redis_store(redis_server.url, prefix)
    await store.start(Heard())
    raw = aioredis.Redis.from_url(redis_server.url)
    key, other = user(), user()
    try:
        await store.update(key, joiner("s-before", Rules()))
        # Another node writes the user's snapshot in a form this node does not read.
        hkey = store._user_key(key)
        await raw.hset(hkey, mapping={"t": b"newer-token", "d": blob})
        with anyio.fail_after(scaled(5)):  # refused at once, never left hanging
            with pytest.raises(UnreadableSnapshot):
                await store.update(key, joiner("s-after", Rules()))
            with pytest.raises(UnreadableSnapshot):
                await store.read(key)
        assert await raw.hgetall(hkey) == {b"t": b"newer-token", b"d": blob}
        assert store.healthy
        assert await store.update(other, joiner("s-other", Rules())) is SeatState.admitted
    finally:
        await raw.aclose()
        await store.close()


async def test_a_snapshot_from_before_format_numbers_is_read_and_written_as_format_1(
    redis_server: RedisServer, prefix: str
) -> None:
    store = redis_store(redis_server.url, prefix)
    await store.start(Heard())
    raw = aioredis.Redis.from_url(redis_server.url)
    key = user()
    try:
        # A node of the release before wrote the user's snapshot: one seat, held by s-old.
        up = UserPresence()
        joiner("s-old", Rules())(up, time.time())
        hkey = store._user_key(key)
        await raw.hset(hkey, mapping={"t": b"old-token", "d": msgspec.msgpack.encode(up)})
        await raw.pexpire(hkey, 60_000)
        assert await store.update(key, joiner("s-new", Rules())) is SeatState.blocked
        blob = await raw.hget(hkey, "d")
        assert isinstance(blob, bytes)
        written = msgspec.msgpack.decode(blob)
        assert written["v"] == 1 and sorted(written["sessions"]) == ["s-new", "s-old"]
    finally:
        await raw.aclose()
        await store.close()
