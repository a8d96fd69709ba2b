"""Policy evaluations as kept: the record of one evaluation (pure), truncated addresses, pages,
and the writer over an in-memory SQLite database with a fake clock: batches, purges on a
schedule, failures logged once and never raised, flagged records as webhooks in the outbox."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator

import msgspec
import pytest

from seatguard.db import SqliteDatabase
from seatguard.deliveries import DeliveryWorker
from seatguard.presence import Rules
from seatguard.recorder import Recorder, flagged_hook
from seatguard.sealing import SecretBox
from seatguard.signals import evaluations as ev
from seatguard.signals.checks import Checks
from seatguard.signals.evaluations import (
    DryRunOut,
    EvaluationRecord,
    EvaluationWriter,
    RiskOut,
    is_flagged,
    page_of,
    record_of,
    truncated_ip,
)
from seatguard.signals.policies import evaluate, parse_policy
from seatguard.signals.risk import account_sharing
from seatguard.site_secrets import Rotating
from seatguard.sites import Site, SiteConfig, new_site
from seatguard.webhooks import EventType, Reply
from tests.helpers import scaled
from tests.unit.fakes import Clock

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
DAY = 86400.0
CHECKS = Checks(
    concurrent_sessions=True, device_count=2, computer_device_count=2, tablet_device_count=0,
    mobile_device_count=0, device_count_window=3, computer_device_count_window=3,
    tablet_device_count_window=0, mobile_device_count_window=0, is_new_device=True,
    is_new_ip=False, ip_country=None, impossible_travel=None, geo="off",
)  # fmt: skip
POLICY = parse_policy(
    {
        "rules": [
            {"name": "shadow", "when": {"check": "is_new_device"}, "verdict": "suspend",
             "dry_run": True},
            {"name": "two-at-once", "when": {"check": "concurrent_sessions"}, "verdict": "block"},
        ]
    }
)  # fmt: skip


def record(
    at: float = NOW, *, user: str = "alice", ip: str = "203.0.113.77", **kw: object
) -> EvaluationRecord:
    risk = account_sharing(CHECKS.values(), POLICY.risk)
    made = record_of(
        "pk_a", user, "s1", "laptop01", ip, at, "hello", CHECKS, risk,
        evaluate(POLICY, CHECKS.values(), risk), applied=True,
    )  # fmt: skip
    return msgspec.structs.replace(made, **kw) if kw else made


# --- the record, pure ------------------------------------------------------------------------


def test_a_record_names_the_rule_its_dry_runs_the_risk_and_every_check() -> None:
    r = record()
    assert (r.site, r.user, r.session, r.device, r.ip, r.at, r.trigger) == (
        "pk_a", "alice", "s1", "laptop01", "203.0.113.77", NOW, "hello",
    )  # fmt: skip
    assert (r.rule, r.verdict, r.applied) == ("two-at-once", "block", True)
    assert r.dry_run == [DryRunOut("shadow", "suspend")]
    assert r.risk == RiskOut(65, "high")  # 40 concurrent, 15 for the second computer, 10 new
    assert r.checks == CHECKS.values() and "geo" not in r.checks and r.geo == "off"
    assert r.checks["impossible_travel"] is None
    assert msgspec.json.decode(msgspec.json.encode(r), type=EvaluationRecord) == r


def test_no_rule_matching_is_allow_with_no_rule_and_not_flagged() -> None:
    quiet = msgspec.structs.replace(CHECKS, concurrent_sessions=False, is_new_device=False)
    risk = account_sharing(quiet.values(), POLICY.risk)
    r = record_of(
        "pk_a", "bob", "s2", "d", "", NOW, "change", quiet, risk,
        evaluate(POLICY, quiet.values(), risk), applied=False,
    )  # fmt: skip
    assert (r.rule, r.verdict, r.dry_run, r.trigger) == (None, "allow", [], "change")
    assert not is_flagged(r)
    assert is_flagged(msgspec.structs.replace(r, verdict="monitor", rule="watch"))
    assert is_flagged(msgspec.structs.replace(r, dry_run=[DryRunOut("shadow", "block")]))


@pytest.mark.parametrize(
    ("ip", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("203.0.113.77:4431", "203.0.113.0"),
        ("::ffff:203.0.113.77", "203.0.113.0"),  # IPv4-mapped: an IPv4 address
        ("2001:db8:7:1234::99", "2001:db8:7::"),
        ("[2001:db8:ffff:ffff::1]:443", "2001:db8:ffff::"),
        ("fe80::1%eth0", "fe80::"),
        ("::1", "::"),
        ("", ""),
        ("not an address", ""),  # nothing of it is kept
        ("1.2.3.4" + " " * 100, ""),
    ],
)
def test_a_truncated_address_keeps_its_network_only(ip: str, kept: str) -> None:
    assert truncated_ip(ip) == kept


def test_pages_never_split_the_records_of_one_instant() -> None:
    at = [9.0, 8.0, 7.0, 7.0, 7.0, 6.0]
    found = [record(t, session=f"s{n}") for n, t in enumerate(at)]
    assert page_of(found[:3], 3) == (found[:3], None)  # all there is: the last page
    assert page_of(found[:4], 3) == (found[:2], 8.0)  # 7.0 goes on the next page whole
    assert page_of(found[2:], 3) == (found[2:5], 7.0)  # ends before 6.0, which is next
    # More records of one instant than a page holds: a full page; the rest are skipped.
    assert page_of(found[2:6], 2) == (found[2:4], 7.0)


# --- the writer ----------------------------------------------------------------------------


class FakeSleep:
    """Sleeps that move the fake clock instead of waiting, and count themselves."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.slept: list[float] = []
        self.go = asyncio.Event()
        self.sleeping = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.sleeping.set()
        await self.go.wait()  # the test lets one sleep end at a time
        self.go.clear()
        self.clock.now += seconds


