"""The collector policy over CPython's real garbage collector (global state: each test
hands every object back when it ends)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from seatguard.collector import THRESHOLDS, Collector
from tests.unit.fakes import Clock


class Node:
    """Something that holds itself, as long-lived objects of a server can."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def collector(clock: Clock) -> Iterator[Collector]:
    c = Collector(1.0, 60.0, clock=clock)
    c.start()
    yield c
    c.stop()
    gc.collect()


def test_start_freezes_what_exists_and_stop_hands_it_back(clock: Clock) -> None:
    python_s = gc.get_threshold()
    collector = Collector(1.0, 60.0, clock=clock)
    collector.start()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == THRESHOLDS
    finally:
        collector.stop()
    assert gc.get_freeze_count() == 0
    assert collector.stats().frozen == 0
    assert gc.get_threshold() == python_s


def test_survivors_are_frozen_once_the_interval_has_passed(
    collector: Collector, clock: Clock
) -> None:
    before = gc.get_freeze_count()
    kept = [Node() for _ in range(500)]
    collector.step()  # not due yet
    assert gc.get_freeze_count() == before
    clock.now += 1.0
    collector.step()
    assert gc.get_freeze_count() >= before + len(kept)


def test_a_cycle_among_frozen_objects_is_found_by_the_full_pass(
    collector: Collector, clock: Clock
) -> None:
    cycles = [Node() for _ in range(100)]
    clock.now += 1.0
    collector.step()  # frozen while alive
    del cycles
    assert gc.collect() < 100  # out of the collector's reach
    clock.now += 60.0
    collector.step()  # the full pass is due
    stats = collector.stats()
    assert stats.full_passes == 1
    assert stats.last_found is not None and stats.last_found >= 100
    assert stats.last_full_ms is not None and stats.last_full_ms >= 0
    assert gc.get_freeze_count() > 0  # and everything alive is frozen again


def test_every_collection_is_counted_and_the_longest_pause_kept(collector: Collector) -> None:
    before = collector.stats().collections
    gc.collect(0)
    gc.collect(1)
    stats = collector.stats()
    assert stats.collections == before + 2
    assert stats.longest_pause_ms > 0


def test_an_interval_of_zero_leaves_the_collector_as_python_ships(clock: Clock) -> None:
    c = Collector(0.0, 0.0, clock=clock)
    c.start()
    try:
        frozen = gc.get_freeze_count()
        kept = [Node() for _ in range(100)]
        clock.now += 10_000
        c.step()
        assert gc.get_freeze_count() == frozen and kept
        assert gc.get_threshold() != THRESHOLDS
        assert c.stats().full_passes == 0
    finally:
        c.stop()


def test_negative_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        Collector(-1.0, 60.0)
    with pytest.raises(ValueError):
        Collector(1.0, -60.0)
