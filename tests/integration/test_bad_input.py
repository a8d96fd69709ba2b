"""Bad input gets its close code and a clear message, and harms nobody else."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection

from tests.helpers import Server, scaled
from tests.integration.client import Browser, Tab, frames_of, ident

pytestmark = pytest.mark.anyio

Send = Callable[[ClientConnection, str], Awaitable[None]]


def hello(site: str, user: str | None = "victim", **changes: Any) -> dict[str, Any]:
    frame = {
        "t": "hello",
        "v": 1,
        "site": site,
        "user": user,
        "session": ident(),
        "tab": ident(),
        "device": ident(),
    }
    frame.update(changes)
    return {k: v for k, v in frame.items() if v is not None}


async def send_json(ws: ClientConnection, frame: object) -> None:
    await ws.send(json.dumps(frame))


Bad = Callable[[ClientConnection, str, str], Awaitable[None]]
"""Sends something bad on a fresh socket: (socket, site key, user id of the others)."""

CASES: dict[str, tuple[Bad, int, str]] = {
    "unknown site key": (
        lambda ws, site, u: send_json(ws, hello("pk_nope", u)),
        4003,
        "unknown site key",
    ),
    "malformed JSON": (lambda ws, site, u: ws.send("{not json"), 4000, "malformed JSON"),
    "not an object": (lambda ws, site, u: ws.send("[1,2]"), 4000, "invalid frame"),
    "unknown type": (lambda ws, site, u: send_json(ws, {"t": "launch"}), 4000, "invalid frame"),
    "missing field": (
        lambda ws, site, u: send_json(ws, hello(site, None)),
        4000,
        "user",
    ),
    "blank user id": (
        lambda ws, site, u: send_json(ws, hello(site, "   ")),
        4000,
        "printable text, not blank - at `$.user`",
    ),
    "control character in user id": (
        lambda ws, site, u: send_json(ws, hello(site, u + "\x00")),
        4000,
        "printable text",
    ),
    "bad session id": (
        lambda ws, site, u: send_json(ws, hello(site, u, session="x")),
        4000,
        "session",
    ),
    "limit zero": (lambda ws, site, u: send_json(ws, hello(site, u, limit=0)), 4000, "limit"),
    "unknown field": (
        lambda ws, site, u: send_json(ws, hello(site, u, admin=True)),
        4000,
        "admin",
    ),
    "oversized frame": (
        lambda ws, site, u: send_json(ws, hello(site, u, org="o" * 20_000)),
        1009,
        "over the limit",
    ),
    "oversized in UTF-8 bytes": (  # 6,000 characters, 18,000 bytes
        lambda ws, site, u: send_json(ws, hello(site, u, org="\u20ac" * 6_000)),
        1009,
        "18",
    ),
    "deeply nested": (  # 6 KB of brackets: past Python's recursion limit in the decoder
        lambda ws, site, u: ws.send('{"t":' + "[" * 3000 + "]" * 3000 + "}"),
        4000,
        "nested too deeply",
    ),
    "deeply nested, unknown field": (
        lambda ws, site, u: ws.send('{"x":' + "[" * 3000 + "]" * 3000 + "}"),
        4000,
        "nested too deeply",
    ),
    "binary frame": (lambda ws, site, u: ws.send(b"\x00\x01"), 1003, "binary"),
    "heartbeat before hello": (
        lambda ws, site, u: send_json(ws, {"t": "hb", "ref": 1}),
        4001,
        "expected hello first",
    ),
    "wrong version": (lambda ws, site, u: send_json(ws, hello(site, u, v=9)), 4002, "version 9"),
    "newer version with new fields": (
        lambda ws, site, u: send_json(ws, hello(site, u, v=2, resume="x")),
        4002,
        "version 2",
    ),
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
    await send(ws, site, u)
    got_code, reason, frames = await bad.closed()
    assert got_code == code
    assert message in reason
    if code >= 4000:
        assert frames[-1]["t"] == "error" and frames[-1]["code"] == code
        assert message in frames[-1]["message"]

    # The others are untouched: the holder still holds, the waiter still waits.
    assert await frames_of([holder, waiter], 0.5) == [[], []]
    assert await holder.heartbeat() == {"t": "ack", "ref": holder.ref}


AFTER_WELCOME: dict[str, tuple[Callable[[str, str], str | dict[str, Any]], int, str]] = {
    "second hello": (lambda site, u: hello(site, u), 4001, "already"),
    "heartbeat ref over 2**53": (lambda site, u: {"t": "hb", "ref": 2**53}, 4000, "ref"),
    "negative heartbeat ref": (lambda site, u: {"t": "hb", "ref": -1}, 4000, "ref"),
    "bad goodbye": (lambda site, u: {"t": "bye", "next": "mars"}, 4000, "next"),
    "deeply nested heartbeat": (  # sent as it is (json.dumps refuses such depth)
        lambda site, u: '{"t":"hb","ref":1,"active":' + "[" * 3000 + "]" * 3000 + "}",
        4000,
        "at `$.active`",
    ),
}


@pytest.mark.parametrize("case", AFTER_WELCOME)
async def test_bad_frames_after_welcome_close_only_their_socket(
    server: Server, site: str, case: str
) -> None:
    frame, code, message = AFTER_WELCOME[case]
    u = "user-" + secrets.token_hex(4)
    holder, _ = await Tab.open(server.ws, site, Browser(u))
    waiter, _ = await Tab.open(server.ws, site, Browser(u))
    bad, welcome = await Tab.open(server.ws, site, Browser(u))
    assert welcome["state"] == "blocked"
    sent = frame(site, u)
    await (bad.ws.send(sent) if isinstance(sent, str) else bad.send(sent))
    got_code, reason, frames = await bad.closed()
    assert got_code == code and message in reason
    assert frames[-1]["t"] == "error" and frames[-1]["code"] == code
    # The bad socket's session leaves the line; the holder holds, the waiter waits.
    assert await frames_of([holder, waiter], 0.5) == [[], []]
    assert await holder.bye("close") == 1000
    assert await waiter.recv() == {"t": "unblock"}


async def test_bad_frames_leave_no_traceback_in_the_log(server: Server, site: str) -> None:
    # After the cases above (same server): each bad frame ended its socket with its code,
    # and the log holds no traceback. A few more, from one client, in a row.
    for _ in range(20):
        ws = await Tab.connect(server.ws)
        await ws.send('{"t":' + "[" * 3000 + "]" * 3000 + "}")
        code, _, _ = await Tab(ws, Browser("u"), ident()).closed()
        assert code == 4000
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


async def test_silence_before_hello_closes_the_socket(server: Server) -> None:
    ws = await Tab.connect(server.ws)
    code, reason, _ = await Tab(ws, Browser("u"), ident()).closed(within=3)
    assert code == 4001 and "no hello" in reason


async def test_origin_not_allowed_is_refused_and_spares_the_others(server: Server) -> None:
    created = server.create_site("--name", "Shop", "--origin", "https://shop.example")
    key, u, shop = str(created["key"]), "user-" + secrets.token_hex(4), "https://shop.example"
    holder, welcome = await Tab.open(server.ws, key, Browser(u), origin=shop)
    waiter, second = await Tab.open(server.ws, key, Browser(u), origin=shop)
    assert (welcome["state"], second["state"]) == ("admitted", "blocked")
    for origin in ("https://evil.example", "https://shop.example.evil.example", None):
        ws = await Tab.connect(server.ws, origin)
        await send_json(ws, hello(key, u))
        code, reason, frames = await Tab(ws, Browser(u), ident()).closed()
        assert code == 4004 and "not allowed" in reason
        assert frames[-1]["code"] == 4004
    assert await frames_of([holder, waiter], 0.5) == [[], []]


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


async def test_a_hello_in_fragments_is_one_message(server: Server, site: str) -> None:
    ws = await Tab.connect(server.ws)
    text = json.dumps(hello(site, "user-" + secrets.token_hex(4)))
    await ws.send(iter([text[:10], text[10:25], text[25:]]))  # three frames, one message
    welcome = json.loads(await ws.recv())
    assert welcome["t"] == "welcome" and welcome["state"] == "admitted"


async def test_invalid_utf8_closes_with_1007(server: Server, site: str) -> None:
    ws = await Tab.connect(server.ws)
    await ws.send(iter([b'{"t":"hello","v":1,"site":"', b"\xff\xfe"]), text=True)
    code, _, _ = await Tab(ws, Browser("u"), ident()).closed()
    assert code == 1007
