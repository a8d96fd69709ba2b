"""A tab's socket end to end in one process: frames in, node and store, frames out.

Each test builds its node and sockets through `inprocess`; time is the world's fake clock.
Frames are asserted as the socket received them, decoded with the protocol module.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from seatguard.channel import ChannelState
from seatguard.node import Node
from seatguard.presence import Rules, SeatState
from seatguard.protocol import (
    Ack,
    Block,
    Bye,
    CloseCode,
    Conflict,
    Denied,
    Ended,
    Error,
    Heartbeat,
    Holder,
    Logout,
    Revoked,
    ServerFrame,
    TakeOver,
    Unblock,
    Welcome,
    encode,
)

from .inprocess import SETTINGS, HubStore, World, make_node, open_world

pytestmark = pytest.mark.anyio

ALICE = "alice"
S1, S2, S3 = "session-one", "session-two", "session-three"
# How a blocked tab is told of a browser of the world's sockets holding a seat since T0.
FIREFOX = Holder(device_type="computer", browser="Firefox", os="Linux", since=1_700_000_000)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(Rules(limit=1)) as w:
        yield w


def store_of(node: Node) -> HubStore:
    assert isinstance(node.store, HubStore)
    return node.store


def welcome(frames: list[ServerFrame]) -> Welcome:
    """The one frame of a hello's answer, a welcome."""
    assert len(frames) == 1 and isinstance(frames[0], Welcome), frames
    return frames[0]


async def test_hello_is_welcomed_and_seats_the_browser(world: World) -> None:
    node = await world.node()
    tab = world.socket(node)
    await tab.hello(ALICE, S1)
    w = welcome(tab.new())
    assert (w.state, w.reason, w.limit, w.policy, w.session) == (
        "admitted",
        None,
        1,
        "block-new",
        S1,
    )
    assert w.hb == 10_000 and w.takeover is False
    assert tab.channel.state is ChannelState.joined
    up = await world.hub.snapshot(world.key(ALICE))
    assert set(up.sessions) == {S1} and set(up.seats) == {S1}
    assert list(up.sessions[S1].tabs) == ["tab-0001"]


async def test_a_second_browser_over_the_limit_waits_and_the_first_hears_nothing(
    world: World,
) -> None:
    node = await world.node()
    first, second = world.socket(node), world.socket(node)
    await first.hello(ALICE, S1)
    first.new()
    await second.hello(ALICE, S2)
    w = welcome(second.new())
    assert (w.state, w.reason) == ("blocked", "limit")
    assert first.new() == []
    # This site lets pages choose their rules: another user's page asks for two seats.
    third = world.socket(node)
    await third.hello("bob", S3, limit=2)
    assert welcome(third.new()).limit == 2


async def test_heartbeats_are_acked_and_the_fast_path_agrees(world: World) -> None:
    node = await world.node()
    tab = world.socket(node)
    assert tab.channel.heartbeat_now(b'{"t":"hb","ref":1}') is None  # no hello yet
    await tab.hello(ALICE, S1)
    tab.new()
    await tab.send(Heartbeat(ref=7))
    assert tab.new() == [Ack(ref=7)]
    assert tab.channel.heartbeat_now(b'{"t":"hb","ref":8,"active":true}') == encode(Ack(ref=8))
    assert tab.channel.active_at == world.clock()


async def test_a_frame_before_hello_ends_the_socket_with_its_code(world: World) -> None:
    node = await world.node()
    tab = world.socket(node)
    await tab.send(Heartbeat(ref=1))
    (error,) = tab.new()
    assert isinstance(error, Error) and error.code == CloseCode.protocol_order
    assert tab.closed == CloseCode.protocol_order
    assert node.tab_count() == 0


async def test_goodbye_for_good_frees_the_seat_for_the_next_in_line(world: World) -> None:
    node = await world.node()
    first, second = world.socket(node), world.socket(node)
    await first.hello(ALICE, S1)
    await second.hello(ALICE, S2)
    second.new()
    await first.send(Bye(next="close"))
    assert first.closed == CloseCode.normal
    assert second.new() == [Unblock()]
    up = await world.hub.snapshot(world.key(ALICE))
    assert set(up.sessions) == {S2} and set(up.seats) == {S2}


