"""What a cluster does when a node dies or Redis goes away, with real processes.

Each test starts its own Redis and two nodes (lease 1.5 s, reload grace 1 s, drop grace
2 s, session timeout 1.5 s, all scaled), so killing things harms no other test.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import anyio
import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from tests.helpers import RedisServer, scaled, seatguard
from tests.integration.api_client import api
from tests.integration.client import Browser, Frame, Tab, frames_of
from tests.integration.cluster import Cluster, start_cluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    redis: RedisServer,
    postgres_url: str,
    server_env: dict[str, str],
) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("pair"), redis, postgres_url, server_env, 2)


def user() -> str:
    return "user-" + secrets.token_hex(4)


def open_and_closed(cluster: Cluster) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two new sites of `cluster`: one that fails open while the store is down (the
    default), one that fails closed."""
    opened = cluster.create_site("--name", "Open", "--origin", "*")
    closed = cluster.create_site("--name", "Closed", "--origin", "*")
    seatguard(
        "site",
        "update",
        closed["key"],
        "--store-failure",
        "closed",
        "--db",
        cluster.database_url,
        env=cluster.env,  # the change is audited: signed with the cluster's audit key
    )
    return opened, closed


async def eventually(check: Callable[[], bool], within: float = 10) -> None:
    """Poll `check` every 0.1 s until it holds."""
    with anyio.fail_after(scaled(within)):
        for _ in itertools.count():
            if check():
                return
            await anyio.sleep(0.1)


async def until_unblocked(tab: Tab, within: float) -> float:
    """Heartbeat until `unblock` arrives; return how long it took."""
    start = time.monotonic()
    with anyio.fail_after(scaled(within)):
        while True:
            frames = await tab.frames_for(0.2)
            assert all(f["t"] in ("unblock",) for f in frames), frames
            if frames:
                return time.monotonic() - start


async def test_kill_9_of_a_node_frees_its_seats_within_the_lease(pair: Cluster) -> None:
    # Timeline: A holds the seat through node 0, B waits on node 1. Node 0 is killed at
    # t=0; its lease (1.5 s) runs out, node 1 releases A's tab as dropped, the drop grace
    # (2 s) passes and B gets the seat: about 3.5 s; or A's tab, silent, is dropped first
    # (session timeout 1.5 s). Never a 25 s heartbeat plus a session timeout.
    site = pair.create_site("--name", "Kill", "--origin", "*")
    u = user()
    _, wa = await Tab.open(pair.nodes[0].ws, site["key"], Browser(u))
    b, wb = await Tab.open(pair.nodes[1].ws, site["key"], Browser(u))
    assert (wa["state"], wb["state"]) == ("admitted", "blocked")
    pair.kill_node(0)
    took = await until_unblocked(b, within=10)
    lease, grace = scaled(1.5), scaled(2.0)  # the drop grace: a dead node's tabs dropped
    assert took < lease + grace + scaled(2.5), took  # lease + grace + renewal and sweep ticks


async def test_browsers_of_a_dead_node_reconnect_elsewhere_and_keep_their_seats(
    pair: Cluster,
) -> None:
    site = pair.create_site("--name", "Keep", "--origin", "*")
    u = user()
    browser = Browser(u)
    a, _ = await Tab.open(pair.nodes[0].ws, site["key"], browser)
    b, wb = await Tab.open(pair.nodes[1].ws, site["key"], Browser(u))
    assert wb["state"] == "blocked"
    pair.kill_node(0)
    # The SDK reconnects at once, with the same session and tab, to the surviving node.
    again, welcome = await Tab.open(pair.nodes[1].ws, site["key"], browser, tab=a.tab)
    assert welcome["state"] == "admitted"
    # Long after the dead node's lease ran out and it was reaped, nothing changed.
    [frames_a, frames_b] = await frames_of([again, b], scaled(4))
    assert frames_a == [] and frames_b == []


