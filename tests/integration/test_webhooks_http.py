"""Webhook delivery over real HTTP: the delivery worker's own httpx client against a local
receiver, with an in-memory SQLite outbox and the real clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seatguard.db import SqliteDatabase
from seatguard.deliveries import DeliveryWorker
from seatguard.outbox import Delivery, DeliveryState, RetryPolicy
from seatguard.presence import Rules
from seatguard.sealing import SecretBox
from seatguard.site_secrets import Rotating
from seatguard.sites import Site, new_site
from seatguard.webhooks import EventType, new_webhook_secret, verify
from tests.helpers import free_port, scaled

pytestmark = pytest.mark.anyio


class Receiver:
    """A site backend's webhook endpoint that answers 503 to the first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.app = Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        if len(self.requests) <= self.failures:
            return Response("busy", status_code=503)
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Run `app` under uvicorn in this event loop on a free port; yield its base URL.

    It is on loopback, so the workers posting to it allow private addresses."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="none", http="h11", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(scaled(10)):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Outbox:
    """A site with a fresh webhook secret, and an in-memory outbox to deliver its messages."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.box = SecretBox.ephemeral()
        self.secret = new_webhook_secret()
        site, _ = new_site(
            "Hooks", ["*"], Rules(), client_settings=False, now=time.time(), box=self.box
        )
        sealed = self.box.seal(self.secret, site=site.key, purpose="webhook")
        self.site = dataclasses.replace(
            site, secrets=dataclasses.replace(site.secrets, webhook=Rotating(sealed))
        )

    async def lookup(self, key: str) -> Site | None:
        return self.site if key == self.site.key else None

    def worker(self, **options: Any) -> DeliveryWorker:
        """A worker posting through its own httpx client, polling every 10 ms."""
        return DeliveryWorker(self.db.outbox, self.lookup, self.box, poll_interval=0.01, **options)

    async def settled(self, msg_id: str) -> Delivery:
        """The message once it is delivered or dead."""
        async with asyncio.timeout(scaled(10)):
            while True:
                [d] = [d for d in await self.db.outbox.deliveries(self.site.key) if d.id == msg_id]
                if d.state is not DeliveryState.pending:
                    return d
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def outbox() -> AsyncIterator[Outbox]:
    db = await SqliteDatabase.open(":memory:")
    try:
        yield Outbox(db)
    finally:
        await db.close()


async def test_delivers_once_after_two_503s_with_one_id_and_valid_signatures() -> None:
    receiver = Receiver(failures=2)
    data = {"site": "pk_test", "user": "alice", "session": "s1", "device": "d1", "reason": "limit"}
    async with serving(receiver.app) as base, outbox() as o:
        worker = o.worker(policy=RetryPolicy(0.01, 0.05, 60.0), allow_private=True)
        await worker.start()  # opens its own httpx client; aclose() closes it
        try:
            [msg_id] = await worker.enqueue(
                o.site.key, base + "/hooks", [(EventType.seat_blocked, data)], time.time()
            )
            row = await o.settled(msg_id)
        finally:
            await worker.aclose()
    # Timeline: 503, back off, 503, back off, 204. Three requests, one message.
    assert (row.state, row.attempts, row.last_status) == (DeliveryState.delivered, 3, 204)
    assert worker.stats == {"delivered": 1, "retried": 2, "dead": 0}
    assert len(receiver.requests) == 3
    assert [h["webhook-id"] for h, _ in receiver.requests] == [msg_id] * 3
    for headers, body in receiver.requests:
        verify(o.secret, headers, body, now=time.time())
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("Seatguard-Webhooks/")
    assert len({body for _, body in receiver.requests}) == 1
    event = json.loads(receiver.requests[-1][1])
    assert event["type"] == "seat.blocked" and event["data"] == data


async def test_an_endpoint_that_refuses_connections_is_retried_then_dead() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    async with outbox() as o:
        # Waits of at most 20 ms within a window of 100 ms: a few attempts, then dead.
        worker = o.worker(policy=RetryPolicy(0.01, 0.02, 0.1), allow_private=True)
        await worker.start()
        try:
            [msg_id] = await worker.enqueue(
                o.site.key, url, [(EventType.session_revoked, {"user": "bob"})], time.time()
            )
            row = await o.settled(msg_id)
        finally:
            await worker.aclose()
    assert row.state is DeliveryState.dead and row.last_status is None
    assert row.last_error is not None and row.last_error.startswith("ConnectError")
    assert row.attempts >= 2
    assert worker.stats == {"delivered": 0, "retried": row.attempts - 1, "dead": 1}


async def test_a_slow_endpoint_times_out_and_the_retry_is_delivered() -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def hook(request: Request) -> Response:
        seen.append(request.headers["webhook-id"])
        if len(seen) == 1:
            await release.wait()  # hangs past the client's timeout
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
    async with serving(app) as base, outbox() as o:
        worker = o.worker(
            timeout=scaled(0.3),
            lease=scaled(5),
            policy=RetryPolicy(0.01, 0.02, 60.0),
            allow_private=True,
        )
        await worker.start()
        try:
            [msg_id] = await worker.enqueue(
                o.site.key, base + "/hooks", [(EventType.seat_evicted, {})], time.time()
            )
            row = await o.settled(msg_id)
        finally:
            await worker.aclose()
            release.set()  # let the abandoned first request finish so the server can stop
    assert (row.state, row.attempts) == (DeliveryState.delivered, 2)
    assert row.last_error is None
    assert worker.stats == {"delivered": 1, "retried": 1, "dead": 0}
    assert seen == [msg_id, msg_id]


async def test_an_endpoint_on_a_private_address_is_dead_at_once_and_never_reached() -> None:
    receiver = Receiver(failures=0)
    async with serving(receiver.app) as base, outbox() as o:
        worker = o.worker()  # public addresses only, as in production
        await worker.start()
        try:
            [msg_id] = await worker.enqueue(
                o.site.key, base + "/hooks", [(EventType.seat_blocked, {})], time.time()
            )
            row = await o.settled(msg_id)
        finally:
            await worker.aclose()
    assert (row.state, row.attempts, row.last_status) == (DeliveryState.dead, 1, None)
    assert row.last_error is not None and "127.0.0.1" in row.last_error, row.last_error
    assert receiver.requests == []
    assert worker.stats == {"delivered": 0, "retried": 0, "dead": 1}
