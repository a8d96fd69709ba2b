"""Sites and overrides in an embedded SQLite file, through aiosqlite."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import aiosqlite

from ..rules import Override, Scope
from ..sites import Site
from .audit_sqlite import SCHEMA as AUDIT_SCHEMA
from .audit_sqlite import AuditSqlite
from .rows import (
    OVERRIDE_COLUMNS,
    SITE_COLUMNS,
    override_from_row,
    override_row,
    site_from_row,
    site_row,
)

__all__ = ["MIGRATIONS", "SqliteDatabase"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE sites (
            key TEXT PRIMARY KEY,
            secret TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            origins TEXT NOT NULL,
            mode TEXT NOT NULL,
            seat_limit INTEGER NOT NULL,
            policy TEXT NOT NULL,
            client_settings INTEGER NOT NULL,
            created_at REAL NOT NULL
        )
        """,
    ),
    (
        "ALTER TABLE sites ADD COLUMN idle_timeout REAL",
        "ALTER TABLE sites ADD COLUMN absolute_timeout REAL",
        "ALTER TABLE sites ADD COLUMN config TEXT NOT NULL DEFAULT '{}'",
        """
        CREATE TABLE overrides (
            site TEXT NOT NULL REFERENCES sites(key) ON DELETE CASCADE,
            scope TEXT NOT NULL CHECK (scope IN ('org', 'role', 'user')),
            name TEXT NOT NULL,
            mode TEXT,
            seat_limit INTEGER,
            policy TEXT,
            idle_timeout REAL,
            absolute_timeout REAL,
            PRIMARY KEY (site, scope, name)
        )
        """,
    ),
    AUDIT_SCHEMA,
)
"""Schema steps in order; `PRAGMA user_version` records how many have run."""


class SqliteDatabase:
    """The embedded database. Open with `await SqliteDatabase.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection, audit_conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._audit_conn = audit_conn
        self.audit = AuditSqlite(audit_conn)  # the audit log, on a connection of its own

    @classmethod
    async def open(cls, path: str, *, setup_timeout: float = 30.0) -> SqliteDatabase:
        """Connect and migrate; processes opening one new file at once take turns.

        Switching a new file to WAL and migrating it need locks that another opener may
        hold, and SQLite reports some of those conflicts as "database is locked" at once
        instead of waiting. Setup therefore retries with jittered backoff, with every
        connection of a failed try closed, for up to `setup_timeout` seconds.
        """
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + setup_timeout
        delay = 0.01
        while True:
            opened: list[aiosqlite.Connection] = []
            try:
                opened.append(await _connect(path, _SETUP_BUSY_MS))
                if path != ":memory:":
                    opened.append(await _connect(path, _SETUP_BUSY_MS))
                db = cls(opened[0], opened[-1])
                await db._migrate()
                for conn in opened:
                    await conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
                return db
            except sqlite3.OperationalError as exc:
                for conn in opened:
                    await conn.close()
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            except BaseException:
                for conn in opened:
                    await conn.close()
                raise
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 0.5)

    async def close(self) -> None:
        if self._audit_conn is not self.conn:
            await self._audit_conn.close()
        await self.conn.close()

    async def _migrate(self) -> None:
        await self.conn.execute("BEGIN IMMEDIATE")
        try:
            async with self.conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            done = row[0] if row else 0
            for i, step in enumerate(MIGRATIONS[done:], start=done + 1):
                for statement in step:
                    await self.conn.execute(statement)
                await self.conn.execute(f"PRAGMA user_version={i}")
            await self.conn.execute("COMMIT")
        except BaseException:
            await self.conn.execute("ROLLBACK")
            raise

    async def add_site(self, site: Site) -> None:
        await self.conn.execute(
            f"INSERT INTO sites ({SITE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            site_row(site),
        )

    async def update_site(self, site: Site) -> None:
        """Replace a site's settings (keys and creation time stay)."""
        row = site_row(site)
        await self.conn.execute(
            "UPDATE sites SET name=?, origins=?, mode=?, seat_limit=?, policy=?, "
            "client_settings=?, idle_timeout=?, absolute_timeout=?, config=? WHERE key=?",
            (*row[2:8], *row[9:], site.key),
        )

    async def site(self, key: str) -> Site | None:
        sql = f"SELECT {SITE_COLUMNS} FROM sites WHERE key = ?"
        async with self.conn.execute(sql, (key,)) as cur:
            row = await cur.fetchone()
        return site_from_row(row) if row else None

    async def site_by_secret(self, secret: str) -> Site | None:
        sql = f"SELECT {SITE_COLUMNS} FROM sites WHERE secret = ?"
        async with self.conn.execute(sql, (secret,)) as cur:
            row = await cur.fetchone()
        return site_from_row(row) if row else None

    async def sites(self) -> list[Site]:
        sql = f"SELECT {SITE_COLUMNS} FROM sites ORDER BY created_at"
        async with self.conn.execute(sql) as cur:
            rows = await cur.fetchall()
        return [site_from_row(r) for r in rows]

    async def set_override(self, site: str, override: Override) -> None:
        await self.conn.execute(
            f"INSERT OR REPLACE INTO overrides (site, {OVERRIDE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
            override_row(site, override),
        )

    async def delete_override(self, site: str, scope: Scope, name: str) -> bool:
        cur = await self.conn.execute(
            "DELETE FROM overrides WHERE site=? AND scope=? AND name=?", (site, scope, name)
        )
        return cur.rowcount > 0

    async def overrides(
        self, site: str, wanted: Mapping[Scope, str | None] | None = None
    ) -> dict[tuple[Scope, str], Override]:
        """A site's overrides; with `wanted`, only those for the given org, role and user."""
        sql = f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE site = ?"
        args: list[object] = [site]
        if wanted is not None:
            pairs = [(scope, name) for scope, name in wanted.items() if name]
            if not pairs:
                return {}
            sql += " AND (" + " OR ".join("(scope=? AND name=?)" for _ in pairs) + ")"
            args += [x for pair in pairs for x in pair]
        async with self.conn.execute(sql, args) as cur:
            rows = await cur.fetchall()
        found = [override_from_row(r) for r in rows]
        return {(o.scope, o.name): o for o in found}


_BUSY_MS = 10_000  # how long a statement waits for another connection's lock
_SETUP_BUSY_MS = 250  # the same during setup, which retries instead


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc)
    return "locked" in message or "busy" in message


async def _connect(path: str, busy_ms: int) -> aiosqlite.Connection:
    """A connection in autocommit mode; transactions are explicit (BEGIN IMMEDIATE)."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout={busy_ms}")  # first: the next pragma may wait
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        await conn.close()
        raise
    return conn
