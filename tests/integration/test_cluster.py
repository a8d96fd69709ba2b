"""Three server processes on one Redis and one PostgreSQL behave as one server.

Every node is a real `seatguard serve` process; the tests reach each one directly, as a
load balancer without sticky sessions would send browsers anywhere.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.helpers import RedisServer, scaled
from tests.integration.api_client import api
from tests.integration.client import Browser, Frame, Tab, holders_since
from tests.integration.cluster import Cluster, start_cluster

pytestmark = pytest.mark.anyio

ROUNDS = 200  # the issue asks for at least 200 repetitions of each race


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, server_env: dict[str, str]
) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path_factory.mktemp("cluster-redis"))
    redis.start()
    try:
        # The races open every socket before any hello: on a busy machine opening 200 takes
        # longer than the short hello timeout of the other tests. No node dies here, so the
        # lease and the Redis timeout are the defaults: with the short ones of the failure
        # tests, a node stalled by 200 hellos at once (under coverage, on two busy cores)
        # counted as dead or Redis as down, and tabs were released or refused (1013). The
        # races' tabs send no heartbeat: with the short session timeout of the other tests,
        # the first tabs welcomed were let go as silent before the last 200th hello was
        # answered on a loaded machine (92 of 199 still waiting, in one run).
        yield from start_cluster(
            tmp_path_factory.mktemp("cluster"),
            redis,
            postgres_url,
            server_env,
            3,
            SEATGUARD_HELLO_TIMEOUT=str(scaled(30)),
            SEATGUARD_SESSION_TIMEOUT=str(scaled(30)),
            SEATGUARD_NODE_LEASE=str(scaled(10)),
            SEATGUARD_REDIS_TIMEOUT=str(scaled(2)),
        )
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def site(cluster: Cluster) -> dict[str, Any]:
    return cluster.create_site("--name", "Cluster", "--origin", "*", "--client-settings")


def user() -> str:
    return "user-" + secrets.token_hex(4)


async def hello_all_at_once(
    cluster: Cluster, site: str, browsers: list[Browser], **options: Any
) -> list[Frame]:
    """Open one socket per browser, spread over the nodes, then say every hello at once."""

    async def connect(i: int, browser: Browser) -> Tab:
        node = cluster.nodes[i % len(cluster.nodes)]
        return Tab(await Tab.connect(node.ws), browser, secrets.token_urlsafe(9))

    tabs = list(await asyncio.gather(*(connect(i, b) for i, b in enumerate(browsers))))

    async def hello(tab: Tab) -> Frame:
        b = tab.browser
        frame = {"t": "hello", "v": 1, "site": site, "user": b.user, "session": b.session,
                 "tab": tab.tab, "device": b.device, **options}  # fmt: skip
        if b.fp:
            frame["fp"] = b.fp
        await tab.send(frame)
        return await tab.recv(within=30)

    with anyio.fail_after(scaled(60)):
        welcomes = await asyncio.gather(*(hello(tab) for tab in tabs))
    assert all(w["t"] == "welcome" for w in welcomes), [w for w in welcomes if w["t"] != "welcome"]
    return welcomes


async def test_two_hundred_sessions_at_once_over_three_nodes_admit_exactly_one(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    for _ in range(ROUNDS):
        u = user()
        welcomes = await hello_all_at_once(
            cluster, site["key"], [Browser(u) for _ in range(200)], limit=1
        )
        states = [w["state"] for w in welcomes]
        assert states.count("admitted") == 1, states.count("admitted")
        async with api(cluster.nodes[2], site) as client:
            seat = (await client.get(f"/users/{u}/seat")).json()
        assert seat["seats_used"] == 1 and len(seat["blocked"]) == 199
        await Tab.close_all()


async def test_device_limit_three_over_three_nodes_admits_exactly_three_devices(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    for _ in range(ROUNDS):
        u = user()
        # 200 browsers on 20 devices (10 browsers each, sharing a fingerprint).
        fps = [f"fp{secrets.token_hex(4)}" for _ in range(20)]
        browsers = [Browser(u, fp=fps[i % 20]) for i in range(200)]
        welcomes = await hello_all_at_once(
            cluster, site["key"], browsers, mode="device-limit", limit=3
        )
        admitted = {
            b.fp for b, w in zip(browsers, welcomes, strict=True) if w["state"] == "admitted"
        }
        assert len(admitted) == 3, admitted
        for b, w in zip(browsers, welcomes, strict=True):  # every browser of a seated device
            assert (w["state"] == "admitted") == (b.fp in admitted)
        await Tab.close_all()


async def test_block_unblock_takeover_and_revocation_cross_nodes(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    u, key = user(), site["key"]
    n1, n2, n3 = cluster.nodes
    a, wa = await Tab.open(n1.ws, key, Browser(u), policy="evict-oldest")
    start = int(time.time())
    b, wb = await Tab.open(n2.ws, key, Browser(u), policy="evict-oldest")
    assert (wa["state"], wb["state"]) == ("admitted", "admitted")
    # B (node 2) evicted A (node 1): node 1 hears of it, and where the seat went, through
    # Redis.
    block = await a.recv()
    [since] = holders_since(block)
    assert block == {"t": "block", "reason": "evicted", "takeover": True}
    assert start <= since <= time.time()
    start = int(time.time())
    await a.send({"t": "takeover"})
    assert await a.recv() == {"t": "unblock"}
    block = await b.recv()
    [since] = holders_since(block)
    assert block == {"t": "block", "reason": "taken_over", "takeover": True}
    assert start <= since <= time.time()
    # B says goodbye on node 2... after A is revoked from node 3's API.
    async with api(n3, site) as client:
        response = await client.delete(f"/users/{u}/sessions/{a.browser.session}")
        assert response.status_code == 200, response.text
    code, _, frames = await a.closed()
    assert code == 4010 and frames[0] == {"t": "revoked", "reason": "revoked"}
    assert await b.recv() == {"t": "unblock"}
    # The revoked session cannot come back on any node.
    for node in cluster.nodes:
        again = await Tab.connect(node.ws)
        tab = Tab(again, a.browser, secrets.token_urlsafe(9))
        await tab.send({"t": "hello", "v": 1, "site": key, "user": u,
                        "session": a.browser.session, "tab": tab.tab,
                        "device": a.browser.device})  # fmt: skip
        code, _, _ = await tab.closed()
        assert code == 4010


async def test_a_waiting_browser_is_unblocked_when_the_holder_leaves_another_node(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    u, key = user(), site["key"]
    holder, _ = await Tab.open(cluster.nodes[0].ws, key, Browser(u))
    waiters = [await Tab.open(node.ws, key, Browser(u)) for node in cluster.nodes[1:]]
    assert [w["state"] for _, w in waiters] == ["blocked", "blocked"]
    assert await holder.bye("close") == 1000
    # First come, first served, across nodes: the waiter on node 2 joined first.
    assert await waiters[0][0].recv() == {"t": "unblock"}
    await waiters[1][0].expect_nothing(0.5)


async def test_an_operator_lowering_a_limit_on_one_node_blocks_browsers_on_others(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    u, key = user(), site["key"]
    n1, n2, n3 = cluster.nodes
    async with api(n3, site) as client:
        assert (await client.put(f"/overrides/user/{u}", json={"limit": 2})).status_code == 200
        a, wa = await Tab.open(n1.ws, key, Browser(u))
        b, wb = await Tab.open(n2.ws, key, Browser(u))
        assert (wa["state"], wb["state"]) == ("admitted", "admitted")
        assert (await client.put(f"/overrides/user/{u}", json={"limit": 1})).status_code == 200
        block = await b.recv(within=5)
        assert len(holders_since(block)) == 1  # A
        assert block == {"t": "block", "reason": "limit", "takeover": False}
        await a.expect_nothing(0.3)


async def test_every_node_reports_its_health(cluster: Cluster) -> None:
    nodes = set()
    for i in range(3):
        health = cluster.health(i)
        assert health["status"] == "ok" and health["store"] == {"kind": "redis", "reachable": True}
        nodes.add(health["node"])
    assert len(nodes) == 3


_SEATED = {"admitted": True, "unblocked": True, "blocked": False, "evicted": False,
           "taken_over": False}  # fmt: skip
_ENDED = {"ended", "revoked", "idle_expired", "absolute_expired"}


def replay(rows: list[dict[str, Any]], limit: int) -> None:
    """Play one user's audit rows back in order; fail where they show the limit exceeded or
    a session seated or blocked after it ended."""
    seated: set[str] = set()
    ended: set[str] = set()
    for r in rows:
        session, kind = r["session"], r["kind"]
        if kind in ("created", "refused"):
            continue
        assert session not in ended, f"{kind} of {session} after it ended: {r}"
        if kind in _ENDED:
            ended.add(session)
            seated.discard(session)
        elif _SEATED[kind]:
            seated.add(session)
        else:
            seated.discard(session)
        assert len(seated) <= limit, f"{sorted(seated)} seated at once at {r}"


async def test_a_users_rows_replay_the_decisions_in_order(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    # Timeline: 30 browsers of one user (limit 1) spread over the three nodes; every one of
    # them says goodbye at once. Each goodbye ends a session on its own node and seats the
    # next browser in line, which another node ends a moment later: decisions milliseconds
    # apart whose rows different nodes append each on their own. Sorted by the store's
    # sequence of each decision (`detail.decision`), the rows replay them as they were made.
    u = user()
    tabs: list[Tab] = []
    for i in range(30):
        tab, _ = await Tab.open(cluster.nodes[i % 3].ws, site["key"], Browser(u))
        tabs.append(tab)
    await asyncio.gather(*(tab.bye("close") for tab in tabs))
    rows: list[dict[str, Any]] = []
    async with api(cluster.nodes[0], site) as client:
        with anyio.fail_after(scaled(20)):
            while sum(r["kind"] == "ended" for r in rows) < 30:
                await anyio.sleep(0.2)
                page = await client.get("/audit", params={"user": u, "limit": 1000})
                rows = page.json()["records"]
    decided = [r for r in rows if r["kind"] != "refused"]
    assert all(isinstance(r["detail"]["decision"], int) for r in decided)
    replay(sorted(decided, key=lambda r: (r["detail"]["decision"], r["seq"])), limit=1)


async def said_hello(site: str, tab: Tab) -> Frame:
    """Say hello (limit 5) and return the first answer."""
    b = tab.browser
    await tab.send({"t": "hello", "v": 1, "site": site, "user": b.user, "limit": 5,
                    "session": b.session, "tab": tab.tab, "device": b.device})  # fmt: skip
    return await tab.recv(within=30)


async def test_a_suspension_racing_hellos_over_three_nodes_leaves_nobody_in(
    cluster: Cluster, site: dict[str, Any]
) -> None:
    for _ in range(5):
        u, key = user(), site["key"]
        holder, _ = await Tab.open(cluster.nodes[0].ws, key, Browser(u), limit=5)
        tabs = [
            Tab(await Tab.connect(cluster.nodes[i % 3].ws), Browser(u), secrets.token_urlsafe(9))
            for i in range(30)
        ]

        async with api(cluster.nodes[2], site) as client:
            answers = [said_hello(key, t) for t in tabs]
            suspended = asyncio.ensure_future(client.post(f"/users/{u}/suspension", json={}))
            firsts = await asyncio.gather(*answers)
            assert (await suspended).status_code == 201
            # Whatever was welcomed before the suspension is ended by it; the rest refused.
            pairs: list[tuple[Tab, Frame | None]] = [
                (holder, None),
                *zip(tabs, firsts, strict=True),
            ]
            for tab, first in pairs:
                code, _, frames = await tab.closed(within=10)
                assert code == 4015, (first, frames)
                if first is None or first["t"] == "welcome":
                    assert {"t": "suspended", "reason": "suspended"} in frames
                else:
                    assert first["t"] == "error" and first["code"] == 4015
            listed = (await client.get(f"/users/{u}/sessions")).json()
            assert listed["sessions"] == [] and listed["suspended"] is not None
        await Tab.close_all()
