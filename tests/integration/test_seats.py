"""Seats over real sockets against a real server process."""

from __future__ import annotations

import asyncio
import secrets
import urllib.request

import anyio
import pytest

from tests.helpers import Server, scaled
from tests.integration.client import Browser, Frame, Tab, frames_of

pytestmark = pytest.mark.anyio


def user() -> str:
    return "user-" + secrets.token_hex(4)


async def test_second_browser_is_blocked_and_unblocked_when_the_first_says_goodbye(
    server: Server, site: str
) -> None:
    u = user()
    a, welcome_a = await Tab.open(server.ws, site, Browser(u))
    b, welcome_b = await Tab.open(server.ws, site, Browser(u))
    assert welcome_a["state"] == "admitted" and welcome_a["reason"] is None
    assert welcome_b["state"] == "blocked" and welcome_b["reason"] == "limit"
    assert welcome_a["hb"] == round(scaled(0.5) * 1000)
    assert await a.bye("close") == 1000
    assert await b.recv() == {"t": "unblock"}


async def test_heartbeats_are_acknowledged_with_their_ref(server: Server, site: str) -> None:
    a, _ = await Tab.open(server.ws, site, Browser(user()))
    assert await a.heartbeat() == {"t": "ack", "ref": 1}
    assert await a.heartbeat(active=True) == {"t": "ack", "ref": 2}


@pytest.mark.parametrize("round_", range(30))
async def test_fifty_sessions_at_the_same_instant_admit_exactly_one(
    server: Server, site: str, round_: int
) -> None:
    u = user()
    welcomes: list[dict[str, object]] = []
    tabs: list[Tab] = []

    async def one() -> None:
        tab, welcome = await Tab.open(server.ws, site, Browser(u), limit=1)
        tabs.append(tab)
        welcomes.append(welcome)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)
    states = [w["state"] for w in welcomes]
    assert states.count("admitted") == 1, states
    assert states.count("blocked") == 49
    # The holder leaves: exactly one of the 49 is unblocked, first come.
    holder = tabs[states.index("admitted")]
    await holder.bye()
    unblocked = []

    async def watch(tab: Tab) -> None:
        with anyio.move_on_after(scaled(1)):
            frame = await tab.recv()
            unblocked.append(frame)

    async with anyio.create_task_group() as tg:
        for tab in tabs:
            if tab is not holder:
                tg.start_soon(watch, tab)
    assert unblocked == [{"t": "unblock"}]


async def test_waiting_browsers_get_the_seat_in_the_order_they_came(
    server: Server, site: str
) -> None:
    u = user()
    holder, _ = await Tab.open(server.ws, site, Browser(u))
    waiters = [await Tab.open(server.ws, site, Browser(u)) for _ in range(4)]
    assert [w["state"] for _, w in waiters] == ["blocked"] * 4
    leaving = holder
    for i, (tab, _) in enumerate(waiters):
        assert await leaving.bye("close") == 1000
        assert await tab.recv() == {"t": "unblock"}
        for later, _ in waiters[i + 1 :]:
            await later.expect_nothing(0.2)
        leaving = tab


async def test_limit_three_admits_three(server: Server, site: str) -> None:
    u = user()
    states = []
    for _ in range(5):
        _, w = await Tab.open(server.ws, site, Browser(u), limit=3)
        states.append(w["state"])
    assert states == ["admitted"] * 3 + ["blocked"] * 2


async def test_tabs_of_one_browser_never_block_each_other(server: Server, site: str) -> None:
    browser = Browser(user())
    _, first = await Tab.open(server.ws, site, browser)
    _, second = await Tab.open(server.ws, site, browser)
    assert first["state"] == second["state"] == "admitted"


async def test_closing_one_of_two_tabs_keeps_the_seat(server: Server, site: str) -> None:
    u = user()
    browser = Browser(u)
    t1, _ = await Tab.open(server.ws, site, browser)
    t2, _ = await Tab.open(server.ws, site, browser)
    other, w = await Tab.open(server.ws, site, Browser(u))
    assert w["state"] == "blocked"
    await t1.bye("close")
    await other.expect_nothing(0.5)
    assert await t2.heartbeat() == {"t": "ack", "ref": 1}


async def test_seat_frees_after_heartbeats_stop(server: Server, site: str) -> None:
    # Timeline: A holds the seat and falls silent; B waits and keeps beating. After the
    # session timeout (1.5 s) the server closes A with 4008 and unblocks B.
    u = user()
    a, _ = await Tab.open(server.ws, site, Browser(u))
    b, _ = await Tab.open(server.ws, site, Browser(u))
    got_unblock = anyio.Event()

    async def keep_beating() -> None:
        ref = 0
        while not got_unblock.is_set():
            ref += 1
            await b.send({"t": "hb", "ref": ref})
            frame = await b.recv()
            if frame == {"t": "unblock"}:
                got_unblock.set()
            else:
                assert frame["t"] == "ack"
                await anyio.sleep(scaled(0.3))

    with anyio.fail_after(scaled(5)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_beating)
            code, _, frames = await a.closed(within=5)
    assert code == 4008
    assert frames[-1]["t"] == "error" and frames[-1]["reason"] == "heartbeat_timeout"
    assert got_unblock.is_set()


