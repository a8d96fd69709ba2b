"""The site's policy applied to a user's sessions (`signals.guard`), over plain snapshots."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from seatguard import presence
from seatguard.presence import Arrival, Leave, Refusal, Rules, SeatState, Timing, UserPresence
from seatguard.protocol import BlockReason
from seatguard.signals.checks import Thresholds
from seatguard.signals.guard import Guard, Judgement, digest, is_empty
from seatguard.signals.policies import Policy, parse_policy
from seatguard.types import DeviceType

T0 = 1_700_000_000.0
A, B = SeatState.admitted, SeatState.blocked


def policy(*rules: dict[str, Any]) -> Policy:
    return parse_policy({"rules": list(rules)})


SHARED = {"name": "shared", "when": {"check": "concurrent_sessions"}, "verdict": "challenge"}


def guard(p: Policy) -> Guard:
    return Guard(p, None, None, Thresholds(), Timing())


def arrive(
    up: UserPresence,
    g: Guard | None,
    session: str,
    *,
    ip: str,
    kind: DeviceType = "computer",
    now: float = T0,
    rules: Rules | None = None,
    signed_in_at: float | None = None,
) -> Judgement:
    """A tab of `session` says hello from `ip`; the guard judges in the same step."""
    a = Arrival(session, "tab-1", f"dev-{session}", kind, ip=ip)
    before = up.states()
    outcome = presence.join(up, a, rules=rules or Rules(limit=5), now=now)
    assert outcome.refused is None
    if g is None:
        return Judgement()
    return g.apply(up, now, arriving=session, signed_in_at=signed_in_at, before=before)


def test_a_second_computer_elsewhere_is_challenged_while_the_first_keeps_its_seat() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    first = arrive(up, g, "home", ip="198.51.100.7")
    assert [(j.session, j.evaluation.verdict) for j in first.judged] == [("home", "allow")]
    second = arrive(up, g, "away", ip="203.0.113.9", now=T0 + 60)
    verdicts = {j.session: (j.trigger, j.evaluation.verdict, j.applied) for j in second.judged}
    # Both see the concurrent session; only the browser that arrived is held.
    assert verdicts == {
        "away": ("hello", "challenge", True),
        "home": ("change", "challenge", False),
    }
    assert up.states() == {"home": A, "away": B}
    away = up.sessions["away"]
    assert (away.held, away.held_rule, away.held_since) == (BlockReason.verify, "shared", T0 + 60)


def test_a_phone_of_the_same_user_is_not_challenged() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    arrive(up, g, "laptop", ip="198.51.100.7")
    phone = arrive(up, g, "phone", ip="203.0.113.9", kind="mobile", now=T0 + 5)
    # The laptop's device counts changed too: judged again, allowed.
    assert {j.session: j.evaluation.verdict for j in phone.judged} == {
        "phone": "allow",
        "laptop": "allow",
    }
    assert up.states() == {"laptop": A, "phone": A}


def test_two_tabs_behind_one_address_are_not_concurrent() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    arrive(up, g, "one", ip="198.51.100.7")
    j = arrive(up, g, "two", ip="198.51.100.7", now=T0 + 1)
    assert {x.evaluation.verdict for x in j.judged} == {"allow"}
    assert up.states() == {"one": A, "two": A}


def test_the_owner_reloading_is_not_challenged_by_the_held_sharer() -> None:
    """A held browser is no active session for the others' checks."""
    up, g = UserPresence(), guard(policy(SHARED))
    arrive(up, g, "home", ip="198.51.100.7")
    arrive(up, g, "away", ip="203.0.113.9", now=T0 + 60)
    again = arrive(up, g, "home", ip="198.51.100.7", now=T0 + 90)
    home = next(j for j in again.judged if j.session == "home")
    assert (home.trigger, home.evaluation.verdict) == ("hello", "allow")
    assert not home.checks.concurrent_sessions
    assert up.states() == {"home": A, "away": B}


def test_the_hold_lifts_when_the_other_session_ends() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    arrive(up, g, "home", ip="198.51.100.7")
    arrive(up, g, "away", ip="203.0.113.9", now=T0 + 60)
    presence.logout(up, session="home", now=T0 + 70)
    j = g.apply(up, T0 + 70)
    assert [(x.session, x.trigger, x.evaluation.verdict) for x in j.judged] == [
        ("away", "change", "allow")
    ]
    assert up.states() == {"away": A}
    assert up.sessions["away"].held is None


