"""The event stream's pure parts: which audit rows are events and what they say, the
`Last-Event-ID` it takes, and how the feed wakes streams and counts them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest

from seatguard.audit import AuditEvent, AuditKind, AuditRecord
from seatguard.events import PAGE, EventFeed, _events, last_event_id, session_event
from seatguard.problems import ApiError

pytestmark = pytest.mark.anyio

AT = 1767225600.1234  # 2026-01-01T00:00:00.123Z


def record(
    seq: int,
    kind: AuditKind,
    reason: str | None = None,
    *,
    site: str = "pk_a",
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    event = AuditEvent(
        AT, site, "alice", "s" * 16, "d" * 16, "203.0.113.9", kind, reason, detail or {}
    )
    return AuditRecord(seq, "0" * 64, "1" * 64, event)


@pytest.mark.parametrize(
    ("kind", "reason", "expected"),
    [
        (AuditKind.admitted, None, "admitted"),
        (AuditKind.admitted, "over_limit", "admitted"),  # monitor policy
        (AuditKind.blocked, "limit", "blocked"),
        (AuditKind.blocked, "challenge", "blocked"),
        (AuditKind.taken_over, "taken_over", "blocked"),
        (AuditKind.evicted, "evicted", "blocked"),
        (AuditKind.unblocked, None, "unblocked"),
        (AuditKind.ended, "logout", "ended"),
        (AuditKind.ended, "gone", "ended"),
        (AuditKind.idle_expired, "idle", "ended"),
        (AuditKind.absolute_expired, "absolute", "ended"),
        (AuditKind.revoked, "revoked", "revoked"),
        (AuditKind.created, None, None),  # always followed by admitted or blocked
        (AuditKind.refused, "revoked", None),  # a hello turned away changes no session
    ],
)
def test_each_audit_kind_is_an_event_of_one_type_or_none(
    kind: AuditKind, reason: str | None, expected: str | None
) -> None:
    event = session_event(record(7, kind, reason, detail={"decision": 41}))
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert (event.type, event.reason, event.decision) == (expected, reason, 41)


def test_every_audit_kind_is_decided() -> None:
    """A kind added to the audit trail must be mapped here too (or left out on purpose)."""
    assert {k for k in AuditKind if session_event(record(1, k)) is None} == {
        AuditKind.created,
        AuditKind.refused,
        # Changes to the site's settings: no session changed.
        AuditKind.site_changed,
        AuditKind.override_set,
        AuditKind.override_removed,
        AuditKind.policy_set,
        AuditKind.device_trusted,  # a device's trust: no session changed
        AuditKind.device_untrusted,
    }


def test_the_data_says_who_when_and_why_and_nothing_else() -> None:
    row = record(9, AuditKind.revoked, "revoked", detail={"decision": 3, "by": "admin:eve",
                                                          "scope": "user"})  # fmt: skip
    event = session_event(row)
    assert event is not None
    assert msgspec.to_builtins(event) == {
        "type": "revoked",
        "user": "alice",
        "session": "s" * 16,
        "device": "d" * 16,
        "time": "2026-01-01T00:00:00.123Z",
        "at": AT,
        "reason": "revoked",
        "decision": 3,
    }
    # Never the IP address, who revoked, or the chain's hashes.
    text = msgspec.json.encode(event).decode()
    for secret in ("203.0.113.9", "admin:eve", "0" * 64, "1" * 64, "pk_a"):
        assert secret not in text


@pytest.mark.parametrize(
    ("at", "time"),
    [(0.0, "1970-01-01T00:00:00.000Z"), (1e9 + 0.9996, "2001-09-09T01:46:40.999Z")],
)
def test_time_is_iso_8601_in_utc_to_the_millisecond(at: float, time: str) -> None:
    event = AuditEvent(at, "pk_a", "u", None, None, None, AuditKind.admitted, None)
    found = session_event(AuditRecord(1, "", "", event))
    assert found is not None and (found.time, found.at) == (time, at)


def test_a_row_without_a_whole_decision_has_none() -> None:
    for detail in ({}, {"decision": True}, {"decision": "7"}, {"decision": 7.5}):
        event = session_event(record(1, AuditKind.admitted, detail=detail))
        assert event is not None and event.decision is None


@pytest.mark.parametrize(
    ("raw", "seq"),
    [(None, 0), ("0", 0), ("42", 42), ("007", 7), ("9" * 19, int("9" * 19))],
)
def test_last_event_id_is_the_seq_to_start_after(raw: str | None, seq: int) -> None:
    assert last_event_id(raw) == seq


@pytest.mark.parametrize(
    "raw", ["", " 1", "1 ", "-1", "+1", "1.0", "1e3", "0x10", "abc", "²", "\u0661", "9" * 20]
)
def test_a_last_event_id_that_is_not_an_event_id_is_refused(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        last_event_id(raw)
    assert caught.value.status == 400


class FakeAudit:
    """The audit log as the feed and the streams read it: records and the head."""

    def __init__(self, records: Sequence[AuditRecord] = ()) -> None:
        self.rows = list(records)
        self.reads: list[tuple[str | None, int, int]] = []

    async def records(
        self, *, site: str | None = None, user: str | None = None, after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditRecord]:  # fmt: skip
        self.reads.append((site, after_seq, limit))
        found = [r for r in self.rows if r.seq > after_seq and site in (None, r.event.site)]
        return found[:limit]

    async def head(self) -> tuple[int, str] | None:
        return (self.rows[-1].seq, self.rows[-1].hash) if self.rows else None


def feed(audit: FakeAudit, per_site: int = 2, poll_interval: float = 0.01) -> EventFeed:
    return EventFeed(audit, per_site=per_site, poll_interval=poll_interval)  # type: ignore[arg-type]


def test_each_site_has_its_own_cap_and_a_closed_stream_frees_its_place() -> None:
    f = feed(FakeAudit(), per_site=2)
    assert f.open("a") and f.open("a")
    assert not f.open("a")  # the third of site a
    assert f.open("b")  # another site is not held back by it
    f.close("a")
    assert f.open("a")


async def test_an_append_wakes_only_the_streams_of_its_sites() -> None:
    f = feed(FakeAudit())
    a, b = f.wakeup("a"), f.wakeup("b")
    f.appended([record(1, AuditKind.admitted, site="a")])
    assert a.is_set() and not b.is_set()
    assert not f.wakeup("a").is_set()  # the next wake has a new event


async def test_the_poll_wakes_every_stream_when_the_head_moved() -> None:
    audit = FakeAudit([record(1, AuditKind.admitted, site="a")])
    f = feed(audit)
    f.open("a")
    f.start()
    try:
        # The first look wakes: rows may have come since the stream read.
        await asyncio.wait_for(f.wakeup("a").wait(), 1)
        waiting = f.wakeup("a")
        await asyncio.sleep(0.05)  # several polls, the head unchanged
        assert not waiting.is_set()
        audit.rows.append(record(2, AuditKind.blocked, site="b"))  # another node's row
        await asyncio.wait_for(waiting.wait(), 1)
    finally:
        await f.aclose()


async def take(events: AsyncIterator[Any], n: int) -> list[Any]:
    return [await asyncio.wait_for(anext(events), 1) for _ in range(n)]


async def test_a_stream_reads_page_after_page_skipping_rows_that_are_not_events() -> None:
    rows = []
    for seq in range(1, 2 * PAGE + 2, 2):  # a created row, then its admitted one
        rows += [record(seq, AuditKind.created), record(seq + 1, AuditKind.admitted)]
    rows.append(record(len(rows) + 1, AuditKind.admitted, site="pk_other"))
    audit = FakeAudit(rows)
    sent = [e async for e in _events(feed(audit), "pk_a", 3, follow=False)]
    assert [e.id for e in sent] == [str(seq) for seq in range(4, 2 * PAGE + 3, 2)]
    assert {e.event for e in sent} == {"admitted"}
    assert all(limit == PAGE for _, _, limit in audit.reads)


async def test_a_following_stream_waits_for_a_wake_then_reads_on() -> None:
    audit = FakeAudit([record(1, AuditKind.admitted)])
    f = feed(audit)
    events = _events(f, "pk_a", 0, follow=True)
    [first] = await take(events, 1)
    assert first.id == "1"
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.02)
    assert not pending.done()  # at the end of the log: waiting
    audit.rows.append(record(2, AuditKind.revoked, "revoked"))
    f.appended(audit.rows[-1:])
    second = await asyncio.wait_for(pending, 1)
    assert (second.id, second.event) == ("2", "revoked")
    await events.aclose()  # type: ignore[attr-defined]
