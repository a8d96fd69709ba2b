"""The audit log in a real SQLite file: appends, tampering by raw SQL, concurrent writers."""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import signal
import sqlite3
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
C, D, I, R, T = (  # noqa: E741
    ProblemKind.changed,
    ProblemKind.deleted,
    ProblemKind.inserted,
    ProblemKind.reordered,
    ProblemKind.truncated,
)
COLUMNS = "at, site, user_id, session, device, ip, kind, reason, detail, prev, hash"


def event(n: int, *, user: str = "alice", site: str = "site-a", **detail: Any) -> AuditEvent:
    return AuditEvent(
        at=1_700_000_000.0 + n / 10,
        site=site,
        user=user,
        session=f"s{n}",
        device="dev-1",
        ip="203.0.113.7",
        kind=AuditKind.blocked,
        reason="limit",
        detail={"n": n, **detail},
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


async def tamper(conn: aiosqlite.Connection, *statements: str) -> None:
    """Edit rows the way an intruder with the database file would: triggers first."""
    await conn.execute("DROP TRIGGER audit_no_update")
    await conn.execute("DROP TRIGGER audit_no_delete")
    for sql in statements:
        await conn.execute(sql)
    await conn.commit()


async def test_appended_batches_are_chained_durable_and_verify(
    conn: aiosqlite.Connection,
) -> None:
    audit = AuditSqlite(conn)
    assert await audit.head() is None
    assert await audit.append([], KEY) == []
    appended = []
    for batch in ([event(1), event(2), event(3)], [event(4)], [event(5), event(6)]):
        appended += await audit.append(batch, KEY)
    assert [r.seq for r in appended] == [1, 2, 3, 4, 5, 6]
    assert appended[3].prev == appended[2].hash
    assert await audit.records() == appended
    assert await audit.head() == (6, appended[-1].hash)
    report = await check(audit, expected_head=(6, appended[-1].hash))
    assert (report.ok, report.count, report.head) == (True, 6, (6, appended[-1].hash))
    assert not conn.in_transaction


async def test_records_filter_by_site_user_and_seq(conn: aiosqlite.Connection) -> None:
    audit = AuditSqlite(conn)
    who = [("site-a", "alice"), ("site-a", "bob"), ("site-b", "alice")] * 4
    await audit.append([event(n, site=s, user=u) for n, (s, u) in enumerate(who)], KEY)
    alice_a = await audit.records(site="site-a", user="alice")
    assert [r.seq for r in alice_a] == [1, 4, 7, 10]
    assert [r.seq for r in await audit.records(user="alice", after_seq=4, limit=2)] == [6, 7]
    assert [r.seq for r in await audit.records(site="site-b")] == [3, 6, 9, 12]
    assert await audit.records(after_seq=12) == []
    with pytest.raises(ValueError, match="positive"):
        await audit.records(limit=0)


async def test_all_records_streams_every_page(conn: aiosqlite.Connection) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(n) for n in range(1203)], KEY)
    assert [r.seq async for r in audit.all_records()] == list(range(1, 1204))
    assert (await check(audit)).ok


async def test_the_table_refuses_update_and_delete(conn: aiosqlite.Connection) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(1)], KEY)
    for sql in ("UPDATE audit SET user_id = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await conn.execute(sql)
    await conn.rollback()
    assert (await check(audit)).ok


async def test_a_failed_append_stores_nothing(conn: aiosqlite.Connection) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(1)], KEY)
    broken = AuditEvent(float("nan"), "site-a", "alice", None, None, None, AuditKind.ended, None)
    with pytest.raises(ValueError, match="finite"):
        await audit.append([event(2), broken], KEY)
    assert not conn.in_transaction
    assert [r.seq for r in await audit.records()] == [1]
    assert [r.seq for r in await audit.append([event(3)], KEY)] == [2]
    assert (await check(audit)).ok


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


SWAP = (  # every column but seq exchanged between rows {a} and {b}
    "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN ({a}, {b})",
    f"UPDATE audit SET ({COLUMNS}) = (SELECT {COLUMNS} FROM t"
    " WHERE t.seq = CASE audit.seq WHEN {a} THEN {b} ELSE {a} END) WHERE seq IN ({a}, {b})",
)
COPY = (
    f"INSERT INTO audit (seq, {COLUMNS})"
    f" SELECT (SELECT max(seq) + 1 FROM audit), {COLUMNS} FROM audit WHERE seq = 3"
)

