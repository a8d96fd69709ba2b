"""The HTTP surface as an outsider meets it: health, the headers on every answer, the SDK file."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.helpers import Server, scaled, start_server
from tests.integration.api_client import api

pytestmark = pytest.mark.anyio

DETAILS = {"version", "node", "store", "tabs", "admission", "collector"}
PROXIED = {"X-Forwarded-For": "203.0.113.7"}  # uvicorn trusts it from 127.0.0.1


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http, timeout=scaled(10)) as c:
        yield c


# Health.


@pytest.mark.parametrize(
    "value",
    ["²", "١٢", "5" * 5000, "0", "2001", "-1", "+5", " 5", "1.5", "1e3", "", "ten", "0x10"],
    ids=lambda v: repr(v)[:12],
)
async def test_a_bad_admissions_count_is_a_clear_422(client: httpx.AsyncClient, value: str) -> None:
    r = await client.get("/healthz", params={"admissions": value})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "title": "Invalid request",
        "status": 422,
        "detail": "admissions must be a whole number from 1 to 2000",
    }


@pytest.mark.parametrize("value", ["1", "2000", "0042"])
async def test_a_good_admissions_count_is_taken(client: httpx.AsyncClient, value: str) -> None:
    r = await client.get("/healthz", params={"admissions": value})
    assert r.status_code == 200, r.text
    assert "count" in r.json()["admission"]


async def test_loopback_clients_see_the_details_by_default(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and set(r.json()) >= DETAILS


@pytest.mark.parametrize(
    "headers",
    [
        PROXIED,
        {"X-Forwarded-For": "127.0.0.1, 198.51.100.2"},  # what a client claimed, then its own
        {"Forwarded": "for=198.51.100.2"},  # a proxy uvicorn does not read
        {"X-Real-IP": "198.51.100.2"},
    ],
    ids=["x-forwarded-for", "spoofed-hop", "forwarded", "x-real-ip"],
)
async def test_a_client_behind_a_proxy_sees_only_the_status(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.get("/healthz", headers=headers)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    # The count is still checked, so a bad one is as clear from afar.
    assert (await client.get("/healthz?admissions=²", headers=headers)).status_code == 422


@pytest.fixture(scope="module")
def public_and_off(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for who in ("public", "off"):
            env = {**server_env, "SEATGUARD_HEALTH_DETAILS": who}
            servers[who] = start_server(tmp_path_factory.mktemp(who), "serve", env)
        yield servers
    finally:
        for s in servers.values():
            s.stop()


async def test_health_details_public_or_off(public_and_off: dict[str, Server]) -> None:
    async with httpx.AsyncClient(timeout=scaled(10)) as c:
        public = (await c.get(public_and_off["public"].http + "/healthz", headers=PROXIED)).json()
        assert public["status"] == "ok" and set(public) >= DETAILS
        off = await c.get(public_and_off["off"].http + "/healthz")  # even from loopback
        assert off.json() == {"status": "ok"}


# Headers on every answer.


async def test_every_answer_says_nosniff(server: Server, client: httpx.AsyncClient) -> None:
    answers = [
        await client.get("/healthz"),
        await client.get("/healthz?admissions=0"),
        await client.get("/sdk/v1/seatguard.js"),
        await client.get("/sdk/v1/lang/fr.json"),
        await client.get("/sdk/v1/lang/xx.json"),
        await client.get("/api/v1/openapi.json"),
        await client.get("/api/v1/site"),
        await client.get("/api/v1/no/such/route"),
        await client.delete("/api/v1/openapi.json"),
        await client.get("/no/such/page"),
        await client.put("/healthz"),
        await client.get("/oidc/v1/pk_x/backchannel-logout"),
        await client.post("/oidc/v1/pk_x/backchannel-logout"),
    ]
    # A refused WebSocket handshake, on a connection of its own (the WebSocket endpoint
    # reads the first request of a connection).
    for headers in [{}, {"Connection": "Upgrade", "Upgrade": "websocket"}]:
        async with httpx.AsyncClient(timeout=scaled(10)) as fresh:
            answers.append(await fresh.get(server.ws.replace("ws:", "http:"), headers=headers))
    assert [r.status_code for r in answers[-2:]] == [426, 400]
    for r in answers:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, r.headers)


async def test_api_answers_are_never_stored(server: Server, client: httpx.AsyncClient) -> None:
    site: dict[str, Any] = server.create_site("--name", "Private", "--origin", "*")
    async with api(server, site) as authed:
        answers = [
            await authed.get("/site"),
            await authed.get("/users/alice/sessions"),
            await authed.get("/audit?limit=0"),  # 422
            await authed.post("/revoke", json={}),  # 422
            await authed.delete("/users/alice/sessions/no-such-session"),  # 404
            await authed.get("/no/such/route"),  # 404
            await authed.delete("/site"),  # 405
            await client.get("/api/v1/site"),  # 401
        ]
    for r in answers:
        assert r.headers.get("cache-control") == "no-store", (r.request.url, r.status_code)


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="seatguard"'),
        ("Basic dXNlcjpwYXNz", 'Bearer realm="seatguard"'),
        ("Bearer", 'Bearer realm="seatguard", error="invalid_request"'),
        ("Bearer sk_wrong", 'Bearer realm="seatguard", error="invalid_token"'),
    ],
    ids=["none", "basic", "empty", "unknown"],
)
async def test_every_401_carries_a_bearer_challenge(
    client: httpx.AsyncClient, authorization: str | None, challenge: str
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in [("GET", "/site"), ("PUT", "/overrides/user/a%2Fb"), ("GET", "/audit")]:
        r = await client.request(method, "/api/v1" + path, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith(challenge), r.headers["www-authenticate"]
        assert r.headers["content-type"] == "application/problem+json"


# The SDK file and its language packs.


@pytest.mark.parametrize("path", ["/sdk/v1/seatguard.js", "/sdk/v1/lang/de.json"])
async def test_the_sdk_is_gzipped_with_strong_etags_and_304s(
    client: httpx.AsyncClient, path: str
) -> None:
    plain = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    zipped = await client.get(path, headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    # httpx decoded it: the same bytes, sent smaller, under its own strong tag.
    assert zipped.content == plain.content
    async with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as r:
        sent = b"".join([chunk async for chunk in r.aiter_raw()])
    assert gzip.decompress(sent) == plain.content and len(sent) < len(plain.content)
    assert int(zipped.headers["content-length"]) == len(sent)
    for r in (plain, zipped):
        assert r.headers["vary"] == "Accept-Encoding"
        assert r.headers["etag"].startswith('"') and not r.headers["etag"].startswith("W/")
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["cache-control"] == "public, max-age=300"
    assert plain.headers["etag"] != zipped.headers["etag"]

    again = await client.get(
        path, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == zipped.headers["etag"]
    assert again.headers["vary"] == "Accept-Encoding"
    weak = await client.get(
        path, headers={"Accept-Encoding": "identity", "If-None-Match": "W/" + plain.headers["etag"]}
    )
    assert weak.status_code == 304
    # The other encoding's tag, or a stale one, gets the whole file.
    for tag in (plain.headers["etag"], '"stale"'):
        full = await client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
        assert full.status_code == 200 and full.content == plain.content


# Wrong paths: an endpoint that misses the socket learns where it is.

UPGRADE = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
NO_SOCKET_HERE = b"no WebSocket endpoint at this path; the socket is at /ws/v1\n"


async def exchange(server: Server, data: bytes) -> bytes:
    """Send raw bytes on a connection of their own; the server's answer: its head and the
    body its `Content-Length` gives, else all it sends until it closes. (A request that
    may keep the connection alive is answered, then the connection waits for the next
    one: reading until the close would wait for the server's keep-alive timeout.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        with anyio.fail_after(scaled(5)):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                return exc.partial  # closed before a whole head: what came
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ]
            if lengths:
                return head + await reader.readexactly(lengths[0])
            return head + await reader.read(-1)
    finally:
        writer.close()


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Server]:
    """The demo, whose `/` is a page."""
    s = start_server(tmp_path_factory.mktemp("demo"), "demo", server_env)
    yield s
    s.stop()


