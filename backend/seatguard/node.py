"""One server process: applies presence operations to the store and tells the tabs.

The node is the thin I/O layer around the pure core. Every change goes through `_change`:
the store applies the operation atomically to the user's snapshot (a shared store batches
one user's concurrent operations into one write), then, one operation of that user at a
time and in the store's order, the node writes down what happened (audit trail,
webhooks), tells the tabs whose sockets it holds, and sends a notice to the other nodes
holding tabs of that user.

Heartbeats stay in the node: a frame only stamps its tab. The node writes its tabs' last
frames to the store in batches (`sync`), soon enough for the session timeout and the idle
timeout, and the same step repairs whatever this node missed: tabs the store no longer
knows are joined again, tabs it still credits to this node but that left are released,
and every tab is told its session's true state. Expiry checks run per user at the next
time something can expire (`next_deadline`), not by scanning everyone.

A tab whose session holds a seat gets a seat token (`give_seat`), and a new one at two
thirds of its lifetime, from the same tick (`_renew`); a tab told it is blocked, or gone,
gets none. The tokens asked for in one turn of the event loop are signed together
(`SeatTokens.issue_soon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import msgspec

from . import presence
from .admission import Sources, rules_for
from .audit import AuditEvent
from .db import Database
from .deadlines import Deadlines
from .errors import StoreUnavailable
from .identity.jwks import JwksCache
from .lookups import (
    HistoryReads,
    OverrideCache,
    PolicyCache,
    RevocationChecks,
    SiteCache,
    SuspensionCache,
)
from .notices import (
    ENDINGS,
    NOTICE_FORMAT,
    Notice,
    UnknownFormat,
    decode_notice,
    encode_notice,
    state_frame,
)
from .presence import (
    Arrival,
    Holder,
    Leave,
    Outcome,
    Refusal,
    Rules,
    SeatState,
    Seen,
    Session,
    UserPresence,
    next_deadline,
)
from .protocol import BlockReason, CloseCode, Conflict, Seat, ServerFrame
from .ratelog import RateLog
from .rules import Claims
from .sealing import SecretBox
from .seat import SeatTokens, Wanted
from .serial import KeyedLock
from .settings import Settings
from .signals.checks import SessionView
from .signals.guard import Guard, Judgement, is_empty, sightings
from .signals.recording import HistoryWriter
from .sites import Site
from .stats import Latencies
from .store import MemoryStore, PresenceStore
from .suspension import Suspension
from .types import SessionId, SiteKey, TabId, UserKey

__all__ = ["Joined", "Node", "Recorder", "Tab"]

log = logging.getLogger("seatguard")
_bad_notices = RateLog(log)  # whoever can publish on the Redis channels can send them
_newer_notices = RateLog(log)  # during a rolling upgrade, many at a time
_unjudged = RateLog(log)  # a policy that cannot be applied: its inputs cannot be read

_TICK_SLICE = 64  # users a tick syncs or expires before it lets the sockets be answered

T = TypeVar("T")
Told = tuple[SeatState, BlockReason | None]


class Tab(Protocol):
    """A live socket of one tab, as the node sees it."""

    key: UserKey | None  # whose tab it is, once joined
    arrival: Arrival | None  # who it is, as it joined
    rules: Rules  # the rules resolved for it at hello (again when an operator changes them)
    page: Claims | None  # what its page asked for, where the site allows it
    token: Claims | None  # what its identity token says
    seen: float  # its last frame
    active_at: float | None  # its last frame that reported user input
    seq: int  # the snapshot seq of the last news it was told
    told: Told | None  # the seat state it was last told
    since: float | None  # while admitted: when its seat was taken, as last told
    idle: float | None  # the idle timeout in force when it joined

    async def push(self, frame: ServerFrame) -> None: ...

    async def end(self, code: CloseCode, message: str) -> None: ...

    def __hash__(self) -> int: ...  # by identity: due times are kept per tab


class Judgements(Protocol):
    """Where the policy's judgements are kept (`signals.evaluations`): called after the
    step that made them, it only queues them."""

    def judged(self, key: UserKey, judgement: Judgement, now: float) -> None: ...


class Recorder(Protocol):
    """Where outcomes are written down (audit trail) and told (webhooks)."""

    async def record(
        self,
        key: UserKey,
        outcome: Outcome,
        now: float,
        context: Mapping[str, str] | None = None,
        decision: int | None = None,
    ) -> None:
        """Write down an outcome; `decision` is the snapshot seq the store gave it."""
        ...

    async def refused(
        self,
        key: UserKey,
        session: str | None,
        ip: str | None,
        reason: str,
        now: float,
        device: str | None = None,
    ) -> None: ...

    async def suspension(
        self, suspension: Suspension, *, lifted: bool, by: str, now: float
    ) -> None:
        """Write down a user suspended, or a suspension lifted (by `by`), and tell it."""
        ...

    async def changed(self, event: AuditEvent) -> None:
        """Write down a change to a site's settings (`recorder.change_event`)."""
        ...


@dataclass(frozen=True, slots=True)
class Joined:
    """Result of a tab joining: its session's state and the rules in force."""

    state: SeatState
    reason: BlockReason | None
    rules: Rules
    refused: Refusal | None = None
    conflict: bool = False  # admitted over the limit (monitor policy)
    seq: int = 0  # the snapshot seq the state is of
    holders: tuple[Holder, ...] = ()  # blocked: where the seats are held


@dataclass(frozen=True, slots=True)
class _Applied:
    """What `_change` learnt from one operation, besides its own result."""

    outcome: Outcome
    rules: Rules
    seq: int
    now: float


Op = Callable[[UserPresence, float], tuple[Outcome, T]]


