"""What happened, written down and told: outcomes become audit rows and webhooks.

`audit_events` and `webhook_events` are pure translations of a presence `Outcome`; the
`Recorder` appends the rows (durably, before anyone is told), keeps the head checkpoint
outside the database up to date, tells the node's event streams of the new rows, and writes
the webhooks to the outbox (also before anyone is told).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .audit import AuditEvent, AuditKind, AuditRecord, Detail, Scalar
from .audit.batch import AuditBatcher
from .audit.checkpoint import CheckpointWriter
from .db import AuditLog
from .deliveries import DeliveryWorker
from .errors import ConfigError
from .presence import RULE_FIELDS, EndReason, Outcome, SeatState
from .protocol import BlockReason
from .sealing import SecretBox
from .signals.evaluations import EvaluationRecord
from .signals.policies import Policy, encode_policy
from .site_secrets import opened
from .sites import Site
from .suspension import Suspension
from .types import UserKey
from .webhooks import EventType

__all__ = [
    "Recorder",
    "audit_events",
    "change_event",
    "flagged_hook",
    "policy_summary",
    "refused_event",
    "site_changes",
    "suspension_event",
    "suspension_hook",
    "webhook_events",
]

log = logging.getLogger("seatguard")

_ENDED_KIND = {
    EndReason.idle: AuditKind.idle_expired,
    EndReason.absolute: AuditKind.absolute_expired,
    EndReason.revoked: AuditKind.revoked,
    EndReason.suspended: AuditKind.suspended,
}
_BLOCKED_KIND = {
    BlockReason.evicted: AuditKind.evicted,
    BlockReason.taken_over: AuditKind.taken_over,
}


def audit_events(
    key: UserKey,
    outcome: Outcome,
    now: float,
    context: Mapping[str, str] | None = None,
    decision: int | None = None,
) -> list[AuditEvent]:
    """The audit rows of one outcome, in the order things happened: endings free seats
    before others take them. `context` (who revoked, and what) goes with revoked rows.

    `decision`, the store's sequence number of the decision (rising for each user across
    every node), goes in each row's detail: the nodes of a cluster append their rows each
    on their own, so one user's rows of decisions made a few milliseconds apart on two
    nodes may be stored in the other order; sorted by `decision` (then `seq`), a user's
    rows replay the decisions as they were made.
    """
    site, user = key
    events: list[AuditEvent] = []
    order = {} if decision is None else {"decision": decision}

    def add(
        kind: AuditKind,
        session: str | None,
        device: str | None,
        ip: str | None,
        reason: str | None,
        **detail: Any,
    ) -> None:
        detail = {**order, **detail}
        events.append(
            AuditEvent(now, site, user, session, device, ip or None, kind, reason, detail)
        )

    for e in outcome.ended:
        forced = e.reason in (EndReason.revoked, EndReason.suspended)
        extra = dict(context or {}) if forced else {}
        kind = _ENDED_KIND.get(e.reason, AuditKind.ended)
        add(kind, e.session, e.device, e.ip, e.reason.value, **extra)
    for t in outcome.transitions:
        reason = t.reason.value if t.reason else None
        if t.session == outcome.created:
            add(AuditKind.created, t.session, t.device, t.ip, None, device_proof=t.device_proof)
            kind = AuditKind.admitted if t.state is SeatState.admitted else AuditKind.blocked
        elif t.state is SeatState.admitted:
            kind = AuditKind.unblocked
        else:
            kind = _BLOCKED_KIND.get(t.reason or BlockReason.limit, AuditKind.blocked)
        held = _HELD_BY.get(t.reason) if t.rule is not None else None
        if held is not None:  # held by the site's policy: the rule and its verdict
            add(kind, t.session, t.device, t.ip, reason, by="policy", rule=t.rule, verdict=held)
        else:
            add(kind, t.session, t.device, t.ip, reason)
    for session in outcome.conflicts:
        seen = outcome.state_of(session)
        device, ip = (seen.device, seen.ip) if seen else (None, None)
        add(AuditKind.admitted, session, device, ip, "over_limit", monitor=True)
    return events


_HELD_BY: dict[BlockReason | None, str] = {
    BlockReason.policy: "block",
    BlockReason.verify: "challenge",
}
"""The policy's verdict behind each block reason of a hold."""


def refused_event(
    key: UserKey, session: str | None, device: str | None, ip: str | None, reason: str, now: float
) -> AuditEvent:
    """The audit row of a hello that was turned away."""
    site, user = key
    return AuditEvent(now, site, user, session, device, ip or None, AuditKind.refused, reason)