async def test_a_dropped_socket_keeps_its_seat_for_the_drop_grace(world: World) -> None:
    # The measure: after some 5.7 s of refused connections the waiting browser took
    # the seat. A drop of 10 s now keeps it (drop grace 15 s, reload grace 5 s), and the
    # returning browser is admitted; a drop past the grace frees it.
    node = await world.node()
    first, second = world.socket(node), world.socket(node)
    await first.hello(ALICE, S1)
    await second.hello(ALICE, S2)
    second.new()
    await first.channel.closed()  # no goodbye: a network drop
    await world.elapse(10.0, [node], beating=[second.channel])
    assert second.new() == []
    back = world.socket(node)
    await back.hello(ALICE, S1)
    assert welcome(back.new()).state == "admitted"
    await back.channel.closed()  # dropped again, for good this time
    await world.elapse(SETTINGS.drop_grace - 1, [node], beating=[second.channel])
    assert second.new() == []
    await world.elapse(1.0, [node], beating=[second.channel])
    assert second.new() == [Unblock()]
    assert set((await world.hub.snapshot(world.key(ALICE))).seats) == {S2}


async def test_take_over_seats_the_asking_browser_and_blocks_the_holder() -> None:
    async with open_world(Rules(limit=1, policy="challenge")) as world:
        node = await world.node()
        first, second = world.socket(node), world.socket(node)
        await first.hello(ALICE, S1)
        first.new()
        await second.hello(ALICE, S2)
        w = welcome(second.new())
        assert (w.state, w.reason, w.takeover) == ("blocked", "challenge", True)
        await second.send(TakeOver())
        assert second.new() == [Unblock()]
        assert first.new() == [Block(reason="taken_over", takeover=True, holders=(FIREFOX,))]
        assert set((await world.hub.snapshot(world.key(ALICE))).seats) == {S2}


async def test_take_over_back_within_the_cooldown_is_denied_with_the_time_left() -> None:
    # S2 takes the seat at T0; S1 presses "use here" 10.2 s later: the cooldown (30 s by
    # default) has 19.8 s left, said as 20. Pressed again once it is over, it works.
    async with open_world(Rules(limit=1, policy="challenge")) as world:
        node = await world.node()
        first, second = world.socket(node), world.socket(node)
        await first.hello(ALICE, S1)
        await second.hello(ALICE, S2)
        await second.send(TakeOver())
        first.new(), second.new()
        world.clock.now += 10.2
        await first.send(TakeOver())
        assert first.new() == [
            Denied(
                action="takeover",
                reason="takeover_cooldown",
                message="the account was just taken over; try again in 20 s",
                retry=20,
            )
        ]
        assert first.closed is None and first.channel.state is ChannelState.joined
        beating = [first.channel, second.channel]
        await world.elapse(SETTINGS.takeover_cooldown - 10.2, [node], beating=beating)
        assert first.new() == [] and second.new() == []
        await first.send(TakeOver())
        assert first.new() == [Unblock()]


CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


async def test_a_blocked_browser_is_told_where_the_seat_is_held_and_nothing_more(
    world: World,
) -> None:
    # The holder's device type, browser and OS family and since when: not its address,
    # session, device id or user agent.
    node = await world.node()
    first = world.socket(node, ip="203.0.113.7", user_agent=CHROME_ON_WINDOWS)
    await first.hello(ALICE, S1)
    world.clock.now += 60
    second = world.socket(node)
    await second.hello(ALICE, S2)
    (frame,) = second.new()
    assert isinstance(frame, Welcome) and frame.state == "blocked"
    assert frame.holders == (
        Holder(device_type="computer", browser="Chrome", os="Windows", since=1_700_000_000),
    )
    raw = encode(frame)
    for secret in (b"203.0.113", S1.encode(), b"dev-", b"Mozilla", b"Win64"):
        assert secret not in raw


async def test_holders_of_a_hostile_user_agent_are_plain_families(world: World) -> None:
    # A holder whose agent is 10 KB of markup: the blocked browser reads "Other", nothing
    # of the agent itself, and the frame stays small.
    node = await world.node()
    first = world.socket(node, user_agent="<img src=x onerror=alert(1)>" * 400)
    await first.hello(ALICE, S1)
    second = world.socket(node)
    await second.hello(ALICE, S2)
    (frame,) = second.new()
    assert isinstance(frame, Welcome)
    assert [(h.browser, h.os) for h in frame.holders] == [("Other", "Other")]
    assert len(encode(frame)) < 400


