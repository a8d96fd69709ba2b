"""A node's objects are freed by reference counting when its sockets close: the full
collection, which also walks the objects the node froze, finds almost nothing."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.helpers import Server, scaled, start_server
from tests.integration.client import Browser, Tab, ident

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def collecting(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    env = {**server_env, "SEATGUARD_GC_FREEZE_INTERVAL": "0.2", "SEATGUARD_GC_FULL_INTERVAL": "1"}
    s = start_server(tmp_path_factory.mktemp("collector"), "serve", env)
    yield s
    s.stop()


async def _collector(server: Server) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(server.http + "/healthz") as r:
            found: dict[str, Any] = json.loads(r.read())["collector"]
            return found

    return await anyio.to_thread.run_sync(fetch)


async def _next_full_pass(server: Server) -> dict[str, Any]:
    seen = (await _collector(server))["full_passes"]
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline:
        stats = await _collector(server)
        if stats["full_passes"] > seen:
            return stats
        await asyncio.sleep(0.1)
    raise AssertionError("no full collection ran")


async def test_closed_sockets_leave_nothing_for_the_collector(collecting: Server) -> None:
    created = collecting.create_site("--name", "GC", "--origin", "*", "--client-settings")
    site = str(created["key"])
    await _next_full_pass(collecting)  # what start-up and the first requests left
    for round_ in range(2):
        browsers = [Browser(f"gc-{round_}-{ident()}") for _ in range(60)]
        tabs = [
            t
            for t, _ in await asyncio.gather(*(Tab.open(collecting.ws, site, b) for b in browsers))
        ]
        for tab in tabs[:20]:
            await tab.heartbeat()
        for tab in tabs[:20]:
            await tab.drop()  # the connection just ends: no close frame
        for tab in tabs[20:40]:
            await tab.bye()  # a goodbye, then the server closes
        for tab in tabs[40:]:
            await tab.ws.close()  # the browser closes
    await asyncio.sleep(scaled(0.5))  # every close has been handled
    stats = await _next_full_pass(collecting)
    # 120 closed sockets; each left about twenty objects in cycles before this was fixed
    assert stats["last_found"] < 120, stats
    assert stats["frozen"] > 0 and stats["collections"] > 0
    assert stats["longest_pause_ms"] > 0
