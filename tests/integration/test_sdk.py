"""The SDK file and its language packs, as a real server serves them."""

from __future__ import annotations

import json

import httpx
import pytest

from seatguard.app import SDK_LANGUAGES
from tests.helpers import ROOT, Server, scaled

pytestmark = pytest.mark.anyio

LANG_DIR = ROOT / "backend/seatguard/static/lang"


def http(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http, timeout=scaled(10))


async def test_the_sdk_and_each_language_pack_share_caching_and_cors(server: Server) -> None:
    async with http(server) as client:
        sdk = await client.get("/sdk/v1/seatguard.js")
        for lang in SDK_LANGUAGES:
            r = await client.get(f"/sdk/v1/lang/{lang}.json")
            assert r.status_code == 200, lang
            assert r.headers["content-type"] == "application/json"
            for header in ("cache-control", "access-control-allow-origin"):
                assert r.headers[header] == sdk.headers[header], (lang, header)
            assert r.json() == json.loads((LANG_DIR / f"{lang}.json").read_text()), lang


async def test_the_french_pack_has_the_french_texts(server: Server) -> None:
    async with http(server) as client:
        r = await client.get("/sdk/v1/lang/fr.json", headers={"Origin": "https://shop.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    pack = r.json()
    assert pack["blockTitle"] == "Ce compte est utilisé ailleurs"
    assert pack["useHere"] == "Utiliser ici"
    assert all(isinstance(text, str) and text for text in pack.values())


@pytest.mark.parametrize("name", ["en", "xx", "FR", "fr-FR", "..", "%2e%2e", "fr.json", "fr%00"])
async def test_an_unknown_language_is_a_404_problem(server: Server, name: str) -> None:
    async with http(server) as client:
        r = await client.get(f"/sdk/v1/lang/{name}.json")
    assert r.status_code == 404, name
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 404 and problem["title"] == "Not found"
    assert "fr, es, de" in problem["detail"]


async def test_no_path_leads_out_of_the_pack_directory(server: Server) -> None:
    async with http(server) as client:
        for path in ["/sdk/v1/lang/..%2Fseatguard.js", "/sdk/v1/lang/..%2F..%2Fapp.py%00.json"]:
            r = await client.get(path)
            assert r.status_code == 404, path
            assert b"Seatguard" not in r.content and b"import" not in r.content, path


async def test_the_device_module_is_served_like_the_sdk(server: Server) -> None:
    built = (ROOT / "backend/seatguard/static/device.js").read_bytes()
    async with http(server) as client:
        sdk = await client.get("/sdk/v1/seatguard.js")
        r = await client.get("/sdk/v1/device.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["content-type"] == sdk.headers["content-type"]
        assert r.headers["content-encoding"] == "gzip"
        assert r.content == built
        for header in ("cache-control", "access-control-allow-origin", "vary"):
            assert r.headers[header] == sdk.headers[header], header
        again = await client.get(
            "/sdk/v1/device.js",
            headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]},
        )
        assert again.status_code == 304
