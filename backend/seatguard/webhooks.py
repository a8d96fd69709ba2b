"""Webhooks: tell a site's backend about seat events, signed the Standard Webhooks way.

One message is a JSON event, `{"type": ..., "timestamp": ..., "data": {...}}`, POSTed to the
site's endpoint with three headers (https://www.standardwebhooks.com/):

    webhook-id         msg_<32 hex digits>; the same on every retry, so receivers deduplicate
    webhook-timestamp  integer seconds since the epoch, of this attempt
    webhook-signature  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">; several,
                       separated by spaces, while a secret is being rotated

`sign`, `verify` and the retry schedule are pure. `WebhookDispatcher` delivers in the
background: `enqueue` returns at once, and one worker task per endpoint URL posts that
endpoint's messages in order, so a slow or failing endpoint delays only itself.

Retry policy: network errors, timeouts, 5xx, 408 (request timeout), 409 (conflict),
425 (too early) and 429 (too many requests) say "this may work later", so they are retried
with full-jitter exponential backoff, or after `Retry-After` seconds (capped). Any other
status is the receiver's final answer: a 4xx refuses the request itself and sending it again
would only repeat that; redirects are not followed (the endpoint URL must be the final one).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import json
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

import httpx

from . import __version__, outbound
from .errors import ConfigError, SeatguardError

__all__ = [
    "RETRYABLE_STATUSES",
    "SECRET_PREFIX",
    "TOLERANCE",
    "Attempt",
    "EventType",
    "Reply",
    "Sender",
    "WebhookDispatcher",
    "WebhookVerificationError",
    "attempt",
    "encode_event",
    "httpx_sender",
    "new_webhook_secret",
    "retry_after",
    "retry_delay",
    "retryable",
    "sign",
    "signed_headers",
    "verify",
]

log = logging.getLogger("seatguard")

SECRET_PREFIX = "whsec_"
TOLERANCE = 300.0
"""Seconds a receiver accepts between a message's timestamp and its own clock, either way."""
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
"""4xx statuses that mean "try again later"; every 5xx is retried too."""

ID, TIMESTAMP, SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"


class EventType(enum.StrEnum):
    """What happened to a seat or a session."""

    seat_blocked = "seat.blocked"
    seat_unblocked = "seat.unblocked"
    seat_taken_over = "seat.taken_over"
    seat_evicted = "seat.evicted"
    session_expired = "session.expired"
    session_revoked = "session.revoked"


class WebhookVerificationError(SeatguardError):
    """A received webhook is not proven to come from Seatguard: refuse it."""


# Signing: pure functions.


