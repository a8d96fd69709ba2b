"""The outbox's retry schedule: what each attempt leads to, with the clock passed in."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from seatguard.errors import ConfigError
from seatguard.outbox import DAY, Delivery, DeliveryState, RetryPolicy, after_attempt
from seatguard.webhooks import Attempt, EventType

T0 = 1_700_000_000.0
POLICY = RetryPolicy(base=1.0, cap=3600.0, window=3 * DAY)
OK = Attempt(204, None, retry=False)
BUSY = Attempt(503, "HTTP 503", retry=True)
DOWN = Attempt(None, "ConnectError: refused", retry=True)
GONE = Attempt(410, "HTTP 410", retry=False)
PRIVATE = Attempt(None, "ConnectError: resolves to no public address", retry=False)


def message(**fields: Any) -> Delivery:
    base = Delivery(
        id="msg_" + "ab" * 16,
        site="pk_a",
        endpoint="https://hooks.example/in",
        event=EventType.seat_blocked,
        payload='{"type":"seat.blocked"}',
        created_at=T0,
        next_attempt_at=T0,
        retrying_since=T0,
        updated_at=T0,
    )
    return dataclasses.replace(base, **fields)


def always(value: float) -> Callable[[], float]:
    """A `random()` that always returns `value`."""
    return lambda: value


def most() -> float:
    """A `random()` at the top of its range: every wait is its whole window."""
    return 1.0 - 1e-12


def test_a_2xx_delivers_and_counts_the_attempt() -> None:
    done = after_attempt(message(attempts=2), OK, T0 + 5, POLICY, most)
    assert done.state is DeliveryState.delivered and not done.retried
    assert (done.attempts, done.next_attempt_at, done.last_status, done.last_error) == (
        3,
        None,
        204,
        None,
    )
    assert done.at == T0 + 5


@pytest.mark.parametrize("result", [GONE, PRIVATE])
def test_a_final_answer_is_dead_at_once_with_what_went_wrong(result: Attempt) -> None:
    done = after_attempt(message(), result, T0 + 1, POLICY, most)
    assert done.state is DeliveryState.dead and done.next_attempt_at is None
    assert (done.attempts, done.last_status, done.last_error) == (
        1,
        result.status,
        result.problem,
    )


@pytest.mark.parametrize("result", [BUSY, DOWN])
def test_a_failure_that_may_pass_is_due_again_after_a_doubling_capped_wait(
    result: Attempt,
) -> None:
    # Timeline: attempt n ends at `now`; with random() ~ 1 the wait is min(cap, 2^(n-1)).
    now = T0
    waits = []
    d = message()
    for _ in range(14):
        done = after_attempt(d, result, now, POLICY, most)
        assert done.state is DeliveryState.pending and done.next_attempt_at is not None
        waits.append(round(done.next_attempt_at - now, 6))
        now = done.next_attempt_at
        d = dataclasses.replace(d, attempts=done.attempts, next_attempt_at=now)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
    assert d.attempts == 14


def test_the_wait_is_full_jitter() -> None:
    waits = [
        after_attempt(message(attempts=4), BUSY, T0, POLICY, always(r)).next_attempt_at
        for r in (0.0, 0.25, 0.5)
    ]
    assert waits == [T0 + 0.0, T0 + 4.0, T0 + 8.0]  # uniform in [0, 2^4) after attempt 5


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    asked = dataclasses.replace(BUSY, status=429, wait=120.0)
    assert after_attempt(message(), asked, T0, POLICY, most).next_attempt_at == T0 + 120
    greedy = dataclasses.replace(asked, wait=10 * DAY)
    assert after_attempt(message(), greedy, T0, POLICY, most).next_attempt_at == T0 + 3600


def test_a_retry_past_the_window_is_dead_instead() -> None:
    policy = RetryPolicy(base=1.0, cap=3600.0, window=DAY)
    edge = T0 + DAY - 3600  # a full wait lands exactly on the end of the window: still tried
    last = after_attempt(message(attempts=30), BUSY, edge, policy, most)
    assert last.state is DeliveryState.pending
    assert last.next_attempt_at == pytest.approx(T0 + DAY)
    late = after_attempt(message(attempts=30), BUSY, edge + 1, policy, most)
    assert late.state is DeliveryState.dead and late.next_attempt_at is None
    assert (late.attempts, late.last_status, late.last_error) == (31, 503, "HTTP 503")
    # A short wait still fits: the jitter decides, not the attempt count.
    lucky = after_attempt(message(attempts=30), BUSY, edge + 1, policy, lambda: 0.1)
    assert lucky.state is DeliveryState.pending


def test_a_redelivered_message_gets_a_new_window() -> None:
    policy = RetryPolicy(base=1.0, cap=60.0, window=DAY)
    later = T0 + 10 * DAY
    stale = after_attempt(message(attempts=3), BUSY, later, policy, most)
    assert stale.state is DeliveryState.dead
    fresh = message(attempts=3, retrying_since=later)
    again = after_attempt(fresh, BUSY, later, policy, most)
    assert again.state is DeliveryState.pending and again.next_attempt_at == later + 8
    assert again.attempts == 4  # attempts keep counting across redeliveries


@pytest.mark.parametrize(
    "options",
    [
        {"base": 0.0},
        {"base": 10.0, "cap": 5.0},
        {"window": 0.0},
        {"window": float("inf")},
        {"cap": float("inf")},
        {"base": float("nan")},
    ],
)
def test_bad_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**options)
