"""A site's policy acting on real tabs of a real server: clients from different loopback
addresses, placed in different cities by the test's own GeoIP database, and a phone. The
verdicts reach the tabs (held, revoked, suspended), and each evaluation is kept and listed
by `GET /api/v1/users/{user}/evaluations`, flagged ones sent as `evaluation.flagged`."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import httpx
import pytest

from tests.geodb import address
from tests.helpers import Server, scaled
from tests.integration.api_client import api, identity_token
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SHARED = {"name": "shared", "when": {"check": "concurrent_sessions"}, "verdict": "challenge"}
ABROAD = {
    "name": "abroad",
    "when": {"check": "ip_country", "op": "in", "value": ["US"]},
    "verdict": "monitor",
}


def user() -> str:
    return "u-" + secrets.token_hex(4)


async def with_policy(server: Server, *rules: dict[str, Any], **options: str) -> dict[str, Any]:
    """A new site (limit 5) with these rules; `options` are more `site create` flags."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    site = server.create_site("--name", "Verdicts", "--origin", "*", "--limit", "5", *flags)
    async with api(server, site) as client:
        r = await client.put("/policies", json={"rules": list(rules)})
        assert r.status_code == 200, r.text
    return site


async def evaluations_when(client: httpx.AsyncClient, u: str, count: int) -> list[dict[str, Any]]:
    """The user's evaluations once there are `count` (they are written after the hello)."""
    with anyio.fail_after(scaled(10)):
        while True:
            r = await client.get(f"/users/{u}/evaluations")
            assert r.status_code == 200, r.text
            found: list[dict[str, Any]] = r.json()["evaluations"]
            if len(found) >= count:
                return found
            await anyio.sleep(0.05)


async def test_a_second_computer_in_another_city_is_challenged_and_a_phone_is_not(
    geo_server: Server,
) -> None:
    site = await with_policy(geo_server, SHARED, ABROAD)
    key, u = str(site["key"]), user()
    paris, berlin, phone = Browser.keyed(u), Browser.keyed(u), Browser.keyed(u)
    home, w = await Tab.open(
        geo_server.ws, key, paris, source=address("paris"), user_agent=DESKTOP_UA
    )
    assert w["state"] == "admitted"
    _, w = await Tab.open(
        geo_server.ws, key, berlin, source=address("berlin"), user_agent=DESKTOP_UA
    )
    assert (w["state"], w["reason"]) == ("blocked", "verify")
    await home.expect_nothing()  # the owner keeps the seat
    _, w = await Tab.open(
        geo_server.ws, key, phone, source=address("new-york"), user_agent=MOBILE_UA
    )
    assert w["state"] == "admitted"
    async with api(geo_server, site) as client:
        found = await evaluations_when(client, u, 5)
        by_session: dict[str, list[dict[str, Any]]] = {}
        for e in found:
            by_session.setdefault(e["session"], []).append(e)
        assert found == sorted(found, key=lambda e: -e["at"])  # newest first
        held = by_session[berlin.session][-1]  # its first: at its hello
        assert (held["trigger"], held["verdict"], held["rule"], held["applied"]) == (
            "hello",
            "challenge",
            "shared",
            True,
        )
        assert held["checks"]["concurrent_sessions"] is True
        assert held["checks"]["ip_country"] == "DE" and held["geo"] == "on"
        assert set(held["risk"]) == {"score", "level"}
        kept = [e for e in by_session[paris.session] if e["trigger"] == "change"]
        assert kept and kept[0]["verdict"] in ("challenge", "allow")
        assert not any(e["applied"] is False and e["verdict"] == "allow" for e in found)
        assert all(not e["applied"] for e in kept if e["verdict"] == "challenge")
        ny = by_session[phone.session][-1]
        assert (ny["verdict"], ny["rule"], ny["checks"]["ip_country"]) == (
            "monitor",
            "abroad",
            "US",
        )
        # The sessions list says why the held browser waits.
        listed = (await client.get(f"/users/{u}/sessions")).json()
        reasons = {s["id"]: (s["state"], s["reason"]) for s in listed["sessions"]}
        assert reasons[berlin.session] == ("blocked", "verify")


