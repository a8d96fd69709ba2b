"""The presence core's decisions, over plain snapshots with the clock passed in."""

from __future__ import annotations

import pytest

from seatguard.presence import (
    MAX_HOLDERS,
    Arrival,
    EndReason,
    Holder,
    Leave,
    Outcome,
    Refusal,
    Rules,
    SeatState,
    Seen,
    Timing,
    UserPresence,
    expire,
    hold,
    holders,
    join,
    leave,
    logout,
    next_deadline,
    revoke,
    take_over,
    takeover_wait,
    touch,
)
from seatguard.protocol import BlockReason
from seatguard.types import Policy

A, B = SeatState.admitted, SeatState.blocked
TIMING = Timing(session_timeout=30.0, reload_grace=5.0, drop_grace=12.0)


def heartbeat(up: UserPresence, *, session: str, tab: str, active: bool, now: float) -> bool:
    """A tab's frame, recorded as the node's sync records it; False if the tab is unknown."""
    return not touch(up, [Seen(session, tab, now, now if active else None)], now)


def open_tab(
    up: UserPresence,
    session: str,
    now: float,
    *,
    tab: str | None = None,
    device: str | None = None,
    rules: Rules | None = None,
) -> SeatState:
    """Attach a tab and return the session's state afterwards."""
    join(
        up,
        Arrival(session, tab or f"{session}-tab", device or f"{session}-dev"),
        rules=rules or up.rules,
        now=now,
    )
    return up.state(session)


def test_first_session_is_admitted_and_second_is_blocked_with_limit_one() -> None:
    up = UserPresence()
    assert open_tab(up, "s1", 0) is A
    assert open_tab(up, "s2", 1) is B
    assert up.sessions["s2"].reason is BlockReason.limit


def test_join_reports_the_newcomer_and_nobody_else() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    outcome = join(up, Arrival("s2", "t", "d", "mobile"), rules=up.rules, now=1)
    assert [(t.session, t.state, t.reason) for t in outcome.transitions] == [
        ("s2", B, BlockReason.limit)
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_concurrence_admits_exactly_limit_sessions(limit: int) -> None:
    up = UserPresence(Rules(limit=limit))
    states = [open_tab(up, f"s{i}", i) for i in range(limit + 3)]
    assert states == [A] * limit + [B] * 3
    assert len(up.seats) == limit


def test_tabs_of_one_browser_share_its_seat() -> None:
    up = UserPresence()
    assert open_tab(up, "s1", 0, tab="t1") is A
    assert open_tab(up, "s1", 1, tab="t2") is A
    assert len(up.sessions) == 1
    assert len(up.seats) == 1


def test_seats_free_in_first_come_order() -> None:
    # Timeline: s1 holds the seat; s2, s3, s4 arrive in that order; s1 logs out.
    up = UserPresence()
    open_tab(up, "s1", 0)
    for i, sid in enumerate(["s2", "s3", "s4"], start=1):
        open_tab(up, sid, i)
    outcome = logout(up, session="s1", now=10)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.logout)]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]
    outcome = logout(up, session="s2", now=11)
    assert [(t.session, t.state) for t in outcome.transitions] == [("s3", A)]


def test_a_waiting_browser_that_reloads_keeps_its_place_in_line() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    open_tab(up, "s3", 2)
    leave(up, session="s2", tab="s2-tab", how=Leave.reload, now=3)
    assert open_tab(up, "s2", 4) is B
    logout(up, session="s1", now=5)
    assert up.state("s2") is A
    assert up.state("s3") is B


def test_goodbye_from_last_tab_frees_the_seat_at_once() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    outcome = leave(up, session="s1", tab="s1-tab", how=Leave.close, now=2)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.closed)]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


def test_goodbye_keeps_the_seat_while_another_tab_is_open() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0, tab="t1")
    open_tab(up, "s1", 0, tab="t2")
    open_tab(up, "s2", 1)
    outcome = leave(up, session="s1", tab="t1", how=Leave.close, now=2)
    assert outcome.transitions == () and outcome.ended == ()
    assert up.state("s1") is A and up.state("s2") is B


