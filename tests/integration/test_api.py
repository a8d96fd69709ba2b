"""The REST API against a real server: routing errors, careful revocation."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.conftest import Server
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
        r = await client.delete("/overrides")
        assert (r.status_code, r.headers["content-type"]) == (405, "application/problem+json")
        assert r.headers["allow"] == "GET, HEAD"
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