TAMPERING: list[tuple[str, tuple[str, ...], list[tuple[int, ProblemKind]]]] = [
    ("user", ("UPDATE audit SET user_id = 'mallory' WHERE seq = 5",), [(5, C)]),
    ("time", ("UPDATE audit SET at = at - 3600 WHERE seq = 5",), [(5, C)]),
    ("kind", ("UPDATE audit SET kind = 'admitted' WHERE seq = 5",), [(5, C)]),
    ("unknown kind", ("UPDATE audit SET kind = 'teleported' WHERE seq = 5",), [(5, C)]),
    ("reason", ("UPDATE audit SET reason = NULL WHERE seq = 5",), [(5, C)]),
    ("detail", ("UPDATE audit SET detail = '{\"n\":5.0}' WHERE seq = 5",), [(5, C)]),
    ("broken detail", ("UPDATE audit SET detail = '{' WHERE seq = 5",), [(5, C)]),
    ("blob", ("UPDATE audit SET session = x'00ff' WHERE seq = 5",), [(5, C)]),
    ("time as text", ("UPDATE audit SET at = 'yesterday' WHERE seq = 5",), [(5, C)]),
    ("hash", ("UPDATE audit SET hash = prev WHERE seq = 5",), [(5, C)]),
    ("seq", ("UPDATE audit SET seq = 100 WHERE seq = 3",), [(100, C)]),
    ("delete", ("DELETE FROM audit WHERE seq = 5",), [(5, D)]),
    ("delete first", ("DELETE FROM audit WHERE seq = 1",), [(1, D)]),
    ("delete three", ("DELETE FROM audit WHERE seq BETWEEN 4 AND 6",), [(4, D)]),
    ("copy", (COPY,), [(11, I)]),
    ("swap 4 and 5", tuple(s.format(a=4, b=5) for s in SWAP), [(4, R), (5, R)]),
    ("swap 3 and 8", tuple(s.format(a=3, b=8) for s in SWAP), [(3, R), (8, R)]),
]


@pytest.mark.parametrize(
    ("statements", "expected"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
async def test_tampering_by_sql_is_reported(
    conn: aiosqlite.Connection, statements: tuple[str, ...], expected: list[Any]
) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(n) for n in range(1, 11)], KEY)
    await tamper(conn, *statements)
    report = await check(audit)
    assert [(p.seq, p.kind) for p in report.problems] == expected, report.format()


async def test_truncation_is_found_against_the_anchor(conn: aiosqlite.Connection) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(n) for n in range(1, 11)], KEY)
    anchor = await audit.head()
    assert anchor is not None
    await tamper(conn, "DELETE FROM audit WHERE seq > 8")
    assert (await check(audit)).ok  # without the anchor, a cut tail is invisible
    report = await check(audit, expected_head=anchor)
    assert [(p.seq, p.kind) for p in report.problems] == [(9, T)]
    # The server goes on appending after the cut: the anchor still tells.
    await audit.append([event(n) for n in range(20, 23)], KEY)
    report = await check(audit, expected_head=anchor)
    assert [(p.seq, p.kind) for p in report.problems] == [(10, T)]


async def test_a_wrong_key_is_reported_once(conn: aiosqlite.Connection) -> None:
    audit = AuditSqlite(conn)
    await audit.append([event(n) for n in range(5)], KEY)
    report = await check(audit, bytes(32))
    assert [(p.seq, p.kind) for p in report.problems] == [(1, C)]
    assert "key" in report.problems[0].message


async def test_concurrent_appenders_on_two_connections_build_one_chain(
    tmp_path: Path, conn: aiosqlite.Connection
) -> None:
    path = tmp_path / "audit.db"  # the file `conn` created
    second = await connect(path)

    async def write(audit: AuditSqlite, writer: str) -> None:
        n = 0
        for size in itertools.islice(itertools.cycle((1, 2, 3, 4)), 80):
            await audit.append([event(n + i, writer=writer) for i in range(size)], KEY)
            n += size
        assert n == 200

    try:
        await asyncio.gather(write(AuditSqlite(conn), "one"), write(AuditSqlite(second), "two"))
    finally:
        await second.close()
    audit = AuditSqlite(conn)
    records = [r async for r in audit.all_records()]
    assert [r.seq for r in records] == list(range(1, 401))
    report = verify(records, KEY)
    assert report.ok, report.format()
    for writer in ("one", "two"):
        mine = [r.event.detail["n"] for r in records if r.event.detail["writer"] == writer]
        assert mine == list(range(200))


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
