"""Policies, takeover, timeouts, identity and revocation against a real server process."""

from __future__ import annotations

import secrets
import time
from typing import Any

import anyio
import pytest
from websockets.exceptions import ConnectionClosed

from tests.helpers import Server, scaled
from tests.integration.api_client import api, identity_token
from tests.integration.client import Browser, Tab, frames_of, holders_since, ident

pytestmark = pytest.mark.anyio


def user() -> str:
    return "u-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def full_site(server: Server) -> dict[str, Any]:
    """A site with client settings, so each test picks its rules from the page."""
    return server.create_site("--name", "Lifecycle", "--origin", "*", "--client-settings")


async def test_evict_oldest_moves_the_block_to_the_older_browser(
    server: Server, full_site: dict[str, Any]
) -> None:
    u, key = user(), str(full_site["key"])
    old, w1 = await Tab.open(server.ws, key, Browser(u), policy="evict-oldest")
    start = int(time.time())
    new, w2 = await Tab.open(server.ws, key, Browser(u), policy="evict-oldest")
    assert (w1["state"], w2["state"]) == ("admitted", "admitted")
    # The older browser is told where the seat went: the newer one, seated just now.
    block = await old.recv()
    [since] = holders_since(block)
    assert block == {"t": "block", "reason": "evicted", "takeover": True}
    assert start <= since <= time.time()
    # "Use here" takes the seat back; the newer browser is told why, and by whom.
    start = int(time.time())
    await old.send({"t": "takeover"})
    assert await old.recv() == {"t": "unblock"}
    block = await new.recv()
    [since] = holders_since(block)
    assert block == {"t": "block", "reason": "taken_over", "takeover": True}
    assert start <= since <= time.time()


async def test_challenge_offers_continue_here(server: Server, full_site: dict[str, Any]) -> None:
    u, key = user(), str(full_site["key"])
    first, _ = await Tab.open(server.ws, key, Browser(u), policy="challenge")
    second, w = await Tab.open(server.ws, key, Browser(u), policy="challenge")
    assert (w["state"], w["reason"], w["takeover"]) == ("blocked", "challenge", True)
    await second.send({"t": "takeover"})
    assert await second.recv() == {"t": "unblock"}
    assert (await first.recv())["reason"] == "taken_over"


async def test_takeover_is_denied_under_block_new(
    server: Server, full_site: dict[str, Any]
) -> None:
    u, key = user(), str(full_site["key"])
    first, _ = await Tab.open(server.ws, key, Browser(u))
    second, w = await Tab.open(server.ws, key, Browser(u))
    assert w["takeover"] is False
    await second.send({"t": "takeover"})
    denied = await second.recv()
    assert (denied["t"], denied["reason"]) == ("denied", "takeover_not_allowed")
    assert await frames_of([first, second], 0.3) == [[], []]


async def test_monitor_blocks_nobody_and_flags_the_conflict(
    server: Server, full_site: dict[str, Any]
) -> None:
    u, key = user(), str(full_site["key"])
    await Tab.open(server.ws, key, Browser(u), policy="monitor")
    second, w = await Tab.open(server.ws, key, Browser(u), policy="monitor")
    assert w["state"] == "admitted"
    assert await second.recv() == {"t": "conflict"}


async def test_idle_timeout_ends_the_untouched_session_and_spares_the_active_one(
    server: Server,
) -> None:
    site = server.create_site(
        "--name", "Idle", "--origin", "*", "--limit", "2", "--idle-timeout", str(scaled(1.5))
    )
    u, key = user(), str(site["key"])
    busy, _ = await Tab.open(server.ws, key, Browser(u))
    idle, _ = await Tab.open(server.ws, key, Browser(u))

    async def beat(tab: Tab, active: bool, out: list[dict[str, Any]]) -> None:
        with anyio.move_on_after(scaled(3)):
            try:
                while True:
                    tab.ref += 1
                    await tab.send({"t": "hb", "ref": tab.ref, "active": active})
                    frame = await tab.recv()
                    if frame["t"] != "ack":
                        out.append(frame)
                        return
                    await anyio.sleep(scaled(0.3))
            except ConnectionClosed:
                out.append(await tab.recv())  # what the server said before closing

    busy_frames: list[dict[str, Any]] = []
    idle_frames: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(beat, busy, True, busy_frames)
        tg.start_soon(beat, idle, False, idle_frames)
    assert idle_frames == [{"t": "expired", "reason": "idle"}]
    assert busy_frames == []
    code, _, _ = await idle.closed()
    assert code == 4011


async def test_absolute_timeout_ends_even_an_active_session(server: Server) -> None:
    site = server.create_site(
        "--name", "Abs", "--origin", "*", "--absolute-timeout", str(scaled(1.0))
    )
    browser = Browser(user())
    tab, _ = await Tab.open(server.ws, str(site["key"]), browser)
    frames = await tab.frames_for(2.0)
    assert frames[0] == {"t": "expired", "reason": "absolute"}
    # The expired session id cannot come back.
    ws = await Tab.connect(server.ws)
    again = Tab(ws, browser, ident())
    await again.send(
        {
            "t": "hello",
            "v": 1,
            "site": site["key"],
            "user": browser.user,
            "session": browser.session,
            "tab": ident(),
            "device": browser.device,
        }
    )
    code, _, _ = await again.closed()
    assert code == 4011