def suspension_event(suspension: Suspension, *, lifted: bool, by: str, now: float) -> AuditEvent:
    """The audit row of a user suspended, or of a suspension lifted (no session)."""
    kind = AuditKind.unsuspended if lifted else AuditKind.suspended
    detail: dict[str, Scalar] = {"by": by, "since": suspension.since}
    if not lifted:
        detail["reason_text"] = suspension.reason
    reason = "reauthenticated" if lifted and by == "reauthentication" else None
    return AuditEvent(now, suspension.site, suspension.user, None, None, None, kind, reason, detail)


def change_event(
    site: str, kind: AuditKind, now: float, detail: Detail, user: str = ""
) -> AuditEvent:
    """The audit row of a change to a site's settings (`site_changed`, `override_set`,
    `override_removed`, `policy_set`): `detail` says who made it (`by`: `api`, or an
    operator's name) and what changed; `user` names the user of a user's override."""
    return AuditEvent(now, site, user, None, None, None, kind, None, detail)


SHOWN_TEXT = 300
"""Characters of a changed setting's text an audit row holds; longer ones are `changed`."""


def site_changes(before: Site, after: Site) -> dict[str, Scalar]:
    """The settings of a site that differ in `after`, for a `site_changed` row: each with
    its new value where that is a number, a boolean or short text, else `"changed"` (keys
    and key sets); secrets are never among them."""
    old, new = _settings(before), _settings(after)
    return {n: _shown(v) for n, v in new.items() if old.get(n) != v}


def _settings(site: Site) -> dict[str, Any]:
    rules = {n: getattr(site.rules, n) for n in RULE_FIELDS}
    config = msgspec.structs.asdict(site.config)
    origins = " ".join(site.origins)
    return {
        "name": site.name,
        "origins": origins,
        "client_settings": site.client_settings,
        **rules,
        **config,
    }


def _shown(value: Any) -> Scalar:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and len(value) <= SHOWN_TEXT:
        return value
    return "changed"


def policy_summary(policy: Policy) -> dict[str, Scalar]:
    """A policy as a `policy_set` row tells of it: how many rules (the site's, and the orgs
    and roles with their own) and the SHA-256 of the policy as stored, to match it later."""
    return {
        "rules": len(policy.rules),
        "orgs": len(policy.orgs),
        "roles": len(policy.roles),
        "sha256": hashlib.sha256(encode_policy(policy)).hexdigest(),
    }


def suspension_hook(suspension: Suspension, *, lifted: bool) -> tuple[EventType, dict[str, Any]]:
    """The webhook of a user suspended (`user.suspended`) or lifted (`user.unsuspended`)."""
    data: dict[str, Any] = {"site": suspension.site, "user": suspension.user}
    if lifted:
        return EventType.user_unsuspended, data
    return EventType.user_suspended, {
        **data,
        "since": suspension.since,
        "reason": suspension.reason,
    }


def flagged_hook(record: EvaluationRecord) -> tuple[EventType, dict[str, Any]]:
    """The webhook of a flagged policy evaluation (`evaluation.flagged`): the record as
    stored, its address already truncated if the operator asked."""
    return EventType.evaluation_flagged, msgspec.to_builtins(record)


def webhook_events(key: UserKey, outcome: Outcome) -> list[tuple[EventType, dict[str, Any]]]:
    """The webhooks of one outcome: ends by force, then blocks, unblocks, takeovers and
    evictions, in the audit trail's order (endings free seats before others take them)."""
    site, user = key
    hooks: list[tuple[EventType, dict[str, Any]]] = []
    for e in outcome.ended:
        data = {"site": site, "user": user, "session": e.session, "device": e.device}
        if e.reason is EndReason.revoked:
            hooks.append((EventType.session_revoked, data))
        elif e.reason in (EndReason.idle, EndReason.absolute):
            hooks.append((EventType.session_expired, {**data, "reason": e.reason.value}))
    for t in outcome.transitions:
        data = {"site": site, "user": user, "session": t.session, "device": t.device}
        if t.state is SeatState.admitted:
            if t.session != outcome.created:
                hooks.append((EventType.seat_unblocked, data))
            continue
        reason = t.reason or BlockReason.limit
        kind = {
            BlockReason.evicted: EventType.seat_evicted,
            BlockReason.taken_over: EventType.seat_taken_over,
        }.get(reason, EventType.seat_blocked)
        hooks.append((kind, {**data, "reason": reason.value}))
    return hooks