@pytest.fixture
async def db() -> AsyncIterator[SqliteDatabase]:
    database = await SqliteDatabase.open(":memory:")
    yield database
    await database.close()


async def stored(db: SqliteDatabase, user: str = "alice") -> list[EvaluationRecord]:
    return await db.evaluations("pk_a", user, limit=100)


async def test_records_are_written_in_batches_off_the_callers_path(db: SqliteDatabase) -> None:
    writer = EvaluationWriter(db, retention=30 * DAY, truncate_ips=False, clock=Clock(NOW))
    records = [record(NOW + n) for n in range(ev.MAX_BATCH + 20)]
    for r in records:
        writer.add(r)  # returns at once: nothing is written yet
    assert await stored(db) == []
    await writer.flush()
    assert len(await db.evaluations("pk_a", "alice", limit=1000)) == ev.MAX_BATCH + 20
    assert (await stored(db))[0] == records[-1]  # full addresses, as seen
    await writer.close()


async def test_addresses_are_truncated_before_they_are_stored(db: SqliteDatabase) -> None:
    writer = EvaluationWriter(db, retention=30 * DAY, truncate_ips=True, clock=Clock(NOW))
    writer.add(record(NOW, ip="198.51.100.23"))
    writer.add(record(NOW + 1, ip="2001:db8:aa:bb::1"))
    await writer.close()
    assert [r.ip for r in await stored(db)] == ["2001:db8:aa::", "198.51.100.0"]


async def test_old_records_are_purged_at_start_and_every_hour(db: SqliteDatabase) -> None:
    clock = Clock(NOW)
    sleep = FakeSleep(clock)
    writer = EvaluationWriter(db, retention=DAY, truncate_ips=False, clock=clock, sleep=sleep)
    # Two days old, 23 hours old, and 23 hours and a half old.
    await db.add_evaluations(
        [record(NOW - 2 * DAY), record(NOW - 23 * 3600), record(NOW - DAY + 3600 - 1800)]
    )
    writer.start()
    await asyncio.wait_for(sleep.sleeping.wait(), scaled(5))  # the purge at start ran
    sleep.sleeping.clear()
    assert [r.at for r in await stored(db)] == [NOW - 23 * 3600, NOW - DAY + 1800]
    assert sleep.slept == [ev.PURGE_INTERVAL]
    sleep.go.set()  # an hour later: 23 hours old is a day old (not older), 23:30 is past it
    await asyncio.wait_for(sleep.sleeping.wait(), scaled(5))
    assert clock.now == NOW + 3600
    assert [r.at for r in await stored(db)] == [NOW - 23 * 3600]
    await writer.close()  # the purger stops while it sleeps
    assert len(sleep.slept) == 2