async def test_identity_token_is_required_and_checked(server: Server) -> None:
    site = server.create_site("--name", "Signed", "--origin", "*", "--require-identity")
    key, u = str(site["key"]), user()
    # No token: refused with 4012.
    ws = await Tab.connect(server.ws)
    tab = Tab(ws, Browser(u), ident())
    await tab.send({"t": "hello", "v": 1, "site": key, "user": u, "session": ident(),
                    "tab": ident(), "device": ident()})  # fmt: skip
    assert (await tab.closed())[0] == 4012
    # Token limits beat the site's default limit of 1.
    token = identity_token(site, u, limit=2, org="acme")
    _, w1 = await Tab.open(server.ws, key, Browser(u), token=token)
    _, w2 = await Tab.open(server.ws, key, Browser(u), token=token)
    assert (w1["state"], w2["state"], w2["limit"]) == ("admitted", "admitted", 2)


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        ("expired", "expired"),
        ("wrong audience", "audience mismatch"),
        ("no issuer", "no 'iss' claim"),
        ("wrong issuer", "issuer mismatch"),
        ("wrong secret", "signature is invalid"),
        ("the API secret key", "signature is invalid"),  # identity tokens have their own
        ("alg none", "algorithm 'none' not allowed"),
        ("user mismatch", "does not match"),
    ],
)
async def test_bad_identity_tokens_are_refused(server: Server, forge: str, why: str) -> None:
    site = server.create_site("--name", "Forged", "--origin", "*", "--require-identity")
    u = user()
    now = int(time.time())
    claims: dict[str, Any] = {"sub": u, "aud": site["key"], "iss": site["key"], "exp": now + 60}
    secret = str(site["identity_secret"])
    hello_user = None
    if forge == "expired":
        claims["exp"] = now - 3600
    elif forge == "wrong audience":
        claims["aud"] = "pk_other"
    elif forge == "no issuer":
        del claims["iss"]
    elif forge == "wrong issuer":
        claims["iss"] = "https://elsewhere.example"
    elif forge == "wrong secret":
        secret = "ik_" + "x" * 40
    elif forge == "the API secret key":
        secret = str(site["secret"])
    elif forge == "user mismatch":
        hello_user = "somebody-else"
    import jwt

    token = (
        jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
        if forge == "alg none"
        else jwt.encode(claims, secret, algorithm="HS256")
    )
    ws = await Tab.connect(server.ws)
    tab = Tab(ws, Browser(u), ident())
    hello = {"t": "hello", "v": 1, "site": site["key"], "session": ident(), "tab": ident(),
             "device": ident(), "token": token}  # fmt: skip
    if hello_user:
        hello["user"] = hello_user
    await tab.send(hello)
    code, reason, frames = await tab.closed()
    assert code == 4013, (reason, frames)
    assert why in str(frames), (reason, frames)


async def test_api_lists_sessions_and_seat(server: Server, full_site: dict[str, Any]) -> None:
    u, key = user(), str(full_site["key"])
    a, _ = await Tab.open(server.ws, key, Browser(u, fp="laptop"))
    b, _ = await Tab.open(server.ws, key, Browser(u, fp="phone"))
    async with api(server, full_site) as client:
        listed = (await client.get(f"/users/{u}/sessions")).json()
        seat = (await client.get(f"/users/{u}/seat")).json()
    assert {s["id"] for s in listed["sessions"]} == {a.browser.session, b.browser.session}
    assert {s["state"] for s in listed["sessions"]} == {"admitted", "blocked"}
    # Two fingerprints: two devices, each the page's id (no device key proven).
    assert {d["id"] for d in listed["devices"]} == {a.browser.device, b.browser.device}
    assert {s["device_proof"] for s in listed["sessions"]} == {"none"}
    assert listed["sessions"][0]["ip"] == "127.0.0.1"
    assert seat["admitted"] == [a.browser.session] and seat["blocked"] == [b.browser.session]
    assert seat["rules"]["limit"] == 1


async def test_api_refuses_without_the_secret_key(
    server: Server, full_site: dict[str, Any]
) -> None:
    async with api(server, {"secret": "sk_wrong"}) as client:
        r = await client.get("/users/x/seat")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "Unauthorized"