def test_signing_in_again_meets_the_challenge_and_is_not_asked_again() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    arrive(up, g, "home", ip="198.51.100.7")
    arrive(up, g, "away", ip="203.0.113.9", now=T0 + 60.5)
    # An identity token from before the hold does not count; `iat` is whole seconds, so
    # one issued in the second the hold began does.
    arrive(up, g, "away", ip="203.0.113.9", now=T0 + 61, signed_in_at=T0 + 59)
    assert up.states()["away"] is B
    j = arrive(up, g, "away", ip="203.0.113.9", now=T0 + 62, signed_in_at=T0 + 60)
    away = next(x for x in j.judged if x.session == "away")
    assert (away.evaluation.verdict, away.applied) == ("challenge", False)
    assert up.states() == {"home": A, "away": A}
    assert up.sessions["away"].verified_at == T0 + 62
    later = arrive(up, g, "away", ip="203.0.113.9", now=T0 + 200)
    assert up.states()["away"] is A
    assert not any(x.applied and x.evaluation.verdict == "challenge" for x in later.judged)


def test_a_block_frees_the_seat_for_whoever_waits_next() -> None:
    third = {"name": "three", "when": {"check": "device_count", "op": ">=", "value": 3}}
    up, g = UserPresence(), guard(policy({**third, "verdict": "block"}))
    rules = Rules(limit=2)
    arrive(up, g, "s1", ip="198.51.100.1", rules=rules)
    arrive(up, g, "s2", ip="198.51.100.2", rules=rules, now=T0 + 1)
    j = arrive(up, g, "s3", ip="198.51.100.3", rules=rules, now=T0 + 2)
    assert up.states() == {"s1": A, "s2": A, "s3": B}
    assert up.sessions["s3"].held is BlockReason.policy
    # The first two keep their seats: they held them before the third came.
    assert {x.session: x.applied for x in j.judged} == {"s1": False, "s2": False, "s3": True}
    presence.logout(up, session="s1", now=T0 + 3)
    g.apply(up, T0 + 3)  # two devices now: the third is let go, and takes the free seat
    assert up.states() == {"s2": A, "s3": A}


def test_a_held_browser_cannot_take_a_seat_over() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    rules = Rules(limit=1, policy="evict-oldest")
    arrive(up, g, "home", ip="198.51.100.7", rules=rules)
    arrive(up, g, "away", ip="203.0.113.9", rules=rules, now=T0 + 1)
    # The newcomer evicted the holder, then was held: the holder has its seat back.
    assert up.states() == {"home": A, "away": B}
    out = presence.take_over(up, session="away", now=T0 + 2)
    assert out.refused is Refusal.takeover_not_allowed
    assert up.states() == {"home": A, "away": B}


def test_revoke_ends_the_session_for_good() -> None:
    rule = {"name": "far", "when": {"check": "concurrent_sessions"}, "verdict": "revoke"}
    up, g = UserPresence(), guard(policy(rule))
    arrive(up, g, "home", ip="198.51.100.7")
    j = arrive(up, g, "away", ip="203.0.113.9", now=T0 + 1)
    # The first one is revoked too: revoke acts on every session the rule matches.
    assert {e.session for e in j.ended} == {"home", "away"}
    assert {x.session for x in j.revoked} == {"home", "away"}
    assert up.sessions == {}
    refused = presence.join(
        up, Arrival("away", "tab-2", "dev-away"), rules=Rules(), now=T0 + 2
    ).refused
    assert refused is Refusal.revoked


def test_suspend_ends_every_session_and_marks_the_user() -> None:
    rule = {"name": "many", "when": {"check": "device_count", "op": ">=", "value": 2}}
    up, g = UserPresence(), guard(policy({**rule, "verdict": "suspend"}))
    arrive(up, g, "one", ip="198.51.100.7")
    j = arrive(up, g, "two", ip="198.51.100.8", now=T0 + 4)
    assert j.suspended_by is not None and j.suspended_at == T0 + 4
    assert up.suspended == T0 + 4 and up.sessions == {}
    assert {e.reason for e in j.ended} == {presence.EndReason.suspended}


