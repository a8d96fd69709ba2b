"""The presence core's invariants under random sequences of operations (Hypothesis).

A state machine drives one user's snapshot through joins, goodbyes of every kind, dropped
sockets, heartbeats, expiry, take-overs, revocations, logouts, rule changes and store losses
(restore), with the clock stepping forward at random. After every step:

- no more units hold a seat than the limit allows (unless the policy is `monitor`);
- a seat is never free while an attached unit waits (outside a restore window);
- seats freed by a departure go to the waiting units that came first;
- a revoked session is never admitted again;
- while the user is suspended, no session exists and every join is refused;
- every session waits with a reason, and every seat belongs to a unit with a session;
- a session whose tabs all left ends no sooner than the grace of how the last one left
  (a dropped socket's is the longest);
- a take-over takes no seat from another browser within the cooldown of the last one (the
  cooldown is the store's, so a store loss forgets it, as it forgets tombstones).

`SEATGUARD_PROPERTY_EXAMPLES` sets how many sequences run (default 300, 40 steps each).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seatguard.presence import (
    Arrival,
    EndReason,
    Leave,
    Outcome,
    Refusal,
    Rules,
    SeatState,
    Seen,
    Session,
    Timing,
    UserPresence,
    adopt,
    expire,
    join,
    leave,
    logout,
    restore,
    revoke,
    suspend,
    take_over,
    touch,
    unsuspend,
)
from seatguard.protocol import BlockReason

EXAMPLES = int(os.environ.get("SEATGUARD_PROPERTY_EXAMPLES", "300"))
TIMING = Timing(
    session_timeout=30.0,
    reload_grace=5.0,
    unload_grace=1.5,
    drop_grace=12.0,
    tombstone_ttl=3600.0,
)
COOLDOWN = 20.0

SESSIONS = [f"s{i}" for i in range(6)]
DEVICES = ["d0", "d1", "d2"]
TABS = ["t0", "t1"]

rules_strategy = st.builds(
    Rules,
    mode=st.sampled_from(["concurrence", "device-limit"]),
    limit=st.integers(1, 3),
    policy=st.sampled_from(["block-new", "evict-oldest", "evict-idle", "challenge", "monitor"]),
    idle_timeout=st.none() | st.sampled_from([20.0, 60.0]),
    absolute_timeout=st.none() | st.sampled_from([50.0, 200.0]),
)


class PresenceMachine(RuleBasedStateMachine):
    """One user's snapshot; the rules of every join come from the machine's current rules."""

    def __init__(self) -> None:
        super().__init__()
        self.up = UserPresence()
        self.now = 1000.0
        self.user_rules = Rules()
        self.devices: dict[str, str] = {}  # a session keeps its device
        self.revoked: set[str] = set()  # in the database: refused at every hello
        self.tombstoned: set[str] = set()  # in the store: refused by the core itself
        self.suspended: float | None = None  # in the database: refused at every hello
        self.taken_at: float | None = None  # the last take-over that took a seat from another

    # --- steps ----------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.0, 0.1, 1.0, 2.0, 6.0, 31.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule(rules=rules_strategy)
    def new_rules(self, rules: Rules) -> None:
        self.user_rules = rules
        self.step(adopt(self.up, rules, now=self.now), frees=False)

    @rule(
        session=st.sampled_from(SESSIONS),
        tab=st.sampled_from(TABS),
        device=st.sampled_from(DEVICES),
        rules=st.none() | rules_strategy,
    )
    def open_tab(self, session: str, tab: str, device: str, rules: Rules | None) -> None:
        """A tab says hello; now and then with rules of its own (an identity token's)."""
        device = self.devices.setdefault(session, device)
        if session in self.revoked - self.tombstoned:
            return  # the store forgot it, but the hello finds it in the database and refuses
        if self.suspended is not None and self.up.suspended is None:
            return  # the same for a suspension
        if rules is not None:
            self.user_rules = rules
        outcome = join(self.up, Arrival(session, tab, device), rules=self.user_rules, now=self.now)
        if self.suspended is not None:
            assert outcome.refused is Refusal.suspended
        elif session in self.tombstoned:
            assert outcome.refused is Refusal.revoked
        self.step(outcome, frees=False)

    @rule(
        session=st.sampled_from(SESSIONS),
        tab=st.sampled_from(TABS),
        how=st.sampled_from(list(Leave)),
    )
    def close_tab(self, session: str, tab: str, how: Leave) -> None:
        self.step(leave(self.up, session=session, tab=tab, how=how, now=self.now), frees=True)

    @rule(session=st.sampled_from(SESSIONS), tab=st.sampled_from(TABS), active=st.booleans())
    def heartbeat(self, session: str, tab: str, active: bool) -> None:
        touch(self.up, [Seen(session, tab, self.now, self.now if active else None)], self.now)

    @rule()
    def sweep(self) -> None:
        left = {
            s.id: (s.detached_at, grace_of(s))
            for s in self.up.sessions.values()
            if s.detached_at is not None
        }
        outcome = expire(self.up, TIMING, self.now)
        for ending in outcome.ended:
            if ending.reason is EndReason.gone:
                detached_at, grace = left[ending.session]
                assert self.now - detached_at >= grace, (ending, detached_at, grace)
        self.step(outcome, frees=True)

    @rule(session=st.sampled_from(SESSIONS))
    def use_here(self, session: str) -> None:
        outcome = take_over(self.up, session=session, now=self.now, cooldown=COOLDOWN)
        if any(t.reason is BlockReason.taken_over for t in outcome.transitions):
            assert self.taken_at is None or self.now - self.taken_at >= COOLDOWN
            self.taken_at = self.now
        elif outcome.refused is Refusal.takeover_cooldown:
            assert self.taken_at is not None and self.now - self.taken_at < COOLDOWN
        self.step(outcome, frees=False)

    @rule(session=st.sampled_from(SESSIONS))
    def sign_out(self, session: str) -> None:
        self.step(logout(self.up, session=session, now=self.now), frees=True)

    @rule(sessions=st.lists(st.sampled_from(SESSIONS), max_size=3) | st.none())
    def revoke_some(self, sessions: list[str] | None) -> None:
        outcome = revoke(self.up, sessions=sessions, timing=TIMING, now=self.now)
        for ending in outcome.ended:
            self.revoked.add(ending.session)
            self.tombstoned.add(ending.session)
        self.step(outcome, frees=True)

    @rule()
    def suspend_user(self) -> None:
        if self.suspended is None:
            self.suspended = self.now
        live = set(self.up.sessions)
        outcome = suspend(self.up, since=self.suspended, now=self.now)
        assert {e.session for e in outcome.ended} == live
        self.step(outcome, frees=True)

    @rule(stale=st.booleans())
    def lift(self, stale: bool) -> None:
        """Lift the suspension in force; `stale`: a lift of an older one, which keeps it."""
        if self.suspended is None:
            return
        unsuspend(self.up, since=self.suspended - 1.0 if stale else self.suspended)
        if not stale:
            self.suspended = None

    @precondition(lambda self: bool(self.up.sessions))
    @rule(data=st.data())
    def store_lost(self, data: st.DataObject) -> None:
        """The store restarts empty; the nodes write their tabs again in a random order,
        each with since when its session held a seat."""
        before = self.up
        held = {
            s.id: before.seats[before.unit(s)]
            for s in before.sessions.values()
            if before.unit(s) in before.seats
        }
        tabs = [(s.id, tab, s.device) for s in before.sessions.values() for tab in s.tabs]
        order = data.draw(st.permutations(tabs))
        self.up = UserPresence()
        self.tombstoned = set()  # the store's tombstones are gone with it
        self.taken_at = None  # and so is the take-over cooldown (docs/operations.md)
        self.now += 0.5
        for session, tab, device in order:
            restore(self.up, until=self.now + 10.0, now=self.now)
            outcome = join(
                self.up,
                Arrival(session, tab, device),
                rules=self.user_rules,
                now=self.now,
                held=held.get(session),
            )
            self.step(outcome, frees=False)
        # Every holder whose tabs came back holds a seat again (up to the limit, oldest
        # first); nobody who waited was seated meanwhile.
        back = {session for session, _, _ in order}
        seated = {s for s in back if self.up.state(s) is SeatState.admitted}
        assert seated <= set(held) or self.user_rules.policy == "monitor"
        holders = sorted((since, s) for s, since in held.items() if s in back)
        units: list[str] = []
        for _, s in holders:
            unit = self.up.unit(self.up.sessions[s])
            if unit not in units:
                units.append(unit)
        if self.user_rules.policy != "monitor":
            first = set(units[: self.user_rules.limit])
            assert first <= set(self.up.seats), (holders, self.up.seats)

    # --- checks ---------------------------------------------------------------------------

    def step(self, outcome: Outcome, *, frees: bool) -> None:
        """Check what one operation did; `frees`: it may only free seats, never take one."""
        for t in outcome.transitions:
            if t.state is SeatState.admitted:
                assert t.session not in self.revoked, f"revoked {t.session} admitted again"
        if frees and not self.up.restoring(self.now):
            self.check_first_come(outcome)

    def check_first_come(self, outcome: Outcome) -> None:
        """Units seated by a departure came before every unit still waiting."""
        up = self.up
        newly = {
            up.unit(up.sessions[t.session])
            for t in outcome.transitions
            if t.state is SeatState.admitted
        }
        waiting: dict[str, float] = {}
        for s in up.sessions.values():
            unit = up.unit(s)
            if s.tabs and unit not in up.seats:
                waiting[unit] = min(waiting.get(unit, s.queued_at), s.queued_at)
        for unit in newly:
            queued = min(s.queued_at for s in up.sessions.values() if up.unit(s) == unit)
            assert all(queued <= w for w in waiting.values()), (unit, queued, waiting)

    @invariant()
    def nobody_in_while_suspended(self) -> None:
        if self.up.suspended is not None:
            assert not self.up.sessions and not self.up.seats

    @invariant()
    def within_the_limit(self) -> None:
        if self.up.rules.policy != "monitor":
            assert len(self.up.seats) <= self.up.rules.limit, (self.up.seats, self.up.rules)

    @invariant()
    def no_free_seat_while_someone_waits(self) -> None:
        up = self.up
        if up.restoring_until is not None or len(up.seats) >= up.rules.limit:
            return  # (a restore window is closed by the next step after its end)
        waiting = [s.id for s in up.sessions.values() if s.tabs and up.unit(s) not in up.seats]
        assert not waiting, f"{waiting} wait while {up.rules.limit - len(up.seats)} seat(s) free"

    @invariant()
    def seats_and_reasons_are_consistent(self) -> None:
        up = self.up
        units = {up.unit(s) for s in up.sessions.values()}
        assert set(up.seats) <= units, (up.seats, units)
        for s in up.sessions.values():
            assert isinstance(s.reason, BlockReason)
            assert s.id not in self.revoked or up.state(s.id) is SeatState.blocked


def grace_of(s: Session) -> float:
    """The grace a session whose tabs all left keeps its seat for, by how the last left."""
    if s.unloaded:
        return TIMING.unload_grace
    return TIMING.drop_grace if s.dropped else TIMING.reload_grace


PresenceMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPresence = PresenceMachine.TestCase