async def test_revoking_a_session_reaches_its_tab_at_once_and_it_cannot_return(
    server: Server, full_site: dict[str, Any]
) -> None:
    u, key = user(), str(full_site["key"])
    browser = Browser(u)
    victim, _ = await Tab.open(server.ws, key, browser)
    waiting, _ = await Tab.open(server.ws, key, Browser(u))
    async with api(server, full_site) as client:
        started = time.monotonic()
        r = await client.delete(f"/users/{u}/sessions/{browser.session}")
        assert r.status_code == 200 and r.json() == {"revoked": [browser.session]}
        assert await victim.recv() == {"t": "revoked", "reason": "revoked"}
        took = time.monotonic() - started
        assert (await victim.closed())[0] == 4010
        assert await waiting.recv() == {"t": "unblock"}
        # Unknown session: 404 problem.
        r = await client.delete(f"/users/{u}/sessions/{browser.session}")
        assert r.status_code == 404
    print(f"revocation reached the tab {took * 1000:.1f} ms after the API call")
    ws = await Tab.connect(server.ws)
    back = Tab(ws, browser, ident())
    await back.send({"t": "hello", "v": 1, "site": key, "user": u, "session": browser.session,
                     "tab": ident(), "device": browser.device})  # fmt: skip
    assert (await back.closed())[0] == 4010


async def test_revoke_all_but_one_and_by_org(server: Server, full_site: dict[str, Any]) -> None:
    u, key = user(), str(full_site["key"])
    keep, _ = await Tab.open(server.ws, key, Browser(u), limit=3, org="acme")
    gone1, _ = await Tab.open(server.ws, key, Browser(u), limit=3, org="acme")
    gone2, _ = await Tab.open(server.ws, key, Browser(u), limit=3, org="acme")
    other, _ = await Tab.open(server.ws, key, Browser(user()), org="other")
    async with api(server, full_site) as client:
        r = await client.post(f"/users/{u}/revoke", json={"keep": keep.browser.session})
        assert sorted(r.json()["revoked"]) == sorted([gone1.browser.session, gone2.browser.session])
        for tab in (gone1, gone2):
            assert (await tab.closed())[0] == 4010
        r = await client.post("/revoke", json={"org": "acme"})
        assert r.json() == {"revoked": 1}
        assert (await keep.closed())[0] == 4010
        assert await other.heartbeat() == {"t": "ack", "ref": 1}
        r = await client.post("/revoke", json={"org": "a", "role": "b"})
        assert r.status_code == 422


async def test_overrides_set_the_rules_of_a_user(server: Server) -> None:
    site = server.create_site("--name", "Overrides", "--origin", "*")
    u, key = user(), str(site["key"])
    async with api(server, site) as client:
        r = await client.put(f"/overrides/user/{u}", json={"limit": 2, "policy": "evict-oldest"})
        assert r.status_code == 200, r.text
        assert (await client.put("/overrides/user/x", json={"limit": 0})).status_code == 422
        assert (await client.put("/overrides/team/x", json={"limit": 2})).status_code == 404
        assert (await client.put("/overrides/user/x", json={"limit": "2"})).status_code == 422
        assert (await client.put("/overrides/user/x", content=b"{")).status_code == 400
        listed = (await client.get("/overrides")).json()
        assert listed[0]["name"] == u and listed[0]["limit"] == 2
    await Tab.open(server.ws, key, Browser(u))
    _, w2 = await Tab.open(server.ws, key, Browser(u))
    assert (w2["state"], w2["limit"], w2["policy"]) == ("admitted", 2, "evict-oldest")
    async with api(server, site) as client:
        assert (await client.delete(f"/overrides/user/{u}")).status_code == 204
        assert (await client.delete(f"/overrides/user/{u}")).status_code == 404


async def test_rules_changed_by_an_operator_reach_live_sessions_at_once(server: Server) -> None:
    # Timeline: two browsers hold the user's two seats. The operator lowers the limit to 1:
    # the one seated last is blocked at once. Back to 2: it is unblocked. An idle timeout
    # of 1 s is then set: both browsers, untouched, expire without saying hello again.
    site = server.create_site("--name", "Live rules", "--origin", "*")
    u, key = user(), str(site["key"])
    async with api(server, site) as client:
        assert (await client.put(f"/overrides/user/{u}", json={"limit": 2})).status_code == 200
        first, w1 = await Tab.open(server.ws, key, Browser(u))
        second, w2 = await Tab.open(server.ws, key, Browser(u))
        assert (w1["state"], w2["state"]) == ("admitted", "admitted")
        assert (await client.put(f"/overrides/user/{u}", json={"limit": 1})).status_code == 200
        block = await second.recv()
        assert len(holders_since(block)) == 1  # the first browser
        assert block == {"t": "block", "reason": "limit", "takeover": False}
        await first.expect_nothing(0.3)
        assert (await client.put(f"/overrides/user/{u}", json={"limit": 2})).status_code == 200
        assert await second.recv() == {"t": "unblock"}
        idle = {"limit": 2, "idle_timeout": scaled(1.0)}
        assert (await client.put(f"/overrides/user/{u}", json=idle)).status_code == 200
    frames = await frames_of([first, second], 3)
    for seen in frames:
        assert {"t": "expired", "reason": "idle"} in seen, seen


async def test_openapi_document_describes_the_api(server: Server) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        doc = (await client.get(server.http + "/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "/users/{user}/sessions" in doc["paths"]
    assert "SessionsOut" in doc["components"]["schemas"]
