"""The node in one process: ticks and syncs, a store that goes away, operators, expiry,
and several nodes on one shared memory store.

Tabs are `FakeTab`s joined to the node directly; nodes come from `inprocess`. Time is the
world's fake clock (it starts at T0); heartbeats reach the store within 10 s, tabs silent
for 30 s are dropped, a browser whose tabs left keeps its seat for 5 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from seatguard.errors import StoreUnavailable
from seatguard.node import Node
from seatguard.presence import EndReason, Leave, Refusal, Rules, SeatState
from seatguard.protocol import (
    Block,
    CloseCode,
    Ended,
    Error,
    Expired,
    Holder,
    Revoked,
    Unblock,
    Welcome,
)

from .inprocess import SETTINGS, FakeTab, HubStore, Notes, World, open_world

pytestmark = pytest.mark.anyio

ALICE = "alice"
S1, S2, S3 = "session-one", "session-two", "session-three"
T0 = 1_700_000_000.0
# How a blocked tab is told of a browser holding a seat since T0 (these tabs send no agent).
AGENTLESS = Holder(device_type="computer", browser="Other", os="Other", since=int(T0))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(Rules(limit=1)) as w:
        yield w


async def joined(world: World, node: Node, session: str, tab: str = "tab-0001") -> FakeTab:
    """A tab of `session` (user alice) joined to `node`, the site's rules in force."""
    t = world.tab(node, session, tab)
    await node.join(world.key(ALICE), t)
    return t


def store_of(node: Node) -> HubStore:
    assert isinstance(node.store, HubStore)
    return node.store


# --- ticks and syncs ------------------------------------------------------------------


async def test_heartbeats_stay_on_the_node_until_the_sync_is_due(world: World) -> None:
    node = await world.node()
    tab = await joined(world, node, S1)
    key = world.key(ALICE)
    world.clock.now = T0 + 3
    assert node.heartbeat(tab, active=False)
    await node.tick()
    assert (await world.hub.snapshot(key)).sessions[S1].tabs["tab-0001"] == T0
    world.clock.now = T0 + 10  # (session timeout - heartbeat interval) / 2 after the join
    await node.tick()
    assert (await world.hub.snapshot(key)).sessions[S1].tabs["tab-0001"] == T0 + 3
    assert tab.frames == []  # nothing changed for it: it is told nothing


async def test_user_input_reaches_the_store_within_a_quarter_of_the_idle_timeout() -> None:
    async with open_world(Rules(limit=1, idle_timeout=20)) as world:
        node = await world.node()
        tab = await joined(world, node, S1)
        key = world.key(ALICE)
        world.clock.now = T0 + 1
        node.heartbeat(tab, active=True)
        world.clock.now = T0 + 5.9
        await node.tick()
        assert (await world.hub.snapshot(key)).sessions[S1].last_active == T0
        world.clock.now = T0 + 6  # 1 + 20 / 4
        await node.tick()
        assert (await world.hub.snapshot(key)).sessions[S1].last_active == T0 + 1


async def test_a_tab_the_node_no_longer_holds_gets_no_heartbeat(world: World) -> None:
    node = await world.node()
    tab = await joined(world, node, S1)
    await node.leave(tab, Leave.close)
    assert not node.heartbeat(tab, active=False)
    assert world.tab(node, S2).key is None and not node.heartbeat(world.tab(node, S2), False)


# --- expiry ---------------------------------------------------------------------------


async def test_a_silent_tab_is_dropped_and_the_next_in_line_seated(world: World) -> None:
    node = await world.node()
    silent = await joined(world, node, S1)
    waiting = await joined(world, node, S2)
    await world.elapse(29, [node], beating=[waiting])  # only the waiting tab keeps talking
    assert silent.ended is None and waiting.new() == []
    await world.elapse(1, [node], beating=[waiting])
    assert silent.ended is CloseCode.heartbeat_timeout
    assert waiting.new() == [Unblock()]
    up = await world.hub.snapshot(world.key(ALICE))
    assert set(up.sessions) == {S2} and set(up.seats) == {S2}
    assert node.tab_count() == 1


