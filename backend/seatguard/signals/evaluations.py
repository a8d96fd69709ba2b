"""Policy evaluations as they are kept: what a site's policy said of one session, when and why.

The node evaluates a session's policy at its hello and whenever its checks change; each
time it hands `EvaluationWriter.add` an `EvaluationRecord` (made by `record_of`, pure) and
goes on. One task writes the queue to the database in batches, with the address truncated
first if the operator asked for it (`truncated_ip`: IPv4 /24, IPv6 /48), and hands each
flagged record (`is_flagged`: a verdict other than `allow`, or a dry-run rule that matched)
to `on_flagged`, which sends the `evaluation.flagged` webhook. The same task deletes the
records older than the retention, at start and every `PURGE_INTERVAL`.

A write that fails is logged (one line at most every few seconds) and dropped, like a full
queue: evaluations are a record for the site and the operator, and admission never waits
for them nor fails because of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ..proxies import ip_address
from ..ratelog import RateLog
from .checks import Checks
from .policies import Evaluation, Verdict
from .risk import Level, Risk

if TYPE_CHECKING:
    from ..db import Database
    from ..types import UserKey
    from .guard import Judgement

__all__ = [
    "MAX_BATCH",
    "MAX_PENDING",
    "PURGE_INTERVAL",
    "DryRunOut",
    "EvaluationRecord",
    "EvaluationWriter",
    "RiskOut",
    "Trigger",
    "is_flagged",
    "page_of",
    "record_of",
    "truncated_ip",
]

log = logging.getLogger("seatguard")

MAX_PENDING = 10_000
"""Records waiting to be written, at most; more are dropped (one log line)."""
MAX_BATCH = 500
"""Records written in one call of `Database.add_evaluations`, at most."""
PURGE_INTERVAL = 3600.0
"""Seconds between two deletions of the records older than the retention."""

Trigger = Literal["hello", "change"]
"""Why a session was evaluated: its hello, or a change of its checks."""


class RiskOut(msgspec.Struct):
    score: int
    level: Level


class DryRunOut(msgspec.Struct):
    rule: str  # the name of a dry-run rule that matched before the verdict's rule
    verdict: Verdict  # what it would have given


class EvaluationRecord(msgspec.Struct, frozen=True):
    """One evaluation of a session's policy, as stored and served."""

    site: str
    user: str
    session: str
    device: str
    ip: str  # as seen; the writer truncates it first if the setting says so
    at: float  # seconds since the epoch, the node's clock
    trigger: Trigger
    checks: dict[str, Any]  # `Checks.values()`: check name to value
    geo: Literal["on", "off"]  # "off": no GeoIP database, the geo checks read null
    risk: RiskOut
    rule: str | None  # the live rule that gave the verdict; None: none matched (allow)
    verdict: Verdict
    applied: bool  # whether the node acted on the verdict
    dry_run: list[DryRunOut]  # the dry-run rules that matched before the verdict's rule


def record_of(
    site: str,
    user: str,
    session: str,
    device: str,
    ip: str,
    at: float,
    trigger: Trigger,
    checks: Checks,
    risk: Risk,
    evaluation: Evaluation,
    applied: bool,
) -> EvaluationRecord:
    """The record of one evaluation of a session's policy."""
    return EvaluationRecord(
        site=site,
        user=user,
        session=session,
        device=device,
        ip=ip,
        at=at,
        trigger=trigger,
        checks=checks.values(),
        geo=checks.geo,
        risk=RiskOut(risk.score, risk.level),
        rule=None if evaluation.rule is None else evaluation.rule.name,
        verdict=evaluation.verdict,
        applied=applied,
        dry_run=[DryRunOut(rule.name, verdict) for rule, verdict in evaluation.dry_run_matches],
    )


def is_flagged(record: EvaluationRecord) -> bool:
    """Whether the record is worth telling the site of: a verdict other than `allow`, or a
    dry-run rule that matched."""
    return record.verdict != "allow" or bool(record.dry_run)


def truncated_ip(ip: str) -> str:
    """`ip` with its host part zeroed: an IPv4 address's /24 (`203.0.113.0`), an IPv6
    address's /48 (`2001:db8:7::`); an IPv4-mapped IPv6 address counts as IPv4. Text that
    is no address gives "", so that nothing of it is kept."""
    address = ip_address(ip)
    if address is None:
        return ""
    bits = 24 if isinstance(address, ipaddress.IPv4Address) else 48
    return str(ipaddress.ip_network((address, bits), strict=False).network_address)


