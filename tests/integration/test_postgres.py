"""What only PostgreSQL has: column types, TRUNCATE, NUL characters, lock waits, processes.

The behaviour both databases share is in test_database_contract.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from seatguard.audit import AuditEvent, AuditKind, verify
from seatguard.db import PostgresDatabase
from seatguard.db.postgres import MIGRATION_LOCK, MIGRATIONS
from seatguard.presence import Rules
from seatguard.rules import Override
from seatguard.sealing import SecretBox
from seatguard.sites import new_site
from tests.helpers import ROOT, fresh_postgres_database, scaled

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))


def event(n: int, **changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "at": 1_700_000_000.0 + n,
        "site": "site-a",
        "user": "alice",
        "session": f"s{n}",
        "device": "dev-1",
        "ip": "203.0.113.7",
        "kind": AuditKind.admitted,
        "reason": None,
        "detail": {"n": n},
    }
    return AuditEvent(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture
async def url(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_postgres_database(postgres_url) as fresh:
        yield fresh


@pytest.fixture
async def db(url: str) -> AsyncIterator[PostgresDatabase]:
    database = await PostgresDatabase.open(url)
    yield database
    await database.close()


async def test_audit_columns_keep_exact_values(db: PostgresDatabase) -> None:
    """`detail` is text (jsonb would rewrite 1.0 as 1 and break the hash), `at` a double."""
    rows = await db.pool.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = 'audit' AND column_name IN ('seq', 'at', 'detail')"
    )
    assert dict(rows) == {"seq": "bigint", "at": "double precision", "detail": "text"}


async def test_truncate_is_refused(db: PostgresDatabase) -> None:
    await db.audit.append([event(1)], KEY)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await db.pool.execute("TRUNCATE audit")
    assert len(await db.audit.records()) == 1


async def test_nul_characters_are_refused_and_never_found(db: PostgresDatabase) -> None:
    """PostgreSQL text has no NUL: writing one is a ValueError, looking one up finds nothing."""
    await db.audit.append([event(1)], KEY)
    for changes in ({"user": "al\x00ice"}, {"session": "\x00"}, {"reason": "x\x00"}):
        with pytest.raises(ValueError, match="NUL"):
            await db.audit.append([event(2), event(3, **changes)], KEY)
    assert [r.seq for r in await db.audit.records()] == [1]
    assert await db.audit.records(user="al\x00ice") == []
    detail = await db.audit.append([event(2, detail={"text": "a\x00b"})], KEY)  # JSON: \u0000
    assert (await db.audit.records(after_seq=1)) == detail
    assert verify([r async for r in db.audit.all_records()], KEY).ok

    box = SecretBox.ephemeral()
    site, _ = new_site("Shop", ["*"], Rules(), client_settings=False, now=1.0, box=box)
    nul, _ = new_site("Sh\x00p", ["*"], Rules(), client_settings=False, now=1.0, box=box)
    with pytest.raises(ValueError, match="NUL"):
        await db.add_site(nul)
    await db.add_site(site)
    with pytest.raises(ValueError, match="NUL"):
        await db.set_override(site.key, Override("user", "bo\x00b", limit=2))
    assert await db.site("pk\x00") is None
    assert await db.site_by_secret_hash(str(site.secrets.secret_key.current) + "\x00") is None
    with pytest.raises(ValueError, match="NUL"):
        await db.rotate_secret(site.key, "identity", None, "s1:\x00", None)
    assert await db.overrides(site.key, {"user": "bo\x00b"}) == {}
    assert await db.overrides("pk\x00") == {}
    assert await db.delete_override(site.key, "user", "bo\x00b") is False


async def test_nul_characters_in_revocations_and_token_ids(db: PostgresDatabase) -> None:
    """The same rule for revocations and one-time token ids."""
    with pytest.raises(ValueError, match="NUL"):
        await db.remember_token("pk_a", "iss", "j\x00", until=200, now=100)
    with pytest.raises(ValueError, match="NUL"):
        await db.add_revocations("pk_a", "alice", ["s1", "s\x00"], at=100, until=200)
    with pytest.raises(ValueError, match="NUL"):
        await db.revoke_user_before("pk_a", "al\x00ice", at=100)
    await db.forget_token("pk_a", "iss", "j\x00")
    assert await db.revoked_sessions("pk_a", ["s1", "s\x00"], now=150) == set()
    assert await db.user_revoked_before("pk_a", "al\x00ice") is None
    await db.add_revocations("pk_a", "alice", ["s1"], at=100, until=200)
    assert await db.revoked_sessions("pk_a", ["s1", "s\x00"], now=150) == {"s1"}


async def test_a_cancelled_append_releases_the_table(db: PostgresDatabase, url: str) -> None:
    blocker = await asyncpg.connect(url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE")  # another writer
        task = asyncio.create_task(db.audit.append([event(1)], KEY))
        await asyncio.sleep(scaled(0.2))  # the append now waits for the lock
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tx.commit()
        await blocker.execute("BEGIN; LOCK TABLE audit IN ACCESS EXCLUSIVE MODE NOWAIT; ROLLBACK")
    finally:
        await blocker.close()
    assert await db.audit.records() == []
    async with asyncio.timeout(scaled(10)):
        assert [r.seq for r in await db.audit.append([event(2)], KEY)] == [1]


async def test_a_cancelled_migration_wait_leaves_no_lock(url: str) -> None:
    """An open that gives up while another process migrates leaves nothing behind."""
    holder = await asyncpg.connect(url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(scaled(0.5)):
                    await PostgresDatabase.open(url)
    finally:
        await holder.close()
    db = await PostgresDatabase.open(url)
    await db.close()


OPENER = """
import asyncio, sys
from seatguard.db import open_database

async def main():
    db = await open_database(sys.argv[1])
    await db.close()

asyncio.run(main())
"""


async def test_processes_starting_at_once_migrate_exactly_once(url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPENER, url, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    async with asyncio.timeout(scaled(60)):
        for proc in procs:
            _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    finally:
        await conn.close()
    assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
