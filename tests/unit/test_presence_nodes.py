"""The core's side of several nodes: batched frames, released nodes, next deadlines."""

from __future__ import annotations

import pytest

from seatguard.notices import Notice, decode_notice, encode_notice
from seatguard.presence import (
    Arrival,
    EndReason,
    Leave,
    Outcome,
    Rules,
    SeatState,
    Seen,
    Timing,
    Transition,
    UserPresence,
    adopt,
    expire,
    join,
    leave,
    next_deadline,
    release_node,
    revoke,
    touch,
)
from seatguard.protocol import BlockReason

A, B = SeatState.admitted, SeatState.blocked
TIMING = Timing(
    session_timeout=30.0, reload_grace=5.0, unload_grace=1.5, drop_grace=8.0, tombstone_ttl=100
)


def arrive(up: UserPresence, session: str, now: float, node: str = "", tab: str = "t") -> None:
    join(up, Arrival(session, tab, session + "-dev", node=node), rules=up.rules, now=now)


def test_tabs_remember_the_node_holding_their_socket() -> None:
    up = UserPresence()
    arrive(up, "s1", 0, node="n1", tab="a")
    arrive(up, "s1", 1, node="n2", tab="b")
    assert up.sessions["s1"].homes == {"a": "n1", "b": "n2"}
    assert up.nodes() == {"n1", "n2"}
    # A tab that reconnects through another node moves there.
    arrive(up, "s1", 2, node="n2", tab="a")
    assert up.nodes() == {"n2"}
    leave(up, session="s1", tab="b", how=Leave.close, now=3)
    assert up.sessions["s1"].homes == {"a": "n2"}


def test_touch_records_batched_frames_and_reports_unknown_tabs() -> None:
    # Timeline: s1's tab joined at 0; its node batches frames seen at 4 and 9 (active at 7)
    # and writes them at 10, with a frame of a tab the store no longer knows.
    up = UserPresence(Rules(idle_timeout=60))
    arrive(up, "s1", 0)
    missing = touch(
        up, [Seen("s1", "t", 9.0, 7.0), Seen("s2", "t", 9.0), Seen("s1", "gone", 9.0)], now=10
    )
    assert missing == [("s2", "t"), ("s1", "gone")]
    s = up.sessions["s1"]
    assert (s.tabs["t"], s.last_seen, s.last_active) == (9.0, 9.0, 7.0)
    # A late batch never moves time backwards, nor into the future.
    touch(up, [Seen("s1", "t", 4.0, 3.0)], now=11)
    touch(up, [Seen("s1", "t", 99.0, 99.0)], now=12)
    assert (s.tabs["t"], s.last_active) == (12.0, 12.0)


def test_silence_is_judged_on_the_touched_times() -> None:
    up = UserPresence()
    arrive(up, "s1", 0)
    touch(up, [Seen("s1", "t", 25.0)], now=26)
    assert expire(up, TIMING, now=54.9).dropped_tabs == ()
    outcome = expire(up, TIMING, now=55)
    assert outcome.dropped_tabs == (("s1", "t"),)
    assert [e.reason for e in outcome.ended] == [EndReason.silent]


def test_releasing_a_dead_node_detaches_its_tabs_and_keeps_seats_for_the_grace() -> None:
    # Timeline: s1 holds the seat through node n1, s2 waits on n2. n1 dies and is released
    # at 10: its sockets dropped, s1 keeps its seat for the drop grace (8 s), then s2 gets
    # it at 18.
    up = UserPresence()
    arrive(up, "s1", 0, node="n1")
    arrive(up, "s2", 1, node="n2")
    outcome = release_node(up, "n1", now=10)
    assert outcome.dropped_tabs == (("s1", "t"),)
    assert outcome.transitions == () and up.state("s1") is A
    assert expire(up, TIMING, now=17.9).transitions == ()
    outcome = expire(up, TIMING, now=18)
    assert [e.session for e in outcome.ended] == ["s1"]
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]


def test_a_browser_that_reconnects_elsewhere_in_time_keeps_its_seat() -> None:
    up = UserPresence()
    arrive(up, "s1", 0, node="n1")
    arrive(up, "s2", 1, node="n2")
    arrive(up, "s1", 2, node="n2")  # the SDK reconnected to n2 before n1 was released
    assert release_node(up, "n1", now=10) == Outcome()
    assert expire(up, TIMING, now=20).ended == ()
    assert up.state("s1") is A and up.state("s2") is B


