"""Bad input gets its close code and a clear message, and harms nobody else."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import Server, scaled
from tests.integration.client import Browser, Tab, frames_of, ident

pytestmark = pytest.mark.anyio

Send = Callable[[ClientConnection, str], Awaitable[None]]


def hello(site: str, **changes: Any) -> dict[str, Any]:
    frame = {
        "t": "hello",
        "v": 1,
        "site": site,
        "user": "victim",
        "session": ident(),
        "tab": ident(),
        "device": ident(),
    }
    frame.update(changes)
    return {k: v for k, v in frame.items() if v is not None}


async def send_json(ws: ClientConnection, frame: object) -> None:
    await ws.send(json.dumps(frame))


CASES: dict[str, tuple[Callable[[ClientConnection, str], Awaitable[None]], int, str]] = {
    "unknown site key": (
        lambda ws, site: send_json(ws, hello("pk_nope")),
        4003,
        "unknown site key",
    ),
    "malformed JSON": (lambda ws, site: ws.send("{not json"), 4000, "malformed JSON"),
    "not an object": (lambda ws, site: ws.send("[1,2]"), 4000, "invalid frame"),
    "unknown type": (lambda ws, site: send_json(ws, {"t": "launch"}), 4000, "invalid frame"),
    "missing field": (
        lambda ws, site: send_json(ws, hello(site, user=None)),
        4000,
        "user",
    ),
    "bad session id": (
        lambda ws, site: send_json(ws, hello(site, session="x")),
        4000,
        "session",
    ),
    "limit zero": (lambda ws, site: send_json(ws, hello(site, limit=0)), 4000, "limit"),
    "unknown field": (lambda ws, site: send_json(ws, hello(site, admin=True)), 4000, "admin"),
    "oversized frame": (
        lambda ws, site: send_json(ws, hello(site, user="u" * 5000)),
        1009,
        "over the limit",
    ),
    "binary frame": (lambda ws, site: ws.send(b"\x00\x01"), 1003, "binary"),
    "heartbeat before hello": (
        lambda ws, site: send_json(ws, {"t": "hb", "ref": 1}),
        4001,
        "expected hello first",
    ),
    "wrong version": (lambda ws, site: send_json(ws, hello(site, v=9)), 4002, "version 9"),
}


@pytest.mark.parametrize("case", CASES)
async def test_bad_input_closes_with_its_code_and_spares_the_others(
    server: Server, site: str, case: str
) -> None:
    send, code, message = CASES[case]
    u = "user-" + secrets.token_hex(4)
    holder, _ = await Tab.open(server.ws, site, Browser(u))
    waiter, _ = await Tab.open(server.ws, site, Browser(u))

    ws = await Tab.connect(server.ws)
    bad = Tab(ws, Browser(u), ident())
    await send(ws, site)
    got_code, reason, frames = await bad.closed()
    assert got_code == code
    assert message in reason
    if code >= 4000:
        assert frames[-1]["t"] == "error" and frames[-1]["code"] == code
        assert message in frames[-1]["message"]

    # The others are untouched: the holder still holds, the waiter still waits.
    assert await frames_of([holder, waiter], 0.5) == [[], []]
    assert await holder.heartbeat() == {"t": "ack", "ref": holder.ref}


async def test_second_hello_is_out_of_order(server: Server, site: str) -> None:
    tab, _ = await Tab.open(server.ws, site, Browser("user-" + secrets.token_hex(4)))
    await tab.send(hello(site))
    code, reason, _ = await tab.closed()
    assert code == 4001 and "already" in reason


async def test_silence_before_hello_closes_the_socket(server: Server) -> None:
    ws = await Tab.connect(server.ws)
    code, reason, _ = await Tab(ws, Browser("u"), ident()).closed(within=3)
    assert code == 4001 and "no hello" in reason


async def test_origin_not_allowed_is_refused(server: Server) -> None:
    created = server.create_site("--name", "Shop", "--origin", "https://shop.example")
    key = str(created["key"])
    _, welcome = await Tab.open(server.ws, key, Browser("u1"), origin="https://shop.example")
    assert welcome["state"] == "admitted"
    for origin in ("https://evil.example", None):
        ws = await Tab.connect(server.ws, origin)
        await send_json(ws, hello(key))
        code, reason, _ = await Tab(ws, Browser("u"), ident()).closed()
        assert code == 4004 and "not allowed" in reason


async def test_server_survives_a_burst_of_garbage(server: Server, site: str) -> None:
    async def garbage(i: int) -> None:
        ws = await Tab.connect(server.ws)
        await ws.send(secrets.token_bytes(64) if i % 2 else "\x00" * (i * 97 % 6000))
        with anyio.move_on_after(scaled(3)):
            await ws.wait_closed()

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(garbage, i)
    _, welcome = await Tab.open(server.ws, site, Browser("after-" + secrets.token_hex(4)))
    assert welcome["state"] == "admitted"
