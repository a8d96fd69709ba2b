"""A site cannot make the server reach local or private addresses (server-side request
forgery), and what the server tells the caller does not say what answered there.

The server here (the package's `server` fixture) runs as shipped: SEATGUARD_ALLOW_PRIVATE_URLS
is off. Every target is on
this machine's loopback, which the server must not reach.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import anyio
import pytest

from tests.helpers import Server, free_port, scaled
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab
from tests.integration.test_jwks_uri import (
    KeyServer,
    Signer,
    hello,
    identity_site,
    identity_token,
    logout_token,
    oidc_site,
    post_logout,
    user,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("k1")


@pytest.fixture
def keys(signer: Signer) -> Iterator[KeyServer]:
    """A good key server on loopback: reachable, were the server allowed to reach it."""
    served = KeyServer()
    served.document = {"keys": [signer.jwk]}
    served.start()
    yield served
    served.stop()


async def test_a_secret_key_cannot_set_a_url_naming_a_local_address(
    server: Server, keys: KeyServer
) -> None:
    site = server.create_site("--name", "Prober", "--origin", "*")
    port = keys.port
    async with api(server, site) as client:
        for uri in [
            f"http://127.0.0.1:{port}/jwks",
            f"http://localhost:{port}/jwks",
            f"http://[::1]:{port}/jwks",
            f"https://[::ffff:127.0.0.1]:{port}/jwks",
            f"https://127.0.0.2:{port}/jwks",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/jwks",
        ]:
            for name in ("oidc_jwks_uri", "identity_jwks_uri"):
                r = await client.patch("/site", json={name: uri})
                assert r.status_code == 403, (uri, r.text)
                assert "local or private address" in r.json()["detail"], r.json()
        shown = (await client.get("/site")).json()
        assert (shown["oidc_jwks_uri"], shown["identity_jwks_uri"]) == (None, None)
    assert keys.hits == 0


async def test_names_resolving_to_loopback_are_refused_at_fetch_time_all_alike(
    server: Server, keys: KeyServer, signer: Signer
) -> None:
    # The operator set these by name (the CLI is the operator's), so only the check at
    # connection time stands between them and loopback: a good key set, a closed port,
    # and something that is not a key set (the server's own health check).
    closed = free_port()
    targets = [
        keys.url.replace("127.0.0.1", "localhost"),
        f"http://localhost:{closed}/jwks",
        f"http://localhost:{server.port}/healthz",
    ]
    logouts, hellos = [], []
    for uri in targets:
        site = oidc_site(server, uri)
        r = await post_logout(server, site, logout_token(signer, sub=user()))
        logouts.append((r.status_code, r.json()))
        created = identity_site(server, uri)
        key = str(created["key"])
        frame, tab = await hello(server, key, identity_token(signer, key, user()))
        code, reason, _ = await tab.closed()
        hellos.append((frame["code"], frame["message"], code, reason))
    fixed = "the signing keys could not be fetched; try again later"
    assert logouts == [(503, {"error": "temporarily_unavailable", "error_description": fixed})] * 3
    said = "identity token keys could not be fetched; try again later"
    assert hellos == [(4013, said, 4013, said)] * 3
    assert keys.hits == 0
    # The reason is the server's to know: one warning per fetch (one per URL: the node
    # shares its fetches among sites and asks one URL at most once per interval).
    logged = server.log.read_text()
    assert logged.count("resolves to no public address") == len(targets), logged


async def test_webhooks_are_not_posted_to_local_addresses(server: Server) -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    receiver = await asyncio.start_server(count, "127.0.0.1", 0)
    port = receiver.sockets[0].getsockname()[1]
    async with receiver:
        url = f"http://localhost:{port}/hook"
        site = server.create_site("--name", "Hooks", "--origin", "*", "--webhook-url", url)
        u = user()
        await Tab.open(server.ws, str(site["key"]), Browser(u))
        await Tab.open(server.ws, str(site["key"]), Browser(u))  # blocked: one webhook
        deadline = time.monotonic() + scaled(5)
        while f"to {url} failed" not in server.log.read_text():
            assert time.monotonic() < deadline, server.log.read_text()
            await anyio.sleep(0.05)
    assert connections == 0
    line = next(x for x in server.log.read_text().splitlines() if f"to {url} failed" in x)
    assert "after 1 attempt(s)" in line and "no public address" in line, line