async def test_an_idle_browser_expires_while_an_active_one_stays() -> None:
    async with open_world(Rules(limit=2, idle_timeout=20)) as world:
        node = await world.node()
        busy = await joined(world, node, S1)
        idle = await joined(world, node, S2)
        for second in range(1, 21):
            world.clock.now = T0 + second
            if second % 5 == 0:
                node.heartbeat(busy, active=True)
                node.heartbeat(idle, active=False)
            await node.tick()
        assert idle.frames == [Expired(reason="idle")]
        assert idle.ended is CloseCode.expired
        assert busy.ended is None and busy.frames == []
        up = await world.hub.snapshot(world.key(ALICE))
        assert set(up.sessions) == {S1}
        assert up.tombstones[S2][0] is Refusal.expired
        again = world.tab(node, S2, "tab-0002")
        assert (await node.join(world.key(ALICE), again)).refused is Refusal.expired


async def test_a_browser_reaching_its_absolute_timeout_expires() -> None:
    async with open_world(Rules(limit=1, absolute_timeout=40)) as world:
        node = await world.node()
        tab = await joined(world, node, S1)
        for second in range(1, 41):
            world.clock.now = T0 + second
            node.heartbeat(tab, active=True)
            await node.tick()
        assert tab.frames == [Expired(reason="absolute")] and tab.ended is CloseCode.expired


async def test_a_browser_whose_tabs_left_ends_after_the_reload_grace(world: World) -> None:
    node = await world.node()
    gone = await joined(world, node, S1)
    waiting = await joined(world, node, S2)
    world.clock.now = T0 + 1
    await node.leave(gone, Leave.reload)
    world.clock.now = T0 + 5.5
    await node.tick()
    assert waiting.new() == []
    world.clock.now = T0 + 6
    await node.tick()
    assert waiting.new() == [Unblock()]


# --- operators ------------------------------------------------------------------------


async def test_revocation_ends_the_browser_and_is_kept_in_the_database(world: World) -> None:
    notes = Notes()
    node = await world.node(recorder=notes)
    revoked = await joined(world, node, S1)
    kept = await joined(world, node, S2)
    assert await node.revoke(world.key(ALICE), sessions=[S1, "not-a-session"]) == [S1]
    assert revoked.frames == [Revoked(reason="revoked")] and revoked.ended is CloseCode.revoked
    assert kept.frames == [Unblock()]
    assert await world.db.revoked_sessions(world.site.key, [S1, S2], world.clock()) == {S1}
    _, outcome, context = notes.outcomes[-1]
    assert [e.reason for e in outcome.ended] == [EndReason.revoked]
    assert context == {"by": "api", "scope": "session"}


async def test_revoke_where_reaches_every_matching_user(world: World) -> None:
    node = await world.node()
    alice = await joined(world, node, S1)
    bob = world.tab(node, S2)
    await node.join(world.key("bob"), bob)
    count = await node.revoke_where(world.site.key, lambda s: s.id == S2)
    assert count == 1
    assert bob.ended is CloseCode.revoked and alice.ended is None


async def test_a_lower_limit_blocks_the_browser_seated_last() -> None:
    async with open_world(Rules(limit=2)) as world:
        node = await world.node()
        first = await joined(world, node, S1)
        world.clock.now = T0 + 1
        last = await joined(world, node, S2)
        await world.set_rules(Rules(limit=1))
        await node.refresh_rules(world.site.key)
        assert last.frames == [Block(reason="limit", takeover=False, holders=(AGENTLESS,))]
        assert first.frames == []
        assert last.rules.limit == 1 and first.rules.limit == 1
        up = await world.hub.snapshot(world.key(ALICE))
        assert set(up.seats) == {S1} and up.rules.limit == 1
        await world.set_rules(Rules(limit=2))
        await node.refresh_rules(world.site.key)
        assert last.frames[-1] == Unblock()


