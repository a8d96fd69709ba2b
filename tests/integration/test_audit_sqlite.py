"""The audit log in a real SQLite file: what only SQLite has (its write lock, values of any
type in any column, a killed writer). test_database_contract.py runs the audit contract on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from seatguard.audit import AuditEvent, AuditKind, ProblemKind, VerifyReport, verify
from seatguard.db.audit_sqlite import SCHEMA, AuditSqlite
from tests.helpers import ROOT, scaled

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))


def event(n: int) -> AuditEvent:
    return AuditEvent(
        at=1_700_000_000.0 + n / 10,
        site="site-a",
        user="alice",
        session=f"s{n}",
        device="dev-1",
        ip="203.0.113.7",
        kind=AuditKind.blocked,
        reason="limit",
        detail={"n": n},
    )


async def connect(path: Path) -> aiosqlite.Connection:
    """A connection configured as the server configures its own."""
    conn = await aiosqlite.connect(path)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA busy_timeout={int(scaled(10_000))}")
    return conn


async def create(conn: aiosqlite.Connection) -> None:
    for step in SCHEMA:
        await conn.execute(step)
    await conn.commit()


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await connect(tmp_path / "audit.db")
    await create(conn)
    yield conn
    await conn.close()


async def check(audit: AuditSqlite, key: bytes = KEY, **kw: Any) -> VerifyReport:
    return verify([r async for r in audit.all_records()], key, **kw)


async def tamper(conn: aiosqlite.Connection, statement: str) -> None:
    """Edit rows the way an intruder with the database file would: triggers first."""
    await conn.execute("DROP TRIGGER audit_no_update")
    await conn.execute("DROP TRIGGER audit_no_delete")
    await conn.execute(statement)
    await conn.commit()


async def test_a_cancelled_append_releases_the_write_lock(
    tmp_path: Path, conn: aiosqlite.Connection
) -> None:
    audit = AuditSqlite(conn)
    blocker = await connect(tmp_path / "audit.db")
    try:
        await blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        task = asyncio.create_task(audit.append([event(1)], KEY))
        await asyncio.sleep(scaled(0.1))  # the append now waits for the lock
        task.cancel()
        await blocker.commit()  # its BEGIN goes through, then its rollback
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.in_transaction
        assert await audit.records() == []
        await blocker.execute("BEGIN IMMEDIATE")  # the lock is free again
        await blocker.rollback()
    finally:
        await blocker.close()
    assert [r.seq for r in await audit.append([event(2)], KEY)] == [1]


# SQLite stores any value in any column: an intruder may put bytes or text where the
# server writes text or a number; verify reports the row as changed and does not crash.
TAMPERING: list[tuple[str, str]] = [
    ("blob", "UPDATE audit SET session = x'00ff' WHERE seq = 5"),
    ("time as text", "UPDATE audit SET at = 'yesterday' WHERE seq = 5"),
]


@pytest.mark.parametrize("statement", [t[1] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
async def test_values_of_another_type_are_reported(
    conn: aiosqlite.Connection, statement: str
) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(n) for n in range(1, 11)], KEY)
    await tamper(conn, statement)
    report = await check(audit)
    assert [(p.seq, p.kind) for p in report.problems] == [(5, ProblemKind.changed)], report.format()


CRASHER = """
import asyncio, sys
import aiosqlite
from seatguard.audit import AuditEvent, AuditKind
from seatguard.db.audit_sqlite import SCHEMA, AuditSqlite

async def main():
    conn = await aiosqlite.connect(sys.argv[1])
    await conn.execute("PRAGMA journal_mode=WAL")
    for step in SCHEMA:
        await conn.execute(step)
    await conn.commit()
    event = AuditEvent(1.5, "site-a", "alice", "s1", None, None, AuditKind.created, None)
    records = await AuditSqlite(conn).append([event] * 50, bytes(range(32)))
    print(records[-1].seq, records[-1].hash, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def append_then_kill_9(path: Path) -> str:
    """Run CRASHER until it reports, kill it without warning, and return its report."""
    with subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as proc:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], scaled(20))
        line = proc.stdout.readline() if ready else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert line, "the appender did not report"
    return line


async def test_appended_records_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    seq, digest = append_then_kill_9(path).split()
    assert seq == "50"
    conn = await connect(path)
    try:
        audit = AuditSqlite(conn)
        assert await audit.head() == (50, digest)
        assert (await check(audit, expected_head=(50, digest))).ok
    finally:
        await conn.close()
