"""Webhooks: tell a site's backend about seat events, signed the Standard Webhooks way.

One message is a JSON event, `{"type": ..., "timestamp": ..., "data": {...}}`, POSTed to the
site's endpoint with three headers (https://www.standardwebhooks.com/):

    webhook-id         msg_<32 hex digits>; the same on every retry, so receivers deduplicate
    webhook-timestamp  integer seconds since the epoch, of this attempt
    webhook-signature  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">; several,
                       separated by spaces, while a secret is being rotated

`sign`, `verify` and the retry schedule are pure; `attempt` posts one message once. The
messages themselves wait in the outbox (`outbox.py`), and the delivery worker
(`deliveries.py`) makes their attempts.

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
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

import httpx

from . import outbound
from .errors import ConfigError, SeatguardError

__all__ = [
    "RETRYABLE_STATUSES",
    "SECRET_PREFIX",
    "TOLERANCE",
    "Attempt",
    "EventType",
    "Reply",
    "Sender",
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

SECRET_PREFIX = "whsec_"
TOLERANCE = 300.0
"""Seconds a receiver accepts between a message's timestamp and its own clock, either way."""
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
"""4xx statuses that mean "try again later"; every 5xx is retried too."""

ID, TIMESTAMP, SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"


class EventType(enum.StrEnum):
    """What happened to a seat, a session or a user, or what a policy said of a session."""

    seat_blocked = "seat.blocked"
    seat_unblocked = "seat.unblocked"
    seat_taken_over = "seat.taken_over"
    seat_evicted = "seat.evicted"
    session_expired = "session.expired"
    session_revoked = "session.revoked"
    user_suspended = "user.suspended"
    user_unsuspended = "user.unsuspended"
    evaluation_flagged = "evaluation.flagged"


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
