"""The demo's content route, `GET /demo/play`, against a real `seatguard demo`: it serves a
tab holding a seat, and says why it refuses anything else."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import anyio
import httpx
import jwt
import pytest
from demo_site import DEMO_SITE_KEY

from tests.helpers import Server, scaled, seatguard, start_server
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("demo"), "demo", server_env)
    yield s
    s.stop()


async def play(demo: Server, *tokens: str) -> httpx.Response:
    headers = [("Seatguard-Seat", t) for t in tokens]
    async with httpx.AsyncClient(base_url=demo.http, timeout=scaled(10)) as c:
        return await c.get("/demo/play", headers=headers)


async def seated(demo: Server) -> tuple[Tab, str]:
    """A tab of the demo seated for a new user, and its token."""
    browser = Browser("play-" + secrets.token_hex(4))
    tab, welcome = await Tab.open(demo.ws, DEMO_SITE_KEY, browser, origin=demo.http)
    assert welcome["state"] == "admitted"
    return tab, str((await tab.seat())["token"])


async def heartbeats(tab: Tab) -> None:
    """Heartbeat `tab` until cancelled."""
    while True:
        await tab.heartbeat()
        await anyio.sleep(0.2)


async def test_no_token_two_tokens_and_a_made_up_one_are_refused(demo: Server) -> None:
    r = await play(demo)
    assert r.status_code == 401 and r.json()["reason"] == "no_token"
    assert r.headers["cache-control"] == "no-store"
    _, token = await seated(demo)
    r = await play(demo, token, token)
    assert r.status_code == 401 and r.json()["reason"] == "no_token"
    r = await play(demo, token[:-4] + "AAAA")
    assert r.status_code == 401 and r.json()["reason"] == "invalid"
    assert r.json()["message"].startswith("The seat token was refused: ")


async def test_a_seated_tab_plays_and_a_waiting_one_has_nothing_to_send(demo: Server) -> None:
    tab, token = await seated(demo)
    r = await play(demo, token)
    assert r.status_code == 200 and r.json()["playing"] is True
    user = Browser(tab.browser.user)
    waiting, welcome = await Tab.open(demo.ws, DEMO_SITE_KEY, user, origin=demo.http)
    assert welcome["state"] == "blocked"
    await waiting.expect_nothing(0.5)
    assert waiting.seats == []


async def test_a_token_that_leaves_its_seat_fails_once_checked(demo: Server) -> None:
    tab, token = await seated(demo)
    iat = jwt.decode(token, options={"verify_signature": False})["iat"]
    assert await tab.bye("close") == 1000  # the seat frees at once: the session has ended
    await anyio.sleep(max(0.0, iat + 1.05 - time.time()))
    r = await play(demo, token)
    assert r.status_code == 403 and r.json()["reason"] == "ended"


async def test_a_rotated_demo_secret_is_said_plainly(demo: Server) -> None:
    # Last in the module: the demo's own secret key stops working.
    tab, token = await seated(demo)  # kept open: its session holds its seat throughout
    iat = jwt.decode(token, options={"verify_signature": False})["iat"]
    # The CLI's process can take longer than the short session timeout to start (under
    # coverage on a slow machine): the tab keeps heartbeating meanwhile.
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeats, tab)
        rotate = ("site", "rotate-secret", DEMO_SITE_KEY, "--overlap", "0", "--db", str(demo.db))
        await anyio.to_thread.run_sync(seatguard, *rotate)
        await anyio.sleep(max(0.0, iat + 1.05 - time.time()))
        tg.cancel_scope.cancel()
    # Rotated by another process (the CLI), the old key keeps asking the seat check for
    # at most the node's site cache lifetime (SEATGUARD_SITE_CACHE_TTL, 2 s; docs/api.md).
    deadline = time.monotonic() + 2.0 + scaled(3)
    while (r := await play(demo, token)).status_code == 200 and time.monotonic() < deadline:
        await tab.heartbeat()  # the seat is held (SEATGUARD_SESSION_TIMEOUT is short here)
        await anyio.sleep(0.1)
    assert r.status_code == 503 and r.json()["reason"] == "secret_refused", r.text
    await tab.bye("close")
