"""Back-channel logout tokens are accepted once, by every server process and across restarts.

The ids of accepted tokens live in the database (`Database.remember_token`), so a replay is
refused wherever it lands; a token whose logout failed is forgotten, so the provider's retry
of the very same token passes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from seatguard import oidc
from seatguard.db import Database, SqliteDatabase
from seatguard.presence import Rules, Session
from seatguard.sealing import SecretBox
from seatguard.sites import Site, SiteConfig, new_site
from tests.helpers import (
    Server,
    fresh_postgres_database,
    seat_keys,
    seatguard,
    start_server,
)
from tests.integration.api_client import logout_token

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Shared:
    """Where server processes keep their records: one SQLite file or one PostgreSQL database."""

    db: str  # what `--db` of the CLI takes
    args: tuple[str, ...] = ()  # more flags for `seatguard serve`
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def shared(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Shared]:
    if kind == "sqlite":
        yield Shared(str(tmp_path / "seatguard.db"))  # the file `start_server` passes as --db
        return
    async with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        # Every node of a cluster signs the audit chain and reads the secrets with the same keys.
        keys = {"SEATGUARD_AUDIT_KEY": secrets.token_hex(32)}
        keys["SEATGUARD_SECRETS_KEY"] = secrets.token_hex(32)
        keys["SEATGUARD_SEAT_KEYS"] = seat_keys()
        yield Shared(url, ("--database-url", url), keys)


def oidc_site(shared: Shared, provider: dict[str, Any]) -> str:
    out = seatguard(
        "site", "create", "--db", shared.db, "--name", "OIDC", "--origin", "*",
        "--oidc-issuer", provider["issuer"], "--oidc-client-id", provider["client"],
        "--oidc-jwks", str(provider["jwks"]),
        env=shared.env,
    )  # fmt: skip
    return str(json.loads(out)["key"])


async def test_a_token_is_accepted_once_by_all_processes_and_after_a_restart(
    shared: Shared, provider: dict[str, Any], server_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**server_env, **shared.env}
    started: list[Server] = []

    def serve() -> Server:
        started.append(start_server(tmp_path, "serve", env, *shared.args))
        return started[-1]

    try:
        a, b = serve(), serve()
        key = oidc_site(shared, provider)

        def url(server: Server) -> str:
            return f"{server.http}/oidc/v1/{key}/backchannel-logout"

        token = logout_token(provider, sub="alice")
        async with httpx.AsyncClient() as client:

            async def post(server: Server, token: str) -> httpx.Response:
                return await client.post(url(server), data={"logout_token": token})

            assert (await post(a, token)).status_code == 200
            replay = await post(b, token)  # another process of the same cluster
            assert replay.status_code == 400, replay.text
            assert replay.json()["error_description"] == "logout token replayed"
            # A refused token does not use up its jti: the good one with that jti passes.
            jti = secrets.token_hex(8)
            refused = await post(a, logout_token(provider, sub="bob", jti=jti, nonce="n"))
            assert refused.status_code == 400 and "nonce" in refused.text
            assert (await post(b, logout_token(provider, sub="bob", jti=jti))).status_code == 200
            a.stop()
            restarted = serve()
            again = await post(restarted, token)
            assert (again.status_code, again.json()["error_description"]) == (
                400,
                "logout token replayed",
            )
    finally:
        for server in started:
            server.stop()


@dataclass
class FlakyNode:
    """Just what the endpoint uses of a node, with a revocation that fails `failures` times."""

    db: Database
    known: Site
    failures: int
    revoked: list[str | None] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    async def site(self, key: str) -> Site | None:
        return self.known if key == self.known.key else None

    async def revoke_where(
        self,
        site: str,
        match: Callable[[Session], bool],
        user: str | None = None,
        **context: str,
    ) -> int:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the presence store is unreachable")
        self.revoked.append(user)
        return 1


async def test_a_failed_logout_forgets_the_token_so_the_retry_passes(
    provider: dict[str, Any], tmp_path: Path
) -> None:
    config = SiteConfig(
        oidc_issuer=provider["issuer"],
        oidc_client_id=provider["client"],
        oidc_jwks=provider["jwks_document"],
    )
    site, _ = new_site(
        "OIDC",
        ["*"],
        Rules(),
        client_settings=False,
        now=time.time(),
        box=SecretBox.ephemeral(),
        config=config,
    )
    db = await SqliteDatabase.open(str(tmp_path / "seatguard.db"))
    node = FlakyNode(db, site, failures=1)
    app = Starlette(routes=oidc.routes())
    app.state.node = node
    token = logout_token(provider, sub="alice")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            path = f"/oidc/v1/{site.key}/backchannel-logout"
            failed = await client.post(path, data={"logout_token": token})
            assert failed.status_code == 500
            assert failed.json()["error"] == "server_error"
            assert node.revoked == []
            retry = await client.post(path, data={"logout_token": token})  # the provider retries
            assert retry.status_code == 200, retry.text
            assert node.revoked == ["alice"]
            replay = await client.post(path, data={"logout_token": token})
            assert replay.status_code == 400
            assert node.revoked == ["alice"]
    finally:
        await db.close()


# The body: capped while it streams in, parsed strictly, every error an OAuth error body.


@pytest.fixture
def logout_url(server: Server, provider: dict[str, Any]) -> str:
    site = server.create_site(
        "--name", "OIDC", "--origin", "*",
        "--oidc-issuer", provider["issuer"], "--oidc-client-id", provider["client"],
        "--oidc-jwks", str(provider["jwks"]),
    )  # fmt: skip
    return f"{server.http}/oidc/v1/{site['key']}/backchannel-logout"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def oauth_error(r: httpx.Response, status: int, error: str = "invalid_request") -> str:
    """Check that `r` is an OAuth error answer; its description."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    body = r.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error, body
    return str(body["error_description"])


