"""Keys with due times, and one lock per key."""

from __future__ import annotations

import asyncio
import weakref

import pytest

from seatguard.deadlines import Deadlines
from seatguard.serial import KeyedLock


def test_keys_pop_when_due_soonest_first() -> None:
    d: Deadlines[str] = Deadlines()
    d.set("b", 2.0)
    d.set("a", 1.0)
    d.set("c", 3.0)
    assert d.pop_due(0.5) == []
    assert d.pop_due(2.0) == ["a", "b"]
    assert "c" in d and len(d) == 1


def test_setting_a_key_again_replaces_its_time() -> None:
    d: Deadlines[str] = Deadlines()
    d.set("a", 1.0)
    d.set("a", 5.0)
    assert d.pop_due(4.0) == []
    assert d.pop_due(5.0) == ["a"]
    d.set("a", 1.0)
    d.set("a", None)
    assert d.pop_due(10.0) == [] and len(d) == 0


def test_set_earlier_only_moves_a_time_forward() -> None:
    d: Deadlines[str] = Deadlines()
    d.set_earlier("a", 5.0)
    d.set_earlier("a", 7.0)
    assert d.get("a") == 5.0
    d.set_earlier("a", 2.0)
    assert d.get("a") == 2.0


def test_many_replacements_do_not_grow_without_bound() -> None:
    d: Deadlines[int] = Deadlines()
    for i in range(10_000):
        d.set(i % 10, float(i))
    assert len(d._heap) <= 2 * len(d) + 65
    assert sorted(d.pop_due(1e9)) == list(range(10))


class Held:
    """A key that can be watched for being let go of."""


def test_forgotten_keys_are_let_go_of_before_their_time_comes() -> None:
    # Ten thousand tabs due in a minute all leave: the queue keeps no reference to most of
    # them (a node's seat-token renewals are keyed by tabs, which hold their sockets).
    d: Deadlines[Held] = Deadlines()
    keys = [Held() for _ in range(10_000)]
    for key in keys:
        d.set(key, 60.0)
    refs = [weakref.ref(k) for k in keys]
    for key in keys:
        d.set(key, None)
    del keys, key
    assert len(d) == 0
    assert sum(r() is not None for r in refs) <= 64
    assert d.pop_due(1e9) == []


@pytest.mark.anyio
async def test_one_holder_at_a_time_per_key_and_locks_are_forgotten() -> None:
    locks: KeyedLock[str] = KeyedLock()
    order: list[str] = []

    async def hold(key: str, name: str) -> None:
        async with locks(key):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(hold("k", "1"), hold("k", "2"), hold("other", "3"))
    assert order.index("1-") < order.index("2+")
    assert len(locks) == 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
