"""Sites, overrides, revocations, used token ids and the webhook outbox in an embedded
SQLite file (aiosqlite)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import aiosqlite

from ..keys import make_private_dirs
from ..rules import Override, Scope
from ..sealing import SecretBox
from ..signals.evaluations import EvaluationRecord
from ..signals.history import Stored
from ..signals.policies import Policy
from ..site_secrets import SecretKind
from ..sites import Site
from ..suspension import Suspension
from .audit_sqlite import SCHEMA as AUDIT_SCHEMA
from .audit_sqlite import SITE_INDEX as AUDIT_SITE_INDEX
from .audit_sqlite import AuditSqlite
from .outbox_sqlite import SCHEMA as OUTBOX_SCHEMA
from .outbox_sqlite import OutboxSqlite
from .rows import (
    EVALUATION_COLUMNS,
    HISTORY_SCHEMA,
    LEGACY_SITES,
    OUTBOX_STATE_INDEX,
    OVERRIDE_COLUMNS,
    POLICIES_SCHEMA,
    REVOCATIONS_SCHEMA,
    SECRET_COLUMNS,
    SECRETS_SCHEMA,
    SETTINGS_COLUMNS,
    SITE_COLUMNS,
    SUSPENSION_COLUMNS,
    SUSPENSIONS_SCHEMA,
    changed_history,
    evaluation_row,
    evaluations_from_rows,
    evaluations_schema,
    history_from_text,
    override_from_row,
    override_row,
    policy_from_text,
    policy_text,
    sealed_legacy,
    settings_row,
    site_from_row,
    site_row,
    suspension_from_row,
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
    REVOCATIONS_SCHEMA,
    SECRETS_SCHEMA,
    OUTBOX_SCHEMA,
    OUTBOX_STATE_INDEX,
    AUDIT_SITE_INDEX,
    SUSPENSIONS_SCHEMA,
    POLICIES_SCHEMA,
    HISTORY_SCHEMA,
    evaluations_schema("INTEGER PRIMARY KEY AUTOINCREMENT"),
)
"""Schema steps in order; `PRAGMA user_version` records how many have run."""


class SqliteDatabase:
    """The embedded database. Open with `await SqliteDatabase.open(path)`."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        audit_conn: aiosqlite.Connection,
        box: SecretBox | None = None,
    ) -> None:
        self.conn = conn
        self._box = box  # converts rows written before secrets were sealed, if any
        self._audit_conn = audit_conn
        self.audit = AuditSqlite(audit_conn)  # the audit log, on a connection of its own
        self.outbox = OutboxSqlite(conn)  # the webhook outbox

    @classmethod
    async def open(
        cls, path: str, *, box: SecretBox | None = None, setup_timeout: float = 30.0
    ) -> SqliteDatabase:
        """Connect and migrate; processes opening one new file at once take turns.

        A new file is made readable by its owner only (0600), and so are its `-wal` and
        `-shm` files, which SQLite creates with the main file's mode; missing directories
        are made 0700. The `box` (secrets key) is needed once, to seal the secrets of a
        file from an earlier version.

        Switching a new file to WAL and migrating it need locks that another opener may
        hold, and SQLite reports some of those conflicts as "database is locked" at once
        instead of waiting. Setup therefore retries with jittered backoff, with every
        connection of a failed try closed, for up to `setup_timeout` seconds.
        """
        if path != ":memory:":
            _create_private(Path(path))
        deadline = time.monotonic() + setup_timeout
        delay = 0.01
        while True:
            opened: list[aiosqlite.Connection] = []
            try:
                opened.append(await _connect(path, _SETUP_BUSY_MS))
                if path != ":memory:":
                    opened.append(await _connect(path, _SETUP_BUSY_MS))
                db = cls(opened[0], opened[-1], box)
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
        sealed = False
        try:
            row = _first(await self.conn.execute_fetchall("PRAGMA user_version"))
            done = row[0] if row else 0
            for i, step in enumerate(MIGRATIONS[done:], start=done + 1):
                for statement in step:
                    await self.conn.execute(statement)
                if step is SECRETS_SCHEMA:
                    sealed = await self._seal_legacy()
                await self.conn.execute(f"PRAGMA user_version={i}")
            await self.conn.execute("COMMIT")
        except BaseException:
            await self.conn.execute("ROLLBACK")
            raise
        if sealed:  # the secrets in the clear must not linger in the write-ahead log
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _seal_legacy(self) -> bool:
        """Hash and seal the secrets of rows from before they were; whether there were any.

        Their old cells are overwritten (`secure_delete`), not merely marked free."""
        rows = await self.conn.execute_fetchall(LEGACY_SITES)
        if not rows:
            return False
        await self.conn.execute("PRAGMA secure_delete=ON")
        for key, secret, config in rows:
            digest, identity, webhook, settings = sealed_legacy(
                self._box, str(key), str(secret), str(config)
            )
            await self.conn.execute(
                "UPDATE sites SET secret_hash=?, identity_secret=?, webhook_secret=?, config=? "
                "WHERE key=?",
                (digest, identity, webhook, settings, key),
            )
        return True

    async def add_site(self, site: Site) -> None:
        params = ",".join("?" for _ in SITE_COLUMNS.split(","))
        await self.conn.execute(
            f"INSERT INTO sites ({SITE_COLUMNS}) VALUES ({params})", site_row(site)
        )

    async def update_site(self, site: Site) -> None:
        """Replace a site's settings (keys, secrets and creation time stay)."""
        assignments = ", ".join(f"{c}=?" for c in SETTINGS_COLUMNS.split(", "))
        await self.conn.execute(
            f"UPDATE sites SET {assignments} WHERE key=?", (*settings_row(site), site.key)
        )

    async def site(self, key: str) -> Site | None:
        sql = f"SELECT {SITE_COLUMNS} FROM sites WHERE key = ?"
        row = _first(await self.conn.execute_fetchall(sql, (key,)))
        return site_from_row(row) if row else None

    async def site_by_secret_hash(self, digest: str) -> Site | None:
        sql = f"SELECT {SITE_COLUMNS} FROM sites WHERE secret_hash = ? OR previous_secret_hash = ?"
        row = _first(await self.conn.execute_fetchall(sql, (digest, digest)))
        return site_from_row(row) if row else None

    async def rotate_secret(
        self,
        site: str,
        kind: SecretKind,
        expected: str | None,
        new: str,
        previous_until: float | None,
    ) -> bool:
        current, previous, until = SECRET_COLUMNS[kind]
        cur = await self.conn.execute(
            f"UPDATE sites SET {current}=?, "
            f"{previous}=CASE WHEN ? IS NULL THEN NULL ELSE {current} END, {until}=? "
            f"WHERE key=? AND {current} IS ?",
            (new, previous_until, previous_until, site, expected),
        )
        return cur.rowcount == 1

    async def sites(self) -> list[Site]:
        sql = f"SELECT {SITE_COLUMNS} FROM sites ORDER BY created_at"
        rows = await self.conn.execute_fetchall(sql)
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
        rows = await self.conn.execute_fetchall(sql, args)
        found = [override_from_row(r) for r in rows]
        return {(o.scope, o.name): o for o in found}

    async def policy(self, site: str) -> Policy | None:
        sql = "SELECT document FROM policies WHERE site = ?"
        row = _first(await self.conn.execute_fetchall(sql, (site,)))
        return policy_from_text(row[0]) if row else None

    async def set_policy(self, site: str, policy: Policy) -> None:
        await self.conn.execute(
            "INSERT INTO policies (site, document) VALUES (?, ?) "
            "ON CONFLICT (site) DO UPDATE SET document = excluded.document",
            (site, policy_text(policy)),
        )

    async def history(self, site: str, user: str) -> Stored | None:
        sql = "SELECT document FROM user_history WHERE site = ? AND user_id = ?"
        row = _first(await self.conn.execute_fetchall(sql, (site, user)))
        return history_from_text(row[0]) if row else None

    async def histories(self, site: str, users: Sequence[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        for chunk in _chunks(users):
            sql = (
                "SELECT user_id, document FROM user_history WHERE site = ? "
                f"AND user_id IN ({', '.join('?' for _ in chunk)})"
            )
            for row in await self.conn.execute_fetchall(sql, (site, *chunk)):
                stored = history_from_text(row[1])
                if stored is not None:
                    found[str(row[0])] = stored
        return found

    async def update_history(
        self, site: str, user: str, change: Callable[[Stored | None], Stored | None]
    ) -> Stored | None:
        async def read() -> tuple[int, str] | None:
            sql = "SELECT version, document FROM user_history WHERE site = ? AND user_id = ?"
            row = _first(await self.conn.execute_fetchall(sql, (site, user)))
            return (int(row[0]), str(row[1])) if row else None

        async def write(version: int | None, text: str) -> bool:
            if version is None:
                cur = await self.conn.execute(
                    "INSERT INTO user_history (site, user_id, version, document) "
                    "VALUES (?, ?, 1, ?) ON CONFLICT DO NOTHING",
                    (site, user, text),
                )
            else:
                cur = await self.conn.execute(
                    "UPDATE user_history SET version = version + 1, document = ? "
                    "WHERE site = ? AND user_id = ? AND version = ?",
                    (text, site, user, version),
                )
            return cur.rowcount == 1

        return await changed_history(read, write, change)

    async def add_evaluations(self, records: Sequence[EvaluationRecord]) -> None:
        if not records:
            return
        # One statement, so all or none without a transaction of its own on the shared
        # connection (the writer sends `MAX_BATCH` records at most: 2,500 parameters).
        values = ", ".join("(?,?,?,?,?)" for _ in records)
        await self.conn.execute(
            f"INSERT INTO evaluations ({EVALUATION_COLUMNS}) VALUES {values}",
            [x for r in records for x in evaluation_row(r)],
        )

    async def evaluations(
        self, site: str, user: str, *, limit: int, before: float | None = None
    ) -> list[EvaluationRecord]:
        sql = (
            "SELECT document FROM evaluations WHERE site = ? AND user_id = ? AND at < ? "
            "ORDER BY at DESC, seq DESC LIMIT ?"
        )
        bound = math.inf if before is None else before
        rows = await self.conn.execute_fetchall(sql, (site, user, bound, limit))
        return evaluations_from_rows(rows)

    async def purge_evaluations(self, older_than: float) -> int:
        cur = await self.conn.execute("DELETE FROM evaluations WHERE at < ?", (older_than,))
        return cur.rowcount

    async def remember_token(
        self, site: str, issuer: str, jti: str, until: float, *, now: float
    ) -> bool:
        await self.conn.execute("DELETE FROM seen_tokens WHERE expires_at <= ?", (now,))
        cur = await self.conn.execute(
            "INSERT INTO seen_tokens (site, issuer, jti, expires_at) VALUES (?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (site, issuer, jti, until),
        )
        return cur.rowcount == 1

    async def forget_token(self, site: str, issuer: str, jti: str) -> None:
        await self.conn.execute(
            "DELETE FROM seen_tokens WHERE site=? AND issuer=? AND jti=?", (site, issuer, jti)
        )

    async def add_revocations(
        self, site: str, user: str, sessions: Sequence[str], at: float, until: float
    ) -> None:
        await self.conn.execute("DELETE FROM revoked_sessions WHERE expires_at <= ?", (at,))
        for chunk in _chunks(sessions):
            # One statement per chunk, so that each chunk is stored whole or not at all.
            values = ", ".join("(?,?,?,?,?)" for _ in chunk)
            await self.conn.execute(
                "INSERT INTO revoked_sessions (site, session, user_id, revoked_at, expires_at) "
                f"VALUES {values} ON CONFLICT (site, session) DO UPDATE SET "
                "expires_at = MAX(expires_at, excluded.expires_at)",
                [x for session in chunk for x in (site, session, user, at, until)],
            )

    async def revoked_sessions(self, site: str, sessions: Sequence[str], now: float) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sessions):
            sql = (
                "SELECT session FROM revoked_sessions WHERE site = ? AND expires_at > ? "
                f"AND session IN ({', '.join('?' for _ in chunk)})"
            )
            rows = await self.conn.execute_fetchall(sql, (site, now, *chunk))
            found.update(str(row[0]) for row in rows)
        return found

    async def revoke_user_before(self, site: str, user: str, at: float) -> None:
        await self.conn.execute(
            "INSERT INTO revoked_users (site, user_id, cutoff) VALUES (?,?,?) "
            "ON CONFLICT (site, user_id) DO UPDATE SET cutoff = MAX(cutoff, excluded.cutoff)",
            (site, user, at),
        )

    async def user_revoked_before(self, site: str, user: str) -> float | None:
        sql = "SELECT cutoff FROM revoked_users WHERE site = ? AND user_id = ?"
        row = _first(await self.conn.execute_fetchall(sql, (site, user)))
        return float(row[0]) if row else None

    async def suspend(self, suspension: Suspension) -> tuple[Suspension, bool]:
        cur = await self.conn.execute(
            f"INSERT INTO suspensions ({SUSPENSION_COLUMNS}) VALUES (?,?,?,?,?) "
            "ON CONFLICT (site, user_id) DO NOTHING",
            (suspension.site, suspension.user, suspension.since, suspension.reason, suspension.by),
        )
        created = cur.rowcount == 1
        stored = await self.suspension(suspension.site, suspension.user)
        return (stored or suspension), created

    async def suspension(self, site: str, user: str) -> Suspension | None:
        sql = f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE site = ? AND user_id = ?"
        row = _first(await self.conn.execute_fetchall(sql, (site, user)))
        return suspension_from_row(tuple(row)) if row else None

    async def suspensions(self, site: str, limit: int) -> list[Suspension]:
        sql = (
            f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE site = ? "
            "ORDER BY since, user_id LIMIT ?"
        )
        rows = await self.conn.execute_fetchall(sql, (site, limit))
        return [suspension_from_row(tuple(r)) for r in rows]

    async def lift_suspension(
        self, site: str, user: str, since: float | None = None
    ) -> Suspension | None:
        sql = "DELETE FROM suspensions WHERE site = ? AND user_id = ?"
        params: tuple[object, ...] = (site, user)
        if since is not None:
            sql += " AND since = ?"
            params += (since,)
        rows = await self.conn.execute_fetchall(f"{sql} RETURNING {SUSPENSION_COLUMNS}", params)
        row = _first(rows)
        return suspension_from_row(tuple(row)) if row else None


_BUSY_MS = 10_000  # how long a statement waits for another connection's lock
_SETUP_BUSY_MS = 250  # the same during setup, which retries instead


_CHUNK = 100  # sessions per statement: well under SQLite's limit of bound parameters


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    """Distinct `items`, in order, a chunk at a time."""
    distinct = list(dict.fromkeys(items))
    for i in range(0, len(distinct), _CHUNK):
        yield distinct[i : i + _CHUNK]


def _first(rows: Iterable[sqlite3.Row]) -> sqlite3.Row | None:
    """The first row, if any (reads go through `execute_fetchall`: one hop to the
    connection's thread instead of three)."""
    return next(iter(rows), None)


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only, unless it exists.

    An empty file is an empty SQLite database; SQLite then gives its journal files the
    same mode. A file that exists keeps its mode (the operator's to choose).
    """
    make_private_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


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