async def test_take_over_where_allowed_and_where_not() -> None:
    async with open_world(Rules(limit=1, policy="evict-oldest")) as world:
        node = await world.node()
        holder = await joined(world, node, S1)
        # A newcomer evicts the holder under evict-oldest; the holder takes the seat back.
        newcomer = await joined(world, node, S2)
        assert holder.new() == [Block(reason="evicted", takeover=True, holders=(AGENTLESS,))]
        outcome, _ = await node.take_over(holder)
        assert outcome.refused is None
        assert holder.new() == [Unblock()]
        assert newcomer.new() == [Block(reason="taken_over", takeover=True, holders=(AGENTLESS,))]
        await world.set_rules(Rules(limit=1, policy="block-new"))
        await node.refresh_rules(world.site.key)
        assert (await node.take_over(newcomer))[0].refused is Refusal.takeover_not_allowed


async def test_logout_ends_the_browser_and_seats_the_next(world: World) -> None:
    node = await world.node()
    tab = await joined(world, node, S1)
    waiting = await joined(world, node, S2)
    await node.logout(tab)
    assert tab.frames == [Ended(reason="logout")] and tab.ended is CloseCode.logged_out
    assert waiting.frames == [Unblock()]
    assert set((await world.hub.snapshot(world.key(ALICE))).sessions) == {S2}


# --- a store that goes away -----------------------------------------------------------


async def test_a_site_failing_open_decides_on_the_node_while_the_store_is_down(
    world: World,
) -> None:
    node = await world.node()
    store = store_of(node)
    store.down = True
    key = world.key(ALICE)
    first = world.tab(node, S1)
    assert (await node.join(key, first)).state is SeatState.admitted
    second = world.tab(node, S2)
    assert (await node.join(key, second)).state is SeatState.blocked  # the node's own count
    assert (await node.snapshot(key)).states() == {S1: SeatState.admitted, S2: SeatState.blocked}
    assert (await world.hub.snapshot(key)).is_empty()
    await world.elapse(15, [node])  # syncs and expiry run on the node's own decisions
    await store.back()
    await node.tick()
    up = await world.hub.snapshot(key)
    assert up.states() == {S1: SeatState.admitted, S2: SeatState.blocked}
    assert first.frames == [] and second.frames == []
    assert first.ended is None and second.ended is None


async def test_a_site_failing_closed_refuses_while_the_store_is_down() -> None:
    async with open_world(Rules(limit=1), store_failure="closed") as world:
        node = await world.node()
        store_of(node).down = True
        tab = world.tab(node, S1)
        with pytest.raises(StoreUnavailable):
            await node.join(world.key(ALICE), tab, fail_open=False)
        assert node.tab_count() == 0
        assert not node.heartbeat(tab, active=False)


async def test_news_the_node_missed_while_down_is_told_when_the_store_is_back(
    world: World,
) -> None:
    # Node A lost its link; meanwhile node B seated another browser of the same user.
    a, b = await world.node("A"), await world.node("B")
    store_of(a).down = True
    here = await joined(world, a, S1)  # admitted by A alone
    assert here.told == (SeatState.admitted, None)
    await joined(world, b, S2)  # admitted by the shared store
    await store_of(a).back()
    await a.tick()
    assert here.frames == [Block(reason="limit", takeover=False, holders=(AGENTLESS,))]
    up = await world.hub.snapshot(world.key(ALICE))
    assert up.states() == {S2: SeatState.admitted, S1: SeatState.blocked}


async def test_steps_that_fail_while_the_store_is_down_are_retried(world: World) -> None:
    node = await world.node()
    tab = await joined(world, node, S1)
    waiting = await joined(world, node, S2)
    store = store_of(node)
    store.down = True
    await node.leave(tab, Leave.reload)  # lost: the store still counts the tab
    await world.elapse(40, [node], beating=[waiting])  # every sync and expiry check fails
    assert waiting.frames == []
    await store.back()
    await world.elapse(1, [node], beating=[waiting])  # retried: the silent tab is dropped
    assert waiting.frames == [Unblock()] and waiting.ended is None


async def test_take_over_and_logout_while_the_store_is_down() -> None:
    async with open_world(Rules(limit=1, policy="challenge")) as world:
        node = await world.node()
        holder = await joined(world, node, S1)
        waiting = await joined(world, node, S2)
        store_of(node).down = True
        assert (await node.take_over(waiting))[0].refused is Refusal.unavailable
        await node.logout(holder)  # told at once
        assert holder.frames == [Ended(reason="logout")]
        assert holder.ended is CloseCode.logged_out


