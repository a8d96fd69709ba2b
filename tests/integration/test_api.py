"""The REST API against a real server: routing errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Server
from tests.integration.api_client import api

pytestmark = pytest.mark.anyio


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