@pytest.mark.parametrize("how", [Leave.reload, Leave.navigate, Leave.drop])
def test_reload_within_grace_keeps_the_seat(how: Leave) -> None:
    # Timeline: s1 seated, s2 waiting; s1's only tab goes away at t=10 and comes back at 14.
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    leave(up, session="s1", tab="s1-tab", how=how, now=10)
    assert expire(up, TIMING, now=14).transitions == ()
    assert open_tab(up, "s1", 14) is A
    assert up.state("s2") is B
    assert len(up.sessions) == 2


def test_a_goodbye_without_hint_keeps_the_seat_only_for_the_unload_grace() -> None:
    # Timeline: s1 seated, s2 waiting; s1's only tab says `bye unload` at t=10 (a closed
    # tab and a reload from the browser's button look alike). A reload is back within the
    # unload grace (1.5 s); a closed tab is not, and s2 gets the seat at 11.5.
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    leave(up, session="s1", tab="s1-tab", how=Leave.unload, now=10)
    assert expire(up, TIMING, now=11.4).transitions == ()
    assert open_tab(up, "s1", 11.4) is A
    leave(up, session="s1", tab="s1-tab", how=Leave.unload, now=20)
    outcome = expire(up, TIMING, now=21.5)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.gone)]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


@pytest.mark.parametrize(("how", "grace"), [(Leave.navigate, 5.0), (Leave.drop, 12.0)])
def test_seat_frees_when_the_grace_runs_out(how: Leave, grace: float) -> None:
    # A socket closed without goodbye (a network drop) keeps the seat for the drop grace,
    # longer than a page that said it is leaving for another.
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    leave(up, session="s1", tab="s1-tab", how=how, now=10)
    assert next_deadline(up, TIMING) == 10 + grace
    assert expire(up, TIMING, now=10 + grace - 0.1).ended == ()
    outcome = expire(up, TIMING, now=10 + grace)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.gone)]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


def test_a_dropped_socket_back_within_the_drop_grace_keeps_its_seat_and_resets_it() -> None:
    # Timeline: s1's socket drops at t=10 and is back at 20 (past the 5 s reload grace,
    # within the 12 s drop grace); it then says goodbye with a reload at 21: the reload
    # grace applies again, not the drop grace of the earlier drop.
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    leave(up, session="s1", tab="s1-tab", how=Leave.drop, now=10)
    assert expire(up, TIMING, now=20).ended == ()
    assert open_tab(up, "s1", 20) is A
    assert not up.sessions["s1"].dropped
    leave(up, session="s1", tab="s1-tab", how=Leave.reload, now=21)
    outcome = expire(up, TIMING, now=26)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.gone)]


def test_silent_tabs_are_dropped_and_their_seat_freed() -> None:
    # s1's heartbeats stop at t=5; the session timeout is 30 s.
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    assert heartbeat(up, session="s1", tab="s1-tab", active=False, now=5)
    assert heartbeat(up, session="s2", tab="s2-tab", active=False, now=30)
    assert expire(up, TIMING, now=34.9).dropped_tabs == ()
    outcome = expire(up, TIMING, now=35)
    assert outcome.dropped_tabs == (("s1", "s1-tab"),)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.silent)]
    assert up.state("s2") is A
    assert not heartbeat(up, session="s1", tab="s1-tab", active=False, now=36)


def test_heartbeat_records_activity_only_when_active() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    heartbeat(up, session="s1", tab="s1-tab", active=False, now=5)
    assert up.sessions["s1"].last_active == 0
    heartbeat(up, session="s1", tab="s1-tab", active=True, now=6)
    assert up.sessions["s1"].last_active == 6
    assert up.sessions["s1"].last_seen == 6


def test_detached_waiters_are_skipped_until_they_return() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    open_tab(up, "s3", 2)
    leave(up, session="s2", tab="s2-tab", how=Leave.drop, now=3)
    logout(up, session="s1", now=4)
    assert up.state("s3") is A
    assert up.state("s2") is B