# --- several nodes on one store ---------------------------------------------------------


async def test_a_notice_from_one_node_reaches_the_tabs_of_another(world: World) -> None:
    a, b = await world.node("A"), await world.node("B")
    holder = await joined(world, a, S1)
    waiting = await joined(world, b, S2)
    assert await world.hub.deliver() == 1  # B's join, told to A (it holds a tab of alice)
    assert holder.frames == []  # nothing changed for S1
    await a.leave(holder, Leave.close)
    assert waiting.frames == []  # the notice is on its way
    assert await world.hub.deliver() == 1
    assert waiting.frames == [Unblock()]


async def test_a_lost_notice_is_repaired_by_the_next_sync(world: World) -> None:
    a, b = await world.node("A"), await world.node("B")
    holder = await joined(world, a, S1)
    waiting = await joined(world, b, S2)
    await a.leave(holder, Leave.close)
    world.hub.mail.clear()
    world.clock.now = T0 + 10
    await b.tick()
    assert waiting.frames == [Unblock()]


async def test_a_late_notice_cannot_undo_newer_news(world: World) -> None:
    a, b = await world.node("A"), await world.node("B")
    holder = await joined(world, a, S1)
    waiting = await joined(world, b, S2)
    await a.leave(holder, Leave.close)
    late = list(world.hub.mail)
    await world.hub.deliver()
    assert waiting.new() == [Unblock()]
    world.hub.mail.extend(late + late)  # delivered again, twice
    await world.hub.deliver()
    assert waiting.new() == []


async def test_take_over_revocation_and_logout_reach_the_other_node() -> None:
    async with open_world(Rules(limit=1, policy="challenge")) as world:
        a, b = await world.node("A"), await world.node("B")
        holder = await joined(world, a, S1)
        asking = await joined(world, b, S2)
        assert (await b.take_over(asking))[0].refused is None
        assert asking.new() == [Unblock()]
        await world.hub.deliver()
        assert holder.new() == [Block(reason="taken_over", takeover=True, holders=(AGENTLESS,))]
        # S2 has a second tab on A; its browser signs out from B.
        other_tab = await joined(world, a, S2, "tab-0002")
        await b.logout(asking)
        await world.hub.deliver()
        assert other_tab.frames == [Ended(reason="logout")]
        assert other_tab.ended is CloseCode.logged_out
        assert holder.new() == [Unblock()]
        # An operator revokes the user through B; A's tab is told.
        await b.revoke(world.key(ALICE))
        await world.hub.deliver()
        assert holder.frames == [Revoked(reason="revoked")]
        assert holder.ended is CloseCode.revoked


async def test_rules_changed_on_one_node_apply_to_the_tabs_of_every_node() -> None:
    async with open_world(Rules(limit=2)) as world:
        a, b = await world.node("A"), await world.node("B")
        first = await joined(world, a, S1)
        world.clock.now = T0 + 1
        last = await joined(world, b, S2)
        await world.set_rules(Rules(limit=1, policy="challenge"))
        await a.rules_changed(world.site.key)
        await world.hub.deliver()
        assert last.frames == [Block(reason="limit", takeover=True, holders=(AGENTLESS,))]
        assert last.rules.policy == "challenge" and first.rules.policy == "challenge"
        assert first.frames == []


async def test_nodes_coming_back_to_an_emptied_store_keep_the_seats_in_order(
    world: World,
) -> None:
    # The store restarted empty; the node of the waiting browser writes its tabs first.
    a, b = await world.node("A"), await world.node("B")
    holder = await joined(world, a, S1)
    waiting = await joined(world, b, S2)
    await world.hub.memory.close()
    await b.reconnected()
    await b.tick()
    assert (await world.hub.snapshot(world.key(ALICE))).seats == {}  # kept for its holder
    await a.reconnected()
    await a.tick()
    await world.hub.deliver()
    up = await world.hub.snapshot(world.key(ALICE))
    assert up.states() == {S1: SeatState.admitted, S2: SeatState.blocked}
    assert holder.frames == [] and waiting.frames == []