def new_webhook_secret(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh signing secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error:
        raise ConfigError("a webhook secret is `whsec_` and base64") from None
    if not key:
        raise ConfigError("a webhook secret may not be empty")
    return key


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes | str) -> bytes:
    raw = body.encode() if isinstance(body, str) else body
    signed = b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), raw)
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `v1,<base64>` signature of one message with one secret."""
    digest = _digest(_key(secret), msg_id, str(timestamp), body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one attempt, signed by every secret in `secrets` (old and new)."""
    return {
        "content-type": "application/json",
        ID: msg_id,
        TIMESTAMP: str(timestamp),
        SIGNATURE: " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> None:
    """Check that a received webhook was signed with `secret` within `tolerance` of `now`.

    For site backends. Pass the raw request body, before any JSON parsing, and the
    request headers (any case); `now` is the receiver's clock in seconds since the epoch.
    Any one matching `v1` signature is enough, so a message signed by an old and a new
    secret during rotation verifies with either. The same message may arrive more than
    once: remember `webhook-id` to act on it once. With Starlette:

        body = await request.body()
        try:
            verify(secret, request.headers, body, now=time.time())
        except WebhookVerificationError:
            return Response(status_code=400)
        event = json.loads(body)

    Raises `WebhookVerificationError` when a header is missing or malformed, the
    timestamp is further than `tolerance` seconds from `now` (replayed or forged), or no
    signature matches; `ConfigError` when `secret` itself is malformed.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    for name in (ID, TIMESTAMP, SIGNATURE):
        if not lower.get(name):
            raise WebhookVerificationError(f"missing header {name}")
    msg_id, stamp, signatures = lower[ID], lower[TIMESTAMP], lower[SIGNATURE]
    if not (stamp.isascii() and stamp.isdigit()):
        raise WebhookVerificationError(f"{TIMESTAMP} is not integer seconds: {stamp!r}")
    if int(stamp) < now - tolerance:
        raise WebhookVerificationError("message timestamp too old")
    if int(stamp) > now + tolerance:
        raise WebhookVerificationError("message timestamp too new")
    expected = _digest(_key(secret), msg_id, stamp, body)
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(given, expected):
            return
    raise WebhookVerificationError("no matching signature")


def encode_event(event_type: EventType, data: Mapping[str, Any], *, now: float) -> bytes:
    """The JSON body of one event that happened at `now`."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    payload = {
        "type": str(event_type),
        "timestamp": stamp.replace("+00:00", "Z"),
        "data": dict(data),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# Retrying: pure functions.


def retryable(status: int) -> bool:
    """Whether an endpoint's answer asks to try again later (5xx, 408, 409, 425, 429)."""
    return status >= 500 or status in RETRYABLE_STATUSES


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The `Retry-After` delay in seconds, if given as seconds; HTTP dates are ignored."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def retry_delay(attempt: int, *, base: float, cap: float, random: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt `attempt` (1 for the first), full jitter.

    Uniform in [0, min(cap, base * 2 ** (attempt - 1))).
    See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    """
    if attempt < 1:
        raise ValueError(f"attempts count from 1, not {attempt}")
    return random() * min(cap, base * 2.0 ** min(attempt - 1, 64))


# Delivery: the I/O shell.


@dataclass(frozen=True, slots=True)
class Reply:
    """What an endpoint answered: the HTTP status and its headers."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


Sender: TypeAlias = Callable[[str, bytes, Mapping[str, str]], Awaitable[Reply]]
"""POSTs `body` with `headers` to a URL; raises on network errors and timeouts."""


def httpx_sender(client: httpx.AsyncClient) -> Sender:
    """A sender posting through `client` (which the caller owns and closes)."""

    async def send(url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        response = await client.post(url, content=body, headers=dict(headers))
        return Reply(response.status_code, response.headers)

    return send


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one POST of a message went."""

    status: int | None  # the endpoint's HTTP status; None when it did not answer
    problem: str | None  # what went wrong; None when delivered (2xx)
    retry: bool  # whether asking again later may work
    wait: float | None = None  # the endpoint's `Retry-After`, seconds, when it asked for one


async def attempt(
    sender: Sender,
    url: str,
    secrets: Sequence[str],
    msg_id: str,
    body: bytes,
    timestamp: int,
    time_limit: float,
) -> Attempt:
    """POST one message once, signed at `timestamp` by every secret, within `time_limit` s.

    An address refused as not public (`outbound.PrivateAddress`) is final: asking again
    would be refused again. Other network errors and timeouts may work later.
    """
    headers = signed_headers(secrets, msg_id, timestamp, body)
    try:
        async with asyncio.timeout(time_limit):
            reply = await sender(url, body, headers)
    except Exception as exc:  # refused connection, reset, timeout, bad URL
        private = isinstance(exc.__cause__, outbound.PrivateAddress)
        return Attempt(None, f"{type(exc).__name__}: {exc}", retry=not private)
    if 200 <= reply.status < 300:
        return Attempt(reply.status, None, retry=False)
    if not retryable(reply.status):
        return Attempt(reply.status, f"HTTP {reply.status}", retry=False)
    return Attempt(
        reply.status, f"HTTP {reply.status}", retry=True, wait=retry_after(reply.headers)
    )


@dataclass(frozen=True, slots=True)
class _Message:
    url: str
    secrets: tuple[str, ...]
    msg_id: str
    event_type: EventType
    body: bytes


class _State(enum.Enum):
    new = "new"
    running = "running"
    closed = "closed"


class WebhookDispatcher:
    """Delivers webhooks in the background; the app's lifespan starts and closes it.

    Each endpoint URL has its own bounded queue (`max_queue` messages; when full the
    oldest waiting one is dropped) and, while it has messages, its own worker task that
    sends them one at a time: order holds per endpoint, and a slow or failing endpoint
    delays only its own messages. A message is tried up to `max_attempts` times in all.
    `stats` counts messages delivered, failed (refused or out of attempts) and dropped
    (queue full or shut down), and retries made.

    Without a `sender`, `start()` opens an `httpx.AsyncClient` and `aclose()` closes it;
    it posts to public addresses only, unless `allow_private` (`outbound.py`): an endpoint
    that resolves to a loopback or private address fails like a refused connection.
    `timeout` bounds each attempt; `aclose()` waits up to `drain_timeout` seconds for the
    queues to empty. The clock, sleep and randomness are injectable.
    """

    def __init__(
        self,
        *,
        sender: Sender | None = None,
        timeout: float = 5.0,
        max_attempts: int = 8,
        base: float = 1.0,
        cap: float = 300.0,
        max_queue: int = 1000,
        drain_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random.random,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        allow_private: bool = False,
    ) -> None:
        if max_attempts < 1 or max_queue < 1:
            raise ConfigError("webhook max attempts and max queue must be at least 1")
        if min(timeout, base, drain_timeout) <= 0 or cap < base:
            raise ConfigError("webhook timeout and backoff must be positive, cap at least base")
        self.stats: dict[str, int] = dict.fromkeys(("delivered", "failed", "dropped", "retried"), 0)
        self._sender = sender
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._base = base
        self._cap = cap
        self._max_queue = max_queue
        self._drain_timeout = drain_timeout
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._random_bytes = random_bytes
        self._allow_private = allow_private
        self._state = _State.new
        self._client: httpx.AsyncClient | None = None
        self._queues: dict[str, deque[_Message]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Open the HTTP client (unless a sender was given); enqueue works from now on."""
        if self._state is not _State.new:
            raise RuntimeError(f"cannot start a {self._state.value} webhook dispatcher")
        if self._sender is None:
            self._client = outbound.client(
                timeout=self._timeout,
                user_agent=f"Seatguard-Webhooks/{__version__}",
                allow_private=self._allow_private,
            )
            self._sender = httpx_sender(self._client)
        self._state = _State.running

    def enqueue(
        self,
        endpoint_url: str,
        secret: str | Sequence[str],
        event_type: EventType,
        data: Mapping[str, Any],
    ) -> str:
        """Queue one event for `endpoint_url` and return its message id, without waiting.

        `secret` may be several secrets during a rotation; each signs. Raises `ConfigError`
        for a malformed secret and `TypeError` for data JSON cannot encode; after
        `aclose()` the message is dropped (and counted) instead.
        """
        if self._state is _State.new:
            raise RuntimeError("start() the webhook dispatcher before enqueueing")
        keys = (secret,) if isinstance(secret, str) else tuple(secret)
        if not keys:
            raise ConfigError("a webhook needs at least one secret")
        for key in keys:
            _key(key)
        event_type = EventType(event_type)
        msg_id = "msg_" + self._random_bytes(16).hex()
        body = encode_event(event_type, data, now=self._clock())
        if self._state is _State.closed:
            self.stats["dropped"] += 1
            log.warning(
                "webhook %s %s to %s dropped: shutting down", msg_id, event_type, endpoint_url
            )
            return msg_id
        queue = self._queues.setdefault(endpoint_url, deque())
        if len(queue) >= self._max_queue:
            old = queue.popleft()
            self.stats["dropped"] += 1
            log.warning(
                "webhook queue for %s full (%d): dropped %s %s",
                endpoint_url,
                self._max_queue,
                old.msg_id,
                old.event_type,
            )
        queue.append(_Message(endpoint_url, keys, msg_id, event_type, body))
        if endpoint_url not in self._workers:
            self._workers[endpoint_url] = asyncio.create_task(
                self._drain(endpoint_url), name=f"webhooks {endpoint_url}"
            )
        return msg_id

    async def flush(self) -> None:
        """Wait until every queued message is delivered or given up (bound it with a timeout)."""
        while self._workers:
            await asyncio.wait(list(self._workers.values()))

    async def aclose(self) -> None:
        """Take no more messages, deliver queued ones for `drain_timeout` s, drop the rest."""
        if self._state is _State.closed:
            return
        self._state = _State.closed
        try:
            async with asyncio.timeout(self._drain_timeout):
                await self.flush()
        except TimeoutError:
            workers = list(self._workers.values())
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            left = sum(len(q) for q in self._queues.values())
            self.stats["dropped"] += left
            self._workers.clear()  # a task cancelled before it ran never cleaned up
            self._queues.clear()
            log.warning("webhooks: still sending after %ss; dropped the rest", self._drain_timeout)
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> WebhookDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _drain(self, url: str) -> None:
        """Send one endpoint's messages in order until its queue is empty."""
        queue = self._queues[url]
        try:
            while queue:
                message = queue.popleft()
                try:
                    await self._deliver(message)
                except asyncio.CancelledError:
                    self.stats["dropped"] += 1  # in flight when aclose() gave up waiting
                    raise
                except Exception:
                    self.stats["failed"] += 1
                    log.exception("webhook %s to %s: unexpected error", message.msg_id, url)
        finally:
            self._workers.pop(url, None)
            if not queue:
                self._queues.pop(url, None)

    async def _deliver(self, m: _Message) -> None:
        """Try one message until it is delivered, refused or out of attempts."""
        assert self._sender is not None
        for n in range(1, self._max_attempts + 1):
            result = await attempt(
                self._sender, m.url, m.secrets, m.msg_id, m.body, int(self._clock()), self._timeout
            )
            if result.problem is None:
                self.stats["delivered"] += 1
                return
            if not result.retry or n == self._max_attempts:
                break
            delay = (
                min(result.wait, self._cap)
                if result.wait is not None
                else retry_delay(n, base=self._base, cap=self._cap, random=self._random)
            )
            self.stats["retried"] += 1
            log.info("webhook %s to %s: %s; retry in %.2fs", m.msg_id, m.url, result.problem, delay)
            await self._sleep(delay)
        self.stats["failed"] += 1
        log.warning(
            "webhook %s %s to %s failed after %d attempt(s): %s",
            m.msg_id,
            m.event_type,
            m.url,
            n,
            result.problem,
        )