def test_device_limit_counts_devices_and_admits_every_session_on_a_seated_device() -> None:
    rules = Rules(mode="device-limit", limit=2)
    up = UserPresence(rules)
    assert open_tab(up, "chrome-laptop", 0, device="laptop") is A
    assert open_tab(up, "firefox-laptop", 1, device="laptop") is A
    assert open_tab(up, "phone", 2, device="phone") is A
    assert open_tab(up, "tablet", 3, device="tablet") is B
    assert set(up.seats) == {"laptop", "phone"}


def test_device_seat_frees_only_when_its_last_session_ends() -> None:
    up = UserPresence(Rules(mode="device-limit", limit=1))
    open_tab(up, "a1", 0, device="laptop")
    open_tab(up, "a2", 1, device="laptop")
    open_tab(up, "b1", 2, device="phone")
    assert logout(up, session="a1", now=3).transitions == ()
    outcome = logout(up, session="a2", now=4)
    assert [(t.session, t.state) for t in outcome.transitions] == [("b1", A)]


def test_evict_oldest_seats_the_newcomer_and_blocks_the_longest_seated() -> None:
    up = UserPresence(Rules(limit=2, policy="evict-oldest"))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    outcome = join(up, Arrival("s3", "t", "d"), rules=up.rules, now=2)
    got = {(t.session, t.state, t.reason) for t in outcome.transitions}
    assert got == {("s3", A, None), ("s1", B, BlockReason.evicted)}


def test_evict_idle_blocks_the_least_recently_active() -> None:
    up = UserPresence(Rules(limit=2, policy="evict-idle"))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    heartbeat(up, session="s1", tab="s1-tab", active=True, now=5)
    open_tab(up, "s3", 6)
    assert up.state("s2") is B and up.state("s1") is A and up.state("s3") is A


def test_an_evicted_browser_reloading_does_not_take_the_seat_back() -> None:
    up = UserPresence(Rules(policy="evict-oldest"))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    leave(up, session="s1", tab="s1-tab", how=Leave.reload, now=2)
    assert open_tab(up, "s1", 3) is B
    assert up.state("s2") is A


def test_raising_the_limit_seats_waiters_in_order() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    open_tab(up, "s3", 2)
    outcome = join(up, Arrival("s1", "s1-tab", "s1-dev"), rules=Rules(limit=2), now=3)
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


def test_switching_mode_rekeys_seats_without_evicting() -> None:
    up = UserPresence(Rules(limit=2))
    open_tab(up, "a1", 0, device="laptop")
    open_tab(up, "a2", 1, device="laptop")
    open_tab(up, "b1", 2, device="phone", rules=Rules(mode="device-limit", limit=2))
    assert set(up.seats) == {"laptop", "phone"}
    assert up.state("b1") is A


def test_unknown_sessions_and_tabs_are_ignored() -> None:
    up = UserPresence()
    assert leave(up, session="x", tab="t", how=Leave.close, now=0).ended == ()
    assert logout(up, session="x", now=0).ended == ()
    assert take_over(up, session="x", now=0).refused is Refusal.unknown_session
    assert not heartbeat(up, session="x", tab="t", active=True, now=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": 1001},
        {"mode": "seats"},
        {"policy": "coin-toss"},
        {"idle_timeout": 0},
        {"absolute_timeout": -1},
    ],
)
def test_rules_refuse_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Rules(**kwargs)  # type: ignore[arg-type]


def test_challenge_blocks_the_newcomer_with_an_offer_to_continue_here() -> None:
    up = UserPresence(Rules(policy="challenge"))
    open_tab(up, "s1", 0)
    assert open_tab(up, "s2", 1) is B
    assert up.sessions["s2"].reason is BlockReason.challenge
    outcome = take_over(up, session="s2", now=2)
    got = {(t.session, t.state, t.reason) for t in outcome.transitions}
    assert got == {("s2", A, None), ("s1", B, BlockReason.taken_over)}


def test_taken_over_browser_gets_the_seat_back_when_the_other_leaves() -> None:
    up = UserPresence(Rules(policy="challenge"))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    take_over(up, session="s2", now=2)
    outcome = logout(up, session="s2", now=3)
    assert [(t.session, t.state) for t in outcome.transitions] == [("s1", A)]


