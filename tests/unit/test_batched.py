"""Reads waiting together share one query per site (`lookups.Batched`), and a failed query
fails exactly the reads that waited for it."""

from __future__ import annotations

import asyncio

import pytest

from seatguard.lookups import Batched

pytestmark = pytest.mark.anyio


class Source:
    def __init__(self, fail_for: str = "") -> None:
        self.queries: list[tuple[str, list[str]]] = []
        self.fail_for = fail_for

    async def fetch(self, site: str, items: list[str]) -> dict[str, int]:
        self.queries.append((site, items))
        await asyncio.sleep(0)
        if site == self.fail_for:
            raise OSError("database gone")
        return {i: len(i) for i in items if not i.startswith("x")}


async def test_reads_waiting_together_share_one_query_per_site() -> None:
    source = Source()
    batch: Batched[int] = Batched(source.fetch, -1)
    got = await asyncio.gather(
        batch.get("a", "one"), batch.get("a", "three"), batch.get("b", "xx"),
        batch.get("a", "one"),
    )  # fmt: skip
    assert list(got) == [3, 5, -1, 3]
    assert source.queries == [("a", ["one", "three"]), ("b", ["xx"])]
    assert await batch.get("a", "four") == 4  # a later read: a query of its own
    assert source.queries[-1] == ("a", ["four"])


async def test_a_failed_query_fails_its_own_reads_only() -> None:
    source = Source(fail_for="bad")
    batch: Batched[int] = Batched(source.fetch, -1)
    good, bad = await asyncio.gather(
        batch.get("good", "yes"), batch.get("bad", "no"), return_exceptions=True
    )
    assert good == 3 and isinstance(bad, OSError)
    source.fail_for = ""  # the batcher goes on: the next read gets a query of its own
    assert await batch.get("bad", "again") == 5


async def test_reads_that_arrive_while_a_query_runs_are_served_next() -> None:
    source = Source()
    batch: Batched[int] = Batched(source.fetch, -1)
    first = asyncio.ensure_future(batch.get("a", "one"))
    await asyncio.sleep(0)  # the query for `one` is under way
    second = asyncio.ensure_future(batch.get("a", "seven"))
    assert (await first, await second) == (3, 5)
    assert source.queries == [("a", ["one"]), ("a", ["seven"])]
