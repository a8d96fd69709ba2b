"""Client addresses behind trusted proxies, and device types from what browsers send, as a
real server sees them: tabs and HTTP requests from several loopback addresses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.helpers import Server, scaled, start_server
from tests.integration.api_client import api
from tests.integration.client import Browser, Frame, Tab, ident

pytestmark = pytest.mark.anyio

MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)
REDUCED_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[dict[str, Server]]:
    """`wide` trusts the whole loopback range; `narrow` only 127.0.0.2."""
    started: dict[str, Server] = {}
    try:
        for name, proxies in (("wide", "127.0.0.0/8"), ("narrow", "127.0.0.2")):
            env = {**server_env, "SEATGUARD_TRUSTED_PROXIES": proxies}
            started[name] = start_server(tmp_path_factory.mktemp(name), "serve", env)
        yield started
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(scope="module")
def sites(servers: dict[str, Server]) -> dict[str, dict[str, Any]]:
    return {
        name: s.create_site("--name", "Proxied", "--origin", "*") for name, s in servers.items()
    }


async def open_tab(
    server: Server,
    site: dict[str, Any],
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    user_agent: str | None = None,
    browser: Browser | None = None,
    **hello: Any,
) -> tuple[Tab, Frame]:
    """A tab connecting from the loopback address `source` with extra upgrade `headers`, of
    `browser` (default: a new user's)."""
    ws = await connect(
        server.ws,
        additional_headers=headers or {},
        user_agent_header=user_agent,
        open_timeout=scaled(5),
        close_timeout=scaled(2),
        compression=None,
        local_addr=(source, 0),
    )
    Tab.opened.append(ws)
    await Tab.challenged(ws)
    browser = browser or Browser("u-" + ident())
    tab = Tab(ws, browser, ident())
    await tab.send(
        {
            "t": "hello",
            "v": 1,
            "site": site["key"],
            "user": browser.user,
            "session": browser.session,
            "tab": tab.tab,
            "device": browser.device,
            **hello,
        }
    )
    return tab, await tab.recv()


async def session_of(server: Server, site: dict[str, Any], tab: Tab) -> dict[str, Any]:
    async with api(server, site) as client:
        r = await client.get(f"/users/{tab.browser.user}/sessions")
    assert r.status_code == 200, r.text
    [session] = r.json()["sessions"]
    assert isinstance(session, dict)
    return session


async def test_behind_trusted_proxies_a_tab_has_the_forwarded_address(
    servers: dict[str, Server], sites: dict[str, dict[str, Any]]
) -> None:
    wide, site = servers["wide"], sites["wide"]
    # The client claimed 6.6.6.6; the proxy (127.0.0.5, trusted) appended what it saw.
    forwarded = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5"}
    tab, welcome = await open_tab(wide, site, source="127.0.0.5", headers=forwarded)
    assert welcome["t"] == "welcome"
    assert (await session_of(wide, site, tab))["ip"] == "203.0.113.5"
    # Through two trusted proxies: the walk goes past the inner one.
    chained = {"X-Forwarded-For": "198.51.100.4, 127.0.0.9"}
    tab, _ = await open_tab(wide, site, source="127.0.0.5", headers=chained)
    assert (await session_of(wide, site, tab))["ip"] == "198.51.100.4"
    # A header that is not an address: the client cannot be named past it.
    tab, _ = await open_tab(
        wide, site, source="127.0.0.6", headers={"X-Forwarded-For": "203.0.113.5, unknown"}
    )
    assert (await session_of(wide, site, tab))["ip"] == "127.0.0.6"


async def test_a_spoofed_header_from_an_untrusted_address_is_ignored(
    servers: dict[str, Server], sites: dict[str, dict[str, Any]]
) -> None:
    narrow, site = servers["narrow"], sites["narrow"]
    spoofed = {"X-Forwarded-For": "203.0.113.5"}
    tab, _ = await open_tab(narrow, site, source="127.0.0.3", headers=spoofed)
    assert (await session_of(narrow, site, tab))["ip"] == "127.0.0.3"
    # The same header from the trusted proxy counts.
    tab, _ = await open_tab(narrow, site, source="127.0.0.2", headers=spoofed)
    assert (await session_of(narrow, site, tab))["ip"] == "203.0.113.5"


async def test_http_requests_follow_the_same_setting(servers: dict[str, Server]) -> None:
    """`/healthz` shows its details to loopback clients only: a request from the trusted
    127.0.0.2 on behalf of 203.0.113.5 is not one; the same header from 127.0.0.3 is
    ignored, and that client is local."""
    narrow = servers["narrow"]
    spoofed = {"X-Forwarded-For": "203.0.113.5"}
    for source, details in (("127.0.0.2", False), ("127.0.0.3", True), ("127.0.0.1", True)):
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(transport=transport, timeout=scaled(10)) as client:
            r = await client.get(narrow.http + "/healthz", headers=spoofed)
        assert r.status_code == 200
        assert ("tabs" in r.json()) is details, (source, r.json())


async def test_device_type_from_client_hints_and_touch_points(
    servers: dict[str, Server], sites: dict[str, dict[str, Any]]
) -> None:
    wide, site = servers["wide"], sites["wide"]
    cases: list[tuple[str, dict[str, str], dict[str, Any], str]] = [
        (MAC_SAFARI, {}, {}, "computer"),
        (MAC_SAFARI, {}, {"touch": 0}, "computer"),
        (MAC_SAFARI, {}, {"touch": 5}, "tablet"),  # an iPad asking for desktop pages
        (REDUCED_ANDROID, {}, {}, "tablet"),
        (
            REDUCED_ANDROID,
            {"Sec-CH-UA-Mobile": "?1", "Sec-CH-UA-Platform": '"Android"'},
            {},
            "mobile",
        ),
        (REDUCED_ANDROID, {"Sec-CH-UA-Form-Factors": '"Mobile"'}, {"touch": 5}, "mobile"),
        (REDUCED_ANDROID, {"Sec-CH-UA-Mobile": "bogus", "Sec-CH-UA-Platform": "x"}, {}, "tablet"),
    ]
    for agent, headers, hello, kind in cases:
        tab, welcome = await open_tab(wide, site, headers=headers, user_agent=agent, **hello)
        assert welcome["t"] == "welcome"
        assert (await session_of(wide, site, tab))["device_type"] == kind, (agent, headers, hello)


async def test_an_fp_joins_a_device_only_on_the_platform_the_hints_tell(
    servers: dict[str, Server], sites: dict[str, dict[str, Any]]
) -> None:
    """Browsers sending one `fp` from one network: two with the desktop Safari string join
    one device; an iPad sending the same string with its touch points stays its own."""
    wide, site = servers["wide"], sites["wide"]
    u = "u-" + ident()
    tabs = [
        (await open_tab(wide, site, browser=Browser(u), user_agent=MAC_SAFARI, fp="fp-same",
                        touch=touch))[0]
        for touch in (0, 0, 5)
    ]  # fmt: skip
    async with api(wide, site) as client:
        listed = (await client.get(f"/users/{u}/sessions")).json()["sessions"]
    device = {s["id"]: (s["device"], s["device_type"]) for s in listed}
    mac, again, ipad = (device[t.browser.session] for t in tabs)
    assert mac == again and mac[1] == "computer"
    assert ipad[1] == "tablet" and ipad[0] != mac[0]


@pytest.mark.parametrize("touch", [-1, 257, 1.5, "5", True, None])
async def test_a_bad_touch_count_is_a_clear_error(
    servers: dict[str, Server], sites: dict[str, dict[str, Any]], touch: Any
) -> None:
    wide, site = servers["wide"], sites["wide"]
    if touch is None:  # null is the field left out
        tab, welcome = await open_tab(wide, site, touch=None)
        assert welcome["t"] == "welcome"
        return
    ws = await connect(wide.ws, open_timeout=scaled(5), compression=None)
    Tab.opened.append(ws)
    await Tab.challenged(ws)
    browser = Browser("u-" + ident())
    tab = Tab(ws, browser, ident())
    hello = {
        "t": "hello",
        "v": 1,
        "site": site["key"],
        "user": browser.user,
        "session": browser.session,
        "tab": tab.tab,
        "device": browser.device,
        "touch": touch,
    }
    await ws.send(json.dumps(hello))
    code, _, frames = await tab.closed()
    assert code == 4000
    assert frames[-1]["t"] == "error" and "touch" in frames[-1]["message"], frames
