"""The webhook outbox: every message to deliver is a row in the database until it is done.

A message is written as `pending` when its event is recorded, before anyone is told of the
event, so a process that dies does not take it along. A delivery worker on each node claims
due rows for a lease (`claimed_by`, `claimed_until`): exactly one node holds a row while it
posts it, and a killed node's claims run out so that another node, or the same one
restarted, tries again. Each attempt ends the claim with a `Completion`:

    pending ──2xx──────────────────────────▶ delivered
       │ ──5xx, 408/409/425/429, no answer─▶ pending again, due after a backoff
       │ ──other answers, not public, or───▶ dead (kept, with the last status and error)
       │   the next try past the retry window
    delivered, dead, pending ──redeliver───▶ pending, due now, a new retry window

Delivery is at least once: the `webhook-id` (the row's id) stays the same on every attempt
and redelivery, so receivers deduplicate; each attempt is signed at its own time
(`webhook-timestamp`), as Standard Webhooks asks, so a retry days later still verifies.

`after_attempt` decides what an attempt leads to; it is pure, with `now` and the
randomness passed in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError
from .webhooks import Attempt, EventType, retry_delay

__all__ = [
    "DAY",
    "Backlog",
    "Completion",
    "Delivery",
    "DeliveryState",
    "RetryPolicy",
    "after_attempt",
]

DAY = 86400.0


class DeliveryState(enum.StrEnum):
    """Where a message stands."""

    pending = "pending"  # to be tried (again) at `next_attempt_at`
    delivered = "delivered"  # the endpoint answered 2xx
    dead = "dead"  # given up: refused, or still failing at the end of the retry window


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message of the outbox, as stored."""

    id: str  # the `webhook-id`, msg_<32 hex digits>: the same on every attempt
    site: str
    endpoint: str  # the URL it goes to, the site's webhook URL when the event happened
    event: EventType
    payload: str  # the JSON body, exactly as posted
    created_at: float
    state: DeliveryState = DeliveryState.pending
    attempts: int = 0  # POSTs made so far
    next_attempt_at: float | None = None  # when a pending message is due; None otherwise
    retrying_since: float = 0.0  # when its retry window opened: created, or redelivered
    last_status: int | None = None  # the endpoint's last HTTP status, if it answered
    last_error: str | None = None  # what went wrong last, if anything
    updated_at: float = 0.0
    claimed_by: str | None = None  # the node posting it now
    claimed_until: float | None = None  # when that claim runs out
    seq: int = 0  # its place in the outbox, rising: the cursor of the history


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the outbox holds that is not delivered (`/healthz`)."""

    pending: int
    dead: int
    waiting_since: float | None  # when the longest-waiting pending message was made or
    # redelivered; None when none is pending


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long failed messages are retried: full-jitter exponential backoff from `base`
    seconds, each wait at most `cap`, for `window` seconds after the message was made (or
    redelivered); past the window the message is dead."""

    base: float = 1.0
    cap: float = 3600.0
    window: float = 3 * DAY

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap < math.inf and 0 < self.window < math.inf):
            raise ConfigError(
                "webhook retries need 0 < base <= cap and a positive, finite retry window"
            )


@dataclass(frozen=True, slots=True)
class Completion:
    """What an attempt leaves in the row."""

    state: DeliveryState
    attempts: int
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    at: float  # when the attempt ended

    @property
    def retried(self) -> bool:
        """Whether the message will be tried again."""
        return self.state is DeliveryState.pending


def after_attempt(
    delivery: Delivery,
    result: Attempt,
    now: float,
    policy: RetryPolicy,
    random: Callable[[], float],
) -> Completion:
    """The state a message is in after `result`, the attempt that ended at `now`.

    A failure that may work later is due again after `retry_delay` (or the endpoint's
    `Retry-After`, at most `policy.cap`), unless that is past the retry window: then, like a
    final answer, the message is dead.
    """
    attempts = delivery.attempts + 1
    if result.problem is None:
        return Completion(DeliveryState.delivered, attempts, None, result.status, None, now)
    due = None
    if result.retry:
        wait = (
            min(result.wait, policy.cap)
            if result.wait is not None
            else retry_delay(attempts, base=policy.base, cap=policy.cap, random=random)
        )
        if now + wait <= delivery.retrying_since + policy.window:
            due = now + wait
    state = DeliveryState.dead if due is None else DeliveryState.pending
    return Completion(state, attempts, due, result.status, result.problem, now)
