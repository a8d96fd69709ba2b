"""Seat tokens over the socket: who gets one, when a new one comes, who never gets one.

Nodes come from `inprocess` with the world's seat token issuer (`world.node(tokens=True)`);
tabs are sockets, so what is asserted is what a browser would receive. Time is the world's
fake clock, starting at T0; the site's tokens live 30 s unless a test says otherwise, so a
seated tab gets a new one every 20 s (two thirds of it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from seatguard.node import Node
from seatguard.presence import Rules
from seatguard.protocol import (
    Block,
    Bye,
    CloseCode,
    Conflict,
    Error,
    Holder,
    Revoked,
    Seat,
    ServerFrame,
    TakeOver,
    Unblock,
    Welcome,
)

from .inprocess import ISSUER, Socket, World, open_world

pytestmark = pytest.mark.anyio

ALICE = "alice"
S1, S2 = "session-one", "session-two"
T0 = 1_700_000_000.0


def firefox(since: float) -> Holder:
    """How a blocked tab is told of a browser of the world's sockets holding a seat."""
    return Holder(device_type="computer", browser="Firefox", os="Linux", since=int(since))


TTL = 30


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(Rules(limit=1), seat_token_ttl=TTL) as w:
        yield w


def claims_of(world: World, seat: Seat) -> dict[str, Any]:
    """The claims of a delivered token, its signature checked against the published keys
    (its expiry against the fake clock, below, not the real one)."""
    jwks = world.seat_tokens.jwks()
    header = jwt.get_unverified_header(seat.token)
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        seat.token,
        jwt.PyJWK(key).key,
        algorithms=["ES256"],
        audience=world.site.key,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["exp"] == seat.exp
    return claims


def seats(frames: list[ServerFrame]) -> list[Seat]:
    return [f for f in frames if isinstance(f, Seat)]


async def seated_socket(world: World, node: Node, session: str, **page: str) -> Socket:
    sock = world.socket(node)
    await sock.hello(ALICE, session, **page)
    return sock


async def test_a_seated_tab_gets_its_token_right_after_the_welcome(world: World) -> None:
    node = await world.node(tokens=True)
    sock = await seated_socket(world, node, S1, org="acme", role="editor")
    welcome, seat = sock.new()
    assert isinstance(welcome, Welcome) and welcome.state == "admitted"
    assert isinstance(seat, Seat)
    claims = claims_of(world, seat)
    assert claims["sub"] == ALICE and claims["sid"] == S1 and claims["did"] == f"dev-{S1}"
    assert (claims["org"], claims["role"]) == ("acme", "editor")
    assert claims["iat"] == int(T0) and seat.exp == int(T0) + TTL


async def test_a_blocked_tab_never_gets_a_token_however_long_it_waits(world: World) -> None:
    node = await world.node(tokens=True)
    first = await seated_socket(world, node, S1)
    second = await seated_socket(world, node, S2)
    (welcome,) = second.new()
    assert isinstance(welcome, Welcome) and welcome.state == "blocked"
    # Three of the first tab's token lifetimes: it gets new ones, the waiting tab nothing.
    await world.elapse(3 * TTL, [node], beating=[first.channel, second.channel])
    assert seats(second.new()) == []
    assert len(seats(first.new())) == 1 + 4  # at the welcome, then at 20, 40, 60 and 80 s


async def test_a_tab_gets_a_token_when_it_is_unblocked(world: World) -> None:
    node = await world.node(tokens=True)
    first = await seated_socket(world, node, S1)
    second = await seated_socket(world, node, S2)
    second.new()
    await first.send(Bye(next="close"))
    unblock, seat = second.new()
    assert unblock == Unblock() and isinstance(seat, Seat)
    assert claims_of(world, seat)["sid"] == S2


async def test_a_new_token_comes_at_two_thirds_of_the_lifetime(world: World) -> None:
    node = await world.node(tokens=True)
    sock = await seated_socket(world, node, S1)
    (first,) = seats(sock.new())
    await world.elapse(19, [node], beating=[sock.channel])
    assert seats(sock.new()) == []
    await world.elapse(1, [node], beating=[sock.channel])
    (second,) = seats(sock.new())
    # Ten seconds before the first one expires, a new one that lives a whole lifetime.
    assert second.exp == first.exp + 20 and second.token != first.token
    assert claims_of(world, second)["jti"] != claims_of(world, first)["jti"]


