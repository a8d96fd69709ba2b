"""Suspending a user, in one process: nodes sharing one memory store, real channels.

A suspension ends every session of the user on every node with the `suspended` frame and
close code 4015, and every hello of the user is refused until it is lifted, including a
hello that passed admission just before the suspension was written (the mark in the
presence snapshot refuses its join, or the suspension's own step ends it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from seatguard.errors import StoreUnavailable
from seatguard.identity import Identity
from seatguard.node import Node
from seatguard.presence import Rules
from seatguard.protocol import CloseCode, Error, Suspended, Welcome
from seatguard.suspension import Suspension, lifted_by

from .inprocess import HubStore, Notes, Socket, World, open_world

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice", "bob"
S1, S2, S3 = "session-one", "session-two", "session-three"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(Rules(limit=3)) as w:
        yield w


def store_of(node: Node) -> HubStore:
    assert isinstance(node.store, HubStore)
    return node.store


def assert_suspended(tab: Socket, *, told: bool = True) -> None:
    """The tab was told (with `told`) and closed with 4015, and never welcomed after."""
    frames = tab.new()
    assert not any(isinstance(f, Welcome) for f in frames), frames
    if told:
        assert Suspended(reason="suspended") in frames
    errors = [f for f in frames if isinstance(f, Error)]
    assert [e.code for e in errors] == [CloseCode.suspended]
    assert tab.closed == CloseCode.suspended


async def welcomed(tab: Socket, user: str, session: str) -> None:
    await tab.hello(user, session)
    (w,) = tab.new()
    assert isinstance(w, Welcome) and w.state == "admitted", w


async def test_suspending_ends_every_session_of_the_user_on_every_node(world: World) -> None:
    notes = Notes()
    a, b = await world.node("A", recorder=notes), await world.node("B", recorder=notes)
    on_a, on_b, other = world.socket(a), world.socket(b), world.socket(b)
    await welcomed(on_a, ALICE, S1)
    await welcomed(on_b, ALICE, S2)
    await welcomed(other, BOB, S3)
    suspension, created = await a.suspend_user(world.key(ALICE), "shared the account", "api")
    assert created and suspension.reason == "shared the account" and suspension.by == "api"
    assert_suspended(on_a)
    assert on_b.closed is None  # told by A's notice
    await world.hub.deliver()
    assert_suspended(on_b)
    assert other.new() == [] and other.closed is None  # another user is not touched
    assert a.tab_count() == 0 and b.tab_count() == 1
    up = await world.hub.snapshot(world.key(ALICE))
    assert not up.sessions and up.suspended == suspension.since
    ended = [e for _, o, _ in notes.outcomes for e in o.ended]
    assert {(e.session, e.reason.value) for e in ended} == {(S1, "suspended"), (S2, "suspended")}
    assert notes.suspensions == [(suspension, False, "api")]


async def test_every_new_hello_is_refused_until_lifted_and_a_lift_lets_in_at_once(
    world: World,
) -> None:
    a, b = await world.node("A"), await world.node("B")
    await a.suspend_user(world.key(ALICE))
    for node, session in ((a, S1), (b, S2), (b, S1)):
        tab = world.socket(node)
        await tab.hello(ALICE, session)
        assert_suspended(tab, told=False)
    # B read the site's suspended users for those hellos: a lift on A lets alice in on B
    # at once all the same (a suspended user is read again at every hello).
    lifted = await a.lift_suspension(world.key(ALICE), "api")
    assert lifted is not None and lifted.user == ALICE
    await welcomed(world.socket(b), ALICE, S2)
    assert (await world.hub.snapshot(world.key(ALICE))).suspended is None


async def test_a_plain_hello_never_lifts_a_suspension(world: World) -> None:
    node = await world.node()
    await node.suspend_user(world.key(ALICE))
    world.clock.now += 30 * 86400
    tab = world.socket(node)
    await tab.hello(ALICE, S1)
    assert_suspended(tab, told=False)
    assert await node.suspension(world.key(ALICE)) is not None


async def test_a_hello_racing_the_suspension_is_refused_at_its_join(world: World) -> None:
    # The hello on B passed admission (alice not suspended yet) and its join waits to be
    # written; meanwhile A writes the suspension and its mark. The join is refused.
    a, b = await world.node("A"), await world.node("B")
    racing = world.socket(b)
    hold = store_of(b).hold(after_write=False)
    hello = asyncio.create_task(racing.hello(ALICE, S1))
    await hold.reached.wait()
    await a.suspend_user(world.key(ALICE))
    await world.hub.deliver()
    hold.release()
    await hello
    assert_suspended(racing, told=False)
    assert not (await world.hub.snapshot(world.key(ALICE))).sessions


async def test_a_join_written_just_before_the_suspension_is_never_welcomed(
    world: World,
) -> None:
    # B's join is written, but B has not heard back when A's suspension ends it and A's
    # notice reaches B: the join then answers as refused, never with a welcome.
    a, b = await world.node("A"), await world.node("B")
    racing = world.socket(b)
    hold = store_of(b).hold(after_write=True)
    hello = asyncio.create_task(racing.hello(ALICE, S1))
    await hold.reached.wait()
    await a.suspend_user(world.key(ALICE))
    await world.hub.deliver()
    assert racing.new() == []
    hold.release()
    await hello
    assert_suspended(racing, told=False)
    assert b.tab_count() == 0


async def test_suspending_twice_at_once_keeps_one_suspension(world: World) -> None:
    notes = Notes()
    a, b = await world.node("A", recorder=notes), await world.node("B", recorder=notes)
    first, second = await asyncio.gather(
        a.suspend_user(world.key(ALICE), "one", "api"),
        b.suspend_user(world.key(ALICE), "two", "ops"),
    )
    assert first[0] == second[0]
    assert sorted([first[1], second[1]]) == [False, True]
    assert len(notes.suspensions) == 1  # recorded once
    world.clock.now += 5
    again, created = await a.suspend_user(world.key(ALICE), "three")
    assert again == first[0] and not created


async def test_lifting_twice_lifts_once(world: World) -> None:
    notes = Notes()
    node = await world.node(recorder=notes)
    assert await node.lift_suspension(world.key(ALICE)) is None  # not suspended
    await node.suspend_user(world.key(ALICE))
    results = await asyncio.gather(
        node.lift_suspension(world.key(ALICE)), node.lift_suspension(world.key(ALICE))
    )
    assert sorted(r is None for r in results) == [False, True]
    assert [lifted for _, lifted, _ in notes.suspensions] == [False, True]


async def test_a_lift_of_an_older_suspension_leaves_a_newer_one(world: World) -> None:
    node = await world.node()
    old, _ = await node.suspend_user(world.key(ALICE))
    assert await node.lift_suspension(world.key(ALICE), since=old.since) == old
    world.clock.now += 10
    new, _ = await node.suspend_user(world.key(ALICE))
    # A re-authentication that read the old suspension lifts nothing now.
    assert await node.lift_suspension(world.key(ALICE), since=old.since) is None
    assert await node.suspension(world.key(ALICE)) == new
    assert (await world.hub.snapshot(world.key(ALICE))).suspended == new.since


async def test_suspending_while_the_store_is_down_ends_local_tabs_and_the_rest_after(
    world: World,
) -> None:
    a, b = await world.node("A"), await world.node("B")
    on_a, on_b = world.socket(a), world.socket(b)
    await welcomed(on_a, ALICE, S1)
    await welcomed(on_b, ALICE, S2)
    store_of(a).down = True
    with pytest.raises(StoreUnavailable):
        await a.suspend_user(world.key(ALICE), "fraud")
    assert_suspended(on_a)  # this node's tabs end at once
    assert await a.suspension(world.key(ALICE)) is not None  # recorded: hellos are refused
    # With no mark in the store, B sees it once its cache of the site's suspended users
    # (read at B's hello above) is `site_cache_ttl` old.
    world.clock.now += b.settings.site_cache_ttl
    late = world.socket(b)
    await late.hello(ALICE, S3)
    assert_suspended(late, told=False)
    assert on_b.closed is None  # the store could not tell B
    await store_of(a).back()  # A marks the user and ends the sessions it could not
    await world.hub.deliver()
    assert_suspended(on_b)
    assert (await world.hub.snapshot(world.key(ALICE))).suspended is not None


async def test_a_mark_left_by_a_lift_the_store_missed_is_cleared_at_the_next_join(
    world: World,
) -> None:
    node = await world.node("A")
    await node.suspend_user(world.key(ALICE))
    store_of(node).down = True
    assert await node.lift_suspension(world.key(ALICE)) is not None
    store_of(node).down = False
    assert (await world.hub.snapshot(world.key(ALICE))).suspended is not None
    await welcomed(world.socket(node), ALICE, S1)  # the database says lifted: it is
    assert (await world.hub.snapshot(world.key(ALICE))).suspended is None


async def test_an_unreachable_database_fails_the_hello_closed(world: World) -> None:
    node = await world.node()
    await node.suspend_user(world.key(ALICE))
    world.clock.now += 60  # past the cache
    await world.db.close()  # every read fails from now on
    tab = world.socket(node)
    await tab.hello(ALICE, S1)
    frames = tab.new()
    assert not any(isinstance(f, Welcome) for f in frames)
    assert tab.closed == CloseCode.internal_error


def test_only_a_token_issued_after_the_suspension_lifts_it() -> None:
    s = Suspension("pk", ALICE, 1000.5, "", "api")

    def at(iat: float | None) -> Identity:
        return Identity(ALICE, issued_at=iat)

    assert not lifted_by(None, s)
    assert not lifted_by(at(None), s)
    assert not lifted_by(at(999.0), s)
    assert not lifted_by(at(1000.0), s)  # its own second: cannot show it came after
    assert lifted_by(at(1001.0), s)