async def test_signing_in_again_meets_the_challenge(geo_server: Server) -> None:
    site = await with_policy(geo_server, SHARED)
    key, u = str(site["key"]), user()
    paris, berlin = Browser.keyed(u), Browser.keyed(u)
    await Tab.open(geo_server.ws, key, paris, source=address("paris"), user_agent=DESKTOP_UA)
    away, w = await Tab.open(
        geo_server.ws, key, berlin, source=address("berlin"), user_agent=DESKTOP_UA
    )
    assert w["reason"] == "verify"
    await anyio.sleep(1.1)  # `iat` counts whole seconds: a token of a later second
    token = identity_token(site, u)
    _, w = await Tab.open(
        geo_server.ws, key, berlin, source=address("berlin"), user_agent=DESKTOP_UA, token=token
    )
    assert w["state"] == "admitted"
    assert (await away.recv())["t"] == "unblock"


async def test_a_revoke_verdict_closes_the_tab_for_good(geo_server: Server) -> None:
    rule = {"name": "no-us", "when": {"check": "ip_country", "op": "==", "value": "US"}}
    site = await with_policy(geo_server, {**rule, "verdict": "revoke"})
    key, u = str(site["key"]), user()
    phone = Browser.keyed(u)
    tab = await Tab.connect(geo_server.ws, None, address("new-york"), MOBILE_UA)
    t = Tab(tab, phone, "tab-" + secrets.token_hex(4))
    await t.send(
        {"t": "hello", "v": 1, "site": key, "user": u, "session": phone.session,
         "tab": t.tab, "device": phone.device}
    )  # fmt: skip
    code, _, frames = await t.closed()
    assert code == 4010 and not any(f["t"] == "welcome" for f in frames)
    again, _ = await Tab.try_hello(geo_server.ws, key, phone, user=u)
    assert again == 4010  # the session id is refused from anywhere now


async def test_a_suspend_verdict_suspends_the_user_until_lifted(geo_server: Server) -> None:
    rule = {"name": "crowd", "when": {"check": "device_count", "op": ">=", "value": 2}}
    site = await with_policy(geo_server, {**rule, "verdict": "suspend"})
    key, u = str(site["key"]), user()
    one, two = Browser.keyed(u), Browser.keyed(u)
    first, _ = await Tab.open(geo_server.ws, key, one, source=address("paris"))
    code, _ = await Tab.try_hello(geo_server.ws, key, two, user=u)
    assert code == 4015
    closed, _, frames = await first.closed()
    assert closed == 4015 and any(f["t"] == "suspended" for f in frames)
    async with api(geo_server, site) as client:
        body = (await client.get(f"/users/{u}/suspension")).json()
        assert (body["by"], body["reason"]) == ("policy", "policy rule crowd")
        assert (await client.delete(f"/users/{u}/suspension")).status_code == 204
    third = Browser.keyed(u)
    _, w = await Tab.open(geo_server.ws, key, third, source=address("paris"))
    assert w["state"] == "admitted"


async def test_flagged_evaluations_are_sent_as_webhooks(geo_server: Server) -> None:
    # An address nobody answers: the delivery stays in the outbox, listed with its event.
    site = await with_policy(geo_server, SHARED, webhook_url="http://127.0.0.1:9/hook")
    key, u = str(site["key"]), user()
    paris, berlin = Browser.keyed(u), Browser.keyed(u)
    await Tab.open(geo_server.ws, key, paris, source=address("paris"), user_agent=DESKTOP_UA)
    await Tab.open(geo_server.ws, key, berlin, source=address("berlin"), user_agent=DESKTOP_UA)
    async with api(geo_server, site) as client:
        with anyio.fail_after(scaled(10)):
            while True:
                r = await client.get("/webhooks/deliveries", params={"event": "evaluation.flagged"})
                assert r.status_code == 200, r.text
                listed = r.json()["deliveries"]
                if listed:
                    break
                await anyio.sleep(0.05)
        assert {d["event"] for d in listed} == {"evaluation.flagged"}
        flagged = [d["payload"] for d in listed]
        assert any(p["data"]["verdict"] == "challenge" for p in flagged), flagged


async def test_evaluations_of_another_site_are_not_listed(geo_server: Server) -> None:
    site = await with_policy(geo_server, SHARED)
    other = geo_server.create_site("--name", "Other", "--origin", "*")
    key, u = str(site["key"]), user()
    await Tab.open(geo_server.ws, key, Browser.keyed(u), source=address("paris"))
    async with api(geo_server, site) as client, api(geo_server, other) as other_client:
        await evaluations_when(client, u, 1)
        r = await other_client.get(f"/users/{u}/evaluations")
        assert r.status_code == 200 and r.json()["evaluations"] == []