async def test_reconnect_within_grace_keeps_the_seat(server: Server, site: str) -> None:
    u = user()
    browser = Browser(u)
    a, _ = await Tab.open(server.ws, site, browser)
    b, _ = await Tab.open(server.ws, site, Browser(u))
    await a.drop()
    await anyio.sleep(scaled(0.3))
    a2, welcome = await Tab.open(server.ws, site, browser, tab=a.tab)
    assert welcome["state"] == "admitted"
    # Both keep beating past the grace: nobody's seat changes.
    assert await frames_of([a2, b], 2.0) == [[], []]


async def test_reload_goodbye_keeps_the_seat_for_the_grace(server: Server, site: str) -> None:
    u = user()
    browser = Browser(u)
    a, _ = await Tab.open(server.ws, site, browser)
    b, _ = await Tab.open(server.ws, site, Browser(u))
    assert await a.bye("reload") == 1000
    a2, welcome = await Tab.open(server.ws, site, browser, tab=a.tab)
    assert welcome["state"] == "admitted"
    assert await frames_of([a2, b], 2.0) == [[], []]


async def test_seat_frees_when_the_grace_runs_out(server: Server, site: str) -> None:
    u = user()
    a, _ = await Tab.open(server.ws, site, Browser(u))
    b, _ = await Tab.open(server.ws, site, Browser(u))
    assert await a.bye("reload") == 1000
    await b.expect_nothing(0.5)
    assert await b.frames_for(1.5) == [{"t": "unblock"}]  # the reload grace (1 s)


async def test_a_dropped_socket_keeps_its_seat_past_the_reload_grace(
    server: Server, site: str
) -> None:
    # A socket closed without goodbye (a network drop) keeps the seat for the drop grace
    # (2 s), past the reload grace (1 s): the browser may come back when the network does.
    u = user()
    a, _ = await Tab.open(server.ws, site, Browser(u))
    b, _ = await Tab.open(server.ws, site, Browser(u))
    await a.drop()
    await b.expect_nothing(1.5)
    assert await b.frames_for(1.5) == [{"t": "unblock"}]


async def test_logout_ends_every_tab_of_the_browser_and_frees_the_seat(
    server: Server, site: str
) -> None:
    u = user()
    browser = Browser(u)
    t1, _ = await Tab.open(server.ws, site, browser)
    t2, _ = await Tab.open(server.ws, site, browser)
    other, _ = await Tab.open(server.ws, site, Browser(u))
    await t1.send({"t": "logout"})
    for tab in (t1, t2):
        code, _, frames = await tab.closed()
        assert code == 4009
        assert frames == [{"t": "ended", "reason": "logout"}]
    assert await other.recv() == {"t": "unblock"}


async def test_device_limit_counts_fingerprints(server: Server, site: str) -> None:
    u = user()
    states = []
    # Two browsers of one laptop (same fingerprint), a phone, then a tablet.
    for fp in ("laptop", "laptop", "phone1", "tablet"):
        _, w = await Tab.open(server.ws, site, Browser(u, fp=fp), mode="device-limit", limit=2)
        states.append(w["state"])
    assert states == ["admitted", "admitted", "admitted", "blocked"]


async def test_site_rules_win_when_client_settings_are_locked(server: Server) -> None:
    locked = server.create_site("--name", "Locked", "--origin", "*", "--limit", "1")
    u = user()
    _, w1 = await Tab.open(server.ws, str(locked["key"]), Browser(u), limit=5)
    _, w2 = await Tab.open(server.ws, str(locked["key"]), Browser(u), limit=5)
    assert (w1["limit"], w1["state"], w2["state"]) == (1, "admitted", "blocked")


async def test_health_and_sdk_are_served(server: Server) -> None:
    def fetch(path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(server.http + path) as r:
            return r.status, r.headers["content-type"], r.read()

    status, _, body = await anyio.to_thread.run_sync(fetch, "/healthz")
    assert status == 200 and b'"status":"ok"' in body
    _, kind, body = await anyio.to_thread.run_sync(fetch, "/sdk/v1/seatguard.js")
    assert kind.startswith("text/javascript")
    assert b"Seatguard" in body


async def test_sockets_that_drop_and_come_back_at_once_are_all_welcomed(
    server: Server, site: str
) -> None:
    """A mass reconnect (a node died, the network blinked): every new socket carries the
    ids of one that has just dropped, and the drop of the old socket, however late it is
    handled, must not end the new one."""
    browsers = [Browser(user()) for _ in range(150)]
    tabs = list(await asyncio.gather(*(Tab.open(server.ws, site, b) for b in browsers)))
    for _ in range(3):

        async def again(tab: Tab) -> tuple[Tab, Frame]:
            tab.ws.transport.abort()  # no goodbye, and no waiting for the server to notice
            return await Tab.open(server.ws, site, tab.browser, tab=tab.tab)

        tabs = list(await asyncio.gather(*(again(t) for t, _ in tabs)))
        assert [w["state"] for _, w in tabs] == ["admitted"] * len(browsers)
    assert await frames_of([t for t, _ in tabs], 1.0) == [[]] * len(browsers)
    assert "unexpected error" not in server.log.read_text()
