"""Webhook delivery over real HTTP: the default httpx sender against a local receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seatguard.webhooks import EventType, WebhookDispatcher, new_webhook_secret, verify
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

    It is on loopback, so the dispatchers posting to it allow private addresses."""
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


async def test_delivers_once_after_two_503s_with_one_id_and_valid_signatures() -> None:
    receiver = Receiver(failures=2)
    secret = new_webhook_secret()
    data = {"site": "pk_test", "user": "alice", "session": "s1", "device": "d1", "reason": "limit"}
    async with serving(receiver.app) as base:
        dispatcher = WebhookDispatcher(base=0.01, cap=0.05, max_attempts=5, allow_private=True)
        async with dispatcher:  # opens its own httpx client; closes it on the way out
            msg_id = dispatcher.enqueue(base + "/hooks", secret, EventType.seat_blocked, data)
            await asyncio.wait_for(dispatcher.flush(), scaled(10))
    # Timeline: 503, back off, 503, back off, 204. Three requests, one message.
    assert dispatcher.stats == {"delivered": 1, "failed": 0, "dropped": 0, "retried": 2}
    assert len(receiver.requests) == 3
    assert [h["webhook-id"] for h, _ in receiver.requests] == [msg_id] * 3
    for headers, body in receiver.requests:
        verify(secret, headers, body, now=time.time())
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("Seatguard-Webhooks/")
    assert len({body for _, body in receiver.requests}) == 1
    event = json.loads(receiver.requests[-1][1])
    assert event["type"] == "seat.blocked" and event["data"] == data


async def test_an_endpoint_that_refuses_connections_is_retried_then_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    dispatcher = WebhookDispatcher(base=0.01, cap=0.02, max_attempts=3, allow_private=True)
    async with dispatcher:
        dispatcher.enqueue(url, new_webhook_secret(), EventType.session_revoked, {"user": "bob"})
        await asyncio.wait_for(dispatcher.flush(), scaled(10))
    assert dispatcher.stats == {"delivered": 0, "failed": 1, "dropped": 0, "retried": 2}


async def test_a_slow_endpoint_times_out_and_the_retry_is_delivered() -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def hook(request: Request) -> Response:
        seen.append(request.headers["webhook-id"])
        if len(seen) == 1:
            await release.wait()  # hangs past the client's timeout
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
    async with serving(app) as base:
        dispatcher = WebhookDispatcher(
            timeout=scaled(0.3), base=0.01, cap=0.02, max_attempts=3, allow_private=True
        )
        async with dispatcher:
            msg_id = dispatcher.enqueue(
                base + "/hooks", new_webhook_secret(), EventType.seat_evicted, {}
            )
            await asyncio.wait_for(dispatcher.flush(), scaled(10))
        release.set()  # let the abandoned first request finish so the server can stop
    assert dispatcher.stats == {"delivered": 1, "failed": 0, "dropped": 0, "retried": 1}
    assert seen == [msg_id, msg_id]