async def test_a_tab_that_loses_its_seat_gets_no_more_tokens() -> None:
    async with open_world(Rules(limit=1, policy="evict-oldest"), seat_token_ttl=TTL) as world:
        node = await world.node(tokens=True)
        first = await seated_socket(world, node, S1)
        first.new()
        world.clock.now = T0 + 5
        second = await seated_socket(world, node, S2)
        assert [type(f) for f in second.new()] == [Welcome, Seat]
        assert first.new() == [Block(reason="evicted", takeover=True, holders=(firefox(T0 + 5),))]
        # The first tab's next token was due at 20 s: it never comes.
        await world.elapse(40, [node], beating=[first.channel, second.channel])
        assert seats(first.new()) == []
        assert len(seats(second.new())) == 2  # at 25 and 45 s


async def test_a_taken_over_tab_loses_its_refresh_and_the_taker_gets_a_token() -> None:
    async with open_world(Rules(limit=1, policy="challenge"), seat_token_ttl=TTL) as world:
        node = await world.node(tokens=True)
        first = await seated_socket(world, node, S1)
        second = await seated_socket(world, node, S2)
        first.new(), second.new()
        await second.send(TakeOver())
        unblock, seat = second.new()
        assert unblock == Unblock() and claims_of(world, seat)["sid"] == S2  # type: ignore[arg-type]
        assert first.new() == [Block(reason="taken_over", takeover=True, holders=(firefox(T0),))]
        await world.elapse(TTL, [node], beating=[first.channel, second.channel])
        assert seats(first.new()) == []


async def test_a_revoked_session_gets_no_token_after_the_revocation(world: World) -> None:
    node = await world.node(tokens=True)
    sock = await seated_socket(world, node, S1)
    sock.new()
    world.clock.now = T0 + 10
    await node.revoke(world.key(ALICE))
    assert [type(f) for f in sock.new()] == [Revoked, Error]
    assert sock.closed == CloseCode.revoked
    await world.elapse(TTL, [node])  # past when its next token was due
    assert sock.new() == []
    # The same browser saying hello again is refused before any token.
    again = await seated_socket(world, node, S1)
    assert seats(again.new()) == [] and again.closed == CloseCode.revoked


async def test_monitor_admits_over_the_limit_and_so_gives_a_token() -> None:
    # Monitor policy records the conflict and blocks nobody: both browsers hold the
    # account, so both get what makes the site serve them.
    async with open_world(Rules(limit=1, policy="monitor"), seat_token_ttl=TTL) as world:
        node = await world.node(tokens=True)
        await seated_socket(world, node, S1)
        second = await seated_socket(world, node, S2)
        welcome, *rest = second.new()
        assert isinstance(welcome, Welcome) and welcome.state == "admitted"
        assert Conflict() in rest and len(seats(rest)) == 1


async def test_a_tab_on_another_node_gets_its_token_when_the_notice_unblocks_it(
    world: World,
) -> None:
    a, b = await world.node("a", tokens=True), await world.node("b", tokens=True)
    first = await seated_socket(world, a, S1)
    second = await seated_socket(world, b, S2)
    second.new()
    await first.send(Bye(next="close"))
    assert second.new() == []  # the notice is still on its way
    await world.hub.deliver()
    unblock, seat = second.new()
    assert unblock == Unblock() and claims_of(world, seat)["sid"] == S2  # type: ignore[arg-type]


async def test_a_node_without_an_issuer_sends_no_tokens(world: World) -> None:
    node = await world.node()
    sock = await seated_socket(world, node, S1)
    await world.elapse(TTL, [node], beating=[sock.channel])
    assert seats(sock.new()) == []


async def test_a_site_that_turns_tokens_off_gives_none_and_on_again_gives_them_at_once(
    world: World,
) -> None:
    await world.set_config(seat_tokens=False)
    node = await world.node(tokens=True)
    sock = await seated_socket(world, node, S1)
    (welcome,) = sock.new()
    assert isinstance(welcome, Welcome) and welcome.state == "admitted"
    await world.elapse(TTL, [node], beating=[sock.channel])
    assert seats(sock.new()) == []
    # Turned on: the seated tab gets a token when the node hears of it, not a renewal later.
    await world.set_config(seat_tokens=True)
    await node.rules_changed(world.site.key)
    (seat,) = seats(sock.new())
    assert claims_of(world, seat)["sid"] == S1
    # Off again: the token it holds runs out, and no new one comes.
    await world.set_config(seat_tokens=False)
    await node.rules_changed(world.site.key)
    await world.elapse(2 * TTL, [node], beating=[sock.channel])
    assert seats(sock.new()) == []
    # A waiting tab gets none when tokens are turned on: only seated tabs hold one.
    second = await seated_socket(world, node, S2)
    second.new()
    await world.set_config(seat_tokens=True)
    await node.rules_changed(world.site.key)
    assert seats(second.new()) == [] and len(seats(sock.new())) == 1
