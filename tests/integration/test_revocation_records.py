"""Revocations outlive presence: kept in the database, they hold across a restart."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, start_server
from tests.integration.api_client import api, identity_token
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio


@pytest.fixture
def restartable(tmp_path: Path, server_env: dict[str, str]) -> Iterator[list[Server]]:
    """A server that the test may restart on the same database: `servers[-1]` is live."""
    servers = [start_server(tmp_path, "serve", server_env)]
    yield servers
    servers[-1].stop()


def restart(servers: list[Server], tmp_path: Path, server_env: dict[str, str]) -> Server:
    servers[-1].stop()
    servers.append(start_server(tmp_path, "serve", server_env))
    return servers[-1]


async def hello_code(server: Server, site: str, browser: Browser, **extra: Any) -> int:
    return (await Tab.try_hello(server.ws, site, browser, **extra))[0]


async def test_a_revoked_session_stays_refused_after_a_restart(
    restartable: list[Server], tmp_path: Path, server_env: dict[str, str]
) -> None:
    server = restartable[-1]
    site = server.create_site("--name", "Restart", "--origin", "*")
    u = "u-" + secrets.token_hex(4)
    browser = Browser(u)
    await Tab.open(server.ws, site["key"], browser)
    async with api(server, site) as client:
        r = await client.delete(f"/users/{u}/sessions/{browser.session}")
        assert r.status_code == 200
    await Tab.close_all()
    server = restart(restartable, tmp_path, server_env)  # presence is gone, the record is not
    assert await hello_code(server, site["key"], browser, user=u) == 4010
    assert await hello_code(server, site["key"], Browser(u), user=u) == 0
    async with api(server, site) as client:
        rows = (await client.get("/audit", params={"user": u})).json()["records"]
    # Decisions carry the store's sequence number (`decision`); a refusal decides nothing.
    kinds = [(r["kind"], r["reason"], r["detail"]) for r in rows]
    [revoked] = [detail for kind, _, detail in kinds if kind == "revoked"]
    assert revoked == {"by": "api", "scope": "session", "decision": revoked["decision"]}
    assert isinstance(revoked["decision"], int)
    assert ("refused", "revoked", {}) in kinds


async def test_revoking_a_user_refuses_identity_tokens_issued_before(
    restartable: list[Server],
) -> None:
    server = restartable[-1]
    site = server.create_site("--name", "Tokens", "--origin", "*")
    u = "u-" + secrets.token_hex(4)
    old = identity_token(site, u, iat=int(time.time()) - 60)  # within the longest lifetime
    assert await hello_code(server, site["key"], Browser(u), token=old) == 0
    async with api(server, site) as client:
        r = await client.post(f"/users/{u}/revoke", json={})
        assert r.status_code == 200 and len(r.json()["revoked"]) == 1
    # A new browser session with the old token: refused; a token issued now: admitted.
    assert await hello_code(server, site["key"], Browser(u), token=old) == 4010
    assert await hello_code(server, site["key"], Browser(u), token=identity_token(site, u)) == 0
    async with api(server, site) as client:
        rows = (await client.get("/audit", params={"user": u})).json()["records"]
    assert ("refused", "token_revoked") in [(r["kind"], r["reason"]) for r in rows]
    [revoked] = [r["detail"] for r in rows if r["kind"] == "revoked"]
    assert revoked == {"by": "api", "scope": "user", "decision": revoked["decision"]}
