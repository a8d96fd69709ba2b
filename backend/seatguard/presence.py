"""The presence core: who holds a seat, as pure functions over one user's snapshot.

Every operation takes a `UserPresence` snapshot and `now` (seconds, from the caller's
clock), updates the snapshot and returns an `Outcome` naming the browser sessions whose
seat state changed and the sessions that ended, with why. Nothing here awaits, reads a
clock or touches a socket, so the same code decides for the in-memory store and, inside an
atomic compare-and-set, for shared stores.

A *unit* is what a seat counts: the browser session in `concurrence` mode, the device in
`device-limit` mode. A session is admitted exactly when its unit holds a seat. Units
waiting for a seat are served first-come by the time they started waiting.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from .devicehint import DeviceProof, merged_device
from .protocol import BlockReason
from .types import (
    MODES,
    POLICIES,
    DeviceKey,
    DeviceType,
    Mode,
    Policy,
    SessionId,
    TabId,
    Timestamp,
)

__all__ = [
    "MAX_HOLDERS",
    "MAX_TIMEOUT",
    "RULE_FIELDS",
    "TAKEOVER_POLICIES",
    "Arrival",
    "EndReason",
    "Ending",
    "Holder",
    "Leave",
    "Outcome",
    "Refusal",
    "Rules",
    "SeatState",
    "Seen",
    "Session",
    "Timing",
    "Transition",
    "UserPresence",
    "adopt",
    "diff",
    "expire",
    "hold",
    "holders",
    "join",
    "leave",
    "logout",
    "next_deadline",
    "release",
    "release_node",
    "restore",
    "revoke",
    "suspend",
    "take_over",
    "takeover_wait",
    "touch",
    "unsuspend",
]


class SeatState(enum.StrEnum):
    """Whether a browser session may use the account now."""

    admitted = "admitted"
    blocked = "blocked"


class Leave(enum.Enum):
    """How a tab went away."""

    close = "close"  # said goodbye and no page of the site follows
    reload = "reload"  # said goodbye, the same page loads again
    navigate = "navigate"  # said goodbye, another page of the site loads
    unload = "unload"  # said goodbye with no hint of what follows (a user reload looks so)
    drop = "drop"  # the socket closed without goodbye (network drop, crash)


class EndReason(enum.StrEnum):
    """Why a browser session ended."""

    closed = "closed"  # its last tab said goodbye for good
    gone = "gone"  # its tabs left and did not come back within their grace
    silent = "silent"  # its tabs stopped sending heartbeats
    logout = "logout"  # the user signed out on this browser
    idle = "idle"  # no user input within the idle timeout
    absolute = "absolute"  # older than the absolute timeout
    revoked = "revoked"  # an operator or the site revoked it
    suspended = "suspended"  # its user was suspended


class Refusal(enum.StrEnum):
    """Why an operation was refused."""

    revoked = "revoked"  # the session id was revoked and cannot re-attach
    suspended = "suspended"  # the user is suspended: no session joins until it is lifted
    expired = "expired"  # the session id expired and cannot re-attach
    takeover_not_allowed = "takeover_not_allowed"
    takeover_cooldown = "takeover_cooldown"  # the account's seat changed hands too recently
    unknown_session = "unknown_session"
    unavailable = "unavailable"  # the shared presence store cannot be reached


TAKEOVER_POLICIES: frozenset[Policy] = frozenset({"evict-oldest", "evict-idle", "challenge"})
"""Policies under which a blocked browser may take a seat ("use here")."""


MAX_TIMEOUT = 366 * 86400
"""The longest idle or absolute timeout the API and the CLI set, seconds: a year."""


@dataclass(frozen=True, slots=True)
class Rules:
    """What is counted, how many, what happens over the limit, and how long sessions live."""

    mode: Mode = "concurrence"
    limit: int = 1
    policy: Policy = "block-new"
    idle_timeout: float | None = None  # seconds without user input before a session ends
    absolute_timeout: float | None = None  # seconds a session may live at most

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        if not 1 <= self.limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, not {self.limit}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}")
        for name in ("idle_timeout", "absolute_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name.replace('_', ' ')} must be positive")

    @property
    def takeover(self) -> bool:
        """Whether a blocked browser may take a seat under these rules."""
        return self.policy in TAKEOVER_POLICIES


RULE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Rules))
"""The fields of `Rules`, in order: what an override, the API and the CLI can set."""


@dataclass(frozen=True, slots=True)
class Timing:
    """The clock rules of presence, in seconds."""

    session_timeout: float = 60.0  # a tab silent this long is gone
    reload_grace: float = 5.0  # a browser session with no tab keeps its seat this long
    unload_grace: float = 1.5  # the same after a goodbye with no hint of a next page
    drop_grace: float = 30.0  # the same after a socket closed without goodbye (network drop)
    takeover_cooldown: float = 30.0  # after a take-over, the next one waits this long (0: none)
    tombstone_ttl: float = 86400.0  # a revoked or expired session id stays refused this long


@dataclass(frozen=True, slots=True)
class Arrival:
    """A tab joining: who it is, as established by the shell."""

    session: SessionId
    tab: TabId
    device: DeviceKey
    device_type: DeviceType = "computer"
    org: str | None = None
    role: str | None = None
    ip: str = ""
    user_agent: str = ""
    sid: str | None = None  # identity provider session id, for back-channel logout
    node: str = ""  # the server process holding the tab's socket ("" on a single node)
    hint: str | None = None  # the fingerprint hint (`deviceproof.device_hint`)
    device_proof: DeviceProof = "none"  # whether `device` comes from a proven device key
    signed_in_at: Timestamp | None = None  # its identity token's `iat`, if it came with one


@dataclass(frozen=True, slots=True)
class Seen:
    """The latest frame of one tab, as the node holding its socket saw it."""

    session: SessionId
    tab: TabId
    at: Timestamp  # last frame
    active_at: Timestamp | None = None  # last frame that reported user input


@dataclass(slots=True)
class Session:
    """One browser profile of one user; every tab of it shares this record."""

    id: SessionId
    device: DeviceKey
    device_type: DeviceType
    created_at: Timestamp
    queued_at: Timestamp  # place in the first-come line while waiting
    last_seen: Timestamp  # last frame from any tab
    last_active: Timestamp  # last user input in any tab
    org: str | None = None
    role: str | None = None
    ip: str = ""
    user_agent: str = ""
    sid: str | None = None  # identity provider session id
    tabs: dict[TabId, Timestamp] = field(default_factory=dict)  # tab -> last frame
    homes: dict[TabId, str] = field(default_factory=dict)  # tab -> node holding its socket
    detached_at: Timestamp | None = None  # when the last tab left
    unloaded: bool = False  # the last tab left with no hint of a next page (unload grace)
    dropped: bool = False  # the last tab's socket closed without goodbye (drop grace)
    reason: BlockReason = BlockReason.limit  # why it waits, while it waits
    hint: str | None = None  # the fingerprint hint it came with (`deviceproof.device_hint`)
    device_proof: DeviceProof = "none"  # whether its own device id came from a proven key
    # Held by the site's policy (`hold`): why (`policy` or `verify`), by which rule, since
    # when; a held session gets no seat, whatever its unit holds. None: not held.
    held: BlockReason | None = None
    held_rule: str | None = None
    held_since: Timestamp | None = None
    verified_at: Timestamp | None = None  # signed in again after a `verify` hold
    checked: str | None = None  # digest of its checks when the policy last judged it


@dataclass(slots=True)
class UserPresence:
    """Snapshot of one user's browser sessions and seats."""

    rules: Rules = field(default_factory=Rules)
    sessions: dict[SessionId, Session] = field(default_factory=dict)
    seats: dict[str, Timestamp] = field(default_factory=dict)  # unit -> seated since
    tombstones: dict[SessionId, tuple[Refusal, Timestamp]] = field(default_factory=dict)
    seq: int = 0  # raised by the store on every write; orders notices across nodes
    # After the store lost this user, until when seats go only to sessions whose node says
    # they held one (see `restore`); None otherwise.
    restoring_until: Timestamp | None = None
    # While the user is suspended: since when (see `suspend`); None otherwise.
    suspended: Timestamp | None = None
    # When a browser last took a seat from another ("use here"); None if never.
    taken_over_at: Timestamp | None = None

    def unit(self, session: Session) -> str:
        """The key a seat counts for this session under the current mode."""
        return session.device if self.rules.mode == "device-limit" else session.id

    def state(self, session_id: SessionId) -> SeatState:
        """Seat state of a known session: a session the policy holds has no seat."""
        s = self.sessions[session_id]
        if s.held is None and self.unit(s) in self.seats:
            return SeatState.admitted
        return SeatState.blocked

    def states(self) -> dict[SessionId, SeatState]:
        return {sid: self.state(sid) for sid in self.sessions}

    def is_empty(self) -> bool:
        return not self.sessions and not self.tombstones and self.suspended is None

    def nodes(self) -> set[str]:
        """The nodes holding a socket of any tab of this user."""
        return {n for s in self.sessions.values() for n in s.homes.values()}

    def restoring(self, now: Timestamp) -> bool:
        """Whether seats are kept for the holders the store lost (see `restore`)."""
        return self.restoring_until is not None and now < self.restoring_until


