"""The interactive API docs (`/api/docs`): Swagger UI over the server's own OpenAPI document,
every script and style from the server itself, no inline script."""

from __future__ import annotations

import re

import httpx
import pytest

from seatguard.apidocs import CSP
from tests.helpers import Server

pytestmark = pytest.mark.anyio


async def test_the_docs_page_loads_its_own_assets_under_a_strict_policy(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        r = await client.get("/api/docs")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        policy = r.headers["content-security-policy"]
        assert policy == CSP
        script_src = re.search(r"script-src ([^;]*)", policy)
        assert script_src is not None and script_src.group(1) == "'self'"
        assert "frame-ancestors 'none'" in policy
        page = r.text
        assert "<script>" not in page  # no inline script: every one has a src
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources == [
            "/api/docs/swagger-ui.css",
            "/api/docs/swagger-ui-bundle.js",
            "/api/docs/init.js",
        ]
        for source in sources:
            asset = await client.get(source, headers={"Accept-Encoding": "gzip"})
            assert asset.status_code == 200, source
            assert asset.headers["x-content-type-options"] == "nosniff"
        init = (await client.get("/api/docs/init.js")).text
        assert "url: '/api/v1/openapi.json'" in init
        bundle = await client.get("/api/docs/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert "SwaggerUIBundle" in bundle.text
        etag = bundle.headers["etag"]
        again = await client.get("/api/docs/swagger-ui-bundle.js", headers={"If-None-Match": etag})
        assert again.status_code == 304


async def test_nothing_else_is_served_from_the_docs_path(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        for path in ("/api/docs/index.html", "/api/docs/..%2Fseatguard.js", "/api/docs/x.js"):
            r = await client.get(path)
            assert r.status_code == 404, path