async def test_a_body_over_16_kib_is_413_before_it_is_read(
    logout_url: str, provider: dict[str, Any]
) -> None:
    token = logout_token(provider, sub="alice")
    padding = "&pad=" + "x" * 20_000
    async with httpx.AsyncClient() as client:
        r = await client.post(logout_url, content="logout_token=" + token + padding, headers=FORM)
        assert "16 KiB" in oauth_error(r, 413)

        async def stream() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
            yield f"logout_token={token}".encode()
            for _ in range(64):
                yield b"&pad=" + b"x" * 1024

        r = await client.post(logout_url, content=stream(), headers=FORM)
        assert "content-length" not in r.request.headers
        assert "16 KiB" in oauth_error(r, 413)
        # The token was never taken: it still logs out once.
        r = await client.post(logout_url, data={"logout_token": token})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"logout_token=%FF%FE", "not form encoding in UTF-8"),
        (b"logout_token=\xff", "not form encoding in UTF-8"),
        (b"logout_token", "not form encoding"),
        (b"logout_token=a&&x=1", "not form encoding"),
        (b"", "logout_token is missing"),
        (b"logout_token=", "logout_token is missing"),
        (b"other=1", "logout_token is missing"),
        (b"logout_token=a&logout_token=b", "more than once"),
    ],
    ids=lambda v: repr(v)[:24],
)
async def test_a_body_that_is_not_one_form_field_is_a_clear_400(
    logout_url: str, body: bytes, why: str
) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(logout_url, content=body, headers=FORM)
    assert why in oauth_error(r, 400)


async def test_every_refusal_is_an_oauth_error(logout_url: str, server: Server) -> None:
    async with httpx.AsyncClient() as client:
        oauth_error(await client.post(logout_url, content=b"{}"), 400)  # not a form
        oauth_error(await client.post(logout_url, data={"logout_token": "a.b.c"}), 400)
        unknown = f"{server.http}/oidc/v1/pk_nobody/backchannel-logout"
        oauth_error(await client.post(unknown, data={"logout_token": "x"}), 404)
        r = await client.get(logout_url)
        assert "is not allowed" in oauth_error(r, 405) and r.headers["allow"] == "POST"