async def test_redis_down_and_back_exceeds_no_limit_and_loses_no_audit_row(
    pair: Cluster, redis: RedisServer
) -> None:
    # Timeline: five users each hold a seat on node 0 and wait on node 1. Redis stops; both
    # nodes report `degraded`; a sixth browser of each user arrives on node 1 and, the site
    # failing open, is admitted by node 1 alone; a site failing closed refuses newcomers
    # (1013). Redis comes back empty: the nodes join their tabs again and each user ends
    # with exactly one seat, as every tab is told. Every welcome has its audit row.
    site, closed = open_and_closed(pair)
    users = [user() for _ in range(5)]
    tabs: list[tuple[str, Tab, Frame]] = []
    for u in users:
        for node in pair.nodes:
            tab, welcome = await Tab.open(node.ws, site["key"], Browser(u))
            tabs.append((u, tab, welcome))
    assert [w["state"] for _, _, w in tabs] == ["admitted", "blocked"] * 5

    redis.stop()
    await eventually(lambda: all(pair.health(i)["status"] == "degraded" for i in range(2)))
    for u in users:
        tab, welcome = await Tab.open(pair.nodes[1].ws, site["key"], Browser(u))
        assert welcome["state"] == "admitted"  # decided on node 1 alone
        tabs.append((u, tab, welcome))
    refused = await Tab.connect(pair.nodes[0].ws)
    shut = Tab(refused, Browser(user()), secrets.token_urlsafe(9))
    await shut.send({"t": "hello", "v": 1, "site": closed["key"], "user": "x",
                     "session": shut.browser.session, "tab": shut.tab,
                     "device": shut.browser.device})  # fmt: skip
    code, _, _ = await shut.closed(within=10)
    assert code == 1013

    redis.start()
    # Keep every tab beating while the nodes reconverge; then each tab's last word counts.
    frames = await frames_of([tab for _, tab, _ in tabs], scaled(8))
    final: dict[str, list[str]] = {u: [] for u in users}
    for (u, _, welcome), seen in zip(tabs, frames, strict=True):
        state = welcome["state"]
        for frame in seen:
            assert frame["t"] in ("block", "unblock"), frame
            state = "admitted" if frame["t"] == "unblock" else "blocked"
        final[u].append(state)
    for u in users:
        assert final[u].count("admitted") == 1, (u, final[u])
        async with api(pair.nodes[0], site) as client:
            seat = (await client.get(f"/users/{u}/seat")).json()
        assert seat["seats_used"] == 1 and len(seat["admitted"]) + len(seat["blocked"]) == 3
    for i in range(2):
        assert pair.health(i)["status"] == "ok"

    conn = await asyncpg.connect(pair.database_url)
    try:
        created = {
            r["session"]
            for r in await conn.fetch("SELECT session FROM audit WHERE kind = 'created'")
        }
    finally:
        await conn.close()
    assert {tab.browser.session for _, tab, _ in tabs} <= created
    out = seatguard("audit", "verify", "--db", pair.database_url, env=pair.env)
    assert "OK" in out, out


async def test_a_node_that_lost_redis_says_so_on_its_health_endpoint(
    pair: Cluster, redis: RedisServer
) -> None:
    assert [pair.health(i)["status"] for i in range(2)] == ["ok", "ok"]
    redis.stop()
    await eventually(lambda: not pair.health(0)["store"]["reachable"])
    health: dict[str, Any] = pair.health(0)
    assert health["status"] == "degraded" and health["store"]["kind"] == "redis"
    redis.start()
    await eventually(lambda: pair.health(0)["status"] == pair.health(1)["status"] == "ok")


@pytest.fixture
def trio(
    tmp_path_factory: pytest.TempPathFactory,
    redis: RedisServer,
    postgres_url: str,
    server_env: dict[str, str],
) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("trio"), redis, postgres_url, server_env, 3)


