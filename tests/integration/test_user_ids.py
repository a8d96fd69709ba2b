"""One definition of a user id: what the hello admits, every per-user route reaches.

A user id is 1 to 256 characters of printable text, not blank (names.py). The ids below
reach the same user through the WebSocket hello, an identity token's `sub` and each route of
the REST API, percent-encoded in its path; the ids just outside are refused everywhere, with
a close code or a 422 saying why.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import Server
from tests.integration.api_client import api, identity_token
from tests.integration.client import Browser, Tab, ident

pytestmark = pytest.mark.anyio

VALID = [
    "a/b",
    "/leading/and/trailing/",
    "50% off",
    "%2F",  # a percent sign and two letters, not an encoded slash
    "what?",
    "#hash",
    "spaces inside",
    " kept as given ",
    "ünïcødé 用户 😀",
    "a/sessions/b",  # looks like another route's path
    "x/seat",
    "..",
    "u" * 256,
]
INVALID = ["u" * 257, "tab\there", "new\nline", "c1\x85", "   "]


def path(user: str) -> str:
    """`user` percent-encoded as one path segment; `.` too, which URL libraries remove from
    a path as a dot segment otherwise."""
    return quote(user, safe="").replace(".", "%2E")


@pytest.fixture
def fresh_site(server: Server) -> dict[str, Any]:
    return server.create_site("--name", "Ids", "--origin", "*")


@pytest.mark.parametrize("user", VALID, ids=lambda u: repr(u)[:20])
async def test_a_valid_user_id_reaches_every_route(
    server: Server, fresh_site: dict[str, Any], user: str
) -> None:
    key, u = str(fresh_site["key"]), path(user)
    first, welcome = await Tab.open(server.ws, key, Browser(user))
    assert welcome["state"] == "admitted"
    a = first.browser.session
    async with api(server, fresh_site) as client:
        r = await client.get(f"/users/{u}/sessions")
        assert r.status_code == 200, r.text
        assert r.json()["user"] == user and [s["id"] for s in r.json()["sessions"]] == [a]
        r = await client.get(f"/users/{u}/seat")
        assert r.status_code == 200, r.text
        assert (r.json()["user"], r.json()["admitted"]) == (user, [a])

        r = await client.put(f"/overrides/user/{u}", json={"limit": 2})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == user
        assert {"scope": "user", "name": user} in [
            {"scope": o["scope"], "name": o["name"]}
            for o in (await client.get("/overrides")).json()
        ]
        second, welcome = await Tab.open(server.ws, key, Browser(user))
        assert welcome["state"] == "admitted" and welcome["limit"] == 2  # the override holds
        b = second.browser.session
        r = await client.delete(f"/overrides/user/{u}")
        assert r.status_code == 204, r.text

        r = await client.post(f"/users/{u}/revoke", json={"keep": a})
        assert (r.status_code, r.json()) == (200, {"revoked": [b]}), r.text
        r = await client.delete(f"/users/{u}/sessions/{a}")
        assert (r.status_code, r.json()) == (200, {"revoked": [a]}), r.text
        r = await client.get("/audit", params={"user": user})
        assert r.status_code == 200 and r.json()["records"], r.text
        assert {rec["user"] for rec in r.json()["records"]} == {user}
    code, _, _ = await first.closed()
    assert code == 4010


@pytest.mark.parametrize("user", INVALID, ids=lambda u: repr(u)[:20])
async def test_an_invalid_user_id_is_refused_everywhere(
    server: Server, fresh_site: dict[str, Any], user: str
) -> None:
    key, u = str(fresh_site["key"]), path(user)
    ws = await Tab.connect(server.ws)
    tab = Tab(ws, Browser(user), ident())
    await tab.send({"t": "hello", "v": 1, "site": key, "user": user, "session": ident(),
                    "tab": tab.tab, "device": ident()})  # fmt: skip
    code, reason, _ = await tab.closed()
    assert code == 4000 and "$.user" in reason
    async with api(server, fresh_site) as client:
        for method, where, body in [
            ("GET", f"/users/{u}/sessions", None),
            ("GET", f"/users/{u}/seat", None),
            ("DELETE", f"/users/{u}/sessions/{ident()}", None),
            ("POST", f"/users/{u}/revoke", {}),
            ("PUT", f"/overrides/user/{u}", {"limit": 2}),
            ("PUT", f"/overrides/org/{u}", {"limit": 2}),
            ("DELETE", f"/overrides/role/{u}", None),
            ("GET", f"/audit?user={u}", None),
        ]:
            r = await client.request(method, where, json=body)
            assert r.status_code == 422, (method, where, r.text)
            detail = r.json()["detail"]
            assert "printable text, not blank" in detail or "length <= 256" in detail, detail
        assert (await client.get("/overrides")).json() == []


@pytest.mark.parametrize("user", ["a/b", "50%?#", "u" * 256], ids=lambda u: repr(u)[:20])
async def test_an_identity_token_names_any_valid_user(
    server: Server, fresh_site: dict[str, Any], user: str
) -> None:
    token = identity_token(fresh_site, user)
    tab, welcome = await Tab.open(server.ws, str(fresh_site["key"]), Browser(user), token=token)
    assert welcome["state"] == "admitted"
    async with api(server, fresh_site) as client:
        r = await client.get(f"/users/{path(user)}/sessions")
    assert [s["id"] for s in r.json()["sessions"]] == [tab.browser.session]


@pytest.mark.parametrize("sub", ["u" * 257, "tab\there", "c1\x85"], ids=lambda u: repr(u)[:20])
async def test_an_identity_token_naming_an_invalid_user_is_refused(
    server: Server, fresh_site: dict[str, Any], sub: str
) -> None:
    ws = await Tab.connect(server.ws)
    tab = Tab(ws, Browser(sub), ident())
    await tab.send({"t": "hello", "v": 1, "site": str(fresh_site["key"]), "session": ident(),
                    "tab": tab.tab, "device": ident(),
                    "token": identity_token(fresh_site, sub)})  # fmt: skip
    code, reason, frames = await tab.closed()
    assert code == 4013, reason
    assert "claim 'sub' must be printable text" in frames[-1]["message"]
