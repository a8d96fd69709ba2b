"""A real server publishes its seat keys; tokens signed with its key file verify through
`SeatVerifier` and `SeatMiddleware`; a rotation reaches the running server."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from seatguard.seat import SeatTokens, load_seat_keys
from seatguard.seat.routes import JWKS_PATH
from seatguard.seat.source import RELOAD_INTERVAL
from seatguard.settings import Settings
from seatguard.verify import SeatClaims, SeatMiddleware, SeatVerifier
from tests.helpers import SEATGUARD, Server, free_port, scaled, seatguard, start_server

pytestmark = pytest.mark.anyio

SITE = "pk_seat_tokens"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("seat-tokens"), "serve", server_env)
    yield s
    s.stop()


def issuer_of(server: Server) -> SeatTokens:
    """Tokens signed with the server's own key file, as its node signs them."""
    ring = load_seat_keys(Settings(db=str(server.db)), create=False, now=time.time())
    return SeatTokens(ring, server.http)


def key_file(server: Server) -> list[dict[str, object]]:
    """The private keys in the server's key file, once it is owner-only."""
    path = Path(str(server.db) + ".seat-keys")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys: list[dict[str, object]] = json.loads(path.read_text())["keys"]
    return keys


async def test_the_server_publishes_public_keys_only(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        r = await client.get(JWKS_PATH)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk-set+json"
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["access-control-allow-origin"] == "*"
    private = key_file(server)
    published = r.json()["keys"]
    assert [k["kid"] for k in published] == [k["kid"] for k in private]
    for key in published:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert not any(str(k["d"]) in r.text for k in private)


async def test_a_token_verifies_against_the_published_keys(server: Server) -> None:
    seat = issuer_of(server).issue(site=SITE, user="alice", session="s1", device="d1")
    async with SeatVerifier(server.http + JWKS_PATH, server.http, SITE) as verifier:
        claims = await verifier.verify(seat.token)
        assert (claims.user, claims.session, claims.device) == ("alice", "s1", "d1")

        async def page(request: Request) -> JSONResponse:
            seat: SeatClaims = request.state.seat
            return JSONResponse({"user": seat.user})

        app = SeatMiddleware(Starlette(routes=[Route("/watch", page)]), verifier)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as site:
            r = await site.get("/watch", headers={"Seatguard-Seat": seat.token})
            assert r.status_code == 200 and r.json() == {"user": "alice"}
            r = await site.get("/watch")
            assert r.status_code == 401
            other = issuer_of(server).issue(site="pk_other", user="a", session="s", device="d")
            r = await site.get("/watch", headers={"Seatguard-Seat": other.token})
            assert r.status_code == 401 and "audience" in r.json()["detail"]


async def test_a_rotation_reaches_the_running_server(server: Server) -> None:
    before = issuer_of(server).issue(site=SITE, user="alice", session="s1", device="d1")
    seatguard("seat-keys", "rotate", "--db", str(server.db))
    new = key_file(server)[-1]["kid"]
    async with httpx.AsyncClient(base_url=server.http) as client:
        for _ in range(int(scaled(RELOAD_INTERVAL + 5) / 0.2)):  # the server looks every 5 s
            if new in [k["kid"] for k in (await client.get(JWKS_PATH)).json()["keys"]]:
                break
            await anyio.sleep(0.2)
        else:
            raise AssertionError(f"the server did not publish the new key {new}")
    # The key it replaced still signs (the new one waits for caches) and stays published.
    async with SeatVerifier(server.http + JWKS_PATH, server.http, SITE) as verifier:
        assert (await verifier.verify(before.token)).user == "alice"


def test_postgresql_without_seat_keys_does_not_start(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SEATGUARD_AUDIT_KEY": secrets.token_hex(32),
        "SEATGUARD_SECRETS_KEY": secrets.token_hex(32),
        "SEATGUARD_DATABASE_URL": "postgresql://127.0.0.1:1/none",
    }
    env.pop("SEATGUARD_SEAT_KEYS", None)
    env.pop("SEATGUARD_SEAT_KEYS_FILE", None)
    done = subprocess.run(
        [*SEATGUARD, "serve", "--port", str(free_port()), "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(30),
        check=False,
    )
    assert done.returncode != 0
    assert "set SEATGUARD_SEAT_KEYS or SEATGUARD_SEAT_KEYS_FILE" in done.stdout + done.stderr
