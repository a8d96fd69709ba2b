"""Hostile connections at the edge, against a server held to 256 open files.

Sockets that say nothing, half a request line or half a request head, from several
addresses at once: the server times them out, turns the excess away with a 503, bounds the
size of request heads, and keeps serving a legitimate client from 127.0.0.1 throughout
(WebSocket welcomes and REST answers), without running out of files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.helpers import Server, scaled, start_server
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

OPEN_FILES = 256  # the server's limit: its default cap on handshakes is a quarter of it
TIMEOUT = scaled(2.0)  # the server's handshake timeout
PER_IP = 8  # the server's cap of unfinished handshakes per address
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 7)]  # five addresses; 127.0.0.1 is legitimate

# What an idle socket sends before it falls silent.
PAYLOADS = {
    "nothing": b"",
    "half a request line": b"GET /ws/v1 HT",
    "half an upgrade": (
        b"GET /ws/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    ),
    "half a plain request": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n",
}


def _low_open_files() -> None:
    """In the server process: 256 open files, soft and hard (so it cannot raise them)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Server]:
    env = {
        **server_env,
        "SEATGUARD_HANDSHAKE_TIMEOUT": str(TIMEOUT),
        "SEATGUARD_MAX_HANDSHAKES_PER_IP": str(PER_IP),
    }
    server = start_server(tmp_path_factory.mktemp("edge"), "serve", env, preexec=_low_open_files)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edge_site(edge: Server) -> dict[str, Any]:
    return edge.create_site("--name", "Edge", "--origin", "*", "--client-settings")


@dataclass
class Ending:
    """How one hostile socket ended."""

    what: str
    source: str
    seconds: float  # from the connect call to the server's close (or to giving up)
    answer: bytes  # what the server sent before it closed
    closed: bool  # the server closed it (EOF or reset), rather than the client giving up