async def test_the_welcome_says_the_idle_timeout_and_when_to_warn() -> None:
    # Idle timeout 10 min: the page warns 60 s before (SEATGUARD_IDLE_WARNING's default);
    # 60 s: at most half of it, 30 s; no idle timeout: neither.
    for idle, warn in ((600.0, 60_000), (60.0, 30_000), (None, None)):
        async with open_world(Rules(limit=1, idle_timeout=idle)) as world:
            node = await world.node()
            tab = world.socket(node)
            await tab.hello(ALICE, S1)
            w = welcome(tab.new())
            assert (w.idle, w.warn) == (None if idle is None else idle * 1000, warn)


async def test_an_idle_warning_longer_than_half_the_timeout_is_capped_and_0_warns_never() -> None:
    # SEATGUARD_IDLE_WARNING 600 s with an idle timeout of 100 s: the warning would open the
    # session, so it is 50 s; 0: no warning, though there is an idle timeout.
    for setting, warn in ((600.0, 50_000), (0.0, None)):
        async with open_world(Rules(limit=1, idle_timeout=100.0)) as world:
            node = await make_node(
                world, settings=dataclasses.replace(SETTINGS, idle_warning=setting)
            )
            tab = world.socket(node)
            await tab.hello(ALICE, S1)
            w = welcome(tab.new())
            assert (w.idle, w.warn) == (100_000, warn)


async def test_take_over_where_the_policy_forbids_it_is_denied_and_the_socket_stays(
    world: World,
) -> None:
    node = await world.node()
    first, second = world.socket(node), world.socket(node)
    await first.hello(ALICE, S1)
    await second.hello(ALICE, S2)
    second.new()
    await second.send(TakeOver())
    (denied,) = second.new()
    assert isinstance(denied, Denied)
    assert (denied.action, denied.reason) == ("takeover", "takeover_not_allowed")
    assert second.closed is None and second.channel.state is ChannelState.joined


async def test_logout_ends_every_tab_of_the_browser_and_frees_the_seat(world: World) -> None:
    node = await world.node()
    here, other_tab, waiting = world.socket(node), world.socket(node), world.socket(node)
    await here.hello(ALICE, S1, tab="tab-aaaa")
    await other_tab.hello(ALICE, S1, tab="tab-bbbb")
    await waiting.hello(ALICE, S2)
    for tab in (here, other_tab, waiting):
        tab.new()
    await here.send(Logout())
    for tab in (here, other_tab):
        assert tab.new() == [Ended(reason="logout")]
        assert tab.closed == CloseCode.logged_out
    assert waiting.new() == [Unblock()]
    up = await world.hub.snapshot(world.key(ALICE))
    assert set(up.sessions) == {S2}


async def test_a_revoked_browser_is_told_and_cannot_come_back(world: World) -> None:
    node = await world.node()
    tab = world.socket(node)
    await tab.hello(ALICE, S1)
    tab.new()
    assert await node.revoke(world.key(ALICE)) == [S1]
    revoked, error = tab.new()
    assert revoked == Revoked(reason="revoked")
    assert isinstance(error, Error) and error.code == CloseCode.revoked
    assert tab.closed == CloseCode.revoked
    again = world.socket(node)
    await again.hello(ALICE, S1)
    (error,) = again.new()
    assert isinstance(error, Error) and error.code == CloseCode.revoked
    assert again.closed == CloseCode.revoked
    assert node.tab_count() == 0


async def test_a_new_socket_of_the_same_tab_replaces_the_old_one(world: World) -> None:
    node = await world.node()
    old, new = world.socket(node), world.socket(node)
    await old.hello(ALICE, S1)
    old.new()
    await new.hello(ALICE, S1)  # same session, same tab id: a reconnect
    assert welcome(new.new()).state == SeatState.admitted
    assert old.closed == CloseCode.normal and old.new() == []
    assert node.tab_count() == 1


