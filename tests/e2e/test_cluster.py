"""Two demo nodes on one Redis and one PostgreSQL, a Chromium browser on each.

Browser A loads the demo from node 1 and browser B from node 2, so each talks to its own
node; every block, unblock, takeover and revocation crosses between them through Redis.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Device, user, wait_state, watch_url
from tests.helpers import RedisServer, Server, scaled, seatguard
from tests.integration.cluster import Cluster, start_cluster

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"
USE_HERE = f"{OVERLAY} .seatguard-takeover"


@pytest.fixture(scope="module")
def demo_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, server_env: dict[str, str]
) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path_factory.mktemp("e2e-redis"))
    redis.start()
    env = {"SEATGUARD_SESSION_TIMEOUT": str(scaled(3.0))}
    try:
        yield from start_cluster(
            tmp_path_factory.mktemp("e2e-cluster"), redis, postgres_url, server_env, 2,
            command="demo", **env,
        )  # fmt: skip
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def demo_site(demo_pair: Cluster) -> dict[str, Any]:
    """The demo site with a secret key of the test's own (each demo node made one at start)."""
    out = seatguard(
        "site", "rotate-secret", "pk_demo_acme_stream", "--overlap", "0",
        "--db", demo_pair.database_url, env=demo_pair.env,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(out)
    return found


def on(node: Server, device: Device, url_of: str, state: str) -> Any:
    page = device().new_page()
    page.goto(url_of.replace("{node}", node.http))
    wait_state(page, state)
    return page


def test_block_and_unblock_cross_nodes(demo_pair: Cluster, device: Device) -> None:
    n1, n2 = demo_pair.nodes
    url = watch_url(n1, user()).replace(n1.http, "{node}")
    first_ctx = device()
    first = first_ctx.new_page()
    first.goto(url.replace("{node}", n1.http))
    wait_state(first, "admitted")
    second = on(n2, device, url, "blocked")
    expect(second.locator(OVERLAY)).to_be_visible()
    first_ctx.close()
    wait_state(second, "admitted")
    expect(second.locator(OVERLAY)).to_be_hidden()


def test_eviction_takeover_and_revocation_cross_nodes(
    demo_pair: Cluster, demo_site: dict[str, Any], device: Device
) -> None:
    n1, n2 = demo_pair.nodes
    u = user()
    url = watch_url(n1, u, policy="evict-oldest").replace(n1.http, "{node}")
    a = on(n1, device, url, "admitted")
    b = on(n2, device, url, "admitted")
    # B, on node 2, took the seat: A's overlay on node 1 says another browser took it.
    wait_state(a, "blocked")
    expect(a.locator(f"{OVERLAY} .seatguard-title")).to_contain_text("another browser")
    a.locator(USE_HERE).click()
    wait_state(a, "admitted")
    wait_state(b, "blocked")
    # Node 2's API revokes A, whose socket is on node 1: A is signed out without a reload.
    a.evaluate("window.__notReloaded = true")
    session = a.evaluate("localStorage.getItem('seatguard:session')")
    r = httpx.delete(
        f"{n2.http}/api/v1/users/{u}/sessions/{session}",
        headers={"Authorization": f"Bearer {demo_site['secret']}"},
        timeout=scaled(10),
    )
    assert r.status_code == 200, r.text
    wait_state(a, "revoked", within=3)
    expect(a.locator(OVERLAY)).to_contain_text("signed out")
    assert a.evaluate("window.__notReloaded") is True
    wait_state(b, "admitted")