@pytest.mark.parametrize("path", ["/", "/ws", "/ws/v1/", "/ws/v2", "/healthz", "/api/v1/site"])
async def test_a_websocket_to_another_path_is_a_404_that_names_the_socket(
    server: Server, demo: Server, path: str
) -> None:
    for s in (server, demo):  # the demo's `/` is a page, not a socket either
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{s.port}{path}", open_timeout=scaled(5)):
                pass
        response = refused.value.response
        assert (response.status_code, bytes(response.body)) == (404, NO_SOCKET_HERE)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    "head",
    [
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n",
        f"GET /?x=1 HTTP/1.1\r\nHost: x\r\n{UPGRADE}",
        f"POST /api/v1/revoke HTTP/1.1\r\nHost: x\r\n{UPGRADE}Content-Length: 5\r\n",
    ],
    ids=["case-and-list", "query", "post-with-body"],
)
async def test_upgrades_in_other_shapes_are_the_same_404(server: Server, head: str) -> None:
    answer = await exchange(server, (head + "\r\nhello").encode())
    assert status_and_body(answer) == (404, NO_SOCKET_HERE)


async def test_an_upgrade_after_a_request_on_the_same_connection_is_a_404(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(scaled(5)):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200")
            writer.write(f"GET / HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode())
            answer = await reader.read(-1)
    finally:
        writer.close()
    assert status_and_body(answer) == (404, NO_SOCKET_HERE)


@pytest.mark.parametrize(
    "head",
    [
        "GET / HTTP/1.1\r\nHost: x\r\n",  # a browser looking at the server
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",  # no Connection: upgrade
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n",  # not ours
    ],
    ids=["plain", "upgrade-header-alone", "h2c"],
)
async def test_a_plain_request_for_a_missing_page_names_the_socket_and_the_api(
    server: Server, head: str
) -> None:
    status, body = status_and_body(await exchange(server, (head + "\r\n").encode()))
    assert status == 404
    assert body == b"Not Found. The WebSocket endpoint is /ws/v1; the REST API is /api/v1/\n"


async def test_a_wrong_path_is_logged_once_and_uvicorn_says_nothing(tmp_path: Path) -> None:
    s = start_server(tmp_path, "serve")
    try:
        for path in ["/", "/ws", "/x"]:
            answer = await exchange(s, f"GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode())
            assert status_and_body(answer)[0] == 404
        async with httpx.AsyncClient(timeout=scaled(10)) as c:
            assert (await c.get(s.http + "/healthz")).status_code == 200  # still serving
    finally:
        s.stop()
    log = s.log.read_text()
    assert "WebSocket library" not in log and "Unsupported upgrade" not in log, log
    lines = [ln for ln in log.splitlines() if "WebSocket upgrade" in ln]
    assert lines == [
        "answered 404 to a WebSocket upgrade to '/' from 127.0.0.1: the socket is at /ws/v1 "
        "(check the SDK's endpoint)"
    ]
