"""The audit log in SQLite: chained appends under the database's write lock, paged reads.

The table is append-only: triggers refuse UPDATE and DELETE, and the hash chain shows
whoever drops them and edits rows anyway (see `seatguard.audit`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence

import aiosqlite

from ..audit import GENESIS, AuditEvent, AuditRecord, chain
from .rows import AUDIT_COLUMNS as _COLUMNS
from .rows import audit_records as _records
from .rows import audit_row as _row

__all__ = ["SCHEMA", "SITE_INDEX", "AuditSqlite"]

SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,  -- 1, 2, 3, ... without gaps
        prev TEXT NOT NULL,  -- hash of record seq - 1, 64 zeros for the first
        hash TEXT NOT NULL,  -- HMAC-SHA256 of the canonical bytes, hex
        at REAL NOT NULL,  -- seconds since the epoch
        site TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session TEXT,
        device TEXT,
        ip TEXT,
        kind TEXT NOT NULL,
        reason TEXT,
        detail TEXT NOT NULL  -- a flat JSON object, as written
    )
    """,
    "CREATE INDEX audit_site_user ON audit (site, user_id, seq)",
    """
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
    """
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
)
"""Schema steps, one statement each, to run in order as migrations."""

SITE_INDEX: tuple[str, ...] = ("CREATE INDEX audit_site_seq ON audit (site, seq)",)
"""A migration: a site's rows in seq order (its audit trail and event stream) read from
an index, not by walking every site's rows after the first one wanted."""

_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' for _ in _COLUMNS.split(','))})"
_PAGE = 500


def _append_now(
    conn: sqlite3.Connection,
    events: Sequence[AuditEvent],
    key: bytes,
    cancelled: threading.Event,
) -> list[AuditRecord]:
    """One append transaction, on the connection's own thread (see `AuditSqlite.append`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if cancelled.is_set():
            raise _GaveUp
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
        records: list[AuditRecord] = []
        for event in events:
            seq += 1
            record = chain(prev, seq, event, key)
            records.append(record)
            prev = record.hash
        conn.executemany(_INSERT, [_row(r) for r in records])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return records


class _GaveUp(Exception):
    """The caller of an append was cancelled before it got the write lock."""


class AuditSqlite:
    """The audit table over a connection its owner opens, configures and closes.

    Appends take SQLite's write lock with `BEGIN IMMEDIATE`, so writers in other processes
    queue on the file (for up to the connection's `busy_timeout`), and appends through one
    `AuditSqlite` queue on its lock. An append needs the connection outside any transaction
    (RuntimeError otherwise), so give the audit log a connection of its own.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    async def append(self, events: Sequence[AuditEvent], key: bytes) -> list[AuditRecord]:
        """Chain `events` after the last record and store them in one transaction.

        Once this returns the records are committed: killing the process loses none. On any
        error, including an invalid event (ValueError), nothing is stored.
        """
        if not events:
            return []
        async with self._lock:
            if self._conn.in_transaction:
                raise RuntimeError("the audit connection is inside another transaction")
            # The whole transaction runs in one go on the connection's thread: one hop
            # instead of five. A caller that gives up while the write lock is busy leaves
            # `cancelled` set, and the transaction, once it has the lock, stores nothing.
            cancelled = threading.Event()
            try:
                # aiosqlite's own way to run a function on its thread (stable since 0.17).
                records: list[AuditRecord] = await self._conn._execute(  # type: ignore[no-untyped-call]
                    _append_now, self._conn._conn, events, key, cancelled
                )
            except asyncio.CancelledError:
                cancelled.set()
                raise
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
        where: list[str] = ["seq > ?"]
        args: list[object] = [after_seq]
        for column, value in (("site", site), ("user_id", user)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        return _records(await self._conn.execute_fetchall(sql, (*args, limit)))

    async def all_records(self) -> AsyncIterator[AuditRecord]:
        """Every record in storage order, read a page at a time (for `verify`)."""
        sql = f"SELECT {_COLUMNS} FROM audit ORDER BY seq LIMIT ?"
        rows = _records(await self._conn.execute_fetchall(sql, (_PAGE,)))
        sql = f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"
        while rows:
            for record in rows:
                yield record
            if len(rows) < _PAGE:
                return
            rows = _records(await self._conn.execute_fetchall(sql, (rows[-1].seq, _PAGE)))

    async def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record, to keep outside as an anchor; None when empty."""
        return await self._last()

    async def _last(self) -> tuple[int, str] | None:
        sql = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
        async with self._conn.execute(sql) as cur:
            row = await cur.fetchone()
        return (int(row[0]), str(row[1])) if row else None
