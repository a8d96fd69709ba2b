"""The audit log in PostgreSQL: chained appends under a table lock, paged reads.

The table is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE, and the hash chain
shows whoever drops it and edits rows anyway (see `seatguard.audit`). `detail` is `text`,
never `jsonb`, which would rewrite numbers and so break the hashes; `at` is a double.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..audit import GENESIS, AuditEvent, AuditRecord, chain
from .rows import AUDIT_COLUMNS, audit_records, audit_row

__all__ = ["SCHEMA", "SITE_INDEX", "AuditPostgres", "refuse_nul"]

SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE audit (
        seq bigint PRIMARY KEY,  -- 1, 2, 3, ... without gaps
        prev text NOT NULL,  -- hash of record seq - 1, 64 zeros for the first
        hash text NOT NULL,  -- HMAC-SHA256 of the canonical bytes, hex
        at double precision NOT NULL,  -- seconds since the epoch
        site text NOT NULL,
        user_id text NOT NULL,
        session text,
        device text,
        ip text,
        kind text NOT NULL,
        reason text,
        detail text NOT NULL  -- a flat JSON object, as written (never jsonb)
    )
    """,
    "CREATE INDEX audit_site_user ON audit (site, user_id, seq)",
    """
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only()
    """,
    """
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only()
    """,
    """
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()
    """,
)
"""Schema steps, one statement each, to run in order as migrations."""

SITE_INDEX: tuple[str, ...] = ("CREATE INDEX audit_site_seq ON audit (site, seq)",)
"""A migration: a site's rows in seq order (its audit trail and event stream) read from
an index, not by walking every site's rows after the first one wanted."""

_INSERT = (
    f"INSERT INTO audit ({AUDIT_COLUMNS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(AUDIT_COLUMNS.split(',')) + 1))})"
)
_LAST = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
_PAGE = 500


class AuditPostgres:
    """The audit table over an asyncpg pool its owner opens and closes.

    An append takes `SHARE ROW EXCLUSIVE` on the table for its transaction: appends in every
    process queue there (readers do not), and appends through one `AuditPostgres` queue
    first on its lock, so that they hold one pool connection, not all of them.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool  # an asyncpg.Pool
        self._lock = asyncio.Lock()

    async def append(self, events: Sequence[AuditEvent], key: bytes) -> list[AuditRecord]:
        """Chain `events` after the last record and store them in one transaction.

        Once this returns the records are committed: killing the process loses none. On any
        error, including an invalid event (ValueError), nothing is stored.
        """
        if not events:
            return []
        records: list[AuditRecord] = []
        async with self._lock, self._pool.acquire() as conn, conn.transaction():
            # Every appender in every process waits here; the lock goes with the transaction.
            await conn.execute("LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE")
            last = await conn.fetchrow(_LAST)
            seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
            for event in events:
                seq += 1
                record = chain(prev, seq, event, key)
                e = record.event
                refuse_nul(
                    site=e.site,
                    user=e.user,
                    session=e.session,
                    device=e.device,
                    ip=e.ip,
                    reason=e.reason,
                )
                records.append(record)
                prev = record.hash
            await conn.executemany(_INSERT, [audit_row(r) for r in records])
        return records

    async def records(
        self,
        *,
        site: str | None = None,
        user: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Records after `after_seq` in seq order, of one site and user if given."""
        if limit < 1:
            raise ValueError(f"limit must be positive, not {limit}")
        where: list[str] = ["seq > $1"]
        args: list[object] = [after_seq]
        for column, value in (("site", site), ("user_id", user)):
            if value is not None:
                if "\x00" in value:
                    return []  # no stored text holds one
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        args.append(limit)
        sql = (
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(where)} "
            f"ORDER BY seq LIMIT ${len(args)}"
        )
        return audit_records(await self._pool.fetch(sql, *args))

    async def all_records(self) -> AsyncIterator[AuditRecord]:
        """Every record in storage order, read a page at a time (for `verify`)."""
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq LIMIT $1"
        rows = audit_records(await self._pool.fetch(sql, _PAGE))
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
        while rows:
            for record in rows:
                yield record
            if len(rows) < _PAGE:
                return
            rows = audit_records(await self._pool.fetch(sql, rows[-1].seq, _PAGE))

    async def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record, to keep outside as an anchor; None when empty."""
        row = await self._pool.fetchrow(_LAST)
        return (int(row[0]), str(row[1])) if row else None


def refuse_nul(**values: object) -> None:
    """ValueError for text PostgreSQL cannot store: it has no NUL character in `text`."""
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{name} cannot contain a NUL character")