async def idle_socket(port: int, source: str, what: str, hold: float) -> Ending:
    """Connect from `source`, send `PAYLOADS[what]`, then wait up to `hold` for the close."""
    # The clock starts before the connect: the server cannot accept (and start its
    # handshake timer) before it, whereas this task may resume well after the accept
    # while hundreds of others keep the loop busy.
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    answer, closed = b"", False
    try:
        if PAYLOADS[what]:
            writer.write(PAYLOADS[what])
        with anyio.move_on_after(hold):
            while chunk := await reader.read(4096):
                answer += chunk
            closed = True
    except ConnectionError:
        closed = True
    finally:
        writer.transport.abort()
    return Ending(what, source, time.monotonic() - start, answer, closed)


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/healthz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def fresh_client(server: Server) -> httpx.AsyncClient:
    """An HTTP client that opens a new connection for every request."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=server.http, timeout=scaled(5), limits=limits)


def server_log_is_clean(server: Server) -> None:
    log = server.log.read_text(errors="replace")
    assert "Too many open files" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


async def test_idle_sockets_from_several_addresses_leave_the_server_to_everyone(
    edge: Server, edge_site: dict[str, Any]
) -> None:
    # Each attacking address keeps 60 sockets going (7.5 times its cap), each sending one
    # of the payloads and falling silent; a socket the server closes is opened again.
    # Meanwhile 127.0.0.1 opens a tab and asks the REST API, again and again.
    attack_for = 3 * TIMEOUT
    deadline = time.monotonic() + attack_for
    endings: list[Ending] = []

    async def keep_one(source: str, slot: int) -> None:
        kinds = list(PAYLOADS)
        i = 0
        while time.monotonic() < deadline:
            ending = await idle_socket(edge.port, source, kinds[(slot + i) % 4], TIMEOUT + 3)
            endings.append(ending)
            i += 1
            if ending.answer:  # turned away: come back a little later
                await anyio.sleep(scaled(0.2))

    welcomes, answers = 0, 0

    async def legitimate() -> None:
        nonlocal welcomes, answers
        api = httpx.AsyncClient(
            base_url=edge.http + "/api/v1",
            headers={"Authorization": f"Bearer {edge_site['secret']}"},
            timeout=scaled(5),
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        async with fresh_client(edge) as http, api:
            while time.monotonic() < deadline:
                tab, welcome = await Tab.open(edge.ws, str(edge_site["key"]), Browser("alice"))
                assert welcome["state"] == "admitted"
                welcomes += 1
                assert await tab.bye() == 1000
                assert (await health(http))["status"] == "ok"
                response = await api.get("/site")
                assert response.status_code == 200, response.text
                answers += 1
                await anyio.sleep(scaled(0.1))

    async with anyio.create_task_group() as tg:
        for source in ATTACKERS:
            for slot in range(60):
                tg.start_soon(keep_one, source, slot)
        await anyio.sleep(scaled(0.5))  # the attack is under way
        tg.start_soon(legitimate)

    assert welcomes >= 5 and answers >= 5, (welcomes, answers)
    assert len(endings) >= 300
    refused = [e for e in endings if e.answer]
    idle = [e for e in endings if not e.answer]
    # Over its address's cap, a socket is turned away at once with a 503.
    assert refused and all(e.answer.startswith(b"HTTP/1.1 503 ") for e in refused)
    assert all(b"\r\nRetry-After: 1\r\n" in e.answer and e.closed for e in refused)
    assert max(e.seconds for e in refused) < scaled(1)
    # The others are closed by the handshake timeout: not before, and not much after.
    assert {e.what for e in idle} == set(PAYLOADS)
    assert all(e.closed for e in idle), [e for e in idle if not e.closed][:3]
    assert min(e.seconds for e in idle) > TIMEOUT * 0.9
    assert max(e.seconds for e in idle) < TIMEOUT + scaled(1.5)

    async with fresh_client(edge) as http:
        handshakes = (await health(http))["handshakes"]
    assert handshakes["unfinished"] == 0
    assert handshakes["limit"] == OPEN_FILES // 4
    assert handshakes["refused"] >= len(refused) and handshakes["timed_out"] >= len(idle)
    server_log_is_clean(edge)


async def test_past_the_overall_cap_every_address_is_turned_away_until_one_frees(
    edge: Server, edge_site: dict[str, Any]
) -> None:
    # Ten addresses, each within its own cap, together fill the overall cap (64):
    # the next connection is turned away even from an address that holds none, and from
    # 127.0.0.1 too. Once the idle sockets time out, everyone gets in again.
    sources = [f"127.0.1.{i}" for i in range(1, 11)]
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for source in sources:
            for _ in range(PER_IP - 1):  # 70 sockets, at most 7 from each address
                held.append(
                    await asyncio.open_connection("127.0.0.1", edge.port, local_addr=(source, 0))
                )
        await anyio.sleep(scaled(0.3))
        for source in ("127.0.2.1", "127.0.0.1"):
            ending = await idle_socket(edge.port, source, "nothing", scaled(1))
            assert ending.answer.startswith(b"HTTP/1.1 503 "), ending
        with pytest.raises(InvalidStatus) as refused:
            await Tab.connect(edge.ws)
        assert refused.value.response.status_code == 503
    finally:
        for _, writer in held:
            writer.transport.abort()
    await anyio.sleep(scaled(0.3))
    _, welcome = await Tab.open(edge.ws, str(edge_site["key"]), Browser("bob"))
    assert welcome["state"] == "admitted"
    server_log_is_clean(edge)


async def read_answer(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection; what the server answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError), anyio.fail_after(scaled(5)):
            return await reader.read()  # until the server closes
        return b""
    finally:
        writer.transport.abort()


HUGE_HEADERS = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 4000) for i in range(10))  # 40 KB


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (
            b"GET /ws/v1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + HUGE_HEADERS
            + b"\r\n",
            b"431",
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: h\r\n" + HUGE_HEADERS + b"\r\n", b"431"),
        (b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Endless: " + b"e" * 60_000, b"431"),
        (b"GET /" + b"a" * 60_000, b"414"),
    ],
    ids=["upgrade", "plain request", "endless header", "endless request line"],
)
async def test_request_heads_over_the_size_limit_are_refused(
    edge: Server, request_: bytes, status: bytes
) -> None:
    answer = await read_answer(edge.port, request_)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    server_log_is_clean(edge)


async def test_a_kept_alive_connection_gets_the_same_timeout_for_its_next_request(
    edge: Server,
) -> None:
    # uvicorn's keep-alive timer stops at the first byte of the next request: half a
    # request head after a full exchange must still be timed out.
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert json.loads(await reader.readexactly(length))["status"] == "ok"
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\n")  # and nothing more
        start = time.monotonic()
        with contextlib.suppress(ConnectionError), anyio.fail_after(TIMEOUT + scaled(3)):
            assert await reader.read() == b""
        assert TIMEOUT * 0.9 < time.monotonic() - start < TIMEOUT + scaled(1.5)
    finally:
        writer.transport.abort()


async def test_an_upgraded_socket_counts_until_its_hello_is_answered(
    edge: Server, edge_site: dict[str, Any]
) -> None:
    # Upgraded sockets that never say hello hold their place under the cap until the
    # hello timeout closes them (4001); one that says hello frees it at its welcome.
    source = "127.0.3.1"
    silent = [await _ws_from(edge, source) for _ in range(PER_IP)]
    ending = await idle_socket(edge.port, source, "nothing", scaled(1))
    assert ending.answer.startswith(b"HTTP/1.1 503 "), ending
    for ws in silent:
        code, reason, _ = await Tab(ws, Browser("u"), "t" * 8).closed(within=5)
        assert code == 4001 and "no hello" in reason
    for _ in range(PER_IP + 2):  # each welcome frees its place
        ws = await _ws_from(edge, source)
        tab = Tab(ws, Browser("carol-" + secrets.token_hex(3)), secrets.token_hex(6))
        await tab.send(
            {
                "t": "hello",
                "v": 1,
                "site": edge_site["key"],
                "user": tab.browser.user,
                "session": tab.browser.session,
                "tab": tab.tab,
                "device": tab.browser.device,
            }
        )
        assert (await tab.recv())["t"] == "welcome"
    server_log_is_clean(edge)


async def _ws_from(server: Server, source: str) -> ClientConnection:
    ws = await connect(
        server.ws,
        open_timeout=scaled(5),
        close_timeout=scaled(2),
        compression=None,
        local_addr=(source, 0),
    )
    Tab.opened.append(ws)
    await Tab.challenged(ws)
    return ws


async def test_a_socket_that_never_answers_the_close_frame_is_cut_off(edge: Server) -> None:
    # A bad frame, then silence: the server's close frame is never answered. The socket is
    # dropped after the handshake timeout, instead of holding its file forever.
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    try:
        writer.write(
            b"GET /ws/v1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
        writer.write(b"\x81\x84\x00\x00\x00\x00{bad")  # a masked text frame, mask of zeros
        start, answer = time.monotonic(), b""
        with contextlib.suppress(ConnectionError), anyio.fail_after(TIMEOUT + scaled(3)):
            answer = await reader.read()  # the error and close frames, then the end
        assert b"bad_message" in answer
        assert TIMEOUT * 0.9 < time.monotonic() - start < TIMEOUT + scaled(1.5)
    finally:
        writer.transport.abort()
