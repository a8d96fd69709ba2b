"""The delivery worker: each node posts the outbox's due webhook messages (`outbox.py`).

`enqueue` writes a new event's messages to the outbox and returns once they are stored.
The worker claims due messages for a lease, posts each once (`webhooks.attempt`, signed by
the site's webhook secrets as they are at that moment, opened from their sealed form), and
writes the outcome (`outbox.after_attempt`). It looks for due messages every
`poll_interval` seconds, at once after its own node enqueues or redelivers, and when its
own next retry falls due. Messages of one endpoint may arrive out of order.

A message whose attempt raised something unexpected keeps its claim until the lease ends,
and is then tried again, here or on another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from . import __version__, outbound
from .db import WebhookOutbox
from .errors import ConfigError
from .outbox import Backlog, Completion, Delivery, DeliveryState, RetryPolicy, after_attempt
from .sealing import SecretBox
from .settings import Settings
from .site_secrets import opened
from .sites import Site
from .webhooks import Attempt, EventType, Sender, attempt, encode_event, httpx_sender

__all__ = ["BACKLOG_TTL", "DeliveryWorker"]

log = logging.getLogger("seatguard")

BACKLOG_TTL = 5.0
"""Seconds `DeliveryWorker.backlog` answers from what it last read."""


class DeliveryWorker:
    """Posts the due messages of the outbox; the app's lifespan starts and closes it.

    At most `concurrency` messages are in flight at once, each attempt bounded by
    `timeout` seconds, each claim `lease` seconds long (longer than `timeout`).
    `aclose()` waits up to `timeout` for attempts in flight, then ends this node's claims,
    so that what is left is due at once for the next node or the next start. `stats`
    counts attempts that delivered, that will be retried, and that left a message dead.

    Without a `sender`, `start()` opens an `httpx.AsyncClient` that posts to public
    addresses only, unless `allow_private` (`outbound.py`). `node` names this process in
    its claims. The clock and randomness are injectable.
    """

    def __init__(
        self,
        outbox: WebhookOutbox,
        site: Callable[[str], Awaitable[Site | None]],
        box: SecretBox,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 5.0,
        lease: float = 60.0,
        poll_interval: float = 1.0,
        concurrency: int = 16,
        node: str | None = None,
        sender: Sender | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random.random,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        allow_private: bool = False,
    ) -> None:
        if not 0 < timeout < lease or poll_interval <= 0 or concurrency < 1:
            raise ConfigError(
                "webhook timeout, lease and poll interval must be positive, the lease longer "
                "than the timeout, and the concurrency at least 1"
            )
        self.stats: dict[str, int] = dict.fromkeys(("delivered", "retried", "dead"), 0)
        self.node = node or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._outbox = outbox
        self._site = site
        self._box = box
        self._policy = policy or RetryPolicy()
        self._timeout = timeout
        self._lease = lease
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        self._sender = sender
        self._clock = clock
        self._random = random
        self._random_bytes = random_bytes
        self._allow_private = allow_private
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._soonest: float | None = None  # when a message this node retries falls due
        self._loop: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._backlog: Backlog | None = None
        self._backlog_read_at: float | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        outbox: WebhookOutbox,
        site: Callable[[str], Awaitable[Site | None]],
        box: SecretBox,
        **options: Any,
    ) -> DeliveryWorker:
        """A worker with the `webhook_*` settings."""
        return cls(
            outbox,
            site,
            box,
            policy=RetryPolicy(
                settings.webhook_retry_base,
                settings.webhook_retry_cap,
                settings.webhook_retry_window,
            ),
            timeout=settings.webhook_timeout,
            lease=settings.webhook_lease,
            poll_interval=settings.webhook_poll_interval,
            allow_private=settings.allow_private_urls,
            **options,
        )

    async def enqueue(
        self,
        site: str,
        endpoint: str,
        events: Sequence[tuple[EventType, Mapping[str, Any]]],
        now: float,
    ) -> list[str]:
        """Store one message for each event that happened at `now`, all or none; their ids.

        They are durable once this returns. Raises `TypeError` for data JSON cannot encode.
        """
        deliveries = [
            Delivery(
                id="msg_" + self._random_bytes(16).hex(),
                site=site,
                endpoint=endpoint,
                event=EventType(event),
                payload=encode_event(event, data, now=now).decode(),
                created_at=now,
                next_attempt_at=now,
                retrying_since=now,
                updated_at=now,
            )
            for event, data in events
        ]
        await self._outbox.add(deliveries)
        self.wake()
        return [d.id for d in deliveries]

    def wake(self) -> None:
        """Look for due messages now (one was just stored or redelivered)."""
        self._wake.set()

    async def backlog(self) -> Backlog | None:
        """The outbox's pending and dead messages, read at most every `BACKLOG_TTL`
        seconds (for `/healthz`); None if the last read failed."""
        now = self._clock()
        last = self._backlog_read_at
        if last is None or not 0 <= now - last < BACKLOG_TTL:
            self._backlog_read_at = now  # callers meanwhile get what was read before
            try:
                self._backlog = await self._outbox.backlog()
            except Exception:
                log.exception("webhooks: cannot count the outbox's messages")
                self._backlog = None
        return self._backlog

    async def start(self) -> None:
        """Open the HTTP client (unless a sender was given) and start delivering."""
        if self._loop is not None:
            raise RuntimeError("the delivery worker is started already")
        if self._sender is None:
            self._client = outbound.client(
                timeout=self._timeout,
                user_agent=f"Seatguard-Webhooks/{__version__}",
                allow_private=self._allow_private,
            )
            self._sender = httpx_sender(self._client)
        self._loop = asyncio.create_task(self._run(), name="webhook deliveries")

    async def aclose(self) -> None:
        """Stop claiming, let attempts in flight finish for up to `timeout` s, end the
        claims left, close the client."""
        if self._loop is None:
            return
        self._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop
        if self._inflight:
            _, late = await asyncio.wait(self._inflight, timeout=self._timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        try:
            await self._outbox.release(self.node)
        except Exception:
            log.exception("webhooks: claims not ended; they run out after %ss", self._lease)
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock()
            if self._soonest is not None and self._soonest <= now:
                self._soonest = None
            free = self._concurrency - len(self._inflight)
            if free > 0:
                for delivery in await self._claim(now, free):
                    task = asyncio.create_task(self._deliver(delivery), name=delivery.id)
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
            wait = self._poll_interval
            if self._soonest is not None:
                wait = min(wait, self._soonest - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0)):
                    await self._wake.wait()

    async def _claim(self, now: float, limit: int) -> list[Delivery]:
        try:
            return await self._outbox.claim(self.node, now, self._lease, limit)
        except Exception:
            log.exception("webhooks: cannot claim due messages; trying again")
            return []

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def _deliver(self, d: Delivery) -> None:
        """Post one claimed message once and write what came of it."""
        try:
            result = await self._post(d)
            done = after_attempt(d, result, self._clock(), self._policy, self._random)
            if not await self._outbox.complete(d, done):
                log.info("webhook %s: claim replaced during the attempt; outcome dropped", d.id)
                return
            self._report(d, done)
        except Exception:
            log.exception(
                "webhook %s to %s: unexpected error; retried after the lease", d.id, d.endpoint
            )

    async def _post(self, d: Delivery) -> Attempt:
        assert self._sender is not None
        now = self._clock()
        site = await self._site(d.site)
        body = d.payload.encode()
        try:
            keys = () if site is None else opened(self._box, site, "webhook", now)
            if not keys:
                return Attempt(None, "the site has no webhook secret", retry=False)
            # Signing raises ConfigError for a malformed secret; the sender's errors are
            # the attempt's.
            return await attempt(
                self._sender, d.endpoint, keys, d.id, body, int(now), self._timeout
            )
        except ConfigError as exc:
            return Attempt(None, f"webhook secret: {exc}", retry=False)

    def _report(self, d: Delivery, done: Completion) -> None:
        if done.state is DeliveryState.delivered:
            self.stats["delivered"] += 1
        elif done.state is DeliveryState.pending:
            assert done.next_attempt_at is not None
            self.stats["retried"] += 1
            if self._soonest is None or done.next_attempt_at < self._soonest:
                self._soonest = done.next_attempt_at
            delay = done.next_attempt_at - done.at
            log.info(
                "webhook %s to %s: %s; retry in %.2fs", d.id, d.endpoint, done.last_error, delay
            )
        else:
            self.stats["dead"] += 1
            log.warning(
                "webhook %s %s to %s failed after %d attempt(s): %s",
                d.id,
                d.event,
                d.endpoint,
                done.attempts,
                done.last_error,
            )