async def test_a_dead_node_is_reaped_and_its_seat_freed_after_the_grace(world: World) -> None:
    a, b = await world.node("A"), await world.node("B")
    await joined(world, b, S1)
    waiting = await joined(world, a, S2)
    await store_of(b).close()  # B stops: no release, no more notices heard
    await a.reap("B", [world.key(ALICE)])
    assert waiting.new() == []
    # Its browsers' sockets dropped: they keep their seats for the drop grace.
    await world.elapse(SETTINGS.drop_grace - 1, [a])
    assert waiting.new() == []
    await world.elapse(1, [a])
    assert waiting.new() == [Unblock()]


async def test_a_closing_node_releases_its_tabs(world: World) -> None:
    a, b = await world.node("A"), await world.node("B")
    await joined(world, a, S1)
    waiting = await joined(world, b, S2)
    await a.close()
    await store_of(a).close()
    up = await world.hub.snapshot(world.key(ALICE))
    assert up.sessions[S1].tabs == {} and up.sessions[S1].detached_at == T0
    # The seat is freed after the drop grace, at B's next sync of alice or deadline.
    await world.elapse(SETTINGS.drop_grace, [b], beating=[waiting])
    assert waiting.new() == [Unblock()]


async def test_a_seat_released_by_a_closing_node_is_freed_after_the_grace(world: World) -> None:
    a, b = await world.node("A"), await world.node("B")
    await joined(world, a, S1)
    waiting = await joined(world, b, S2)
    await a.close()
    await store_of(a).close()
    await world.elapse(SETTINGS.drop_grace, [b], beating=[waiting])
    assert waiting.new() == [Unblock()]


async def test_a_malformed_notice_is_ignored(world: World) -> None:
    node = await world.node("A")
    tab = await joined(world, node, S1)
    await node.notice(b"\x93\x01")
    assert tab.frames == [] and tab.ended is None


async def test_a_browser_that_left_while_the_store_was_down_is_released_when_it_is_back(
    world: World,
) -> None:
    # A's only tab of alice signs out, and another leaves for good, while A cannot reach
    # the store: both are told at once; the store learns it when A is back.
    a, b = await world.node("A"), await world.node("B")
    signed_out = await joined(world, a, S1)
    closed = await joined(world, a, S2)
    waiting = await joined(world, b, S3)
    await world.hub.deliver()
    store_of(a).down = True
    await a.logout(signed_out)
    await a.leave(closed, Leave.close)
    assert signed_out.ended is CloseCode.logged_out
    world.clock.now = T0 + 1
    await store_of(a).back()
    await a.tick()  # the sync, at once: the lost tabs are released
    # Released as dropped sockets (whether they left for good is not known): the drop grace.
    await world.elapse(SETTINGS.drop_grace, [a, b], beating=[waiting])
    up = await world.hub.snapshot(world.key(ALICE))
    assert set(up.sessions) == {S3}
    assert waiting.new() == [Unblock()]


async def test_a_join_written_just_before_its_revocation_is_never_welcomed() -> None:
    # B's join of S1 is written, but B has not heard back when A revokes S1 and A's notice
    # reaches B: the join then answers as revoked, never with a welcome (else the revoked
    # browser would be served until B's next sync of the user).
    async with open_world(Rules(limit=3)) as world:
        a, b = await world.node("A"), await world.node("B")
        racing = world.socket(b)
        store = b.store
        assert isinstance(store, HubStore)
        hold = store.hold(after_write=True)
        hello = asyncio.create_task(racing.hello(ALICE, S1))
        await hold.reached.wait()
        assert await a.revoke(world.key(ALICE), sessions=[S1]) == [S1]
        await world.hub.deliver()
        assert racing.new() == []
        hold.release()
        await hello
        frames = racing.new()
        assert not any(isinstance(f, Welcome) for f in frames), frames
        assert [f.code for f in frames if isinstance(f, Error)] == [CloseCode.revoked]
        assert racing.closed == CloseCode.revoked and b.tab_count() == 0
