"""Routing errors under /api/ answer RFC 9457 problem details; elsewhere, plain text."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from seatguard import api, oidc

pytestmark = pytest.mark.anyio


async def page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("a page")


def client() -> httpx.AsyncClient:
    """The API's routes and a page, with the handlers the app installs; no server needed."""
    app = Starlette(
        routes=[*api.routes(), Route("/watch", page)],
        exception_handlers=api.exception_handlers(),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_unknown_api_route_is_a_404_problem() -> None:
    async with client() as c:
        r = await c.get("/api/v1/nothing/here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "title": "Not found",
        "status": 404,
        "detail": "no API route GET /api/v1/nothing/here; see /api/v1/openapi.json",
    }  # no "type": RFC 9457 reads its absence as "about:blank"


async def test_wrong_method_is_a_405_problem_naming_the_allowed_methods() -> None:
    async with client() as c:
        r = await c.post("/api/v1/users/alice/seat")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["allow"] == "GET, HEAD"
    body = r.json()
    assert (body["title"], body["status"]) == ("Method not allowed", 405)
    assert (
        body["detail"] == "POST /api/v1/users/alice/seat is not allowed; this path takes GET, HEAD"
    )


async def test_a_path_with_two_methods_allows_both() -> None:
    async with client() as c:
        r = await c.patch("/api/v1/overrides/user/alice")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, PUT"


async def test_other_paths_keep_plain_text_errors() -> None:
    async with client() as c:
        assert (await c.get("/watch")).text == "a page"
        r = await c.get("/nothing")
        assert (r.status_code, r.headers["content-type"]) == (404, "text/plain; charset=utf-8")
        r = await c.post("/watch")
        assert (r.status_code, r.text) == (405, "Method Not Allowed")


def oidc_client() -> httpx.AsyncClient:
    app = Starlette(routes=oidc.routes(), exception_handlers=api.exception_handlers())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_back_channel_logout_routing_errors_are_oauth_errors() -> None:
    async with oidc_client() as c:
        r = await c.get("/oidc/v1/pk_x/backchannel-logout")
        assert (r.status_code, r.headers["content-type"]) == (405, "application/json")
        assert r.headers["allow"] == "POST"
        assert r.headers["cache-control"] == "no-store"
        assert r.json() == {
            "error": "invalid_request",
            "error_description": "GET /oidc/v1/pk_x/backchannel-logout is not allowed; "
            "this path takes POST",
        }
        r = await c.post("/oidc/v1/pk_x/front-channel-logout")
        assert (r.status_code, r.headers["content-type"]) == (404, "application/json")
        assert r.json()["error"] == "invalid_request"