def test_releasing_keeps_the_tabs_the_node_still_holds() -> None:
    up = UserPresence()
    arrive(up, "s1", 0, node="n1", tab="a")
    arrive(up, "s1", 0, node="n1", tab="b")
    outcome = release_node(up, "n1", keep=[("s1", "a")], now=5)
    assert outcome.dropped_tabs == (("s1", "b"),)
    assert list(up.sessions["s1"].tabs) == ["a"]


def test_next_deadline_is_the_first_moment_expire_can_change_anything() -> None:
    up = UserPresence(Rules(limit=2, idle_timeout=100, absolute_timeout=500))
    assert next_deadline(up, TIMING) is None
    arrive(up, "s1", 0)
    assert next_deadline(up, TIMING) == 30  # silence: last frame + session timeout
    touch(up, [Seen("s1", "t", 90.0, 90.0)], now=90)
    assert next_deadline(up, TIMING) == 120
    touch(up, [Seen("s1", "t", 110.0)], now=110)
    assert next_deadline(up, TIMING) == 140  # idle at 90 + 100 = 190 comes later
    leave(up, session="s1", tab="t", how=Leave.unload, now=111)
    assert next_deadline(up, TIMING) == 112.5  # the unload grace
    arrive(up, "s1", 112)
    leave(up, session="s1", tab="t", how=Leave.reload, now=113)
    assert next_deadline(up, TIMING) == 118  # the reload grace
    revoke(up, sessions=["s1"], timing=TIMING, now=114)
    assert next_deadline(up, TIMING) == 214  # the tombstone's end


@pytest.mark.parametrize("now", [0.0, 10.0, 29.0, 31.0, 60.0, 111.0])
def test_nothing_changes_before_the_deadline(now: float) -> None:
    """Property: expire at any time before next_deadline is a no-op."""
    up = UserPresence(Rules(limit=1, idle_timeout=45))
    arrive(up, "s1", 0)
    arrive(up, "s2", 1)
    leave(up, session="s2", tab="t", how=Leave.drop, now=now / 2)
    deadline = next_deadline(up, TIMING)
    assert deadline is not None
    before = (dict(up.seats), {k: dict(v.tabs) for k, v in up.sessions.items()})
    if now < deadline:
        outcome = expire(up, TIMING, now=now)
        assert outcome == Outcome()
        assert (dict(up.seats), {k: dict(v.tabs) for k, v in up.sessions.items()}) == before
    else:
        assert expire(up, TIMING, now=deadline) != Outcome()


def test_a_notice_round_trips() -> None:
    outcome = Outcome(
        (Transition("s1", B, BlockReason.evicted, "dev", "203.0.113.9"),),
        (("s2", "t"),),
        conflicts=("s3",),
    )
    notice = Notice("pk_site", "alice", 1_700_000_000_000_000, True, outcome)
    assert decode_notice(encode_notice(notice)) == notice


def test_a_lower_limit_from_an_operator_blocks_the_sessions_seated_last() -> None:
    up = UserPresence(Rules(limit=3))
    for i, sid in enumerate(["s1", "s2", "s3"]):
        arrive(up, sid, i)
    outcome = adopt(up, Rules(limit=1), now=10)
    assert [(t.session, t.state, t.reason) for t in outcome.transitions] == [
        ("s2", B, BlockReason.limit),
        ("s3", B, BlockReason.limit),
    ]
    assert up.state("s1") is A
    # Raised again: the blocked ones are seated, first come first.
    outcome = adopt(up, Rules(limit=2), now=11)
    assert [(t.session, t.state) for t in outcome.transitions] == [("s2", A)]
    assert adopt(up, Rules(limit=2), now=12) == Outcome()  # unchanged: nothing happens


def test_a_lower_limit_under_monitor_blocks_nobody() -> None:
    up = UserPresence(Rules(limit=2, policy="monitor"))
    arrive(up, "s1", 0)
    arrive(up, "s2", 1)
    assert adopt(up, Rules(limit=1, policy="monitor"), now=5).transitions == ()
    assert up.state("s1") is up.state("s2") is A


def test_new_timeouts_from_an_operator_apply_to_live_sessions() -> None:
    up = UserPresence()
    arrive(up, "s1", 0)
    adopt(up, Rules(idle_timeout=20), now=5)
    assert next_deadline(up, TIMING) == 20
    outcome = expire(up, TIMING, now=20)
    assert [e.reason for e in outcome.ended] == [EndReason.idle]
