"""The webhook outbox in SQLite: each claim, completion and redelivery is one statement,
so it is atomic under the file's write lock, across connections and processes."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from ..outbox import Backlog, Completion, Delivery, DeliveryState
from ..webhooks import EventType
from .rows import (
    BACKLOG,
    OUTBOX_COLUMNS,
    backlog_from,
    deliveries_filter,
    delivery_from_row,
    delivery_row,
    outbox_schema,
)

__all__ = ["SCHEMA", "OutboxSqlite"]

SCHEMA = outbox_schema("INTEGER PRIMARY KEY AUTOINCREMENT")  # never reused, even after deletes
"""The outbox table and its indexes, as one migration step."""

_READ = OUTBOX_COLUMNS + ", seq"
_INSERT = f"INSERT INTO webhook_outbox ({OUTBOX_COLUMNS}) VALUES "
_ROW = f"({', '.join('?' for _ in OUTBOX_COLUMNS.split(','))})"


class OutboxSqlite:
    """The outbox on the database's main connection (autocommit: one statement, one
    transaction)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def add(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        # One statement, so all or none without a transaction of its own on the shared
        # connection.
        values = ", ".join(_ROW for _ in deliveries)
        await self.conn.execute(_INSERT + values, [x for d in deliveries for x in delivery_row(d)])

    async def claim(self, node: str, now: float, lease: float, limit: int) -> list[Delivery]:
        rows = await self.conn.execute_fetchall(
            "UPDATE webhook_outbox SET claimed_by = ?, claimed_until = ? WHERE seq IN ("
            "SELECT seq FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? "
            "AND (claimed_until IS NULL OR claimed_until <= ?) "
            f"ORDER BY next_attempt_at, seq LIMIT ?) RETURNING {_READ}",
            (node, now + lease, now, now, limit),
        )
        claimed = [delivery_from_row(r) for r in rows]
        return sorted(claimed, key=lambda d: (d.next_attempt_at, d.seq))

    async def complete(self, claimed: Delivery, done: Completion) -> bool:
        cur = await self.conn.execute(
            "UPDATE webhook_outbox SET state = ?, attempts = ?, next_attempt_at = ?, "
            "last_status = ?, last_error = ?, updated_at = ?, claimed_by = NULL, "
            "claimed_until = NULL WHERE id = ? AND claimed_by = ? AND claimed_until = ?",
            (
                done.state.value,
                done.attempts,
                done.next_attempt_at,
                done.last_status,
                done.last_error,
                done.at,
                claimed.id,
                claimed.claimed_by,
                claimed.claimed_until,
            ),
        )
        return cur.rowcount == 1

    async def release(self, node: str) -> None:
        await self.conn.execute(
            "UPDATE webhook_outbox SET claimed_by = NULL, claimed_until = NULL "
            "WHERE claimed_by = ?",
            (node,),
        )

    async def redeliver(self, site: str, id: str, now: float) -> Delivery | None:
        rows = await self.conn.execute_fetchall(
            "UPDATE webhook_outbox SET state = 'pending', next_attempt_at = ?, "
            "retrying_since = ?, updated_at = ?, claimed_by = NULL, claimed_until = NULL "
            f"WHERE site = ? AND id = ? RETURNING {_READ}",
            (now, now, now, site, id),
        )
        return next((delivery_from_row(r) for r in rows), None)

    async def backlog(self) -> Backlog:
        return backlog_from(await self.conn.execute_fetchall(BACKLOG))

    async def deliveries(
        self,
        site: str,
        *,
        state: DeliveryState | None = None,
        event: EventType | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        where, args = deliveries_filter(state, event, before, lambda n: "?")
        rows = await self.conn.execute_fetchall(
            f"SELECT {_READ} FROM webhook_outbox WHERE site = ?{where} ORDER BY seq DESC LIMIT ?",
            (site, *args, limit),
        )
        return [delivery_from_row(r) for r in rows]