@pytest.mark.parametrize("policy", ["evict-oldest", "evict-idle", "challenge"])
def test_use_here_takes_the_seat_back_under_takeover_policies(policy: Policy) -> None:
    up = UserPresence(Rules(policy=policy))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    if policy != "challenge":
        assert up.state("s1") is B  # evicted by the newcomer
        take_over(up, session="s1", now=2)
        assert up.state("s1") is A and up.state("s2") is B
        assert up.sessions["s2"].reason is BlockReason.taken_over
    else:
        take_over(up, session="s2", now=2)
        assert up.state("s2") is A


@pytest.mark.parametrize("policy", ["block-new", "monitor"])
def test_use_here_is_refused_where_the_policy_does_not_allow_it(policy: Policy) -> None:
    up = UserPresence(Rules(policy=policy))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    assert take_over(up, session="s2", now=2).refused is Refusal.takeover_not_allowed


def test_take_overs_back_and_forth_wait_for_the_cooldown() -> None:
    # Timeline: s2 takes the seat from s1 at t=2; s1 asks it back at 10 and 21.9 (refused:
    # 20 s cooldown, 12 then 0.1 s left), and gets it at 22; s2 waits until 42.
    up = UserPresence(Rules(policy="challenge"))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    assert take_over(up, session="s2", now=2, cooldown=20).refused is None
    assert up.taken_over_at == 2
    assert take_over(up, session="s1", now=10, cooldown=20).refused is Refusal.takeover_cooldown
    assert takeover_wait(up, 20, now=10) == 12
    refused = take_over(up, session="s1", now=21.9, cooldown=20)
    assert refused == Outcome(refused=Refusal.takeover_cooldown)
    assert up.state("s2") is A and up.state("s1") is B
    outcome = take_over(up, session="s1", now=22, cooldown=20)
    assert {(t.session, t.state) for t in outcome.transitions} == {("s1", A), ("s2", B)}
    assert take_over(up, session="s2", now=41, cooldown=20).refused is Refusal.takeover_cooldown
    assert take_over(up, session="s2", now=42, cooldown=20).refused is None
    assert takeover_wait(up, 0, now=42) == 0


def test_take_over_of_an_admitted_session_changes_nothing() -> None:
    up = UserPresence(Rules(policy="challenge"))
    open_tab(up, "s1", 0)
    assert take_over(up, session="s1", now=1) == take_over(up, session="s1", now=1)
    assert up.state("s1") is A


def test_monitor_blocks_nobody_and_reports_the_conflict() -> None:
    up = UserPresence(Rules(policy="monitor"))
    open_tab(up, "s1", 0)
    outcome = join(up, Arrival("s2", "t2", "d2"), rules=up.rules, now=1)
    assert outcome.conflicts == ("s2",)
    assert up.state("s1") is A and up.state("s2") is A
    logout(up, session="s1", now=2)
    assert len(up.seats) == 1


def test_idle_timeout_ends_an_untouched_session_and_spares_an_active_one() -> None:
    # Both sessions beat every 5 s; only s2's user touches the page. Idle timeout 20 s.
    up = UserPresence(Rules(limit=2, idle_timeout=20))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 0)
    for t in range(5, 30, 5):
        heartbeat(up, session="s1", tab="s1-tab", active=False, now=t)
        heartbeat(up, session="s2", tab="s2-tab", active=True, now=t)
        outcome = expire(up, TIMING, now=t)
        if t < 20:
            assert outcome.ended == ()
    assert list(up.sessions) == ["s2"]
    # The expired session id cannot come back.
    assert join(up, Arrival("s1", "x", "d"), rules=up.rules, now=31).refused is Refusal.expired


def test_absolute_timeout_ends_a_session_whatever_the_activity() -> None:
    up = UserPresence(Rules(absolute_timeout=60))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 30)
    heartbeat(up, session="s1", tab="s1-tab", active=True, now=59)
    heartbeat(up, session="s2", tab="s2-tab", active=True, now=59)
    outcome = expire(up, TIMING, now=60)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.absolute)]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


