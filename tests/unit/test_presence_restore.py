"""A store that lost a user (Redis restarted empty): seats kept for their holders while
the nodes write their tabs again, in whatever order they come back."""

from __future__ import annotations

import pytest

from seatguard.presence import (
    Arrival,
    Rules,
    SeatState,
    Timing,
    UserPresence,
    expire,
    join,
    next_deadline,
    restore,
)
from seatguard.protocol import BlockReason
from seatguard.store import MemoryStore
from tests.unit.fakes import Clock

A, B = SeatState.admitted, SeatState.blocked
TIMING = Timing(session_timeout=30.0, reload_grace=5.0)
WINDOW = 10.0  # the nodes' lease


def rejoin(
    up: UserPresence,
    session: str,
    now: float,
    held: float | None,
    *,
    rules: Rules | None = None,
    device: str | None = None,
) -> SeatState:
    """What a node's sync does for a tab the store lost: restore, then join as it was."""
    restore(up, until=now + WINDOW, now=now)
    arrival = Arrival(session, f"{session}-tab", device or f"{session}-dev")
    join(up, arrival, rules=rules or Rules(), now=now, held=held)
    return up.state(session)


def test_a_waiter_whose_node_writes_first_does_not_take_the_holders_seat() -> None:
    # Before the loss: s1 held the seat since t=5, s2 waited. Redis restarts at t=100; the
    # node of s2 writes first.
    up = UserPresence()
    assert rejoin(up, "s2", 100.2, held=None) is B
    assert up.restoring_until == pytest.approx(110.2)
    assert up.sessions["s2"].reason is BlockReason.limit
    assert rejoin(up, "s1", 100.4, held=5.0) is A
    assert up.seats == {"s1": 5.0}  # seated since as before: the older seat for evictions
    # The window closes; the holder is back, nobody moves.
    outcome = expire(up, TIMING, 110.3)
    assert outcome.transitions == () and up.restoring_until is None
    assert up.states() == {"s1": A, "s2": B}


def test_a_holder_that_never_comes_back_leaves_its_seat_to_the_waiter_after_the_window() -> None:
    up = UserPresence()
    assert rejoin(up, "s2", 100.0, held=None) is B
    assert next_deadline(up, TIMING) == pytest.approx(110.0)
    assert expire(up, TIMING, 109.9).transitions == ()
    outcome = expire(up, TIMING, 110.0)
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


def test_holders_come_back_in_any_order_and_the_oldest_seats_win() -> None:
    # Fail-open: during the outage a node seated s3 on its own (since t=90), while s1 (since
    # t=5) held the seat elsewhere. Limit 1: whoever writes first, s1 keeps the seat.
    for order in (["s3", "s1"], ["s1", "s3"]):
        up = UserPresence()
        held = {"s1": 5.0, "s3": 90.0}
        for i, session in enumerate(order):
            rejoin(up, session, 100.0 + i, held=held[session])
        assert up.states() == {"s1": A, "s3": B}, order
        assert up.sessions["s3"].reason is BlockReason.limit


def test_two_holders_of_a_limit_of_two_both_keep_their_seats() -> None:
    rules = Rules(limit=2)
    up = UserPresence()
    assert rejoin(up, "w", 100.0, held=None, rules=rules) is B
    assert rejoin(up, "h1", 100.1, held=7.0, rules=rules) is A
    assert rejoin(up, "h2", 100.2, held=3.0, rules=rules) is A
    assert len(up.seats) == 2


def test_a_newcomer_during_the_window_waits_even_where_it_would_evict() -> None:
    rules = Rules(policy="evict-oldest")
    up = UserPresence()
    rejoin(up, "w", 100.0, held=None, rules=rules)
    fresh = join(up, Arrival("new", "t", "d"), rules=rules, now=101.0)
    assert up.state("new") is B and fresh.conflicts == ()
    assert up.seats == {}  # the free seat stays kept for the holder
    assert rejoin(up, "h", 102.0, held=1.0, rules=rules) is A


def test_device_limit_restores_seats_by_device() -> None:
    rules = Rules(mode="device-limit", limit=1)
    up = UserPresence()
    assert rejoin(up, "other", 100.0, held=None, rules=rules, device="laptop-2") is B
    assert rejoin(up, "s1", 100.1, held=4.0, rules=rules, device="laptop-1") is A
    assert rejoin(up, "s2", 100.2, held=4.0, rules=rules, device="laptop-1") is A
    assert up.seats == {"laptop-1": 4.0}


def test_a_snapshot_the_store_still_holds_is_not_restored() -> None:
    # Only the loss of everything opens the window: a tab missing from a live snapshot (a
    # dropped write) joins as any newcomer would, without a claim on a seat.
    up = UserPresence()
    join(up, Arrival("s1", "t1", "d1"), rules=Rules(), now=0.0)
    assert rejoin(up, "s2", 1.0, held=0.5) is B
    assert up.restoring_until is None and up.seats == {"s1": 0.0}


def test_a_claim_is_ignored_once_the_window_closed() -> None:
    up = UserPresence()
    rejoin(up, "w", 100.0, held=None)
    expire(up, TIMING, 111.0)  # w gets the free seat
    assert rejoin(up, "late", 112.0, held=1.0) is B
    assert up.states()["w"] is A


def test_the_memory_store_numbers_decisions_by_the_clock_in_microseconds() -> None:
    # Decisions made on a node alone while Redis is away fall in order between Redis's own,
    # which are numbered the same way.
    clock = Clock(1000.0)
    store = MemoryStore(clock)
    key = ("pk", "alice")
    arrival = Arrival("s1", "t1", "d1")
    store.update_now(key, lambda up, now: join(up, arrival, rules=Rules(), now=now))
    seqs = [store.update_now(key, lambda up, now: up.seq)]  # the same microsecond: still rises
    clock.now += 0.5
    seqs.append(store.update_now(key, lambda up, now: up.seq))
    assert seqs == [1_000_000_001, 1_000_500_000]