class Recorder:
    """Appends audit rows and stores webhooks in the outbox for every outcome of the node.

    `appended` is told of the rows of each append once they are committed (the event
    streams' `EventFeed.appended`). With a `checkpoint` path, the head of the log is
    written there at `start()`, after appends (at most about once a second, and at once
    when it is more than `checkpoint_lag` records behind), and at `flush()`, which the
    server calls at shutdown so that it names the very last record.
    """

    def __init__(
        self,
        audit: AuditLog,
        key: bytes,
        site: Callable[[str], Awaitable[Site | None]],
        webhooks: DeliveryWorker | None,
        *,
        box: SecretBox | None = None,
        checkpoint: Path | None = None,
        checkpoint_lag: int | None = None,
        appended: Callable[[Sequence[AuditRecord]], None] | None = None,
    ) -> None:
        self.audit = audit
        self.key = key
        self._batcher = AuditBatcher(audit, key)
        self.site = site
        self.webhooks = webhooks
        self.box = box  # opens the sites' sealed webhook secrets, to check there are some
        self.appended = appended
        self.checkpoint = (
            None
            if checkpoint is None
            else CheckpointWriter(checkpoint, key, self._stored_hash, lag=checkpoint_lag)
        )

    async def start(self) -> None:
        """Bring the head checkpoint up to the log as it stands (the server is starting)."""
        if self.checkpoint is not None:
            await self.checkpoint.start(await self.audit.head())

    async def flush(self) -> None:
        """Bring the head checkpoint up to the last record appended."""
        if self.checkpoint is not None:
            await self.checkpoint.flush()

    async def _append(self, events: Sequence[AuditEvent]) -> None:
        records = await self._batcher.append(events)
        if records and self.appended is not None:
            self.appended(records)
        if records and self.checkpoint is not None:
            await self.checkpoint.advance(records[-1].seq, records[-1].hash)

    async def _stored_hash(self, seq: int) -> str | None:
        found: list[AuditRecord] = await self.audit.records(after_seq=seq - 1, limit=1)
        return found[0].hash if found and found[0].seq == seq else None

    async def record(
        self,
        key: UserKey,
        outcome: Outcome,
        now: float,
        context: Mapping[str, str] | None = None,
        decision: int | None = None,
    ) -> None:
        events = audit_events(key, outcome, now, context, decision)
        if events:
            await self._append(events)
        hooks = webhook_events(key, outcome) if self.webhooks else []
        await self._send(key[0], hooks, now)

    async def suspension(
        self, suspension: Suspension, *, lifted: bool, by: str, now: float
    ) -> None:
        """Record a user suspended, or a suspension lifted, and send its webhook."""
        await self._append([suspension_event(suspension, lifted=lifted, by=by, now=now)])
        if self.webhooks:
            await self._send(suspension.site, [suspension_hook(suspension, lifted=lifted)], now)

    async def changed(self, event: AuditEvent) -> None:
        """Record a change to a site's settings (`change_event`) or to a device's trust; no
        webhook."""
        await self._append([event])

    async def _send(
        self, site_key: str, hooks: list[tuple[EventType, dict[str, Any]]], now: float
    ) -> None:
        """Store webhooks in the outbox, if the site has a webhook URL and a secret."""
        if not hooks:
            return
        site = await self.site(site_key)
        if site is None or not site.config.webhook_url or self.box is None:
            return
        try:
            secrets = opened(self.box, site, "webhook", now)  # new and old while rotating
        except ConfigError as exc:
            log.warning("webhooks of %s not sent: %s", site.key, exc)
            return
        if not secrets:
            return
        assert self.webhooks is not None
        await self.webhooks.enqueue(site.key, site.config.webhook_url, hooks, now)

    async def flagged(self, record: EvaluationRecord) -> None:
        """Send the `evaluation.flagged` webhook of a record (the `EvaluationWriter`'s
        `on_flagged`, which calls it only for flagged ones: `signals.evaluations.is_flagged`)."""
        if self.webhooks:
            await self._send(record.site, [flagged_hook(record)], record.at)

    async def refused(
        self,
        key: UserKey,
        session: str | None,
        ip: str | None,
        reason: str,
        now: float,
        device: str | None = None,
    ) -> None:
        """Record a hello that was turned away (bad identity, revoked or expired session),
        with the device it came from when known."""
        await self._append([refused_event(key, session, device, ip, reason, now)])