def test_revoke_one_session_frees_its_seat_and_refuses_it_later() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    outcome = revoke(up, sessions=["s1"], timing=TIMING, now=2)
    assert [(e.session, e.reason) for e in outcome.ended] == [("s1", EndReason.revoked)]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]
    assert join(up, Arrival("s1", "t", "d"), rules=up.rules, now=3).refused is Refusal.revoked
    assert "s1" not in up.sessions


def test_revoke_all_but_one() -> None:
    up = UserPresence(Rules(limit=3))
    for i in range(3):
        open_tab(up, f"s{i}", i)
    outcome = revoke(up, sessions=None, keep="s1", timing=TIMING, now=5)
    assert {e.session for e in outcome.ended} == {"s0", "s2"}
    assert list(up.sessions) == ["s1"]


def test_tombstones_expire() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    revoke(up, sessions=None, timing=Timing(tombstone_ttl=10), now=1)
    assert not up.is_empty()
    expire(up, TIMING, now=11)
    assert up.is_empty()
    assert open_tab(up, "s1", 12) is A


def test_revoking_a_session_named_twice_revokes_it_once() -> None:
    up = UserPresence()
    open_tab(up, "s1", 0)
    outcome = revoke(up, sessions=["s1", "s1"], timing=TIMING, now=1)
    assert [e.session for e in outcome.ended] == ["s1"]


def test_a_tab_bringing_a_lower_limit_blocks_the_browsers_seated_last() -> None:
    # Two browsers hold seats under a limit of 2; a tab of the first comes back with an
    # identity token saying 1: the one seated last is blocked, as when an operator lowers it.
    up = UserPresence()
    assert open_tab(up, "s1", 0, rules=Rules(limit=2)) is A
    assert open_tab(up, "s2", 1, rules=Rules(limit=2)) is A
    assert open_tab(up, "s1", 2, tab="s1-again", rules=Rules(limit=1)) is A
    assert up.states() == {"s1": A, "s2": B} and up.sessions["s2"].reason is BlockReason.limit


def test_switching_to_counting_browsers_keeps_the_limit() -> None:
    # Three browsers share one seated device; counting browsers instead, only the limit's
    # worth keep a seat (the first seated; the others wait in the order they came).
    up = UserPresence()
    rules = Rules(mode="device-limit")
    for i, session in enumerate(["s1", "s2", "s3"]):
        assert open_tab(up, session, i, device="laptop", rules=rules) is A
    open_tab(up, "s1", 5, tab="again", device="laptop", rules=Rules())
    assert len(up.seats) == 1


def test_holders_are_the_seated_units_oldest_seat_first_at_most_three() -> None:
    # Device-limit, limit 4: d1 has two browsers (s1b seen last), d2 one, d3 one, d4 one;
    # s5 waits. A blocked browser is told of three holders, by seat age, each unit once.
    up = UserPresence(Rules(mode="device-limit", limit=4))
    for i, (session, device) in enumerate(
        [("s1", "d1"), ("s2", "d2"), ("s1b", "d1"), ("s3", "d3"), ("s4", "d4"), ("s5", "d5")]
    ):
        join(
            up,
            Arrival(
                session,
                f"{session}-tab",
                device,
                "mobile" if device == "d2" else "computer",
                user_agent=f"agent of {session}",
            ),
            rules=up.rules,
            now=float(i),
        )
    assert up.state("s5") is B
    assert holders(up) == (
        Holder("computer", "agent of s1b", 0.0),
        Holder("mobile", "agent of s2", 1.0),
        Holder("computer", "agent of s3", 3.0),
    )
    assert MAX_HOLDERS == 3


def test_a_session_the_policy_holds_is_no_holder() -> None:
    up = UserPresence(Rules(limit=2))
    open_tab(up, "s1", 0)
    open_tab(up, "s2", 1)
    hold(up, session="s1", reason=BlockReason.policy, rule="r", now=2)
    assert [h.since for h in holders(up)] == [1.0]
    assert holders(UserPresence()) == ()