@dataclass(frozen=True, slots=True)
class Transition:
    """A browser session whose seat state changed (or that was just created)."""

    session: SessionId
    state: SeatState
    reason: BlockReason | None
    device: DeviceKey = ""
    ip: str = ""
    since: Timestamp | None = None  # admitted: when its unit took the seat
    device_proof: DeviceProof = "none"
    rule: str | None = None  # blocked by the site's policy: the rule that holds it


@dataclass(frozen=True, slots=True)
class Ending:
    """A browser session that ended, with why and on which device."""

    session: SessionId
    reason: EndReason
    device: DeviceKey
    ip: str = ""


@dataclass(frozen=True, slots=True)
class Holder:
    """A browser holding one of the user's seats, as far as a blocked one is told of it:
    what kind of device, its user agent (the frame says only its browser and OS) and since
    when it holds the seat; never its address or ids."""

    device_type: DeviceType
    user_agent: str
    since: Timestamp


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation changed, for the shell to announce and record."""

    transitions: tuple[Transition, ...] = ()
    dropped_tabs: tuple[tuple[SessionId, TabId], ...] = ()  # silent tabs to close
    ended: tuple[Ending, ...] = ()
    conflicts: tuple[SessionId, ...] = ()  # admitted over the limit (monitor policy)
    created: SessionId | None = None  # a new browser session
    refused: Refusal | None = None  # the operation was not carried out
    holders: tuple[Holder, ...] = ()  # where the seats are held, for sessions it blocked

    def state_of(self, session_id: SessionId) -> Transition | None:
        return next((t for t in self.transitions if t.session == session_id), None)

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.transitions + other.transitions,
            self.dropped_tabs + other.dropped_tabs,
            self.ended + other.ended,
            self.conflicts + other.conflicts,
            self.created or other.created,
            self.refused or other.refused,
            other.holders or self.holders,
        )


MAX_HOLDERS = 3
"""The most holders a blocked browser is told of."""


def holders(up: UserPresence) -> tuple[Holder, ...]:
    """Where the user's seats are held: for each seated unit, its session seen last, oldest
    seat first, at most `MAX_HOLDERS` (a policy's held sessions hold none)."""
    latest: dict[str, Session] = {}
    for s in up.sessions.values():
        unit = up.unit(s)
        if unit not in up.seats or s.held is not None:
            continue
        if unit not in latest or s.last_seen > latest[unit].last_seen:
            latest[unit] = s
    order = sorted(latest, key=lambda u: up.seats[u])[:MAX_HOLDERS]
    return tuple(Holder(latest[u].device_type, latest[u].user_agent, up.seats[u]) for u in order)


def join(
    up: UserPresence,
    arrival: Arrival,
    *,
    rules: Rules,
    now: Timestamp,
    held: Timestamp | None = None,
) -> Outcome:
    """Attach a tab to its browser session, creating the session and seating it if it can.

    `held` is for a tab the store lost (see `restore`): the time since which its node
    knows its session held a seat.
    """
    if up.suspended is not None:
        return Outcome(refused=Refusal.suspended)
    tomb = up.tombstones.get(arrival.session)
    if tomb is not None and tomb[1] > now:
        return Outcome(refused=tomb[0])
    before = up.states()
    _apply_rules(up, rules)
    s = up.sessions.get(arrival.session)
    created = None
    if s is None:
        # The page's fingerprint joins another session's device only where the server's
        # own observations agree with it (deviceproof.merged_device).
        others = ((o.device, o.hint) for o in up.sessions.values())
        s = Session(
            arrival.session,
            merged_device(arrival.device, arrival.hint, others),
            arrival.device_type,
            now,
            now,
            now,
            now,
            arrival.org,
            arrival.role,
            sid=arrival.sid,
            hint=arrival.hint,
            device_proof=arrival.device_proof,
        )
        newcomer = not any(up.unit(o) == up.unit(s) for o in up.sessions.values())
        up.sessions[s.id] = s
        created = s.id
    else:
        # A known session re-attaching (reload, reconnect, new tab) keeps its place.
        newcomer = False
    s.ip, s.user_agent = arrival.ip, arrival.user_agent
    s.tabs[arrival.tab] = now
    if arrival.node:
        s.homes[arrival.tab] = arrival.node
    else:
        s.homes.pop(arrival.tab, None)
    s.last_seen = now
    s.detached_at = None
    s.unloaded = s.dropped = False
    if held is not None and up.restoring(now):
        _claim(up, up.unit(s), held)
    _fill(up, now)
    conflicts: tuple[SessionId, ...] = ()
    if newcomer and up.unit(s) not in up.seats:
        conflicts = _over_limit(up, s, now)
    diff = _diff(up, before)
    return Outcome(diff.transitions, conflicts=conflicts, created=created)


def restore(up: UserPresence, *, until: Timestamp, now: Timestamp) -> None:
    """The store lost this user (it restarted empty): keep seats for their holders until
    `until`, as the nodes holding their tabs write them again.

    The nodes come back one at a time, in no particular order. Until `until` (the nodes'
    lease: a node that has not written by then is dead) a seat goes only to a session whose
    node says it held one, by `join(held=...)`, the oldest seat first; a browser that was
    waiting keeps waiting, even on a node that writes first, and is seated when the window
    closes if a seat is still free. A snapshot the store still holds is not restored.
    """
    if up.is_empty() and until > now:
        up.restoring_until = until


def leave(
    up: UserPresence, *, session: SessionId, tab: TabId, how: Leave, now: Timestamp
) -> Outcome:
    """Detach a tab. The last tab closing frees the seat at once; otherwise a grace runs."""
    s = up.sessions.get(session)
    if s is None or s.tabs.pop(tab, None) is None:
        return Outcome()
    s.homes.pop(tab, None)
    if s.tabs:
        return Outcome()
    if how is Leave.close:
        return _remove(up, [(session, EndReason.closed)], now)
    s.detached_at = now
    s.unloaded = how is Leave.unload
    s.dropped = how is Leave.drop
    return Outcome()


def touch(up: UserPresence, seen: Iterable[Seen], now: Timestamp) -> list[tuple[SessionId, TabId]]:
    """Record the latest frames of tabs (batched by their node); return the tabs not known."""
    missing: list[tuple[SessionId, TabId]] = []
    for x in seen:
        s = up.sessions.get(x.session)
        if s is None or x.tab not in s.tabs:
            missing.append((x.session, x.tab))
            continue
        s.tabs[x.tab] = max(s.tabs[x.tab], min(x.at, now))
        s.last_seen = max(s.last_seen, s.tabs[x.tab])
        if x.active_at is not None:
            s.last_active = max(s.last_active, min(x.active_at, now))
    return missing


def release_node(
    up: UserPresence,
    node: str,
    *,
    keep: Iterable[tuple[SessionId, TabId]] = (),
    now: Timestamp,
) -> Outcome:
    """Detach every tab whose socket `node` held, but those in `keep`, as dropped sockets.

    For a node that died (keep nothing) or one that lost its link to the shared store
    while tabs left (keep the tabs it still holds). Their sessions keep their seats for the
    drop grace, so browsers that reconnect elsewhere re-attach.
    """
    kept = set(keep)
    gone = [
        (s.id, tab)
        for s in up.sessions.values()
        for tab, home in s.homes.items()
        if home == node and (s.id, tab) not in kept
    ]
    outcome = Outcome()
    for session, tab in gone:
        outcome += leave(up, session=session, tab=tab, how=Leave.drop, now=now)
    return Outcome(outcome.transitions, tuple(gone), outcome.ended)


def next_deadline(up: UserPresence, timing: Timing) -> Timestamp | None:
    """The earliest time at which `expire` may change this snapshot; None if never."""
    rules = up.rules
    times: list[Timestamp] = [until for _, until in up.tombstones.values()]
    if up.restoring_until is not None:
        times.append(up.restoring_until)
    for s in up.sessions.values():
        if rules.absolute_timeout is not None:
            times.append(s.created_at + rules.absolute_timeout)
        if rules.idle_timeout is not None:
            times.append(s.last_active + rules.idle_timeout)
        if s.tabs:
            times.append(min(s.tabs.values()) + timing.session_timeout)
        elif s.detached_at is not None:
            times.append(s.detached_at + _grace(s, timing))
        else:
            times.append(s.last_seen)
    return min(times, default=None)


def logout(up: UserPresence, *, session: SessionId, now: Timestamp) -> Outcome:
    """End a browser session and free its seat at once."""
    if session not in up.sessions:
        return Outcome(refused=Refusal.unknown_session)
    return _remove(up, [(session, EndReason.logout)], now)


def adopt(up: UserPresence, rules: Rules, *, now: Timestamp) -> Outcome:
    """Apply rules an operator changed while sessions are live.

    A lower limit blocks the units seated last (they keep their place in line, by when
    they first came); a higher one seats whoever waits next. Monitor blocks nobody.
    """
    if rules == up.rules:
        return Outcome()
    before = up.states()
    _apply_rules(up, rules)
    _fill(up, now)
    return _diff(up, before)


def take_over(
    up: UserPresence, *, session: SessionId, now: Timestamp, cooldown: float = 0.0
) -> Outcome:
    """A blocked browser takes a seat ("use here"); the policy's victim is blocked instead.

    Taking a seat from another browser is refused for `cooldown` seconds after the last
    time it happened to this user, so that two people cannot trade one seat back and forth
    (`takeover_wait` says how long is left); taking a free seat is not.
    """
    s = up.sessions.get(session)
    if s is None:
        return Outcome(refused=Refusal.unknown_session)
    if not up.rules.takeover or s.held is not None:  # a held browser waits for its release
        return Outcome(refused=Refusal.takeover_not_allowed)
    if up.unit(s) in up.seats:
        return Outcome()
    before = up.states()
    if len(up.seats) < up.rules.limit:
        up.seats[up.unit(s)] = now
    elif takeover_wait(up, cooldown, now) > 0:
        return Outcome(refused=Refusal.takeover_cooldown)
    else:
        _evict(up, _choose_victim(up, up.rules.policy), BlockReason.taken_over, now)
        up.seats[up.unit(s)] = now
        up.taken_over_at = now
    return _diff(up, before)


def takeover_wait(up: UserPresence, cooldown: float, now: Timestamp) -> float:
    """Seconds until a browser of this user may take a seat from another again (0: now)."""
    if up.taken_over_at is None:
        return 0.0
    return max(0.0, up.taken_over_at + cooldown - now)


def revoke(
    up: UserPresence,
    *,
    sessions: Iterable[SessionId] | None,
    timing: Timing,
    now: Timestamp,
    keep: SessionId | None = None,
) -> Outcome:
    """End the given sessions (all when None, but `keep`) for good: they cannot re-attach."""
    chosen = list(up.sessions) if sessions is None else [s for s in sessions if s in up.sessions]
    chosen = [s for s in dict.fromkeys(chosen) if s != keep]  # each once
    for sid in chosen:
        up.tombstones[sid] = (Refusal.revoked, now + timing.tombstone_ttl)
    return _remove(up, [(sid, EndReason.revoked) for sid in chosen], now)


def suspend(up: UserPresence, *, since: Timestamp, now: Timestamp) -> Outcome:
    """Suspend the user: end every session, and refuse every join until `unsuspend`.

    The mark is kept in the snapshot, so that a join that passed admission before the
    suspension was written, but reaches the store after this, is refused here. Suspending
    again ends whatever joined meanwhile; `since` (when the suspension in force began)
    replaces any older mark.
    """
    up.suspended = since
    return _remove(up, [(sid, EndReason.suspended) for sid in list(up.sessions)], now)


def unsuspend(up: UserPresence, *, since: Timestamp | None = None) -> Outcome:
    """Lift the user's suspension (only the one that began at `since`, if given)."""
    if since is None or up.suspended == since:
        up.suspended = None
    return Outcome()


def hold(
    up: UserPresence, *, session: SessionId, reason: BlockReason, rule: str, now: Timestamp
) -> Outcome:
    """The site's policy holds a session (`reason` `policy` for a block verdict, `verify`
    for a challenge): it has no seat until `release`, whatever its unit holds; a unit whose
    sessions are all held gives its seat to whoever waits next. Holding a held session
    again keeps when the hold began."""
    s = up.sessions.get(session)
    if s is None:
        return Outcome(refused=Refusal.unknown_session)
    before = up.states()
    if s.held is None or s.held is not reason:
        s.held_since = now
    s.held, s.held_rule = reason, rule
    unit = up.unit(s)
    if unit in up.seats and all(
        o.held is not None for o in up.sessions.values() if up.unit(o) == unit
    ):
        del up.seats[unit]
    _fill(up, now)
    return _diff(up, before)


def release(
    up: UserPresence, *, session: SessionId, now: Timestamp, verified: bool = False
) -> Outcome:
    """Lift the policy's hold of a session: it waits for a seat again, in its old place in
    line (and takes one at once if one is free). `verified`: its user signed in again after
    a `verify` hold, which exempts it from later ones."""
    s = up.sessions.get(session)
    if s is None:
        return Outcome(refused=Refusal.unknown_session)
    if verified:
        s.verified_at = now
    if s.held is None:
        return Outcome()
    before = up.states()
    s.held = s.held_rule = s.held_since = None
    _fill(up, now)
    return _diff(up, before)


def expire(up: UserPresence, timing: Timing, now: Timestamp) -> Outcome:
    """Drop silent tabs, end idle, too old or departed sessions; seat whoever waits next."""
    dropped: list[tuple[SessionId, TabId]] = []
    ending: list[tuple[SessionId, EndReason]] = []
    rules = up.rules
    for s in up.sessions.values():
        if rules.absolute_timeout is not None and now - s.created_at >= rules.absolute_timeout:
            ending.append((s.id, EndReason.absolute))
            continue
        if rules.idle_timeout is not None and now - s.last_active >= rules.idle_timeout:
            ending.append((s.id, EndReason.idle))
            continue
        for tab, seen in list(s.tabs.items()):
            if now - seen >= timing.session_timeout:
                del s.tabs[tab]
                s.homes.pop(tab, None)
                dropped.append((s.id, tab))
        if s.tabs:
            continue
        if s.detached_at is None:
            # Every tab fell silent: the browser is gone, and has been for longer than a grace.
            ending.append((s.id, EndReason.silent))
        elif now - s.detached_at >= _grace(s, timing):
            ending.append((s.id, EndReason.gone))
    for sid, reason in ending:
        if reason in (EndReason.idle, EndReason.absolute):
            up.tombstones[sid] = (Refusal.expired, now + timing.tombstone_ttl)
    up.tombstones = {k: v for k, v in up.tombstones.items() if v[1] > now}
    outcome = _remove(up, ending, now)
    return Outcome(outcome.transitions, tuple(dropped), outcome.ended)


def _grace(s: Session, timing: Timing) -> float:
    """How long a session whose tabs all left keeps its seat, by how the last one left: a
    dropped socket (a network that may come back) longer than a reload, a goodbye with no
    next page shorter."""
    if s.unloaded:
        return timing.unload_grace
    return timing.drop_grace if s.dropped else timing.reload_grace


def _remove(
    up: UserPresence, ending: Iterable[tuple[SessionId, EndReason]], now: Timestamp
) -> Outcome:
    before = up.states()
    ended: list[Ending] = []
    for sid, reason in ending:
        s = up.sessions.pop(sid)
        ended.append(Ending(sid, reason, s.device, s.ip))
        unit = up.unit(s)
        if not any(up.unit(o) == unit for o in up.sessions.values()):
            up.seats.pop(unit, None)
    _fill(up, now)
    diff = _diff(up, {k: v for k, v in before.items() if k in up.sessions})
    return Outcome(diff.transitions, ended=tuple(ended))


def _over_limit(up: UserPresence, s: Session, now: Timestamp) -> tuple[SessionId, ...]:
    """Apply the policy to a newcomer that found every seat taken; return conflicts."""
    policy = up.rules.policy
    if policy == "monitor":
        up.seats[up.unit(s)] = now
        return (s.id,)
    if policy in ("block-new", "challenge") or len(up.seats) < up.rules.limit or up.restoring(now):
        # While the store's lost holders come back (a seat may be free, kept for them), a
        # browser the store lost that waited before is no newcomer: it waits again.
        s.reason = BlockReason.challenge if policy == "challenge" else BlockReason.limit
        return ()
    _evict(up, _choose_victim(up, policy), BlockReason.evicted, now)
    up.seats[up.unit(s)] = now
    return ()


def _evict(up: UserPresence, victim: str, reason: BlockReason, now: Timestamp) -> None:
    """Take the seat from a unit; its sessions wait at the back of the line."""
    del up.seats[victim]
    for other in up.sessions.values():
        if up.unit(other) == victim:
            other.reason = reason
            other.queued_at = now


def _choose_victim(up: UserPresence, policy: Policy) -> str:
    """The seated unit that gives way: least recently active for evict-idle, else longest seated."""
    if policy == "evict-idle":
        activity: dict[str, Timestamp] = {}
        for s in up.sessions.values():
            unit = up.unit(s)
            if unit in up.seats:
                activity[unit] = max(activity.get(unit, s.last_active), s.last_active)
        return min(activity, key=lambda u: (activity[u], up.seats[u]))
    return min(up.seats, key=lambda u: up.seats[u])


def _claim(up: UserPresence, unit: str, held: Timestamp) -> None:
    """Seat a unit that held a seat since `held` before the store lost it: it keeps the
    older seat time; with every seat taken, it takes the seat of the unit seated last if
    that one was seated after it (the other waits, first in line)."""
    if unit in up.seats:
        up.seats[unit] = min(up.seats[unit], held)
        return
    if len(up.seats) >= up.rules.limit and up.rules.policy != "monitor":
        last = max(up.seats, key=lambda u: up.seats[u])
        if up.seats[last] <= held:
            return
        del up.seats[last]
        for other in up.sessions.values():
            if up.unit(other) == last:
                other.reason = BlockReason.limit
    up.seats[unit] = held


def _fill(up: UserPresence, now: Timestamp) -> None:
    """Give free seats to attached waiting units, first come first served (once the seats
    kept for holders the store lost are no longer kept)."""
    if up.restoring_until is not None:
        if now < up.restoring_until:
            return
        up.restoring_until = None
    free = up.rules.limit - len(up.seats)
    if free <= 0:
        return
    line: dict[str, Timestamp] = {}
    for s in up.sessions.values():
        unit = up.unit(s)
        if s.tabs and s.held is None and unit not in up.seats:
            line[unit] = min(line.get(unit, s.queued_at), s.queued_at)
    for unit in sorted(line, key=lambda u: line[u])[:free]:
        up.seats[unit] = now


def _apply_rules(up: UserPresence, rules: Rules) -> None:
    """Adopt new rules (those of an operator, or of a tab's identity token): a lower limit,
    or a change of mode that counts more units, blocks the units seated last; they keep
    their place in line, by when they first came. Monitor blocks nobody."""
    _set_rules(up, rules)
    excess = len(up.seats) - rules.limit
    if excess > 0 and rules.policy != "monitor":
        for unit in sorted(up.seats, key=lambda u: up.seats[u], reverse=True)[:excess]:
            del up.seats[unit]
            for s in up.sessions.values():
                if up.unit(s) == unit:
                    s.reason = BlockReason.limit


def _set_rules(up: UserPresence, rules: Rules) -> None:
    """Adopt new rules; a change of mode re-keys the seats without evicting anyone."""
    if rules == up.rules:
        return
    if rules.mode != up.rules.mode:
        seated = [s for s in up.sessions.values() if up.unit(s) in up.seats]
        since = {s.id: up.seats[up.unit(s)] for s in seated}
        up.rules = rules
        up.seats = {}
        for s in sorted(seated, key=lambda s: since[s.id]):
            up.seats.setdefault(up.unit(s), since[s.id])
    up.rules = rules


def _diff(up: UserPresence, before: dict[SessionId, SeatState]) -> Outcome:
    transitions = []
    for sid, s in up.sessions.items():
        state = up.state(sid)
        if before.get(sid) != state:
            admitted = state is SeatState.admitted
            reason = None if admitted else (s.held or s.reason)
            since = up.seats[up.unit(s)] if admitted else None
            rule = None if admitted else s.held_rule
            transitions.append(
                Transition(sid, state, reason, s.device, s.ip, since, s.device_proof, rule)
            )
    return Outcome(tuple(transitions))


def diff(up: UserPresence, before: dict[SessionId, SeatState]) -> tuple[Transition, ...]:
    """The sessions of `up` whose seat state is not the one in `before` (new ones included),
    as transitions: what several steps over one snapshot changed together."""
    return _diff(up, before).transitions