def test_dry_run_rules_report_and_change_nothing() -> None:
    up, g = UserPresence(), guard(policy({**SHARED, "dry_run": True}))
    arrive(up, g, "home", ip="198.51.100.7")
    j = arrive(up, g, "away", ip="203.0.113.9", now=T0 + 1)
    away = next(x for x in j.judged if x.session == "away")
    assert away.evaluation.verdict == "allow"
    assert [(r.name, v) for r, v in away.evaluation.dry_run_matches] == [("shared", "challenge")]
    assert up.states() == {"home": A, "away": A}


def test_sessions_whose_checks_did_not_change_are_not_judged_again() -> None:
    up, g = UserPresence(), guard(policy(SHARED))
    arrive(up, g, "home", ip="198.51.100.7")
    arrive(up, g, "away", ip="203.0.113.9", kind="mobile", now=T0 + 1)
    assert g.apply(up, T0 + 2).judged == ()
    assert up.sessions["home"].checked is not None


def test_a_suspended_or_empty_snapshot_is_not_judged() -> None:
    g = guard(policy(SHARED))
    assert g.apply(UserPresence(), T0) == Judgement()
    up = UserPresence()
    arrive(up, None, "s", ip="198.51.100.7")
    presence.suspend(up, since=T0, now=T0)
    assert g.apply(up, T0) == Judgement()


def test_an_empty_policy_is_empty_and_a_digest_is_stable() -> None:
    assert is_empty(Policy()) and not is_empty(policy(SHARED))
    up = UserPresence()
    j = arrive(up, guard(policy(SHARED)), "s", ip="198.51.100.7")
    assert digest(j.judged[0].checks) == digest(j.judged[0].checks) == up.sessions["s"].checked


# --- invariants -----------------------------------------------------------------------

VERDICT_RULES = {
    "block": {"name": "b", "when": {"check": "concurrent_sessions"}, "verdict": "block"},
    "challenge": SHARED,
    "many": {
        "name": "m",
        "when": {"check": "device_count", "op": ">=", "value": 3},
        "verdict": "block",
    },
}
steps = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "logout", "take_over", "expire"]),
        st.integers(0, 5),  # session
        st.integers(0, 2),  # address
        st.sampled_from(["computer", "mobile"]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps,
    chosen=st.lists(st.sampled_from(sorted(VERDICT_RULES)), max_size=3, unique=True),
    limit=st.integers(1, 3),
    kind=st.sampled_from(["block-new", "evict-oldest", "challenge"]),
    mode=st.sampled_from(["concurrence", "device-limit"]),
)
def test_the_policy_never_seats_a_held_browser_nor_exceeds_the_limit(
    steps: list[tuple[str, int, int, str]], chosen: list[str], limit: int, kind: Any, mode: Any
) -> None:
    g = guard(policy(*(VERDICT_RULES[c] for c in chosen)))
    rules = Rules(mode=mode, limit=limit, policy=kind)
    up, now, timing = UserPresence(), T0, Timing()
    for op, n, address, device_type in steps:
        now += 7
        sid = f"session-{n}"
        if op == "join":
            a = Arrival(sid, "tab-1", f"dev-{n % 3}", device_type, ip=f"198.51.100.{address}")  # type: ignore[arg-type]
            before = up.states()
            if presence.join(up, a, rules=rules, now=now).refused is None:
                g.apply(up, now, arriving=sid, before=before)
        elif op == "leave" and sid in up.sessions:
            presence.leave(up, session=sid, tab="tab-1", how=Leave.close, now=now)
            g.apply(up, now)
        elif op == "logout" and sid in up.sessions:
            presence.logout(up, session=sid, now=now)
            g.apply(up, now)
        elif op == "take_over" and sid in up.sessions:
            presence.take_over(up, session=sid, now=now)
        elif op == "expire":
            presence.expire(up, timing, now + 30)
            g.apply(up, now)
        assert len(up.seats) <= limit
        for s in up.sessions.values():
            if s.held is not None:
                assert up.state(s.id) is B
        for unit in up.seats:
            assert any(up.unit(s) == unit and s.held is None for s in up.sessions.values())
