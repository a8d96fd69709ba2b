"""Sites, overrides, revocations, used token ids and the webhook outbox in PostgreSQL,
through an asyncpg pool: the database of a cluster.

The tables mean what they mean in SQLite (`seatguard.db.sqlite`). Migrations are numbered;
`schema_version` records those that ran, and they run under a transaction-scoped advisory
lock, so that processes starting at once migrate exactly once.

PostgreSQL `text` cannot hold a NUL character: writing one is a ValueError, and looking one
up finds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

from ..rules import Override, Scope
from ..sealing import SecretBox
from ..signals.evaluations import EvaluationRecord
from ..signals.history import Stored
from ..signals.policies import Policy
from ..site_secrets import SecretKind
from ..sites import Site
from ..suspension import Suspension
from .audit_postgres import SCHEMA as AUDIT_SCHEMA
from .audit_postgres import SITE_INDEX as AUDIT_SITE_INDEX
from .audit_postgres import AuditPostgres, refuse_nul
from .outbox_postgres import SCHEMA as OUTBOX_SCHEMA
from .outbox_postgres import OutboxPostgres
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

__all__ = ["MIGRATIONS", "PostgresDatabase", "migrate"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE sites (
            key text PRIMARY KEY,
            secret text NOT NULL UNIQUE,
            name text NOT NULL,
            origins text NOT NULL,  -- a JSON array of origins
            mode text NOT NULL,
            seat_limit integer NOT NULL,
            policy text NOT NULL,
            client_settings boolean NOT NULL,
            created_at double precision NOT NULL,
            idle_timeout double precision,
            absolute_timeout double precision,
            config text NOT NULL DEFAULT '{}'  -- a SiteConfig as JSON
        )
        """,
        """
        CREATE TABLE overrides (
            site text NOT NULL REFERENCES sites(key) ON DELETE CASCADE,
            scope text NOT NULL CHECK (scope IN ('org', 'role', 'user')),
            name text NOT NULL,
            mode text,
            seat_limit integer,
            policy text,
            idle_timeout double precision,
            absolute_timeout double precision,
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
    evaluations_schema("bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
)
"""Schema steps in order; step i (from 1) is recorded as version i in `schema_version`."""

MIGRATION_LOCK = 0x5EA7_6A2D_0001
"""The advisory lock key migrations hold (advisory locks are per database)."""

_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_SITE_PARAMS = ", ".join(f"${i}" for i in range(1, len(SITE_COLUMNS.split(",")) + 1))
_SETTINGS = ", ".join(f"{c}=${i}" for i, c in enumerate(SETTINGS_COLUMNS.split(", "), 1))
_OVERRIDE_UPSERT = (
    f"INSERT INTO overrides (site, {OVERRIDE_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) "
    "ON CONFLICT (site, scope, name) DO UPDATE SET mode = EXCLUDED.mode, "
    "seat_limit = EXCLUDED.seat_limit, policy = EXCLUDED.policy, "
    "idle_timeout = EXCLUDED.idle_timeout, absolute_timeout = EXCLUDED.absolute_timeout"
)


class PostgresDatabase:
    """The shared database. Open with `await PostgresDatabase.open(url)`."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool  # an asyncpg.Pool
        self.audit = AuditPostgres(pool)  # the audit log, on the same pool
        self.outbox = OutboxPostgres(pool)  # the webhook outbox, on the same pool

    @classmethod
    async def open(
        cls, url: str, *, box: SecretBox | None = None, min_size: int = 1, max_size: int = 10
    ) -> PostgresDatabase:
        """Connect a pool to `url` (postgresql://user:password@host:port/db) and migrate.

        The `box` (secrets key) is needed once, to seal the secrets of a database from an
        earlier version."""
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        try:
            await migrate(pool, box)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def add_site(self, site: Site) -> None:
        row = site_row(site)
        refuse_nul(**dict(zip(SITE_COLUMNS.split(", "), row, strict=True)))
        await self.pool.execute(f"INSERT INTO sites ({SITE_COLUMNS}) VALUES ({_SITE_PARAMS})", *row)

    async def update_site(self, site: Site) -> None:
        """Replace a site's settings (keys, secrets and creation time stay)."""
        row = settings_row(site)
        refuse_nul(**dict(zip(SETTINGS_COLUMNS.split(", "), row, strict=True)))
        n = len(row) + 1
        await self.pool.execute(f"UPDATE sites SET {_SETTINGS} WHERE key=${n}", *row, site.key)

    async def site(self, key: str) -> Site | None:
        return await self._site_where("key = $1", key)

    async def site_by_secret_hash(self, digest: str) -> Site | None:
        return await self._site_where("secret_hash = $1 OR previous_secret_hash = $1", digest)

    async def rotate_secret(
        self,
        site: str,
        kind: SecretKind,
        expected: str | None,
        new: str,
        previous_until: float | None,
    ) -> bool:
        refuse_nul(site=site, new=new)
        current, previous, until = SECRET_COLUMNS[kind]
        status = await self.pool.execute(
            f"UPDATE sites SET {current}=$1, "
            f"{previous}=CASE WHEN $2::double precision IS NULL THEN NULL ELSE {current} END, "
            f"{until}=$2 WHERE key=$3 AND {current} IS NOT DISTINCT FROM $4",
            new,
            previous_until,
            site,
            expected,
        )
        return str(status) == "UPDATE 1"

    async def sites(self) -> list[Site]:
        rows = await self.pool.fetch(f"SELECT {SITE_COLUMNS} FROM sites ORDER BY created_at, key")
        return [site_from_row(r) for r in rows]

    async def set_override(self, site: str, override: Override) -> None:
        refuse_nul(site=site, name=override.name, mode=override.mode, policy=override.policy)
        await self.pool.execute(_OVERRIDE_UPSERT, *override_row(site, override))

    async def delete_override(self, site: str, scope: Scope, name: str) -> bool:
        if "\x00" in site + scope + name:
            return False
        status = await self.pool.execute(
            "DELETE FROM overrides WHERE site=$1 AND scope=$2 AND name=$3", site, scope, name
        )
        return str(status) != "DELETE 0"

    async def overrides(
        self, site: str, wanted: Mapping[Scope, str | None] | None = None
    ) -> dict[tuple[Scope, str], Override]:
        """A site's overrides; with `wanted`, only those for the given org, role and user."""
        if "\x00" in site:
            return {}
        sql = f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE site = $1"
        args: list[object] = [site]
        if wanted is not None:
            pairs = [(s, n) for s, n in wanted.items() if n and "\x00" not in s + n]
            if not pairs:
                return {}
            terms = []
            for scope, name in pairs:
                args += [scope, name]
                terms.append(f"(scope=${len(args) - 1} AND name=${len(args)})")
            sql += " AND (" + " OR ".join(terms) + ")"
        found = [override_from_row(r) for r in await self.pool.fetch(sql, *args)]
        return {(o.scope, o.name): o for o in found}

    async def policy(self, site: str) -> Policy | None:
        if "\x00" in site:
            return None
        text = await self.pool.fetchval("SELECT document FROM policies WHERE site = $1", site)
        return None if text is None else policy_from_text(text)

    async def set_policy(self, site: str, policy: Policy) -> None:
        document = policy_text(policy)
        refuse_nul(site=site, document=document)
        await self.pool.execute(
            "INSERT INTO policies (site, document) VALUES ($1, $2) "
            "ON CONFLICT (site) DO UPDATE SET document = EXCLUDED.document",
            site,
            document,
        )

    async def history(self, site: str, user: str) -> Stored | None:
        if "\x00" in site + user:
            return None
        text = await self.pool.fetchval(
            "SELECT document FROM user_history WHERE site = $1 AND user_id = $2", site, user
        )
        return None if text is None else history_from_text(text)

    async def histories(self, site: str, users: Sequence[str]) -> dict[str, Stored]:
        wanted = [u for u in dict.fromkeys(users) if "\x00" not in u]
        if "\x00" in site or not wanted:
            return {}
        rows = await self.pool.fetch(
            "SELECT user_id, document FROM user_history "
            "WHERE site = $1 AND user_id = ANY($2::text[])",
            site,
            wanted,
        )
        found: dict[str, Stored] = {}
        for r in rows:
            stored = history_from_text(r[1])
            if stored is not None:
                found[str(r[0])] = stored
        return found

    async def update_history(
        self, site: str, user: str, change: Callable[[Stored | None], Stored | None]
    ) -> Stored | None:
        refuse_nul(site=site, user=user)

        async def read() -> tuple[int, str] | None:
            row = await self.pool.fetchrow(
                "SELECT version, document FROM user_history WHERE site = $1 AND user_id = $2",
                site,
                user,
            )
            return (int(row[0]), str(row[1])) if row else None

        async def write(version: int | None, text: str) -> bool:
            if version is None:
                done = await self.pool.fetchval(
                    "INSERT INTO user_history (site, user_id, version, document) "
                    "VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING RETURNING version",
                    site,
                    user,
                    text,
                )
            else:
                done = await self.pool.fetchval(
                    "UPDATE user_history SET version = version + 1, document = $3 "
                    "WHERE site = $1 AND user_id = $2 AND version = $4 RETURNING version",
                    site,
                    user,
                    text,
                    version,
                )
            return done is not None

        return await changed_history(read, write, change)

    async def add_evaluations(self, records: Sequence[EvaluationRecord]) -> None:
        if not records:
            return
        rows = [evaluation_row(r) for r in records]
        sites, users, sessions, ats, documents = (
            list(column) for column in zip(*rows, strict=True)
        )
        # The documents are JSON, which writes a NUL as an escape.
        refuse_nul(site="".join(sites), user="".join(users), session="".join(sessions))
        await self.pool.execute(
            f"INSERT INTO evaluations ({EVALUATION_COLUMNS}) "
            "SELECT s, u, x, a, d FROM unnest($1::text[], $2::text[], $3::text[], "
            "$4::double precision[], $5::text[]) WITH ORDINALITY AS r(s, u, x, a, d, n) "
            "ORDER BY n",
            sites,
            users,
            sessions,
            ats,
            documents,
        )

    async def evaluations(
        self, site: str, user: str, *, limit: int, before: float | None = None
    ) -> list[EvaluationRecord]:
        if "\x00" in site + user:
            return []
        rows = await self.pool.fetch(
            "SELECT document FROM evaluations WHERE site = $1 AND user_id = $2 "
            "AND at < $3 ORDER BY at DESC, seq DESC LIMIT $4",
            site,
            user,
            math.inf if before is None else before,
            limit,
        )
        return evaluations_from_rows(rows)

    async def purge_evaluations(self, older_than: float) -> int:
        status = await self.pool.execute("DELETE FROM evaluations WHERE at < $1", older_than)
        return int(str(status).rsplit(" ", 1)[1])

    async def remember_token(
        self, site: str, issuer: str, jti: str, until: float, *, now: float
    ) -> bool:
        refuse_nul(site=site, issuer=issuer, jti=jti)
        await self.pool.execute("DELETE FROM seen_tokens WHERE expires_at <= $1", now)
        status = await self.pool.execute(
            "INSERT INTO seen_tokens (site, issuer, jti, expires_at) VALUES ($1,$2,$3,$4) "
            "ON CONFLICT DO NOTHING",
            site,
            issuer,
            jti,
            until,
        )
        return str(status) == "INSERT 0 1"

    async def forget_token(self, site: str, issuer: str, jti: str) -> None:
        if "\x00" in site + issuer + jti:
            return
        await self.pool.execute(
            "DELETE FROM seen_tokens WHERE site=$1 AND issuer=$2 AND jti=$3", site, issuer, jti
        )

    async def add_revocations(
        self, site: str, user: str, sessions: Sequence[str], at: float, until: float
    ) -> None:
        distinct = list(dict.fromkeys(sessions))  # one row may be upserted once per statement
        refuse_nul(site=site, user=user, sessions="".join(distinct))
        await self.pool.execute("DELETE FROM revoked_sessions WHERE expires_at <= $1", at)
        await self.pool.execute(
            "INSERT INTO revoked_sessions (site, session, user_id, revoked_at, expires_at) "
            "SELECT $1, s, $2, $3, $4 FROM unnest($5::text[]) AS s "
            "ON CONFLICT (site, session) DO UPDATE SET "
            "expires_at = GREATEST(revoked_sessions.expires_at, EXCLUDED.expires_at)",
            site,
            user,
            at,
            until,
            distinct,
        )

    async def revoked_sessions(self, site: str, sessions: Sequence[str], now: float) -> set[str]:
        wanted = [s for s in dict.fromkeys(sessions) if "\x00" not in s]
        if "\x00" in site or not wanted:
            return set()
        rows = await self.pool.fetch(
            "SELECT session FROM revoked_sessions "
            "WHERE site = $1 AND expires_at > $2 AND session = ANY($3::text[])",
            site,
            now,
            wanted,
        )
        return {str(r[0]) for r in rows}

    async def revoke_user_before(self, site: str, user: str, at: float) -> None:
        refuse_nul(site=site, user=user)
        await self.pool.execute(
            "INSERT INTO revoked_users (site, user_id, cutoff) VALUES ($1,$2,$3) "
            "ON CONFLICT (site, user_id) DO UPDATE SET "
            "cutoff = GREATEST(revoked_users.cutoff, EXCLUDED.cutoff)",
            site,
            user,
            at,
        )

    async def user_revoked_before(self, site: str, user: str) -> float | None:
        if "\x00" in site + user:
            return None
        cutoff = await self.pool.fetchval(
            "SELECT cutoff FROM revoked_users WHERE site = $1 AND user_id = $2", site, user
        )
        return None if cutoff is None else float(cutoff)

    async def suspend(self, suspension: Suspension) -> tuple[Suspension, bool]:
        refuse_nul(site=suspension.site, user=suspension.user, reason=suspension.reason)
        refuse_nul(by=suspension.by)
        s = suspension
        inserted = await self.pool.fetchrow(
            f"INSERT INTO suspensions ({SUSPENSION_COLUMNS}) VALUES ($1,$2,$3,$4,$5) "
            f"ON CONFLICT (site, user_id) DO NOTHING RETURNING {SUSPENSION_COLUMNS}",
            s.site,
            s.user,
            s.since,
            s.reason,
            s.by,
        )
        if inserted is not None:
            return suspension_from_row(tuple(inserted)), True
        stored = await self.suspension(s.site, s.user)
        return (stored or suspension), False

    async def suspension(self, site: str, user: str) -> Suspension | None:
        if "\x00" in site + user:
            return None
        row = await self.pool.fetchrow(
            f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE site = $1 AND user_id = $2",
            site,
            user,
        )
        return suspension_from_row(tuple(row)) if row else None

    async def suspensions(self, site: str, limit: int) -> list[Suspension]:
        if "\x00" in site:
            return []
        rows = await self.pool.fetch(
            f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE site = $1 "
            "ORDER BY since, user_id LIMIT $2",
            site,
            limit,
        )
        return [suspension_from_row(tuple(r)) for r in rows]

    async def lift_suspension(
        self, site: str, user: str, since: float | None = None
    ) -> Suspension | None:
        if "\x00" in site + user:
            return None
        row = await self.pool.fetchrow(
            "DELETE FROM suspensions WHERE site = $1 AND user_id = $2 "
            f"AND ($3::double precision IS NULL OR since = $3) RETURNING {SUSPENSION_COLUMNS}",
            site,
            user,
            since,
        )
        return suspension_from_row(tuple(row)) if row else None

    async def _site_where(self, condition: str, value: str) -> Site | None:
        if "\x00" in value:
            return None
        row = await self.pool.fetchrow(f"SELECT {SITE_COLUMNS} FROM sites WHERE {condition}", value)
        return site_from_row(row) if row else None


async def migrate(pool: Any, box: SecretBox | None = None) -> int:
    """Run the migrations not yet recorded, in one transaction; the schema version after.

    Rows from before secrets were sealed are converted in the same transaction, with `box`.
    """
    async with pool.acquire() as conn, conn.transaction():
        # Taken first, so that a second process waits here and then finds the work done.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_SCHEMA_VERSION)
        done = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        for version, step in enumerate(MIGRATIONS[done:], start=done + 1):
            for statement in step:
                await conn.execute(statement)
            if step is SECRETS_SCHEMA:
                for key, secret, config in await conn.fetch(LEGACY_SITES):
                    await conn.execute(
                        "UPDATE sites SET secret_hash=$1, identity_secret=$2, webhook_secret=$3, "
                        "config=$4 WHERE key=$5",
                        *sealed_legacy(box, key, secret, config),
                        key,
                    )
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
        return max(done, len(MIGRATIONS))
