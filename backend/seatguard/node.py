"""One server process: applies presence operations to the store and tells the tabs.

The node is the thin I/O layer around the pure core: it reads the clock, runs an
operation through the store, records what happened, and pushes the resulting notices to
the tabs whose sockets it holds.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from . import presence
from .db import Database
from .presence import (
    Arrival,
    EndReason,
    Leave,
    Outcome,
    Refusal,
    Rules,
    SeatState,
    Session,
    Transition,
    UserPresence,
)
from .protocol import (
    Block,
    BlockReason,
    CloseCode,
    Conflict,
    Ended,
    Expired,
    Revoked,
    ServerFrame,
    Unblock,
)
from .settings import Settings
from .sites import Site
from .store import PresenceStore
from .types import SessionId, SiteKey, TabId, UserKey

__all__ = ["Joined", "Node", "Recorder", "Tab"]

log = logging.getLogger("seatguard")

T = TypeVar("T")


class Tab(Protocol):
    """A live socket of one tab, as the node sees it."""

    async def push(self, frame: ServerFrame) -> None: ...

    async def end(self, code: CloseCode, message: str) -> None: ...


class Recorder(Protocol):
    """Where outcomes are written down (audit trail) and told (webhooks)."""

    async def record(self, key: UserKey, outcome: Outcome, now: float) -> None: ...

    async def refused(
        self, key: UserKey, session: str | None, ip: str | None, reason: str, now: float
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Joined:
    """Result of a tab joining: its session's state and the rules in force."""

    state: SeatState
    reason: BlockReason | None
    rules: Rules
    refused: Refusal | None = None
    conflict: bool = False  # admitted over the limit (monitor policy)


_ENDINGS: dict[EndReason, tuple[ServerFrame, CloseCode, str]] = {
    EndReason.logout: (Ended(reason="logout"), CloseCode.logged_out, "signed out"),
    EndReason.revoked: (Revoked(reason="revoked"), CloseCode.revoked, "session revoked"),
    EndReason.idle: (Expired(reason="idle"), CloseCode.expired, "session idle too long"),
    EndReason.absolute: (
        Expired(reason="absolute"),
        CloseCode.expired,
        "session reached its maximum lifetime",
    ),
}
"""What the tabs of a session that ended are told, and how their sockets close."""


