"""The REST API against a real server: routing errors, careful revocation, site rules."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from tests.helpers import Server, seatguard
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio


def user() -> str:
    return "u-" + secrets.token_hex(4)


@pytest.fixture
def fresh_site(server: Server) -> dict[str, Any]:
    """A site of its own per test, so that changing its rules disturbs nobody else."""
    return server.create_site("--name", "API", "--origin", "*")


async def test_unknown_routes_and_wrong_methods_answer_problem_details(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    async with api(server, fresh_site) as client:
        r = await client.get("/no/such/route")
        assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
        assert (
            r.json()["detail"] == "no API route GET /api/v1/no/such/route; see /api/v1/openapi.json"
        )
        r = await client.delete("/site")
        assert (r.status_code, r.headers["content-type"]) == (405, "application/problem+json")
        assert r.headers["allow"] == "GET, HEAD, PATCH"
        assert r.json()["title"] == "Method not allowed"
        r = await client.post("/openapi.json")
        assert (r.status_code, r.headers["content-type"]) == (405, "application/problem+json")
        # Outside /api/ the server keeps plain text.
        r = await client.get(server.http + "/no/such/page")
        assert (r.status_code, r.headers["content-type"]) == (404, "text/plain; charset=utf-8")


async def test_revoke_keeping_an_unknown_session_revokes_nothing(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    u, key = user(), str(fresh_site["key"])
    a, _ = await Tab.open(server.ws, key, Browser(u))
    b, _ = await Tab.open(server.ws, key, Browser(u))
    async with api(server, fresh_site) as client:
        r = await client.post(f"/users/{u}/revoke", json={"keep": "typo-of-a-session"})
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "'typo-of-a-session'" in r.json()["detail"]
        listed = (await client.get(f"/users/{u}/sessions")).json()
    assert {s["id"] for s in listed["sessions"]} == {a.browser.session, b.browser.session}
    assert await a.heartbeat() == {"t": "ack", "ref": 1}
    assert await b.heartbeat() == {"t": "ack", "ref": 1}


async def test_site_rules_are_read_changed_and_kept(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    key = str(fresh_site["key"])
    async with api(server, fresh_site) as client:
        r = await client.get("/site")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "key": key,
            "name": "API",
            "origins": ["*"],
            "mode": "concurrence",
            "limit": 1,
            "policy": "block-new",
            "idle_timeout": None,
            "absolute_timeout": None,
            "client_settings": False,
            "identity_jwks_uri": None,
            "oidc_jwks_uri": None,
            "identity_max_lifetime": 3600,
            "seat_tokens": True,
            "seat_token_ttl": 120,
        }
        change = {
            "limit": 2,
            "policy": "evict-oldest",
            "idle_timeout": 600,
            "client_settings": True,
            "identity_max_lifetime": 600,
            "seat_tokens": False,
            "seat_token_ttl": 60,
        }
        r = await client.patch("/site", json=change)
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in change} == change
        assert (await client.get("/site")).json() == r.json()
        # Absent fields stay; a null timeout clears it.
        r = await client.patch("/site", json={"idle_timeout": None, "absolute_timeout": 3600})
        assert (r.json()["limit"], r.json()["idle_timeout"], r.json()["absolute_timeout"]) == (
            2,
            None,
            3600,
        )
    # Kept in the database, where the CLI reads it too.
    shown = json.loads(seatguard("site", "show", key, "--db", str(server.db)))
    assert (shown["limit"], shown["policy"], shown["absolute_timeout"]) == (2, "evict-oldest", 3600)
    assert (shown["seat_tokens"], shown["seat_token_ttl"]) == (False, 60)
    # And in force for browsers that join afterwards: two seats now.
    u = user()
    _, w1 = await Tab.open(server.ws, key, Browser(u))
    _, w2 = await Tab.open(server.ws, key, Browser(u))
    assert (w1["state"], w2["state"], w2["limit"], w2["policy"]) == (
        "admitted",
        "admitted",
        2,
        "evict-oldest",
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        # The bounds come from the struct (msgspec.Meta), as the OpenAPI document shows them.
        ({"limit": 0}, 422, "Expected `int` >= 1 - at `$.limit`"),
        ({"limit": 1001}, 422, "Expected `int` <= 1000 - at `$.limit`"),
        ({"limit": "2"}, 422, "Expected `int`, got `str` - at `$.limit`"),
        ({"limit": True}, 422, "Expected `int`, got `bool` - at `$.limit`"),
        ({"mode": "sharing"}, 422, "at `$.mode`"),
        ({"policy": "kick"}, 422, "at `$.policy`"),
        ({"idle_timeout": -0.5}, 422, "Expected `float` >= 0.0 - at `$.idle_timeout`"),
        ({"absolute_timeout": -5}, 422, "Expected `float` >= 0.0 - at `$.absolute_timeout`"),
        ({"client_settings": "yes"}, 422, "at `$.client_settings`"),
        ({"identity_max_lifetime": 59}, 422, "Expected `int` >= 60"),
        ({"identity_max_lifetime": 2592001}, 422, "Expected `int` <= 2592000"),
        ({"identity_max_lifetime": None}, 422, "at `$.identity_max_lifetime`"),
        ({"identity_max_lifetime": 3600.5}, 422, "at `$.identity_max_lifetime`"),
        ({"seat_tokens": "no"}, 422, "Expected `bool`, got `str` - at `$.seat_tokens`"),
        ({"seat_tokens": None}, 422, "at `$.seat_tokens`"),
        ({"seat_tokens": 0}, 422, "at `$.seat_tokens`"),
        ({"seat_token_ttl": 29}, 422, "Expected `int` >= 30 - at `$.seat_token_ttl`"),
        ({"seat_token_ttl": 901}, 422, "Expected `int` <= 900 - at `$.seat_token_ttl`"),
        ({"seat_token_ttl": 10**30}, 422, "at `$.seat_token_ttl`"),
        ({"seat_token_ttl": True}, 422, "at `$.seat_token_ttl`"),
        ({"name": "Renamed"}, 422, "unknown field `name`"),
        ({"secret": "sk_mine"}, 422, "unknown field `secret`"),
        (b"{", 400, "Malformed JSON"),
        (b"[1]", 422, "Expected `object`"),
        (b"{" + b" " * 17000 + b"}", 413, "16 KiB"),
    ],
    ids=lambda v: str(v)[:24],
)
async def test_bad_site_changes_are_refused_and_change_nothing(
    server: Server, fresh_site: dict[str, Any], body: Any, status: int, message: str
) -> None:
    async with api(server, fresh_site) as client:
        before = (await client.get("/site")).json()
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await client.patch("/site", content=content)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert message in problem["detail"] or message == problem["title"], problem
        assert (await client.get("/site")).json() == before


async def test_site_rules_need_the_secret_key(server: Server) -> None:
    async with api(server, {"secret": "sk_wrong"}) as client:
        assert (await client.get("/site")).status_code == 401
        assert (await client.patch("/site", json={"limit": 5})).status_code == 401