def page_of(
    found: Sequence[EvaluationRecord], limit: int
) -> tuple[list[EvaluationRecord], float | None]:
    """A page of `limit` records from `found`, newest first (up to `limit + 1` of them, as
    the database gave them), and the `before` of the next page (None: this is the last).

    Records of one instant are not split between two pages, so that `before` (exclusive)
    loses none: a page that would end inside a group ends before it, unless the group
    fills the whole page (more than `limit` records at one instant: the rest are skipped).
    """
    if len(found) <= limit:
        return list(found), None
    page = list(found[:limit])
    boundary = found[limit].at
    whole = [r for r in page if r.at != boundary]
    if whole:
        page = whole
    return page, page[-1].at


class EvaluationWriter:
    """Queues evaluation records and writes them to `db` with one task; `start()` begins
    the hourly deletion of records older than `retention` seconds, `await flush()` waits
    until everything queued so far is written (or dropped), `await close()` at shutdown.

    `truncate_ips`: keep only the network of each address (`truncated_ip`). `on_flagged` is
    given every flagged record (`is_flagged`) once it is written, by the same task; `sleep`
    waits between deletions (a test's fake clock replaces both).
    """

    def __init__(
        self,
        db: Database,
        *,
        retention: float,
        truncate_ips: bool,
        clock: Callable[[], float],
        on_flagged: Callable[[EvaluationRecord], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.retention = retention
        self.truncate_ips = truncate_ips
        self.clock = clock
        self.on_flagged = on_flagged
        self.sleep = sleep
        self._pending: list[EvaluationRecord] = []
        self._writer: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self._full = RateLog(log)
        self._failed = RateLog(log)
        self._unsent = RateLog(log)
        self._unpurged = RateLog(log)

    def judged(self, key: UserKey, judgement: Judgement, now: float) -> None:
        """Queue the evaluations of one judgement of a user's sessions (`signals.guard`),
        made at `now`; returns at once (the node calls it after the step)."""
        for j in judgement.judged:
            self.add(
                record_of(
                    key[0], key[1], j.session, j.device, j.ip, now, j.trigger,
                    j.checks, j.risk, j.evaluation, j.applied,
                )
            )  # fmt: skip

    def add(self, record: EvaluationRecord) -> None:
        """Queue a record to be written; returns at once (drops it when the queue is full)."""
        if len(self._pending) >= MAX_PENDING:
            self._full(
                "evaluation of %s/%s not recorded: %d evaluations wait already",
                record.site,
                record.user,
                MAX_PENDING,
            )
            return
        if self.truncate_ips:
            record = msgspec.structs.replace(record, ip=truncated_ip(record.ip))
        self._pending.append(record)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def start(self) -> None:
        """Delete the records older than the retention now, then every `PURGE_INTERVAL`."""
        if self._purger is None:
            self._purger = asyncio.get_running_loop().create_task(self._purge_forever())

    async def purge(self) -> int:
        """Delete the records older than the retention; how many (0, logged, on failure)."""
        try:
            return await self.db.purge_evaluations(self.clock() - self.retention)
        except Exception as exc:  # the next purge deletes them
            self._unpurged("old evaluations not deleted: %r", exc)
            return 0

    async def flush(self) -> None:
        """Wait until what is queued now is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        """Stop deleting, write what is queued, then stop."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        await self.flush()

    async def _purge_forever(self) -> None:
        while True:
            await self.purge()
            await self.sleep(PURGE_INTERVAL)

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    await self.db.add_evaluations(batch)
                except Exception as exc:  # a record: admission goes on without it
                    self._failed("%d evaluations not stored: %r", len(batch), exc)
                if self.on_flagged is not None:
                    for record in filter(is_flagged, batch):
                        await self._tell(self.on_flagged, record)
        finally:
            self._writer = None

    async def _tell(
        self, on_flagged: Callable[[EvaluationRecord], Awaitable[None]], record: EvaluationRecord
    ) -> None:
        try:
            await on_flagged(record)
        except Exception as exc:
            self._unsent("flagged evaluation of %s/%s not sent: %r", record.site, record.user, exc)