class Node:
    """Shared state of one server process; built and closed by the app's lifespan."""

    def __init__(
        self,
        settings: Settings,
        store: PresenceStore,
        db: Database,
        *,
        box: SecretBox,
        recorder: Recorder | None = None,
        sites: SiteCache | None = None,
        overrides: OverrideCache | None = None,
        revocations: RevocationChecks | None = None,
        jwks: JwksCache | None = None,
        seat_tokens: SeatTokens | None = None,
        suspensions: SuspensionCache | None = None,
        history: HistoryWriter | None = None,
        judgements: Judgements | None = None,
    ) -> None:
        """The caches not given are made here, over `db` and the store's clock; without
        `seat_tokens`, tabs get no seat tokens."""
        self.settings = settings
        self.box = box  # hashes secret keys and opens the sites' sealed secrets
        self.store = store
        self.db = db
        self.clock = store.now
        self.recorder = recorder
        self.history = history  # writes the users' device and network history, if given
        self.judgements = judgements  # keeps the policy's evaluations, if given
        self.seat_tokens = seat_tokens
        ttl = settings.site_cache_ttl
        self.sites = sites if sites is not None else SiteCache(db, store.now, ttl)
        self.overrides = overrides if overrides is not None else OverrideCache(db, store.now, ttl)
        self.jwks = jwks if jwks is not None else JwksCache()  # keys of the jwks_uri settings
        self.suspensions = (
            suspensions if suspensions is not None else SuspensionCache(db, store.now, ttl)
        )
        self.policies = PolicyCache(db, store.now, ttl)  # each site's policy
        self.histories = HistoryReads(db)  # the users' histories, for the policy
        # What this node's channels check hellos against (`admission.admit`).
        self.sources = Sources(
            sites=self.sites,
            overrides=self.overrides,
            revocations=revocations if revocations is not None else RevocationChecks(db),
            keys=self.jwks,
            box=box,
            clock=self.clock,
            suspensions=self.suspensions,
        )
        self.timing = settings.timing
        self._tabs: dict[UserKey, dict[SessionId, dict[TabId, Tab]]] = {}
        self.admissions = Latencies()  # hello frame in to welcome out, on this node
        # What one user's operations changed is recorded and told one at a time, in order.
        self._serial: KeyedLock[UserKey] = KeyedLock()
        self._watch: Deadlines[UserKey] = Deadlines()  # next expiry check of each user
        self._flush: Deadlines[UserKey] = Deadlines()  # when each user's tabs are synced
        self._renew: Deadlines[Tab] = Deadlines()  # when each seated tab gets a new seat token
        self._fallback = MemoryStore(store.now)  # decides alone while the store is down
        self._degraded: set[UserKey] = set()  # users decided on the fallback meanwhile
        self._lost: set[UserKey] = set()  # users whose tabs left here while it was down
        self._unmarked: set[UserKey] = set()  # suspended while it was down: mark them again
        # Tabs still joining whose session a suspension, a revocation or a timeout ended,
        # with the news' seq and what the join then answers (`join`).
        self._ended_early: dict[Tab, tuple[int, Refusal]] = {}
        # Heartbeats reach the store within this delay: a tab's recorded last frame lags
        # by at most one heartbeat interval plus the delay, well inside the session timeout.
        self._touch_delay = (settings.session_timeout - settings.heartbeat_interval) / 2
        # How long seats are kept for their holders after a shared store lost a user: every
        # node that is alive writes its tabs again within its lease (`presence.restore`).
        self._restore_window = settings.node_lease if store.node_id else 0.0

    # --- sites -------------------------------------------------------------------------

    def forget_site(self, key: str) -> None:
        """Read the site from the database next time (its secrets or settings changed)."""
        self.sites.forget(key)

    async def site(self, key: str) -> Site | None:
        """A site's settings, cached for `site_cache_ttl` seconds."""
        return await self.sites.get(key)

    async def refused(
        self,
        key: UserKey,
        session: str | None,
        ip: str,
        reason: str,
        device: str | None = None,
    ) -> None:
        """Write down a tab turned away."""
        if self.recorder is not None:
            await self.recorder.refused(key, session, ip, reason, self.clock(), device)

    # --- the one way presence changes ---------------------------------------------------

    async def _change(
        self,
        key: UserKey,
        op: Op[T],
        *,
        skip: Tab | None = None,
        applied: Callable[[T, int], None] | None = None,
        context: Mapping[str, str] | None = None,
        leaving: bool = False,
        judge: bool = False,
        judging: _Judging | None = None,
    ) -> tuple[T, _Applied]:
        """Apply an operation, record what changed, then tell the tabs here and elsewhere.

        `applied(result, seq)` runs as soon as the store has applied it, before any other
        news of this user can be handled; `skip` is a tab that learns its state otherwise;
        `context` says who asked, for the audit trail. The node that makes a change watches
        the user's next deadline; one that is `leaving` hands it to the other nodes instead.
        With `judge`, the site's policy judges the user's sessions in the same step when the
        operation created or ended one (`signals.guard`); `judging` is that done by `op`.
        """
        store = self._fallback if key in self._degraded else self.store
        timing = self.timing
        if judge and judging is None:
            guard = await self._guard(key)
            if guard is not None:
                judging = _Judging(guard)
                op = judging.after(op)

        history = self.history
        seen: list[SessionView] | None = None

        def run(
            up: UserPresence, now: float
        ) -> tuple[Outcome, T, Rules, int, float, set[str], float | None]:
            nonlocal seen
            nodes = up.nodes()
            outcome, result = op(up, now)
            nodes |= up.nodes()
            if any(t.state is SeatState.blocked for t in outcome.transitions):
                outcome = replace(outcome, holders=presence.holders(up))
            if history is not None and _is_sighting(outcome):
                seen = sightings(up)
            return outcome, result, up.rules, up.seq, now, nodes, next_deadline(up, timing)

        outcome, result, rules, seq, now, nodes, deadline = await store.update(key, run)
        judgement = judging.judgement if judging is not None else None
        if judgement is not None and judgement.judged:
            context = {**(context or {}), **_policy_context(judgement)}
        if history is not None and seen is not None:
            history.seen(key, seen, [(e.device, e.ip) for e in outcome.ended], now)
        if applied is not None:
            applied(result, seq)
        if deadline is not None:
            self._watch.set_earlier(key, deadline)
        # Operations of one user leave the store in seq order and are told in that order.
        async with self._serial(key):
            if self.recorder is not None:
                await self.recorder.record(key, outcome, now, context, seq)
            await self._tell(key, outcome, seq, rules.takeover, skip)
            nodes.discard(self.store.node_id)
            handed = deadline if leaving else None
            if nodes and store is self.store and (_is_news(outcome) or handed is not None):
                notice = Notice(key[0], key[1], seq, rules.takeover, outcome, deadline=handed)
                await self.store.publish(nodes, encode_notice(notice))
        if judgement is not None and judgement.judged:
            await self._judged(key, judgement, now)
        return result, _Applied(outcome, rules, seq, now)

    # --- the site's policy --------------------------------------------------------------

    async def _guard(self, key: UserKey) -> Guard | None:
        """What judging this user's sessions needs, read now; None when the site has no
        policy rules (nothing to judge), or its policy cannot be read (one log line: the
        change goes on unjudged, as admission never waits for the signals)."""
        try:
            policy = await self.policies.get(key[0])
            if is_empty(policy):
                return None
            stored = await self.histories.get(key[0], key[1])
        except Exception as exc:
            _unjudged("policy of %s not applied: %s", key[0], type(exc).__name__)
            return None
        geoip = self.history.geoip if self.history is not None else None
        place_of = geoip.place if geoip is not None else None
        return Guard(policy, stored, place_of, self.settings.thresholds, self.timing)

    async def _judged(self, key: UserKey, judgement: Judgement, now: float) -> None:
        """After a step in which the policy judged: keep the evaluations, and write down what
        outlives the presence snapshot (sessions revoked, the user suspended)."""
        if self.judgements is not None:
            self.judgements.judged(key, judgement, now)
        revoked = [j.session for j in judgement.revoked]
        by = judgement.suspended_by
        try:
            await self._remember_revoked(key, revoked, now)
            if by is not None and judgement.suspended_at is not None:
                rule = by.evaluation.rule.name if by.evaluation.rule else ""
                since = judgement.suspended_at
                suspension = Suspension(key[0], key[1], since, f"policy rule {rule}", "policy")
                stored, created = await self.db.suspend(suspension)
                self.suspensions.forget(key[0])
                if created and self.recorder is not None:
                    await self.recorder.suspension(stored, lifted=False, by="policy", now=now)
        except Exception as exc:  # the snapshot holds them meanwhile (tombstones, the mark)
            _unjudged("policy verdict of %s/%s not stored: %s", *key, type(exc).__name__)

    # --- tabs ---------------------------------------------------------------------------

    async def join(self, key: UserKey, tab: Tab, *, fail_open: bool = True) -> Joined:
        """Attach a tab; announce what changed for the user's other sessions.

        When the shared store cannot be reached, a site that fails open decides on this
        node alone until it is back (then every tab is joined there again); one that fails
        closed raises `StoreUnavailable`.
        """
        arrival, rules = tab.arrival, tab.rules
        assert arrival is not None
        tab.key = key
        replaced = self._register(key, arrival, tab)
        judging: _Judging | None = None
        try:
            guard = await self._guard(key)
        except BaseException:
            self._forget(tab)
            raise
        if guard is not None:
            judging = _Judging(guard, arrival.session, arrival.signed_in_at)

        def op(up: UserPresence, now: float) -> tuple[Outcome, _Joining]:
            before = up.states()
            outcome = presence.join(up, arrival, rules=rules, now=now)
            if outcome.refused:
                return outcome, (None, ())
            if judging is not None:
                outcome = judging.apply(up, now, outcome, before)
                if arrival.session not in up.sessions:  # the policy revoked or suspended
                    ended = up.suspended is not None
                    return replace(outcome, refused=_ENDED_BY_POLICY[ended]), (None, ())
            seat = _seat_of(up, arrival.session)
            blocked = seat[0] is SeatState.blocked
            return outcome, (seat, presence.holders(up) if blocked else ())

        def seated(joining: _Joining, seq: int) -> None:
            seat = joining[0]
            if seq > tab.seq:  # news newer than the join may have reached the tab first
                tab.seq = seq
                tab.told, tab.since = (None, None) if seat is None else (seat[:2], seat[2])

        try:
            try:
                joining, done = await self._change(
                    key, op, skip=tab, applied=seated, judging=judging
                )
            except StoreUnavailable:
                if not fail_open:
                    raise
                log.warning("presence store unavailable: deciding %s on this node", key)
                self._degraded.add(key)
                joining, done = await self._change(
                    key, op, skip=tab, applied=seated, judging=judging
                )
            if done.outcome.refused is Refusal.suspended and await self._stale_mark(key):
                joining, done = await self._change(
                    key, op, skip=tab, applied=seated, judging=judging
                )
        except BaseException:
            self._forget(tab)
            self._ended_early.pop(tab, None)
            raise
        seat, holders = joining
        early = self._ended_early.pop(tab, None)
        if early is not None and early[0] > done.seq:
            # Joined just before a suspension or a revocation (or a timeout) reached the
            # store, whose news beat the reply: refused as a later hello would be.
            self._forget(tab)
            return Joined(SeatState.blocked, None, done.rules, early[1])
        if done.outcome.refused or seat is None:
            self._forget(tab)
            return Joined(SeatState.blocked, None, done.rules, done.outcome.refused)
        tab.idle = done.rules.idle_timeout
        self._flush.set_earlier(key, done.now + self._touch_delay)
        if replaced is not None and replaced is not tab:
            await replaced.end(CloseCode.normal, "replaced by a new socket of the same tab")
        return Joined(
            seat[0],
            seat[1],
            done.rules,
            conflict=arrival.session in done.outcome.conflicts,
            seq=done.seq,
            holders=holders,
        )

    def heartbeat(self, tab: Tab, active: bool) -> bool:
        """Stamp a tab's frame; False if the tab is no longer held here (it was dropped)."""
        if not self._holds(tab):
            return False
        assert tab.key is not None
        now = self.clock()
        tab.seen = now
        delay = self._touch_delay
        if active:
            tab.active_at = now
            if tab.idle is not None:
                delay = min(delay, tab.idle / 4)
        self._flush.set_earlier(tab.key, now + delay)
        return True

    async def leave(self, tab: Tab, how: Leave) -> None:
        """A tab went away (goodbye or closed socket)."""
        if not self._forget(tab):
            return  # already replaced by a newer socket of the same tab, or dropped
        key, a = tab.key, tab.arrival
        assert key is not None and a is not None
        with self._unless_unavailable("leave", key):
            await self._change(
                key,
                lambda up, now: (
                    presence.leave(up, session=a.session, tab=a.tab, how=how, now=now),
                    None,
                ),
                judge=True,
            )

    async def logout(self, tab: Tab) -> None:
        """End a browser session; every tab of it is told and closed."""
        key, a = tab.key, tab.arrival
        assert key is not None and a is not None
        try:
            await self._change(
                key,
                lambda up, now: (presence.logout(up, session=a.session, now=now), None),
                judge=True,
            )
        except StoreUnavailable:
            # Tell this node's tabs now; the store releases them when it is back.
            self._lost.add(key)
            ending = presence.Ending(a.session, presence.EndReason.logout, a.device)
            await self._tell(key, Outcome(ended=(ending,)), tab.seq + 1, False)

    async def take_over(self, tab: Tab) -> tuple[Outcome, float]:
        """A blocked browser takes a seat where the policy allows it, and not within the
        take-over cooldown; with the outcome, the seconds left of that cooldown."""
        key, a = tab.key, tab.arrival
        assert key is not None and a is not None
        cooldown = self.timing.takeover_cooldown

        def op(up: UserPresence, now: float) -> tuple[Outcome, tuple[Outcome, float]]:
            outcome = presence.take_over(up, session=a.session, now=now, cooldown=cooldown)
            return outcome, (outcome, presence.takeover_wait(up, cooldown, now))

        try:
            result, _ = await self._change(key, op)
        except StoreUnavailable:
            return Outcome(refused=Refusal.unavailable), 0.0
        return result

    # --- operators ----------------------------------------------------------------------

    async def revoke(
        self,
        key: UserKey,
        *,
        sessions: Iterable[SessionId] | None = None,
        keep: SessionId | None = None,
        by: str = "api",
    ) -> list[SessionId]:
        """Revoke sessions of one user (all when `sessions` is None); return those ended.

        The revoked session ids are also kept in the database, so they stay refused when
        presence is lost (a restart, a Redis that came back empty); revoking all of a
        user's sessions also refuses the identity tokens issued before now.
        """
        wanted = None if sessions is None else list(sessions)
        timing = self.timing

        def op(up: UserPresence, now: float) -> tuple[Outcome, None]:
            return presence.revoke(up, sessions=wanted, keep=keep, timing=timing, now=now), None

        scope = "session" if wanted is not None else "user"
        _, done = await self._change(key, op, context={"by": by, "scope": scope}, judge=True)
        revoked = [e.session for e in done.outcome.ended]
        await self._remember_revoked(key, revoked, done.now)
        if wanted is None and keep is None:
            # `iat` counts whole seconds: a token minted in the second of the revocation
            # (by the site, right after revoking) is accepted.
            await self.db.revoke_user_before(key[0], key[1], math.floor(done.now))
        return revoked

    async def revoke_where(
        self,
        site: SiteKey,
        match: Callable[[Session], bool],
        user: str | None = None,
        *,
        by: str = "api",
        scope: str = "site",
    ) -> int:
        """Revoke the sessions of a site (or of one user) that `match`; return the count."""
        if user is not None:
            keys = [(site, user)]
        else:
            keys = sorted(set(await self.store.users(site)) | self._degraded_of(site))
        timing = self.timing

        def op(up: UserPresence, now: float) -> tuple[Outcome, None]:
            chosen = [s.id for s in up.sessions.values() if match(s)]
            return presence.revoke(up, sessions=chosen, timing=timing, now=now), None

        count = 0
        for key in keys:
            _, done = await self._change(key, op, context={"by": by, "scope": scope}, judge=True)
            revoked = [e.session for e in done.outcome.ended]
            await self._remember_revoked(key, revoked, done.now)
            count += len(revoked)
        return count

    async def suspend_user(
        self, key: UserKey, reason: str = "", by: str = "api"
    ) -> tuple[Suspension, bool]:
        """Suspend a user: every session ends on every node (reason `suspended`, close code
        4015) and every hello is refused until the suspension is lifted (`lift_suspension`,
        or an identity token issued after it). Returns the suspension in force and whether
        this call made it; suspending a suspended user keeps the first one (and ends again
        whatever is live).

        The suspension is written to the database first, then marked in the presence
        snapshot by the same step that ends the sessions: a hello admitted before the write
        is ended by that step or refused by the mark, whichever reaches the store first.
        Raises StoreUnavailable when the presence store cannot be reached: the suspension is
        then recorded and this node's tabs of the user are ended; the others end when the
        store is back (or at once on a new call).
        """
        now = self.clock()
        stored, created = await self.db.suspend(Suspension(key[0], key[1], now, reason, by))
        self.suspensions.forget(key[0])
        if created and self.recorder is not None:
            await self.recorder.suspension(stored, lifted=False, by=by, now=now)
        try:
            await self._mark_suspended(key, stored, by)
        except StoreUnavailable:
            self._unmarked.add(key)
            self._lost.add(key)
            for tab in [t for s in self._tabs.get(key, {}).values() for t in s.values()]:
                if self._forget(tab):
                    await self._end(tab, presence.EndReason.suspended)
            raise
        return stored, created

    async def _mark_suspended(self, key: UserKey, suspension: Suspension, by: str) -> None:
        def op(up: UserPresence, now: float) -> tuple[Outcome, None]:
            return presence.suspend(up, since=suspension.since, now=now), None

        await self._change(key, op, context={"by": by, "scope": "user"})
        self._unmarked.discard(key)

    async def lift_suspension(
        self, key: UserKey, by: str = "api", *, since: float | None = None
    ) -> Suspension | None:
        """Lift a user's suspension (only the one that began at `since`, if given); the one
        lifted, None if the user was not suspended. New hellos of the user are admitted at
        once, on every node."""
        lifted = await self.db.lift_suspension(key[0], key[1], since)
        self.suspensions.forget(key[0])
        if lifted is None:
            return None
        self._unmarked.discard(key)
        if self.recorder is not None:
            await self.recorder.suspension(lifted, lifted=True, by=by, now=self.clock())
        # A mark left behind (the store was down) is cleared by the next join (`_stale_mark`).
        with self._unless_unavailable("lift"):
            await self._change(
                key, lambda up, now: (presence.unsuspend(up, since=lifted.since), None)
            )
        return lifted

    async def suspension(self, key: UserKey) -> Suspension | None:
        """The user's suspension, from the database; None if the user is not suspended."""
        return await self.db.suspension(key[0], key[1])

    async def _stale_mark(self, key: UserKey) -> bool:
        """A join was refused by the snapshot's suspension mark: if the database says the
        user is not suspended (the mark outlived a lift that could not reach the store),
        clear it and say so, so the join is tried again."""
        if await self.db.suspension(key[0], key[1]) is not None:
            return False
        up = await self.snapshot(key)
        if up.suspended is None:
            return True
        mark = up.suspended
        await self._change(key, lambda up, now: (presence.unsuspend(up, since=mark), None))
        return True

    async def _remember_revoked(self, key: UserKey, sessions: list[SessionId], now: float) -> None:
        if sessions:
            until = now + self.timing.tombstone_ttl
            await self.db.add_revocations(key[0], key[1], sessions, now, until)

    async def snapshot(self, key: UserKey) -> UserPresence:
        """A copy of one user's presence, for the API."""
        store = self._fallback if key in self._degraded else self.store
        return await store.read(key)

    async def shared_snapshot(self, key: UserKey) -> UserPresence:
        """A copy of one user's presence as every node sees it, for the seat check;
        StoreUnavailable while the store cannot be reached, or while this node decides the
        user alone (a site failing open, until the store is back)."""
        if key in self._degraded:
            raise StoreUnavailable("the presence store is not back in step for this user yet")
        return await self.store.read(key)

    async def rules_changed(self, site_key: SiteKey) -> None:
        """An operator changed a site's rules or overrides: apply them to live sessions
        here, and tell the other nodes to do the same with theirs."""
        await self.refresh_rules(site_key)
        await self.store.broadcast_rules(site_key)

    async def secrets_changed(self, site_key: SiteKey) -> None:
        """A site's secret was rotated: read the site again here, and tell the other nodes
        to (the notice of `rules_changed`), so that none takes the replaced key longer. Only
        the notice, which never raises on a lost link: the new secret must be answered."""
        self.forget_site(site_key)
        await self.store.broadcast_rules(site_key)

    async def refresh_rules(self, site_key: SiteKey) -> None:
        """Resolve the rules of this node's live tabs of a site again and adopt them: a
        lower limit blocks the sessions seated last; new timeouts apply from now on; seat
        tokens turned on again reach the seated tabs at once."""
        self.forget_site(site_key)
        self.overrides.forget(site_key)
        site = await self.site(site_key)
        if site is None:
            return
        for key in [k for k in self._tabs if k[0] == site_key]:
            tabs = [t for s in self._tabs.get(key, {}).values() for t in s.values()]
            if not tabs:
                continue
            newest = max(tabs, key=lambda t: t.seen)
            rules = await rules_for(
                self.overrides, site, page=newest.page, token=newest.token, user=key[1]
            )
            for tab in tabs:
                tab.rules, tab.idle = rules, rules.idle_timeout

            def op(up: UserPresence, now: float, rules: Rules = rules) -> tuple[Outcome, None]:
                return presence.adopt(up, rules, now=now), None

            with self._unless_unavailable("new rules"):
                await self._change(key, op, context={"by": "rules"})
            if site.config.seat_tokens:  # turned on again: seated tabs get theirs now
                for tab in tabs:
                    if tab not in self._renew and self._seated(tab):
                        await self.give_seat(tab)

    # --- keeping the store true ---------------------------------------------------------

    async def sync(self, key: UserKey) -> None:
        """Write this node's tabs of a user to the store and tell each tab the truth.

        Heartbeats since the last sync are recorded; tabs the store lost (a dropped notice,
        a restarted store, decisions made here while it was down) join again; tabs it
        credits to this node that are gone are released; every tab is told its state.
        """
        tabs = [t for s in self._tabs.get(key, {}).values() for t in s.values()]
        me = self.store.node_id
        # Seated tabs first, oldest seat first, so that a store that lost everything seats
        # them again first (and, while it restores, keeps their seats for them).
        tabs.sort(key=lambda t: (_held(t) is None, _held(t) or 0.0, t.seen))
        seen = [Seen(a.session, a.tab, t.seen, t.active_at) for t, a in _arrivals(tabs)]
        arrivals = {(a.session, a.tab): (a, t.rules, _held(t)) for t, a in _arrivals(tabs)}
        window = self._restore_window

        def op(up: UserPresence, now: float) -> tuple[Outcome, _Synced]:
            missing = presence.touch(up, seen, now)
            if missing:
                presence.restore(up, until=now + window, now=now)
            outcome = Outcome()
            if me:
                outcome += presence.release_node(up, me, keep=arrivals, now=now)
            refused: dict[SessionId, Refusal] = {}
            for pair in missing:
                arrival, rules, held = arrivals[pair]
                joined = presence.join(up, arrival, rules=rules, now=now, held=held)
                if joined.refused is not None:
                    refused[arrival.session] = joined.refused
                outcome += joined
            states: dict[SessionId, _Seat] = {}
            for arrival, _, _ in arrivals.values():
                if arrival.session in up.sessions:
                    states[arrival.session] = _seat_of(up, arrival.session)
            blocked = any(state is SeatState.blocked for state, _, _ in states.values())
            return outcome, (states, refused, presence.holders(up) if blocked else ())

        (states, refused, holders), done = await self._change(key, op)
        self._lost.discard(key)
        await self._reconcile(key, states, refused, done.seq, done.rules.takeover, holders)

    async def _reconcile(
        self,
        key: UserKey,
        states: dict[SessionId, _Seat],
        refused: dict[SessionId, Refusal],
        seq: int,
        takeover: bool,
        holders: tuple[Holder, ...],
    ) -> None:
        """Tell this node's tabs of a user what the store says, as of `seq`."""
        for session, tabs in list(self._tabs.get(key, {}).items()):
            for tab in list(tabs.values()):
                if session in refused:
                    if _told_before(tab, seq) and self._forget(tab):
                        if refused[session] is Refusal.revoked:
                            await self._end(tab, presence.EndReason.revoked)
                        elif refused[session] is Refusal.suspended:
                            await self._end(tab, presence.EndReason.suspended)
                        else:
                            await tab.end(CloseCode.expired, "this browser session has expired")
                elif session in states:
                    await self._tell_state(tab, states[session], takeover, seq, holders)

    async def tick(self) -> None:
        """Run what is due: syncs of heartbeats, expiry checks, then new seat tokens.

        On the memory store a user's step never waits, so a tick of many users would hold
        the event loop for all of them (tens of ms at 20,000 tabs): it lets the sockets be
        answered after every `_TICK_SLICE` users.
        """
        now = self.clock()
        done = 0

        async def run(key: UserKey, step: Awaitable[None], retry: Deadlines[UserKey]) -> None:
            nonlocal done
            await self._guarded(key, step, retry=retry)
            done += 1
            if done % _TICK_SLICE == 0:
                await asyncio.sleep(0)

        for key in self._flush.pop_due(now):
            if self._tabs.get(key) or key in self._lost:
                await run(key, self.sync(key), self._flush)
        for key in self._watch.pop_due(now):
            await run(key, self._expire(key), self._watch)
        due = self._renew.pop_due(now)
        for i in range(0, len(due), _TICK_SLICE):  # signed together (`issue_soon`)
            await asyncio.gather(*(self.give_seat(tab) for tab in due[i : i + _TICK_SLICE]))

    async def _expire(self, key: UserKey) -> None:
        timing = self.timing
        await self._change(
            key, lambda up, now: (presence.expire(up, timing, now), None), judge=True
        )

    async def _guarded(
        self, key: UserKey, step: Awaitable[None], retry: Deadlines[UserKey]
    ) -> None:
        """Run one user's step; on failure, log and retry it a second later."""
        try:
            await step
        except StoreUnavailable:
            retry.set_earlier(key, self.clock() + 1.0)
        except Exception:
            log.exception("presence step for %s failed; retrying", key)
            retry.set_earlier(key, self.clock() + 1.0)

    # --- what the store tells this node -------------------------------------------------

    async def notice(self, payload: bytes) -> None:
        """Another node's outcome for a user whose tabs this node may hold."""
        try:
            notice = decode_notice(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            _bad_notices("ignoring a malformed notice from another node")
            return
        if isinstance(notice, UnknownFormat):
            _newer_notices(
                "ignoring a notice of format %d from another node (this node reads format %d); "
                "syncing the user's tabs with the store instead",
                notice.version,
                NOTICE_FORMAT,
            )
            if notice.key in self._tabs:
                self._flush.set_earlier(notice.key, self.clock())
            return
        if notice.deadline is not None and notice.key in self._tabs:
            self._watch.set_earlier(notice.key, notice.deadline)
        await self._tell(notice.key, notice.outcome, notice.seq, notice.takeover)

    async def reap(self, node: str, users: list[UserKey]) -> None:
        """A node died: release its tabs, so its browsers' seats free after the grace."""
        log.warning("node %s stopped renewing its lease: releasing its %d users", node, len(users))
        for key in users:

            def op(up: UserPresence, now: float) -> tuple[Outcome, None]:
                return presence.release_node(up, node, now=now), None

            with self._unless_unavailable("reap"):
                await self._change(key, op)

    async def reconnected(self) -> None:
        """The shared store is reachable again: sync every user held here, now."""
        now = self.clock()
        for key in self._degraded:
            self._fallback.update_now(key, _clear)
        self._degraded.clear()
        for key in list(self._unmarked):  # suspended while the store was down
            suspension = await self.db.suspension(key[0], key[1])
            if suspension is None:
                self._unmarked.discard(key)
                continue
            with self._unless_unavailable("suspension"):
                await self._mark_suspended(key, suspension, suspension.by)
        for key in [*self._tabs, *self._lost]:
            self._flush.set(key, now)

    async def close(self) -> None:
        """Release what this node still holds, so seats go into their grace at once."""
        me = self.store.node_id
        if not me:
            return
        for key in list(self._tabs):

            def op(up: UserPresence, now: float) -> tuple[Outcome, None]:
                return presence.release_node(up, me, now=now), None

            with self._unless_unavailable("release"):
                await self._change(key, op, leaving=True)

    # --- local tabs ---------------------------------------------------------------------

    def tab_count(self) -> int:
        return sum(len(t) for s in self._tabs.values() for t in s.values())

    def _register(self, key: UserKey, arrival: Arrival, tab: Tab) -> Tab | None:
        tabs = self._tabs.setdefault(key, {}).setdefault(arrival.session, {})
        replaced = tabs.get(arrival.tab)
        tabs[arrival.tab] = tab  # before the change, so no notice for it can be missed
        return replaced

    def _holds(self, tab: Tab) -> bool:
        a = tab.arrival
        if tab.key is None or a is None:
            return False
        return self._tabs.get(tab.key, {}).get(a.session, {}).get(a.tab) is tab

    def _forget(self, tab: Tab) -> bool:
        """Stop holding a tab; False if it was not held (replaced, dropped or never)."""
        if not self._holds(tab):
            return False
        key, a = tab.key, tab.arrival
        assert key is not None and a is not None
        sessions = self._tabs[key]
        tabs = sessions[a.session]
        del tabs[a.tab]
        self._renew.set(tab, None)
        if not tabs:
            del sessions[a.session]
            if not sessions:
                del self._tabs[key]
                self._flush.set(key, None)
        return True

    def _degraded_of(self, site: SiteKey) -> set[UserKey]:
        return {key for key in self._degraded if key[0] == site}

    @contextlib.contextmanager
    def _unless_unavailable(self, what: str, lost: UserKey | None = None) -> Iterator[None]:
        """Carry on when the store is down: the next sync repairs what this step missed
        (of the user whose tab left, `lost`, once the store is back)."""
        try:
            yield
        except StoreUnavailable:
            if lost is not None:
                self._lost.add(lost)
            log.info("presence store unavailable during %s; the next sync repairs it", what)

    # --- telling tabs -------------------------------------------------------------------

    async def _tell(
        self, key: UserKey, outcome: Outcome, seq: int, takeover: bool, skip: Tab | None = None
    ) -> None:
        """Tell this node's tabs of a user what an outcome (as of `seq`) means for them."""
        sessions = self._tabs.get(key)
        if not sessions:
            return
        for session, tab_id in outcome.dropped_tabs:
            dropped = sessions.get(session, {}).get(tab_id)
            if dropped is not None and _told_before(dropped, seq) and self._forget(dropped):
                await dropped.end(CloseCode.heartbeat_timeout, "no heartbeat within the timeout")
        for t in outcome.transitions:
            for tab in list(sessions.get(t.session, {}).values()):
                if tab is not skip:
                    seat = (t.state, t.reason, t.since)
                    await self._tell_state(tab, seat, takeover, seq, outcome.holders)
        for session in outcome.conflicts:
            for tab in list(sessions.get(session, {}).values()):
                if tab is not skip:
                    await tab.push(Conflict())
        for ending in outcome.ended:
            for tab in list(sessions.get(ending.session, {}).values()):
                if _told_before(tab, seq) and self._forget(tab):
                    await self._end(tab, ending.reason)
                elif tab.seq == 0 and (refusal := _REFUSED_AFTER.get(ending.reason)):
                    self._ended_early[tab] = (seq, refusal)  # its join decides (`join`)

    async def _tell_state(
        self, tab: Tab, seat: _Seat, takeover: bool, seq: int, holders: tuple[Holder, ...] = ()
    ) -> None:
        if seq <= tab.seq:
            return  # it already knows something newer
        tab.seq = seq
        state, reason, since = seat
        tab.since = since if state is SeatState.admitted else None
        told = (state, reason if state is SeatState.blocked else None)
        if tab.told == told:
            return
        tab.told = told
        await tab.push(state_frame(state, reason, takeover, holders))
        if state is SeatState.admitted:
            await self.give_seat(tab)
        else:
            self._renew.set(tab, None)

    # --- seat tokens --------------------------------------------------------------------

    async def give_seat(self, tab: Tab) -> None:
        """Send a tab a new seat token if its session holds a seat, and schedule the next
        at two thirds of the token's lifetime; the channel calls it after the welcome.

        A tab that waits, or that this node no longer holds, gets none (and nothing more is
        scheduled for it). When a token cannot be made, it is tried again a second later.
        """
        tokens, key, a = self.seat_tokens, tab.key, tab.arrival
        if tokens is None or key is None or a is None or not self._seated(tab):
            self._renew.set(tab, None)
            return
        try:
            site = await self.site(key[0])
            if site is None or not site.config.seat_tokens:
                # Deleted (its tabs are turned away at their next hello), or its tokens
                # turned off: nothing more is scheduled, `refresh_rules` starts them again.
                self._renew.set(tab, None)
                return
            ttl = site.config.seat_token_ttl
            seat = await tokens.issue_soon(
                Wanted(key[0], key[1], a.session, a.device, a.org, a.role, ttl)
            )
        except Exception:
            log.exception("could not make a seat token for %s; trying again in a second", key)
            self._renew.set(tab, self.clock() + 1.0)
            return
        if not self._seated(tab):  # blocked or gone while the site was read
            return
        self._renew.set(tab, self.clock() + ttl * 2 / 3)
        await tab.push(Seat(token=seat.token, exp=seat.expires_at))

    def _seated(self, tab: Tab) -> bool:
        """Whether this node holds `tab` and last told it that its session holds a seat."""
        return self._holds(tab) and tab.told is not None and tab.told[0] is SeatState.admitted

    async def _end(self, tab: Tab, reason: presence.EndReason) -> None:
        told = ENDINGS.get(reason)
        if told is None:
            await tab.end(CloseCode.normal, "session ended")
            return
        frame, code, message = told
        await tab.push(frame)
        await tab.end(code, message)


_ENDED_BY_POLICY = {True: Refusal.suspended, False: Refusal.revoked}
"""How a join is refused whose session the policy ended at once (suspended or not)."""

_REFUSED_AFTER: dict[presence.EndReason, Refusal] = {
    presence.EndReason.suspended: Refusal.suspended,
    presence.EndReason.revoked: Refusal.revoked,
    presence.EndReason.idle: Refusal.expired,
    presence.EndReason.absolute: Refusal.expired,
}
"""Endings after which the session can never join again, and how its join is refused."""


def _told_before(tab: Tab, seq: int) -> bool:
    """Whether news as of `seq` can end or drop `tab`: it was seated by an earlier change.

    A tab still joining (seq 0) is a new socket that may carry the ids of the one that left
    (a reload, a reconnect): what was decided before its own join is about the old socket,
    and its own join gets the verdict for it.
    """
    return 0 < tab.seq < seq


_Seat = tuple[SeatState, BlockReason | None, float | None]
"""A session's seat state, why it waits, and since when its unit holds the seat."""
_Joining = tuple[_Seat | None, tuple[Holder, ...]]
"""A joining tab's seat (None: refused), and where the seats are held if it waits."""
_Synced = tuple[dict[SessionId, _Seat], dict[SessionId, Refusal], tuple[Holder, ...]]
"""A sync's seats of this node's sessions, the sessions refused, and where seats are held."""


def _seat_of(up: UserPresence, session: SessionId) -> _Seat:
    s = up.sessions[session]
    if up.state(session) is SeatState.admitted:
        return SeatState.admitted, None, up.seats[up.unit(s)]
    return SeatState.blocked, s.held or s.reason, None


def _held(tab: Tab) -> float | None:
    """Since when a tab's session held a seat, as far as its node knows; None if it waits."""
    if tab.told is None or tab.told[0] is not SeatState.admitted:
        return None
    return tab.since if tab.since is not None else tab.seen


def _arrivals(tabs: list[Tab]) -> list[tuple[Tab, Arrival]]:
    return [(t, t.arrival) for t in tabs if t.arrival is not None]


def _is_news(outcome: Outcome) -> bool:
    return bool(outcome.transitions or outcome.ended or outcome.dropped_tabs or outcome.conflicts)


def _clear(up: UserPresence, now: float) -> None:
    up.sessions.clear()
    up.seats.clear()
    up.tombstones.clear()


class _Judging:
    """The site's policy judging within one step (`Guard.apply`): the judgement of the
    step's last run (a shared store may run it again, on a newer snapshot)."""

    def __init__(
        self,
        guard: Guard,
        arriving: SessionId | None = None,
        signed_in_at: float | None = None,
    ) -> None:
        self.guard = guard
        self.arriving = arriving
        self.signed_in_at = signed_in_at
        self.judgement: Judgement | None = None

    def apply(
        self,
        up: UserPresence,
        now: float,
        outcome: Outcome,
        before: Mapping[SessionId, SeatState],
    ) -> Outcome:
        """Judge after `outcome`, which took `up` from the seat states `before`: the
        outcome of both, its transitions counted from `before`."""
        j = self.judgement = self.guard.apply(
            up, now, arriving=self.arriving, signed_in_at=self.signed_in_at, before=before
        )
        if not j.judged:
            return outcome
        still = {sid: state for sid, state in before.items() if sid in up.sessions}
        return Outcome(
            presence.diff(up, still),
            outcome.dropped_tabs,
            outcome.ended + j.ended,
            tuple(c for c in outcome.conflicts if _admitted(up, c)),
            outcome.created,
            outcome.refused,
        )

    def after(self, op: Op[T]) -> Op[T]:
        """`op`, then judging, when it created or ended a session."""

        def judged(up: UserPresence, now: float) -> tuple[Outcome, T]:
            self.judgement = None
            before = up.states()
            outcome, result = op(up, now)
            if outcome.refused or not _is_sighting(outcome):
                return outcome, result
            return self.apply(up, now, outcome, before), result

        return judged


def _admitted(up: UserPresence, session: SessionId) -> bool:
    return session in up.sessions and up.state(session) is SeatState.admitted


def _policy_context(judgement: Judgement) -> dict[str, str]:
    """What the audit rows of a step the policy acted in say of it: the rule and verdict
    that ended sessions, if one did."""
    acted = judgement.suspended_by or next(iter(judgement.revoked), None)
    if acted is None or acted.evaluation.rule is None:
        return {}
    return {"by": "policy", "rule": acted.evaluation.rule.name, "verdict": acted.evaluation.verdict}


def _is_sighting(outcome: Outcome) -> bool:
    """Whether the user's history learns something: a session was created, admitted or
    ended."""
    return bool(
        outcome.created
        or outcome.ended
        or any(t.state is SeatState.admitted for t in outcome.transitions)
    )
