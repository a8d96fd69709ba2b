"""Webhooks survive the server: a real process, killed with SIGKILL while its messages are
failing, restarted on the same database, delivers every one with its first id. Then the
delivery history and redelivery of the REST API, between two sites."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seatguard.webhooks import verify
from tests.helpers import scaled, start_server
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

USERS = 5


class Receiver:
    """A site backend's endpoint that answers `status` and keeps every request with it."""

    def __init__(self) -> None:
        self.status = 500
        self.got: list[tuple[dict[str, str], bytes, int]] = []
        self.app = Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        status = self.status
        self.got.append((dict(request.headers), await request.body(), status))
        return Response(status_code=status)

    def ids(self, status: int | None = None) -> list[str]:
        """The webhook ids of the requests, of those answered `status` if given."""
        return [h["webhook-id"] for h, _, s in self.got if status in (None, s)]

    async def until(self, done: Callable[[], bool]) -> None:
        with anyio.fail_after(scaled(20)):
            while not done():  # noqa: ASYNC110 (requests come from another process)
                await anyio.sleep(0.05)


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[tuple[Receiver, str]]:
    """A receiver under uvicorn in this event loop on a free port, and its URL."""
    receiver = Receiver()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(receiver.app, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(scaled(10)):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
                await anyio.sleep(0.01)
        yield receiver, f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    finally:
        server.should_exit = True
        await task
        sock.close()


def outbox_env(server_env: dict[str, str]) -> dict[str, str]:
    """Retries within a fraction of a second, claims of two seconds (scaled), and sessions
    that outlive the test: the tabs here stay silent, and a holder timing out a moment
    before its waiter would seat it, adding an unblock webhook the tests do not expect."""
    return {
        **server_env,
        "SEATGUARD_SESSION_TIMEOUT": str(scaled(120)),
        "SEATGUARD_ALLOW_PRIVATE_URLS": "1",  # the receiver is on loopback
        "SEATGUARD_WEBHOOK_TIMEOUT": str(scaled(1)),
        "SEATGUARD_WEBHOOK_LEASE": str(scaled(2)),
        "SEATGUARD_WEBHOOK_RETRY_BASE": "0.05",
        "SEATGUARD_WEBHOOK_RETRY_CAP": "0.2",
        "SEATGUARD_WEBHOOK_POLL_INTERVAL": "0.1",
    }


async def test_messages_pending_when_the_server_is_killed_are_delivered_after_a_restart(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    env = outbox_env(server_env)
    async with receiving() as (receiver, url):
        first = start_server(tmp_path, "serve", env)
        try:
            site = first.create_site("--name", "Hooks", "--origin", "*", "--webhook-url", url)
            key, secret = str(site["key"]), str(site["webhook_secret"])
            for n in range(USERS):  # the second browser of each user is blocked: one webhook
                await Tab.open(first.ws, key, Browser(f"u{n}"))
                await Tab.open(first.ws, key, Browser(f"u{n}"))
            # Every message is tried and refused with 500 at least once, then the process dies
            # with retries pending and some of them claimed.
            await receiver.until(lambda: len(set(receiver.ids())) == USERS)
            await Tab.close_all()
        finally:
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait()
        ids = set(receiver.ids())
        tried = len(receiver.got)
        receiver.status = 204
        second = start_server(tmp_path, "serve", env, db=first.db)
        try:
            await receiver.until(lambda: set(receiver.ids(204)) == ids)
            async with api(second, site) as client:
                r = await client.get("/webhooks/deliveries", params={"state": "delivered"})
                assert r.status_code == 200, r.text
                page = r.json()
        finally:
            second.stop()
    assert len(receiver.got) > tried  # the restarted server sent them, none were lost
    assert len(ids) == USERS
    bodies: dict[str, set[bytes]] = {}
    for headers, body, _ in receiver.got:
        verify(secret, headers, body, now=time.time())  # each attempt signed at its own time
        bodies.setdefault(headers["webhook-id"], set()).add(body)
    assert all(len(b) == 1 for b in bodies.values())  # one body per id, on every attempt
    assert {json.loads(next(iter(b)))["type"] for b in bodies.values()} == {"seat.blocked"}
    listed = {d["id"]: d for d in page["deliveries"]}
    assert set(listed) == ids and page["next_cursor"] is None
    for msg_id, d in listed.items():
        assert d["state"] == "delivered" and d["last_status"] == 204 and d["last_error"] is None
        # Attempts whose outcome was written; one in flight at the kill was not.
        assert 2 <= d["attempts"] <= receiver.ids().count(msg_id)
        assert d["endpoint"] == url and d["payload"]["type"] == "seat.blocked"


async def test_history_and_redelivery_are_the_sites_own(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    async with receiving() as (receiver, url):
        receiver.status = 204
        server = start_server(tmp_path, "serve", outbox_env(server_env))
        try:
            site = server.create_site("--name", "A", "--origin", "*", "--webhook-url", url)
            other = server.create_site("--name", "B", "--origin", "*")
            key = str(site["key"])
            await Tab.open(server.ws, key, Browser("alice"))
            await Tab.open(server.ws, key, Browser("alice"))  # blocked: one webhook
            await receiver.until(lambda: len(receiver.ids(204)) == 1)
            [msg_id] = receiver.ids()
            path = f"/webhooks/deliveries/{msg_id}/redeliver"
            async with api(server, site) as mine, api(server, other) as theirs:
                # Another site sees none of it and cannot redeliver it.
                r = await theirs.get("/webhooks/deliveries")
                assert r.status_code == 200 and r.json() == {"deliveries": [], "next_cursor": None}
                r = await theirs.post(path)
                assert r.status_code == 404, r.text
                assert r.headers["content-type"] == "application/problem+json"
                # Malformed ids and filters are refused; an unknown id is not found.
                for bad in ("nope", msg_id.upper(), msg_id + "0", "msg_%00", "msg_" + "g" * 32):
                    r = await mine.post(f"/webhooks/deliveries/{bad}/redeliver")
                    assert r.status_code in (404, 422), (bad, r.status_code, r.text)
                assert (await mine.post("/webhooks/deliveries/nope/redeliver")).status_code == 422
                r = await mine.post(f"/webhooks/deliveries/msg_{'0' * 32}/redeliver")
                assert r.status_code == 404, r.text
                for query in ({"state": "lost"}, {"event": "seat.x"}, {"cursor": "0"}):
                    r = await mine.get("/webhooks/deliveries", params=query)
                    assert r.status_code == 422, (query, r.text)
                assert (await mine.get(path)).status_code == 405
                # Twice at once: both accepted, one message, sent again with its id.
                answers = await asyncio.gather(mine.post(path), mine.post(path))
                assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
                assert {a.json()["id"] for a in answers} == {msg_id}
                await receiver.until(lambda: len(receiver.ids(204)) >= 2)
                with anyio.fail_after(scaled(20)):
                    while True:  # the answer's 204 is in; its outcome is written just after
                        r = await mine.get("/webhooks/deliveries")
                        [d] = r.json()["deliveries"]
                        if d["state"] == "delivered":
                            break
                        await anyio.sleep(0.05)
                # An attempt in flight when the second redelivery came does not count: that
                # redelivery replaced its claim, and was sent again after it.
                assert d["id"] == msg_id and 2 <= d["attempts"] <= len(receiver.ids())
                r = await mine.get("/webhooks/deliveries", params={"event": "seat.evicted"})
                assert r.json()["deliveries"] == []
        finally:
            server.stop()
    assert set(receiver.ids()) == {msg_id}
    assert 2 <= len(receiver.ids()) <= 3  # at least once per redelivery asked for at once


async def test_healthz_counts_pending_and_dead_messages(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    async with receiving() as (receiver, url):
        server = start_server(tmp_path, "serve", outbox_env(server_env))
        try:
            site = server.create_site("--name", "A", "--origin", "*", "--webhook-url", url)
            key = str(site["key"])
            receiver.status = 410  # refused for good: dead
            await Tab.open(server.ws, key, Browser("alice"))
            await Tab.open(server.ws, key, Browser("alice"))  # blocked: one webhook
            await receiver.until(lambda: len(receiver.got) == 1)
            receiver.status = 500  # retried: pending
            await Tab.open(server.ws, key, Browser("bob"))
            await Tab.open(server.ws, key, Browser("bob"))
            await receiver.until(lambda: len(receiver.got) >= 2)
            async with api(server, site) as client:
                with anyio.fail_after(scaled(20)):
                    while True:  # the outcomes are written just after the answers
                        r = await client.get("/webhooks/deliveries")
                        states = sorted(d["state"] for d in r.json()["deliveries"])
                        if states == ["dead", "pending"]:
                            break
                        await anyio.sleep(0.05)
            # /healthz counts what it read at most 5 s ago (the start-up check read it too).
            async with httpx.AsyncClient(timeout=scaled(10)) as http:
                with anyio.fail_after(scaled(20)):
                    while True:
                        webhooks = (await http.get(server.http + "/healthz")).json()["webhooks"]
                        if (webhooks["pending"], webhooks["dead"]) == (1, 1):
                            break
                        await anyio.sleep(0.2)
            await Tab.close_all()
        finally:
            server.stop()
    assert 0 <= webhooks["oldest_pending_age"] < scaled(30)