async def test_a_failing_database_is_logged_once_and_the_caller_never_sees_it(
    db: SqliteDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    writer = EvaluationWriter(db, retention=DAY, truncate_ips=False, clock=Clock(NOW))
    await db.conn.execute("DROP TABLE evaluations")
    with caplog.at_level(logging.WARNING, "seatguard"):
        for n in range(3):
            writer.add(record(NOW + n))
            await writer.flush()
        assert await writer.purge() == 0
        writer.start()
        await writer.close()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("evaluations not stored" in line for line in lines) == 1, lines
    assert sum("old evaluations not deleted" in line for line in lines) == 1, lines


async def test_a_full_queue_drops_records_with_one_log_line(
    db: SqliteDatabase, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ev, "MAX_PENDING", 3)
    writer = EvaluationWriter(db, retention=DAY, truncate_ips=False, clock=Clock(NOW))
    with caplog.at_level(logging.WARNING, "seatguard"):
        for n in range(10):
            writer.add(record(NOW + n))
    await writer.close()
    assert [r.at for r in await stored(db)] == [NOW + 2, NOW + 1, NOW]
    assert [r.getMessage() for r in caplog.records] == [
        "evaluation of pk_a/alice not recorded: 3 evaluations wait already"
    ]


# --- flagged records: the evaluation.flagged webhook -----------------------------------------

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BOX = SecretBox.ephemeral()


def hooked_site() -> Site:
    site, _ = new_site(
        "Hooks", ["*"], Rules(), client_settings=False, now=NOW, box=BOX, key="pk_a",
        config=SiteConfig(webhook_url="https://site.example/hooks"),
    )  # fmt: skip
    sealed = BOX.seal(SECRET, site="pk_a", purpose="webhook")
    return dataclasses.replace(
        site, secrets=dataclasses.replace(site.secrets, webhook=Rotating(sealed))
    )


async def never_posts(url: str, body: bytes, headers: object) -> Reply:
    raise AssertionError("the worker is not started: nothing is posted")


async def test_flagged_records_are_webhooks_in_the_outbox_and_others_are_not(
    db: SqliteDatabase,
) -> None:
    site = hooked_site()

    async def sites(key: str) -> Site | None:
        return site if key == site.key else None

    worker = DeliveryWorker(db.outbox, sites, BOX, sender=never_posts, clock=Clock(NOW))
    recorder = Recorder(db.audit, bytes(32), sites, worker, box=BOX)
    writer = EvaluationWriter(
        db, retention=DAY, truncate_ips=True, clock=Clock(NOW), on_flagged=recorder.flagged
    )
    blocked = record(NOW)
    quiet = record(NOW + 1, verdict="allow", rule=None, dry_run=[])
    shadow = record(NOW + 2, user="bob", verdict="allow", rule=None)  # a dry run matched
    other = record(NOW + 3, site="pk_other")  # a site without a webhook: none
    for r in (blocked, quiet, shadow, other):
        writer.add(r)
    await writer.close()
    messages = await db.outbox.deliveries("pk_a")
    assert [m.event for m in messages] == [EventType.evaluation_flagged] * 2
    assert await db.outbox.deliveries("pk_other") == []
    bodies = [msgspec.json.decode(m.payload) for m in reversed(messages)]
    assert [b["type"] for b in bodies] == ["evaluation.flagged"] * 2
    data = bodies[0]["data"]
    assert data == {
        "site": "pk_a", "user": "alice", "session": "s1", "device": "laptop01",
        "ip": "203.0.113.0", "at": NOW, "trigger": "hello", "checks": CHECKS.values(),
        "geo": "off", "risk": {"score": 65, "level": "high"}, "rule": "two-at-once",
        "verdict": "block", "applied": True, "dry_run": [{"rule": "shadow", "verdict": "suspend"}],
    }  # fmt: skip
    assert (bodies[1]["data"]["user"], bodies[1]["data"]["verdict"]) == ("bob", "allow")
    assert flagged_hook(blocked)[0] is EventType.evaluation_flagged
    await worker.aclose()


async def test_a_webhook_that_cannot_be_stored_is_logged_and_the_record_kept(
    db: SqliteDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(record: EvaluationRecord) -> None:
        raise RuntimeError("outbox down")

    writer = EvaluationWriter(
        db, retention=DAY, truncate_ips=False, clock=Clock(NOW), on_flagged=broken
    )
    with caplog.at_level(logging.WARNING, "seatguard"):
        writer.add(record(NOW))
        writer.add(record(NOW + 1))
        await writer.close()
    assert len(await stored(db)) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "flagged evaluation of pk_a/alice not sent: RuntimeError('outbox down')"
    ]
