"""Group commit of audit appends, on a real SQLite audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from seatguard.audit import AuditEvent, AuditKind, AuditRecord, verify
from seatguard.audit.batch import AuditBatcher
from seatguard.db import AuditLog, SqliteDatabase

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))


class Counting:
    """The real audit log, counting its transactions."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self.appends: list[int] = []

    async def append(self, events: Sequence[AuditEvent], key: bytes) -> list[AuditRecord]:
        self.appends.append(len(events))
        return await self.audit.append(events, key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.audit, name)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await SqliteDatabase.open(str(tmp_path / "audit.db"))
    yield database
    await database.close()


def event(n: int, user: str = "alice") -> AuditEvent:
    return AuditEvent(
        1_700_000_000.0 + n, "site", user, f"s{n}", "d", None, AuditKind.created, None
    )


async def test_concurrent_appends_share_transactions_and_each_gets_its_rows(
    db: SqliteDatabase,
) -> None:
    counting = Counting(db.audit)
    batcher = AuditBatcher(counting, KEY)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(batcher.append([event(i), event(i + 1000)]) for i in range(200))
    )
    for i, records in enumerate(results):
        assert [r.event.session for r in records] == [f"s{i}", f"s{i + 1000}"]
    assert sum(counting.appends) == 400
    assert len(counting.appends) < 20  # 200 callers, a handful of transactions
    stored = [r async for r in db.audit.all_records()]
    assert [r.seq for r in stored] == list(range(1, 401))
    assert verify(stored, KEY).ok


async def test_one_bad_event_fails_only_its_caller(db: SqliteDatabase) -> None:
    batcher = AuditBatcher(db.audit, KEY)
    bad = AuditEvent(float("nan"), "site", "bob", "s-bad", None, None, AuditKind.created, None)
    results = await asyncio.gather(
        batcher.append([event(1)]), batcher.append([bad]), batcher.append([event(2)]),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[1], ValueError)
    first, third = results[0], results[2]
    assert isinstance(first, list) and isinstance(third, list)
    assert [len(first), len(third)] == [1, 1]
    assert [r.event.session async for r in db.audit.all_records()] == ["s1", "s2"]
