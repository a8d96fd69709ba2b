"""The event stream, read with a real SSE client (httpx-sse) from real servers: events in
order, resumed with `Last-Event-ID` after a disconnect, a restart and on another node of a
cluster, and refused to whom it does not belong."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.helpers import RedisServer, Server, scaled, start_server
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab
from tests.integration.cluster import Cluster, start_cluster

pytestmark = pytest.mark.anyio

SERVER_ENV = {
    "SEATGUARD_EVENT_STREAMS_PER_SITE": "2",
    "SEATGUARD_EVENT_HEARTBEAT": "0.2",
    # One node: its own appends wake its streams, with no poll of the database.
    "SEATGUARD_EVENT_POLL_INTERVAL": "3600",
}


@contextlib.asynccontextmanager
async def events(
    http: str, secret: str, last_id: str | None = None, **params: str
) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
    """An open event stream of the site whose secret key is `secret`, as its events."""
    headers = {"Authorization": f"Bearer {secret}"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    async with (
        httpx.AsyncClient(base_url=http, timeout=scaled(10)) as client,
        aconnect_sse(client, "GET", "/api/v1/events", headers=headers, params=params) as source,
    ):
        source.response.raise_for_status()
        yield source.aiter_sse()


async def take(stream: AsyncIterator[ServerSentEvent], n: int) -> list[ServerSentEvent]:
    """The next `n` events, within a few seconds. The server's heartbeat comments are no
    events, but httpx-sse yields one with empty data for a comment that follows an event
    with an id (it keeps the last id): those are skipped."""
    found: list[ServerSentEvent] = []
    with anyio.fail_after(scaled(5)):
        while len(found) < n:
            e = await anext(stream)
            if e.data or e.event != "message":
                found.append(e)
    return found


def said(found: list[ServerSentEvent]) -> list[tuple[str, str, str | None]]:
    """(type, session, reason) of each event, checking that its data agrees with it."""
    out = []
    for e in found:
        data = e.json()
        assert data["type"] == e.event and e.id.isdigit(), e
        out.append((e.event, data["session"], data["reason"]))
    return out


async def admitted_then_blocked(server: Server, key: str, a: Browser, b: Browser) -> None:
    await Tab.open(server.ws, key, a)
    _, welcome = await Tab.open(server.ws, key, b)
    assert welcome["state"] == "blocked", welcome


async def logout(server: Server, key: str, browser: Browser) -> None:
    """The browser signs out: its session ends and frees its seat."""
    tab, _ = await Tab.open(server.ws, key, browser)
    await tab.send({"t": "logout"})
    await tab.closed()


async def revoke(server: Server, site: dict[str, Any], browser: Browser) -> None:
    async with api(server, site) as client:
        r = await client.delete(f"/users/{browser.user}/sessions/{browser.session}")
        assert r.status_code == 200, r.text


def one_seat(server: Server | Cluster) -> dict[str, Any]:
    return server.create_site("--name", "Events", "--origin", "*", "--limit", "1")


def user() -> str:
    return "u-" + secrets.token_hex(4)


async def test_a_stream_tells_each_session_event_in_order(server: Server) -> None:
    site = one_seat(server)
    a, b = Browser(user()), Browser(user())
    b.user = a.user
    async with events(server.http, site["secret"]) as stream:
        await admitted_then_blocked(server, site["key"], a, b)
        await logout(server, site["key"], a)  # a ends, b gets the seat
        await revoke(server, site, b)
        found = await take(stream, 5)
    assert said(found) == [
        ("admitted", a.session, None),
        ("blocked", b.session, "limit"),
        ("ended", a.session, "logout"),
        ("unblocked", b.session, None),
        ("revoked", b.session, "revoked"),
    ]
    ids = [int(e.id) for e in found]
    assert ids == sorted(set(ids))
    data = found[0].json()
    assert set(data) == {"type", "user", "session", "device", "time", "at", "reason",
                         "decision"}  # fmt: skip
    assert (data["user"], data["device"]) == (a.user, a.device)
    assert data["time"].endswith("Z") and abs(data["at"] - time.time()) < scaled(30)
    # The store's order of decisions, rising for the user.
    decisions = [e.json()["decision"] for e in found]
    assert decisions == sorted(decisions)


async def test_a_client_that_reconnects_gets_exactly_what_it_missed(server: Server) -> None:
    site = one_seat(server)
    a, b = Browser(user()), Browser(user())
    b.user = a.user
    async with events(server.http, site["secret"]) as stream:
        await Tab.open(server.ws, site["key"], a)
        [first] = await take(stream, 1)
    # Disconnected: these happen while nobody listens.
    await Tab.open(server.ws, site["key"], b)
    await logout(server, site["key"], a)
    async with events(server.http, site["secret"], first.id) as stream:
        missed = await take(stream, 3)
        await revoke(server, site, b)
        # The next one is the new event: nothing was sent twice or left out before it.
        [new] = await take(stream, 1)
    assert said(missed) == [
        ("blocked", b.session, "limit"),
        ("ended", a.session, "logout"),
        ("unblocked", b.session, None),
    ]
    assert said([new]) == [("revoked", b.session, "revoked")]
    # Without following, the stream ends after the events there are.
    async with events(server.http, site["secret"], first.id, follow="false") as stream:
        assert [e.id async for e in stream] == [e.id for e in [*missed, new]]


@pytest.fixture
def restartable(tmp_path: Path, server_env: dict[str, str]) -> Iterator[list[Server]]:
    """A server that the test may restart on the same database: `servers[-1]` is live."""
    servers = [start_server(tmp_path, "serve", server_env)]
    yield servers
    servers[-1].stop()


async def test_a_stream_resumes_across_a_restart(
    restartable: list[Server], tmp_path: Path, server_env: dict[str, str]
) -> None:
    server = restartable[-1]
    site = one_seat(server)
    a, b = Browser(user()), Browser(user())
    b.user = a.user
    async with events(server.http, site["secret"]) as stream:
        await admitted_then_blocked(server, site["key"], a, b)
        seen = await take(stream, 2)
        await logout(server, site["key"], a)  # ended, unblocked: not read before the stop
        await Tab.close_all()
        started = time.monotonic()
        server.stop()
        # The server ends open streams as it shuts down, cleanly (not cut off), and at once
        # rather than after its 5 s of grace for open connections.
        rest = [e async for e in stream]
        assert time.monotonic() - started < 5
    assert (
        said(seen + rest)
        == [
            ("admitted", a.session, None),
            ("blocked", b.session, "limit"),
            ("ended", a.session, "logout"),
            ("unblocked", b.session, None),
        ][: len(seen + rest)]
    )
    last = (seen + rest)[-1].id
    missed = 4 - len(seen + rest)
    restartable.append(start_server(tmp_path, "serve", server_env))
    server = restartable[-1]
    c = Browser(a.user)
    async with events(server.http, site["secret"], last) as stream:
        found = await take(stream, missed)
        await Tab.open(server.ws, site["key"], c)  # the seats were freed by the restart
        found += await take(stream, 1)
    expected = [("ended", a.session, "logout"), ("unblocked", b.session, None)][2 - missed :]
    assert said(found) == [*expected, ("admitted", c.session, None)]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, server_env: dict[str, str]
) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path_factory.mktemp("events-redis"))
    redis.start()
    try:
        yield from start_cluster(
            tmp_path_factory.mktemp("events-cluster"),
            redis,
            postgres_url,
            server_env,
            2,
            SEATGUARD_EVENT_POLL_INTERVAL=str(scaled(0.2)),
        )
    finally:
        redis.stop()


async def test_a_stream_on_one_node_tells_what_another_node_decided(cluster: Cluster) -> None:
    site = one_seat(cluster)
    node_a, node_b = cluster.nodes
    a, b = Browser(user()), Browser(user())
    b.user = a.user
    async with events(node_b.http, site["secret"]) as stream:
        await admitted_then_blocked(node_a, site["key"], a, b)  # decided on node A
        found = await take(stream, 2)
        await revoke(node_a, site, a)  # a is revoked, b gets the seat: on node A
        found += await take(stream, 2)
    assert said(found) == [
        ("admitted", a.session, None),
        ("blocked", b.session, "limit"),
        ("revoked", a.session, "revoked"),
        ("unblocked", b.session, None),
    ]
    # Resumed on the other node: the same events after the same id.
    async with events(node_a.http, site["secret"], found[1].id, follow="false") as stream:
        assert [e.id async for e in stream] == [e.id for e in found[2:]]


@pytest.fixture(scope="module")
def two_sites(server: Server) -> tuple[dict[str, Any], dict[str, Any]]:
    return one_seat(server), one_seat(server)


async def test_another_sites_key_sees_none_of_its_events(
    server: Server, two_sites: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    mine, theirs = two_sites
    async with events(server.http, theirs["secret"]) as stream:
        await Tab.open(server.ws, mine["key"], Browser(user()))
        async with events(server.http, mine["secret"]) as own:
            [event] = await take(own, 1)  # mine has recorded it
        ours = Browser(user())
        await Tab.open(server.ws, theirs["key"], ours)
        # Their first event is their own: nothing of mine came before it.
        [first] = await take(stream, 1)
    assert said([first]) == [("admitted", ours.session, None)]
    # An id of my events, given with their key: only their events after it.
    async with events(server.http, theirs["secret"], event.id, follow="false") as stream:
        assert [e.json()["user"] async for e in stream] == [ours.user]


async def test_a_public_key_or_none_is_refused(
    server: Server, two_sites: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    site, _ = two_sites
    async with httpx.AsyncClient(base_url=server.http + "/api/v1") as client:
        for headers in ({"Authorization": f"Bearer {site['key']}"}, {}):
            r = await client.get("/events", headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "last_id", [b"", b"abc", b"-1", b"1.5", b"1e3", b"0x1F", b"\xc2\xb2", b"9" * 20]
)
async def test_a_malformed_last_event_id_is_refused(
    server: Server, two_sites: tuple[dict[str, Any], dict[str, Any]], last_id: bytes
) -> None:
    site, _ = two_sites
    async with api(server, site) as client:
        r = await client.get("/events", headers={b"Last-Event-ID": last_id})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "Invalid Last-Event-ID"


async def test_an_id_after_the_newest_event_is_a_conflict_that_tells_nothing(
    server: Server, two_sites: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    site, _ = two_sites
    async with api(server, site) as client:
        for last_id in ("9" * 19, str(2**63)):
            r = await client.get("/events", headers={"Last-Event-ID": last_id})
            assert r.status_code == 409, r.text
            assert not any(c.isdigit() for c in r.json()["detail"])  # not the newest id


async def test_streams_over_the_cap_wait_their_turn(
    server: Server, two_sites: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    site, other = two_sites
    async with (
        events(server.http, site["secret"]),
        events(server.http, site["secret"]),
    ):
        async with api(server, site) as client:
            r = await client.get("/events")
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"].isdigit()
        assert r.headers["content-type"] == "application/problem+json"
        async with events(server.http, other["secret"], follow="false"):
            pass  # another site's cap is its own
    # Both closed: their places are free again (once the server has seen them go).
    with anyio.fail_after(scaled(5)):
        while True:
            async with api(server, site) as client:
                r = await client.get("/events", params={"follow": "false"})
            if r.status_code == 200:
                break
            assert r.status_code == 429
            await anyio.sleep(0.1)


async def test_an_idle_stream_gets_heartbeat_comments(
    server: Server, two_sites: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _, site = two_sites
    async with (
        httpx.AsyncClient(base_url=server.http, timeout=scaled(10)) as client,
        client.stream(
            "GET", "/api/v1/events", headers={"Authorization": f"Bearer {site['secret']}",
                                              "Last-Event-ID": "0"},
        ) as response,
    ):  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        with anyio.fail_after(scaled(3)):
            while await anext(lines) != ": heartbeat":
                pass