async def test_a_redis_restart_keeps_every_seat_where_it_was(
    trio: Cluster, redis: RedisServer
) -> None:
    # Timeline: nine users of a limit-1 site (three failing open, six failing closed), each
    # with the seat held by a browser on one node and a browser waiting on another, spread
    # so that every node holds holders and waiters. Redis restarts empty. Every node writes
    # the tabs it holds again, in whatever order the nodes come back: each holder keeps its
    # seat and each waiter keeps waiting; nobody is told anything, and no two sessions of a
    # user are admitted at once at any moment (which a tab would hear as an unblock).
    opened, closed = open_and_closed(trio)
    people: list[tuple[dict[str, Any], str, Tab, Tab]] = []
    for i in range(9):
        site, u = (opened if i < 3 else closed), user()
        holder, wh = await Tab.open(trio.nodes[i % 3].ws, site["key"], Browser(u))
        waiter, ww = await Tab.open(trio.nodes[(i + 1 + i // 3) % 3].ws, site["key"], Browser(u))
        assert (wh["state"], ww["state"]) == ("admitted", "blocked")
        people.append((site, u, holder, waiter))

    redis.stop()
    redis.start()
    tabs = [t for _, _, holder, waiter in people for t in (holder, waiter)]
    frames = await frames_of(tabs, scaled(6))  # well past the nodes' lease (1.5 s)
    assert frames == [[] for _ in tabs]
    for site, u, holder, waiter in people:
        async with api(trio.nodes[0], site) as client:
            seat = (await client.get(f"/users/{u}/seat")).json()
        assert seat["admitted"] == [holder.browser.session], seat
        assert seat["blocked"] == [waiter.browser.session], seat


async def test_nodes_keep_serving_past_a_notice_and_a_snapshot_of_a_newer_format(
    pair: Cluster, redis: RedisServer
) -> None:
    # Timeline: A holds alice's seat through node 0, B waits on node 1. A newer release,
    # on the same Redis, sends node 1 a notice that would seat B were it read as today's
    # format: node 1 drops it and B stays blocked. That release also wrote bob's snapshot
    # in its own format: a browser of bob is refused with 1013 (the site fails closed), the
    # snapshot stays as written, and both nodes go on serving everyone else.
    site = pair.create_site("--name", "Upgrade", "--origin", "*", "--store-failure", "closed")
    key, alice, bob = site["key"], user(), user()
    a, wa = await Tab.open(pair.nodes[0].ws, key, Browser(alice))
    b, wb = await Tab.open(pair.nodes[1].ws, key, Browser(alice))
    assert (wa["state"], wb["state"]) == ("admitted", "blocked")
    raw = aioredis.Redis.from_url(redis.url)
    try:
        seat_b = {"session": b.browser.session, "state": "admitted", "reason": None}
        newer = [key, alice, 2**62, True, {"transitions": [seat_b]}, 2]
        channel = f"sg:n:{pair.health(1)['node']}"
        assert await raw.publish(channel, msgspec.msgpack.encode(newer)) == 1
        assert await frames_of([a, b], 1.0) == [[], []]

        snapshot = f"sg:{{{quote(key, safe='')}:{quote(bob, safe='')}}}:p"
        blob = msgspec.msgpack.encode({"v": 2, "seats": "?"})
        await raw.hset(snapshot, mapping={"t": b"newer-token", "d": blob})
        await raw.pexpire(snapshot, 60_000)
        for node in pair.nodes:
            socket = Tab(await Tab.connect(node.ws), Browser(bob), secrets.token_urlsafe(9))
            await socket.send({"t": "hello", "v": 1, "site": key, "user": bob,
                               "session": socket.browser.session, "tab": socket.tab,
                               "device": socket.browser.device})  # fmt: skip
            code, _, _ = await socket.closed(within=5)
            assert code == 1013
        assert await raw.hgetall(snapshot) == {b"t": b"newer-token", b"d": blob}
    finally:
        await raw.aclose()

    for node in pair.nodes:
        _, welcome = await Tab.open(node.ws, key, Browser(user()))
        assert welcome["state"] == "admitted"
    assert await frames_of([a, b], 0.5) == [[], []]  # still seated, still waiting
    assert [pair.health(i)["status"] for i in range(2)] == ["ok", "ok"]