class Node:
    """Shared state of one server process; built and closed by the app's lifespan."""

    def __init__(
        self,
        settings: Settings,
        store: PresenceStore,
        db: Database,
        clock: Callable[[], float],
        recorder: Recorder | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.db = db
        self.clock = clock
        self.recorder = recorder
        self._tabs: dict[tuple[UserKey, SessionId], dict[TabId, Tab]] = {}
        self._sites: dict[str, tuple[Site | None, float]] = {}

    async def site(self, key: str) -> Site | None:
        """A site's settings, cached for `site_cache_ttl` seconds."""
        now = self.clock()
        cached = self._sites.get(key)
        if cached is not None and now - cached[1] < self.settings.site_cache_ttl:
            return cached[0]
        site = await self.db.site(key)
        if len(self._sites) > 10_000:
            self._sites.clear()
        self._sites[key] = (site, now)
        return site

    async def refused(self, key: UserKey, session: str | None, ip: str, reason: str) -> None:
        """Write down a tab turned away."""
        if self.recorder is not None:
            await self.recorder.refused(key, session, ip, reason, self.clock())

    async def _apply(
        self, key: UserKey, op: Callable[[UserPresence, float], T]
    ) -> tuple[T, Rules, float]:
        """Run a pure operation atomically at the store's `now`; also return the rules."""
        return await self.store.update(key, lambda up, now: (op(up, now), up.rules, now))

    async def _change(
        self,
        key: UserKey,
        op: Callable[[UserPresence, float], Outcome],
        skip: Tab | None = None,
    ) -> tuple[Outcome, Rules]:
        """Apply an operation, record what changed, then tell the tabs."""
        outcome, rules, now = await self._apply(key, op)
        await self._record(key, outcome, now)
        await self._announce(key, outcome, rules, skip=skip)
        return outcome, rules

    async def _record(self, key: UserKey, outcome: Outcome, now: float) -> None:
        """Write down what an operation changed before anyone is told."""
        if self.recorder is not None:
            await self.recorder.record(key, outcome, now)

    async def join(self, key: UserKey, tab: Tab, arrival: Arrival, rules: Rules) -> Joined:
        """Attach a tab; announce what changed for the user's other sessions."""

        def op(up: UserPresence, now: float) -> tuple[Outcome, SeatState, BlockReason | None]:
            outcome = presence.join(up, arrival, rules=rules, now=now)
            if outcome.refused:
                return outcome, SeatState.blocked, None
            state = up.state(arrival.session)
            blocked = state is SeatState.blocked
            return outcome, state, up.sessions[arrival.session].reason if blocked else None

        tabs = self._tabs.setdefault((key, arrival.session), {})
        replaced = tabs.get(arrival.tab)
        tabs[arrival.tab] = tab  # before the change, so no notice for it can be missed
        (outcome, state, reason), in_force, now = await self._apply(key, op)
        await self._record(key, outcome, now)
        if outcome.refused:
            self._forget(key, arrival.session, arrival.tab)
            return Joined(state, None, in_force, outcome.refused)
        if replaced is not None and replaced is not tab:
            await replaced.end(CloseCode.normal, "replaced by a new socket of the same tab")
        await self._announce(key, outcome, in_force, skip=tab)
        return Joined(state, reason, in_force, conflict=arrival.session in outcome.conflicts)

    async def heartbeat(
        self, key: UserKey, *, session: SessionId, tab_id: TabId, active: bool
    ) -> bool:
        known, _, _ = await self._apply(
            key,
            lambda up, now: presence.heartbeat(
                up, session=session, tab=tab_id, active=active, now=now
            ),
        )
        return known

    async def leave(
        self, key: UserKey, tab: Tab, *, session: SessionId, tab_id: TabId, how: Leave
    ) -> None:
        """A tab went away (goodbye or closed socket)."""
        if self._tabs.get((key, session), {}).get(tab_id) is not tab:
            return  # already replaced by a newer socket of the same tab
        self._forget(key, session, tab_id)
        await self._change(
            key, lambda up, now: presence.leave(up, session=session, tab=tab_id, how=how, now=now)
        )

    async def logout(self, key: UserKey, *, session: SessionId) -> None:
        """End a browser session; every tab of it is told and closed."""
        await self._change(key, lambda up, now: presence.logout(up, session=session, now=now))

    async def take_over(self, key: UserKey, *, session: SessionId) -> Outcome:
        """A blocked browser takes a seat where the policy allows it."""
        outcome, _ = await self._change(
            key, lambda up, now: presence.take_over(up, session=session, now=now)
        )
        return outcome

    async def revoke(
        self,
        key: UserKey,
        *,
        sessions: Iterable[SessionId] | None = None,
        keep: SessionId | None = None,
    ) -> list[SessionId]:
        """Revoke sessions of one user (all when `sessions` is None); return those ended."""
        wanted = None if sessions is None else list(sessions)
        timing = self.settings.timing
        outcome, _ = await self._change(
            key,
            lambda up, now: presence.revoke(up, sessions=wanted, keep=keep, timing=timing, now=now),
        )
        return [e.session for e in outcome.ended]

    async def revoke_where(
        self, site: SiteKey, match: Callable[[Session], bool], user: str | None = None
    ) -> int:
        """Revoke the sessions of a site (or of one user) that `match`; return the count."""
        keys = [(site, user)] if user is not None else await self.store.keys()
        timing = self.settings.timing

        def op(up: UserPresence, now: float) -> Outcome:
            chosen = [s.id for s in up.sessions.values() if match(s)]
            return presence.revoke(up, sessions=chosen, timing=timing, now=now)

        count = 0
        for key in keys:
            if key[0] == site:
                outcome, _ = await self._change(key, op)
                count += len(outcome.ended)
        return count

    async def snapshot(self, key: UserKey) -> UserPresence:
        """A copy of one user's presence, for the API."""
        copied, _, _ = await self._apply(key, lambda up, now: copy.deepcopy(up))
        return copied

    async def sweep(self) -> None:
        """Expire silent tabs and sessions past their grace or timeouts, everywhere."""
        timing = self.settings.timing
        for key in await self.store.keys():
            outcome, _ = await self._change(key, lambda up, now: presence.expire(up, timing, now))
            for session, tab_id in outcome.dropped_tabs:
                tab = self._forget(key, session, tab_id)
                if tab is not None:
                    await tab.end(CloseCode.heartbeat_timeout, "no heartbeat within the timeout")

    def tab_count(self) -> int:
        return sum(len(t) for t in self._tabs.values())

    def _forget(self, key: UserKey, session: SessionId, tab_id: TabId) -> Tab | None:
        tabs = self._tabs.get((key, session))
        if tabs is None:
            return None
        tab = tabs.pop(tab_id, None)
        if not tabs:
            del self._tabs[(key, session)]
        return tab

    async def _announce(
        self, key: UserKey, outcome: Outcome, rules: Rules, skip: Tab | None = None
    ) -> None:
        for session, tab_id in outcome.dropped_tabs:
            dropped = self._forget(key, session, tab_id)
            if dropped is not None:
                await dropped.end(CloseCode.heartbeat_timeout, "no heartbeat within the timeout")
        for t in outcome.transitions:
            frame = _frame(t, rules)
            for tab in list(self._tabs.get((key, t.session), {}).values()):
                if tab is not skip:
                    await tab.push(frame)
        for session in outcome.conflicts:
            for tab in list(self._tabs.get((key, session), {}).values()):
                if tab is not skip:
                    await tab.push(Conflict())
        for ending in outcome.ended:
            tabs = self._tabs.pop((key, ending.session), {})
            told = _ENDINGS.get(ending.reason)
            for tab in tabs.values():
                if told is None:
                    await tab.end(CloseCode.normal, "session ended")
                    continue
                frame, code, message = told
                await tab.push(frame)
                await tab.end(code, message)


def _frame(t: Transition, rules: Rules) -> ServerFrame:
    if t.state is SeatState.admitted:
        return Unblock()
    return Block(reason=(t.reason or BlockReason.limit).value, takeover=rules.takeover)