async def test_monitor_admits_over_the_limit_and_says_so() -> None:
    async with open_world(Rules(limit=1, policy="monitor")) as world:
        node = await world.node()
        first, second = world.socket(node), world.socket(node)
        await first.hello(ALICE, S1)
        await second.hello(ALICE, S2)
        frames = second.new()
        assert isinstance(frames[0], Welcome) and frames[0].state == "admitted"
        assert frames[1:] == [Conflict()]


# --- news that races a hello ------------------------------------------------------------


async def test_a_notice_newer_than_the_join_is_sent_right_after_the_welcome(
    world: World,
) -> None:
    # S2's hello on B is written to the store (S2 waits) but B has not heard back yet;
    # meanwhile S1 leaves on A, which seats S2 and tells B before B's welcome goes out.
    a, b = await world.node("A"), await world.node("B")
    holder = world.socket(a)
    await holder.hello(ALICE, S1)
    joining = world.socket(b)
    hold = store_of(b).hold(after_write=True)
    hello = asyncio.create_task(joining.hello(ALICE, S2))
    await hold.reached.wait()
    await holder.send(Bye(next="close"))
    await world.hub.deliver()
    assert joining.new() == []  # no frame before the welcome
    hold.release()
    await hello
    w, *rest = joining.new()
    assert isinstance(w, Welcome) and (w.state, w.reason) == ("blocked", "limit")
    assert rest == [Unblock()]
    assert set((await world.hub.snapshot(world.key(ALICE))).seats) == {S2}


async def test_a_notice_older_than_the_join_is_not_sent_after_the_welcome(
    world: World,
) -> None:
    # S2 waits on B; a second tab of S2 says hello on B. Before its join is written, S1
    # leaves on A: the notice (S2 seated) reaches both tabs on B, then the join is
    # written, so its welcome already says what the notice said.
    a, b = await world.node("A"), await world.node("B")
    holder = world.socket(a)
    await holder.hello(ALICE, S1)
    first_tab = world.socket(b)
    await first_tab.hello(ALICE, S2, tab="tab-aaaa")
    first_tab.new()
    await world.hub.deliver()
    second_tab = world.socket(b)
    hold = store_of(b).hold(after_write=False)
    hello = asyncio.create_task(second_tab.hello(ALICE, S2, tab="tab-bbbb"))
    await hold.reached.wait()
    await holder.send(Bye(next="close"))
    await world.hub.deliver()
    assert first_tab.new() == [Unblock()]
    hold.release()
    await hello
    assert welcome(second_tab.new()).state == "admitted"
    assert second_tab.new() == []


# --- a store that goes away -------------------------------------------------------------


async def test_while_the_store_is_down_a_site_failing_open_decides_on_the_node() -> None:
    async with open_world(Rules(limit=1, policy="challenge")) as world:
        node = await world.node()
        store_of(node).down = True
        first, second = world.socket(node), world.socket(node)
        await first.hello(ALICE, S1)
        await second.hello(ALICE, S2)
        assert welcome(first.new()).state == "admitted"
        assert welcome(second.new()).state == "blocked"
        await second.send(TakeOver())  # decided by the node alone, as the hellos were
        assert second.new() == [Unblock()]
        assert first.new() == [Block(reason="taken_over", takeover=True, holders=(FIREFOX,))]
        assert (await world.hub.snapshot(world.key(ALICE))).is_empty()


async def test_take_over_is_denied_while_the_store_that_seated_the_holder_is_down() -> None:
    async with open_world(Rules(limit=1, policy="challenge")) as world:
        node = await world.node()
        first, second = world.socket(node), world.socket(node)
        await first.hello(ALICE, S1)
        await second.hello(ALICE, S2)
        first.new()
        second.new()
        store_of(node).down = True
        await second.send(TakeOver())
        (denied,) = second.new()
        assert isinstance(denied, Denied) and denied.reason == "unavailable"
        assert second.closed is None and first.new() == []


async def test_while_the_store_is_down_a_site_failing_closed_says_come_back_later() -> None:
    async with open_world(Rules(limit=1), store_failure="closed") as world:
        node = await world.node()
        store_of(node).down = True
        tab = world.socket(node)
        await tab.hello(ALICE, S1)
        (error,) = tab.new()
        assert isinstance(error, Error) and error.code == CloseCode.try_again_later
        assert tab.closed == CloseCode.try_again_later
        assert node.tab_count() == 0
