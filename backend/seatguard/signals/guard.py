"""A site's policy applied to one user's sessions: pure code over the presence snapshot,
`now` passed in, run by the node inside the same atomic step as the change it follows.

`Guard` holds what the step needs besides the snapshot, read before it: the site's policy,
the user's stored history, the GeoIP lookup. `Guard.apply` computes every session's checks
(`history.current_checks`) and judges:

- the session that said hello (`arriving`), always (trigger `hello`);
- every other session whose checks changed since the policy last judged it (trigger
  `change`: a second session from another city changes the first one's checks too). The
  checks a session was last judged with are kept in the snapshot as a digest
  (`Session.checked`), so any node can tell.

Verdicts, as applied:

- `allow`, `monitor`: nothing (a `monitor` is flagged by the evaluation the node stores);
  a session the policy held is released.
- `block`, `challenge`: the session is held (`presence.hold`, reason `policy` or
  `verify`): it has no seat until a later judgement lets it go. They hold the browser that
  arrives, or one that has no seat; a browser that held its seat when someone else's
  arrival changed its checks keeps it (the verdict is recorded as not applied), so a
  sharer who signs in cannot knock the account's owner off. A held browser is no
  "currently active session" for the others' checks: what it cannot use, it does not share.
- `challenge` is met by signing in again: a hello whose identity token was issued after
  the hold began releases it, and the session is not challenged again.
- `revoke`: the session ends for good (`presence.revoke`).
- `suspend`: the user is suspended (`presence.suspend`): every session ends, and the node
  writes the suspension to the database after the step.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from ..presence import Ending, SeatState, Timing, UserPresence, hold, release, revoke, suspend
from ..protocol import BlockReason
from ..types import SessionId, Timestamp
from .checks import Checks, SessionView, Thresholds
from .history import Stored, current_checks
from .places import Place
from .policies import Evaluation, Policy, evaluate
from .risk import Risk, account_sharing

__all__ = ["Guard", "Judged", "Judgement", "Trigger", "digest", "is_empty", "sightings"]

Trigger = Literal["hello", "change"]


@dataclass(frozen=True, slots=True)
class Judged:
    """One session judged: its checks, risk, the policy's evaluation, and whether the node
    acted on the verdict."""

    session: SessionId
    device: str
    ip: str
    trigger: Trigger
    checks: Checks
    risk: Risk
    evaluation: Evaluation
    applied: bool


@dataclass(frozen=True, slots=True)
class Judgement:
    """What one `Guard.apply` judged and did: the sessions it ended (revoked, or all of
    them when it suspended the user), and the judgement that suspended the user, if one
    did (the node then writes the suspension, since `suspended_at`)."""

    judged: tuple[Judged, ...] = ()
    ended: tuple[Ending, ...] = ()
    suspended_by: Judged | None = None
    suspended_at: Timestamp | None = None

    @property
    def revoked(self) -> tuple[Judged, ...]:
        return tuple(j for j in self.judged if j.evaluation.verdict == "revoke" and j.applied)


def is_empty(policy: Policy) -> bool:
    """Whether a policy has no rule at all (the node then judges nothing)."""
    return not (policy.rules or policy.orgs or policy.roles)


def digest(checks: Checks) -> str:
    """A short digest of a session's checks, kept in the snapshot to tell when they change."""
    return hashlib.blake2b(msgspec.json.encode(checks), digest_size=8).hexdigest()


def sightings(up: UserPresence, *, held_inactive: bool = False) -> list[SessionView]:
    """The user's current sessions as the checks see them (no place yet). A session is
    active while a tab of it is connected; with `held_inactive`, not while the policy holds
    it."""
    return [
        SessionView(
            session=s.id,
            device=s.device,
            device_type=s.device_type,
            ip=s.ip,
            place=None,
            started=s.created_at,
            last_seen=s.last_seen,
            active=bool(s.tabs) and not (held_inactive and s.held is not None),
        )
        for s in up.sessions.values()
    ]


@dataclass(frozen=True, slots=True)
class Guard:
    """What judging a user's sessions needs besides the snapshot (see the module)."""

    policy: Policy
    stored: Stored | None
    place_of: Callable[[str], Place | None] | None
    thresholds: Thresholds
    timing: Timing

    def apply(
        self,
        up: UserPresence,
        now: Timestamp,
        *,
        arriving: SessionId | None = None,
        signed_in_at: Timestamp | None = None,
        before: Mapping[SessionId, SeatState] | None = None,
    ) -> Judgement:
        """Judge the user's sessions in `up` and apply the verdicts to it (see the module):
        `arriving` is the session that said hello, `signed_in_at` its identity token's
        `iat`; `before`, the seat states before the step this judgement ends (a browser
        seated then keeps its seat, even if the step's arrival evicted it: the hold of the
        arrival gives it back). The caller tells the seat changes, comparing states."""
        if up.suspended is not None or not up.sessions:
            return Judgement()
        seated_before = up.states() if before is None else before
        checks = current_checks(
            sightings(up, held_inactive=True),
            self.stored,
            self.place_of,
            self.thresholds,
            now,
        )
        judged: list[Judged] = []
        ended: list[Ending] = []
        for sid in list(up.sessions):
            s = up.sessions.get(sid)
            if s is None:  # revoked by an earlier verdict of this step
                continue
            mark = digest(checks[sid])
            trigger: Trigger
            if sid == arriving:
                trigger = "hello"
            elif mark != s.checked:
                trigger = "change"
            else:
                continue
            s.checked = mark
            if (
                trigger == "hello"
                and s.held is BlockReason.verify
                and s.held_since is not None
                and signed_in_at is not None
                and signed_in_at >= math.floor(s.held_since)  # `iat` counts whole seconds
            ):
                release(up, session=sid, now=now, verified=True)
            values = checks[sid].values()
            risk = account_sharing(values, self.policy.risk)
            evaluation = evaluate(self.policy, values, risk, s.org, s.role)
            verdict, rule = evaluation.verdict, evaluation.rule
            applied = True
            if verdict in ("block", "challenge"):
                assert rule is not None
                reason = BlockReason.policy if verdict == "block" else BlockReason.verify
                may_hold = trigger == "hello" or seated_before.get(sid) is not SeatState.admitted
                if verdict == "challenge" and s.verified_at is not None:
                    applied = False  # signed in again after an earlier challenge
                elif may_hold:
                    hold(up, session=sid, reason=reason, rule=rule.name, now=now)
                else:
                    applied = False  # it held its seat before another's arrival
            elif verdict == "revoke":
                ended.extend(revoke(up, sessions=[sid], timing=self.timing, now=now).ended)
            elif verdict in ("allow", "monitor") and s.held is not None:
                release(up, session=sid, now=now)
            judged.append(
                Judged(sid, s.device, s.ip, trigger, checks[sid], risk, evaluation, applied)
            )
        by = next((j for j in judged if j.evaluation.verdict == "suspend"), None)
        if by is None:
            return Judgement(tuple(judged), tuple(ended))
        ended.extend(suspend(up, since=now, now=now).ended)
        return Judgement(tuple(judged), tuple(ended), by, now)
