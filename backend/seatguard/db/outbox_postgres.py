"""The webhook outbox in PostgreSQL, shared by the nodes of a cluster.

A claim locks the due rows it takes with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
on other nodes pass over them instead of waiting, and one that reads a row another claim
has just committed finds, on re-reading it, that it is no longer unclaimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..outbox import Backlog, Completion, Delivery, DeliveryState
from ..webhooks import EventType
from .audit_postgres import refuse_nul
from .rows import (
    BACKLOG,
    OUTBOX_COLUMNS,
    backlog_from,
    deliveries_filter,
    delivery_from_row,
    delivery_row,
    outbox_schema,
)

__all__ = ["SCHEMA", "OutboxPostgres"]

SCHEMA = outbox_schema("bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
"""The outbox table and its indexes, as one migration step."""

_COLUMNS = OUTBOX_COLUMNS.split(", ")
_READ = ", ".join(f"o.{c}" for c in [*_COLUMNS, "seq"])
_INSERT = (
    f"INSERT INTO webhook_outbox ({OUTBOX_COLUMNS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))})"
)
_CLAIM = f"""
WITH due AS (
    SELECT seq FROM webhook_outbox
    WHERE state = 'pending' AND next_attempt_at <= $1
      AND (claimed_until IS NULL OR claimed_until <= $1)
    ORDER BY next_attempt_at, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_outbox AS o SET claimed_by = $3, claimed_until = $1 + $4
FROM due WHERE o.seq = due.seq
RETURNING {_READ}
"""


class OutboxPostgres:
    """The outbox on the database's pool."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool  # an asyncpg.Pool

    async def add(self, deliveries: Sequence[Delivery]) -> None:
        rows = [delivery_row(d) for d in deliveries]
        for row in rows:
            refuse_nul(**dict(zip(_COLUMNS, row, strict=True)))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT, rows)

    async def claim(self, node: str, now: float, lease: float, limit: int) -> list[Delivery]:
        refuse_nul(node=node)
        rows = await self.pool.fetch(_CLAIM, now, limit, node, float(lease))
        claimed = [delivery_from_row(r) for r in rows]
        return sorted(claimed, key=lambda d: (d.next_attempt_at, d.seq))

    async def complete(self, claimed: Delivery, done: Completion) -> bool:
        refuse_nul(last_error=done.last_error)
        status = await self.pool.execute(
            "UPDATE webhook_outbox SET state = $1, attempts = $2, next_attempt_at = $3, "
            "last_status = $4, last_error = $5, updated_at = $6, claimed_by = NULL, "
            "claimed_until = NULL WHERE id = $7 AND claimed_by = $8 AND claimed_until = $9",
            done.state.value,
            done.attempts,
            done.next_attempt_at,
            done.last_status,
            done.last_error,
            done.at,
            claimed.id,
            claimed.claimed_by,
            claimed.claimed_until,
        )
        return str(status) == "UPDATE 1"

    async def release(self, node: str) -> None:
        if "\x00" in node:
            return
        await self.pool.execute(
            "UPDATE webhook_outbox SET claimed_by = NULL, claimed_until = NULL "
            "WHERE claimed_by = $1",
            node,
        )

    async def redeliver(self, site: str, id: str, now: float) -> Delivery | None:
        if "\x00" in site + id:
            return None
        row = await self.pool.fetchrow(
            "UPDATE webhook_outbox AS o SET state = 'pending', next_attempt_at = $1, "
            "retrying_since = $1, updated_at = $1, claimed_by = NULL, claimed_until = NULL "
            f"WHERE site = $2 AND id = $3 RETURNING {_READ}",
            now,
            site,
            id,
        )
        return None if row is None else delivery_from_row(row)

    async def backlog(self) -> Backlog:
        return backlog_from(await self.pool.fetch(BACKLOG))

    async def deliveries(
        self,
        site: str,
        *,
        state: DeliveryState | None = None,
        event: EventType | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        if "\x00" in site:
            return []
        where, args = deliveries_filter(state, event, before, lambda n: f"${n}")
        rows = await self.pool.fetch(
            f"SELECT {_READ} FROM webhook_outbox AS o WHERE site = $1{where} "
            f"ORDER BY seq DESC LIMIT ${len(args) + 2}",
            site,
            *args,
            limit,
        )
        return [delivery_from_row(r) for r in rows]
