"""Group commit for the audit log: appends of many callers, written in one transaction.

Every change is written down before anyone is told, and the chain serializes writers, so
one transaction per change would cap a node at the database's commit rate. Callers that
arrive while a write is under way form the next batch; each still returns only once its
own rows are committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..db import AuditLog
from .records import AuditEvent, AuditRecord

__all__ = ["AuditBatcher"]

_MAX_EVENTS = 2000  # rows per transaction at most

_Pending = tuple[Sequence[AuditEvent], "asyncio.Future[list[AuditRecord]]"]


class AuditBatcher:
    """`await append(events)` like `AuditLog.append`, batched with concurrent callers."""

    def __init__(self, audit: AuditLog, key: bytes) -> None:
        self._audit = audit
        self._key = key
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        future: asyncio.Future[list[AuditRecord]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._pending:
                batch: list[_Pending] = []
                size = 0
                while self._pending and (
                    not batch or size + len(self._pending[0][0]) <= _MAX_EVENTS
                ):
                    item = self._pending.pop(0)
                    batch.append(item)
                    size += len(item[0])
                await self._commit(batch)
        finally:
            self._writer = None

    async def _commit(self, batch: list[_Pending]) -> None:
        events = [e for evs, _ in batch for e in evs]
        try:
            records = await self._audit.append(events, self._key)
        except ValueError:
            # Some caller's event is invalid: nothing was stored; write each caller alone so
            # only that one fails.
            for evs, future in batch:
                try:
                    alone = await self._audit.append(evs, self._key)
                except Exception as exc:
                    _fail(future, exc)
                else:
                    _done(future, alone)
            return
        except Exception as exc:
            for _, future in batch:
                _fail(future, exc)
            return
        start = 0
        for evs, future in batch:
            _done(future, records[start : start + len(evs)])
            start += len(evs)


def _done(future: asyncio.Future[list[AuditRecord]], records: list[AuditRecord]) -> None:
    if not future.done():
        future.set_result(records)


def _fail(future: asyncio.Future[list[AuditRecord]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
