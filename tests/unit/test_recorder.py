"""What the recorder writes down and tells: every kind of outcome as audit rows and webhooks.

Outcomes are built by hand, as `presence` returns them; `now` is fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from seatguard.audit import AuditEvent, AuditKind, AuditRecord, chain
from seatguard.presence import Ending, EndReason, Outcome, SeatState, Transition
from seatguard.protocol import BlockReason
from seatguard.recorder import Recorder, audit_events, refused_event, webhook_events
from seatguard.sites import Site
from seatguard.webhooks import EventType

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
KEY = ("pk_site", "alice")
ADMITTED, BLOCKED = SeatState.admitted, SeatState.blocked


def seated(
    session: str, reason: BlockReason | None = None, state: SeatState = ADMITTED
) -> Transition:
    """A transition of `session` on its own device `d-<session>` from 203.0.113.<n>."""
    return Transition(session, state, reason, device=f"d-{session}", ip=f"203.0.113.{len(session)}")


def ended(session: str, reason: EndReason) -> Ending:
    return Ending(session, reason, device=f"d-{session}", ip=f"203.0.113.{len(session)}")


def rows(outcome: Outcome) -> list[tuple[AuditKind, str | None, str | None, str | None]]:
    """(kind, session, device, reason) of each audit row, in order."""
    return [(e.kind, e.session, e.device, e.reason) for e in audit_events(KEY, outcome, NOW)]


def hooks(outcome: Outcome) -> list[tuple[EventType, dict[str, Any]]]:
    return webhook_events(KEY, outcome)


def data(session: str, **extra: str) -> dict[str, Any]:
    return {
        "site": "pk_site",
        "user": "alice",
        "session": session,
        "device": f"d-{session}",
        **extra,
    }


# -- a new browser session ---------------------------------------------------------------


def test_a_new_session_that_gets_a_seat_is_created_then_admitted() -> None:
    outcome = Outcome(transitions=(seated("s1"),), created="s1")
    assert rows(outcome) == [
        (AuditKind.created, "s1", "d-s1", None),
        (AuditKind.admitted, "s1", "d-s1", None),
    ]
    assert hooks(outcome) == []  # an ordinary admission is no news for the site


def test_a_new_session_over_the_limit_is_created_then_blocked() -> None:
    outcome = Outcome(transitions=(seated("s2", BlockReason.limit, BLOCKED),), created="s2")
    assert rows(outcome) == [
        (AuditKind.created, "s2", "d-s2", None),
        (AuditKind.blocked, "s2", "d-s2", "limit"),
    ]
    assert hooks(outcome) == [(EventType.seat_blocked, data("s2", reason="limit"))]


def test_a_new_session_offered_continue_here_is_blocked_with_challenge() -> None:
    outcome = Outcome(transitions=(seated("s2", BlockReason.challenge, BLOCKED),), created="s2")
    assert rows(outcome)[1] == (AuditKind.blocked, "s2", "d-s2", "challenge")
    assert hooks(outcome) == [(EventType.seat_blocked, data("s2", reason="challenge"))]


@pytest.mark.parametrize(
    ("reason", "verdict"), [(BlockReason.verify, "challenge"), (BlockReason.policy, "block")]
)
def test_a_browser_the_policy_holds_is_audited_with_the_rule_and_verdict(
    reason: BlockReason, verdict: str
) -> None:
    held = Transition("s2", BLOCKED, reason, "d-s2", "203.0.113.9", rule="shared")
    outcome = Outcome(transitions=(held,), created="s2")
    created, blocked = audit_events(KEY, outcome, NOW)
    assert (blocked.kind, blocked.reason) == (AuditKind.blocked, reason.value)
    assert blocked.detail == {"by": "policy", "rule": "shared", "verdict": verdict}
    assert "rule" not in created.detail
    assert hooks(outcome) == [(EventType.seat_blocked, data("s2", reason=reason.value))]


def test_a_blocked_transition_without_a_reason_counts_as_limit() -> None:
    outcome = Outcome(transitions=(seated("s2", None, BLOCKED),))
    assert rows(outcome) == [(AuditKind.blocked, "s2", "d-s2", None)]
    assert hooks(outcome) == [(EventType.seat_blocked, data("s2", reason="limit"))]


# -- seats changing hands ----------------------------------------------------------------


def test_a_waiting_session_that_gets_a_seat_is_unblocked() -> None:
    outcome = Outcome(transitions=(seated("s2"),))
    assert rows(outcome) == [(AuditKind.unblocked, "s2", "d-s2", None)]
    assert hooks(outcome) == [(EventType.seat_unblocked, data("s2"))]


def test_an_eviction_blocks_the_oldest_and_seats_the_newcomer() -> None:
    # evict-oldest: s2 arrives, takes the seat; s1, seated longest, is blocked.
    outcome = Outcome(
        transitions=(seated("s2"), seated("s1", BlockReason.evicted, BLOCKED)), created="s2"
    )
    assert rows(outcome) == [
        (AuditKind.created, "s2", "d-s2", None),
        (AuditKind.admitted, "s2", "d-s2", None),
        (AuditKind.evicted, "s1", "d-s1", "evicted"),
    ]
    assert hooks(outcome) == [(EventType.seat_evicted, data("s1", reason="evicted"))]


def test_a_takeover_blocks_the_victim_and_unblocks_the_taker() -> None:
    # "use here" on s2: it gets the seat, s1 loses it.
    outcome = Outcome(transitions=(seated("s2"), seated("s1", BlockReason.taken_over, BLOCKED)))
    assert rows(outcome) == [
        (AuditKind.unblocked, "s2", "d-s2", None),
        (AuditKind.taken_over, "s1", "d-s1", "taken_over"),
    ]
    assert hooks(outcome) == [
        (EventType.seat_unblocked, data("s2")),
        (EventType.seat_taken_over, data("s1", reason="taken_over")),
    ]


# -- endings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "kind", "hook"),
    [
        (EndReason.idle, AuditKind.idle_expired, (EventType.session_expired, {"reason": "idle"})),
        (
            EndReason.absolute,
            AuditKind.absolute_expired,
            (EventType.session_expired, {"reason": "absolute"}),
        ),
        (EndReason.revoked, AuditKind.revoked, (EventType.session_revoked, {})),
        (EndReason.logout, AuditKind.ended, None),
        (EndReason.closed, AuditKind.ended, None),
        (EndReason.gone, AuditKind.ended, None),
        (EndReason.silent, AuditKind.ended, None),
    ],
)
def test_each_ending_has_its_kind_and_only_forced_ones_a_webhook(
    reason: EndReason, kind: AuditKind, hook: tuple[EventType, dict[str, str]] | None
) -> None:
    outcome = Outcome(ended=(ended("s1", reason),))
    [event] = audit_events(KEY, outcome, NOW)
    assert event == AuditEvent(
        NOW, "pk_site", "alice", "s1", "d-s1", "203.0.113.2", kind, reason.value
    )
    expected = [] if hook is None else [(hook[0], data("s1", **hook[1]))]
    assert hooks(outcome) == expected


def test_endings_come_first_then_the_seats_they_freed() -> None:
    # Revoking s1 frees its seat for s2, which was waiting.
    outcome = Outcome(transitions=(seated("s2"),), ended=(ended("s1", EndReason.revoked),))
    assert rows(outcome) == [
        (AuditKind.revoked, "s1", "d-s1", "revoked"),
        (AuditKind.unblocked, "s2", "d-s2", None),
    ]
    assert hooks(outcome) == [
        (EventType.session_revoked, data("s1")),
        (EventType.seat_unblocked, data("s2")),
    ]


def test_every_row_of_a_decision_carries_its_sequence_beside_the_context() -> None:
    outcome = Outcome(transitions=(seated("s2"),), ended=(ended("s1", EndReason.revoked),))
    context = {"by": "api", "scope": "user"}
    events = audit_events(KEY, outcome, NOW, context, decision=1_700_000_000_123_456)
    assert [dict(e.detail) for e in events] == [
        {"decision": 1_700_000_000_123_456, "by": "api", "scope": "user"},
        {"decision": 1_700_000_000_123_456},
    ]
    assert [dict(e.detail) for e in audit_events(KEY, outcome, NOW)] == [{}, {}]


# -- monitor ------------------------------------------------------------------------------


def test_a_monitor_conflict_is_admitted_over_the_limit_and_flagged() -> None:
    # monitor: s2 is admitted although s1 holds the only seat; nobody is blocked.
    outcome = Outcome(transitions=(seated("s2"),), conflicts=("s2",), created="s2")
    events = audit_events(KEY, outcome, NOW)
    assert [(e.kind, e.reason) for e in events] == [
        (AuditKind.created, None),
        (AuditKind.admitted, None),
        (AuditKind.admitted, "over_limit"),
    ]
    assert (events[2].device, events[2].ip, dict(events[2].detail)) == (
        "d-s2",
        "203.0.113.2",
        {"monitor": True},
    )
    assert hooks(outcome) == []


def test_a_conflict_of_a_session_without_a_transition_has_no_device() -> None:
    outcome = Outcome(conflicts=("s3",))
    [event] = audit_events(KEY, outcome, NOW)
    assert (event.kind, event.session, event.device, event.ip) == (
        AuditKind.admitted,
        "s3",
        None,
        None,
    )


# -- rows in general ----------------------------------------------------------------------


def test_every_row_names_the_site_user_time_and_ip() -> None:
    outcome = Outcome(
        transitions=(seated("s2"), seated("s1", BlockReason.evicted, BLOCKED)),
        ended=(ended("s9", EndReason.idle),),
        created="s2",
    )
    events = audit_events(KEY, outcome, NOW)
    assert {(e.at, e.site, e.user) for e in events} == {(NOW, "pk_site", "alice")}
    assert all(e.ip == f"203.0.113.{len(str(e.session))}" for e in events)
    assert audit_events(KEY, Outcome(), NOW) == [] and hooks(Outcome()) == []


def test_an_unknown_ip_is_stored_as_none() -> None:
    outcome = Outcome(transitions=(Transition("s1", ADMITTED, None, device="d1"),))
    assert audit_events(KEY, outcome, NOW)[0].ip is None


# -- refused hellos -----------------------------------------------------------------------


def test_a_refused_hello_carries_its_device_when_known() -> None:
    known = refused_event(KEY, "s1", "d-s1", "203.0.113.2", "revoked", NOW)
    assert known == AuditEvent(
        NOW, "pk_site", "alice", "s1", "d-s1", "203.0.113.2", AuditKind.refused, "revoked"
    )
    unknown = refused_event(KEY, None, None, "", "identity_invalid", NOW)
    assert (unknown.session, unknown.device, unknown.ip) == (None, None, None)


class MemoryLog:
    """Just enough of an AuditLog: appends chained records to a list."""

    def __init__(self) -> None:
        self.stored: list[AuditRecord] = []

    async def append(self, events: Sequence[AuditEvent], key: bytes) -> list[AuditRecord]:
        records = []
        for event in events:
            prev = self.stored[-1].hash if self.stored else "0" * 64
            records.append(chain(prev, len(self.stored) + 1, event, key))
            self.stored.append(records[-1])
        return records

    async def records(self, **kw: Any) -> list[AuditRecord]:
        return list(self.stored)

    async def all_records(self) -> AsyncIterator[AuditRecord]:
        for record in self.stored:
            yield record

    async def head(self) -> tuple[int, str] | None:
        return (self.stored[-1].seq, self.stored[-1].hash) if self.stored else None


async def no_site(key: str) -> Site | None:
    return None


async def test_the_recorder_appends_refusals_with_their_device() -> None:
    log = MemoryLog()
    recorder = Recorder(log, bytes(32), no_site, None)
    await recorder.refused(KEY, "s1", "203.0.113.2", "expired", NOW, device="d-s1")
    await recorder.refused(KEY, "s2", "203.0.113.3", "revoked", NOW)  # device not known
    assert [(r.event.kind, r.event.device, r.event.reason) for r in log.stored] == [
        (AuditKind.refused, "d-s1", "expired"),
        (AuditKind.refused, None, "revoked"),
    ]
