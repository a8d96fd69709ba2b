"""A site's policy applied by the node at every hello and when checks change, in one
process: real channels, nodes sharing one memory store, a fake clock, SQLite in memory.

Tabs come from distinct addresses and user agents (a computer's, a phone's), as browsers
of one user in different places would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import jwt
import pytest

from seatguard.node import Node
from seatguard.presence import Rules
from seatguard.protocol import Block, CloseCode, Error, Revoked, Suspended, Unblock, Welcome
from seatguard.signals.guard import Judgement
from seatguard.signals.history import Stored
from seatguard.signals.policies import parse_policy
from seatguard.types import UserKey

from .inprocess import Notes, Socket, World, open_world

pytestmark = pytest.mark.anyio

ANN = "ann"
HOME, AWAY, PHONE = "session-home", "session-away", "session-phone"
LAPTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
SHARED = {"name": "shared", "when": {"check": "concurrent_sessions"}, "verdict": "challenge"}


class Kept:
    """A judgements sink that keeps what the node gives it."""

    def __init__(self) -> None:
        self.judgements: list[tuple[UserKey, Judgement]] = []

    def judged(self, key: UserKey, judgement: Judgement, now: float) -> None:
        self.judgements.append((key, judgement))

    def verdicts(self) -> list[set[tuple[str, str, str, bool]]]:
        """Each judgement's (session, trigger, verdict, applied), in order."""
        return [
            {(j.session, j.trigger, j.evaluation.verdict, j.applied) for j in judgement.judged}
            for _, judgement in self.judgements
        ]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(Rules(limit=3)) as w:
        yield w


async def with_policy(world: World, *rules: dict[str, Any]) -> None:
    await world.db.set_policy(world.site.key, parse_policy({"rules": list(rules)}))


def socket(world: World, node: Node, ip: str, ua: str = LAPTOP_UA) -> Socket:
    return world.socket(node, ip=ip, user_agent=ua)


def welcome(tab: Socket) -> Welcome:
    frames = tab.new()
    (w,) = [f for f in frames if isinstance(f, Welcome)]
    return w


async def test_a_second_computer_elsewhere_is_challenged_a_phone_is_not(world: World) -> None:
    await with_policy(world, SHARED)
    kept = Kept()
    node = await world.node()
    node.judgements = kept
    home, away, phone = (
        socket(world, node, "198.51.100.7"),
        socket(world, node, "203.0.113.9"),
        socket(world, node, "192.0.2.44", PHONE_UA),
    )
    await home.hello(ANN, HOME)
    assert welcome(home).state == "admitted"
    await away.hello(ANN, AWAY)
    w = welcome(away)
    assert (w.state, w.reason) == ("blocked", "verify")
    assert home.new() == []  # the owner keeps the seat, untold
    await phone.hello(ANN, PHONE)
    assert welcome(phone).state == "admitted"
    assert kept.verdicts() == [
        {(HOME, "hello", "allow", True)},
        {(AWAY, "hello", "challenge", True), (HOME, "change", "challenge", False)},
        # The held browser is no active session (the first one's checks are back to
        # allow), but the device counts changed for all: the held one is judged again.
        {
            (PHONE, "hello", "allow", True),
            (HOME, "change", "allow", True),
            (AWAY, "change", "challenge", True),
        },
    ]
    # The hold is in the snapshot, with the rule, for every node to see.
    up = await world.hub.snapshot(world.key(ANN))
    assert (up.sessions[AWAY].held_rule, up.state(AWAY).value) == ("shared", "blocked")


async def test_the_held_browser_gets_the_seat_when_the_other_signs_out(world: World) -> None:
    await with_policy(world, SHARED)
    notes = Notes()
    node = await world.node(recorder=notes)
    home, away = socket(world, node, "198.51.100.7"), socket(world, node, "203.0.113.9")
    await home.hello(ANN, HOME)
    await away.hello(ANN, AWAY)
    assert welcome(away).reason == "verify"
    blocked = [t for _, o, _ in notes.outcomes for t in o.transitions if t.session == AWAY]
    assert [(t.state.value, t.reason and t.reason.value, t.rule) for t in blocked] == [
        ("blocked", "verify", "shared")
    ]
    await home.channel.receive('{"t":"logout"}')
    assert [f for f in away.new() if isinstance(f, Unblock)]


async def test_signing_in_again_meets_the_challenge(world: World) -> None:
    await with_policy(world, SHARED)
    node = await world.node()
    home, away = socket(world, node, "198.51.100.7"), socket(world, node, "203.0.113.9")
    await home.hello(ANN, HOME)
    welcome(home)
    await away.hello(ANN, AWAY)
    assert welcome(away).reason == "verify"
    secret = world.secrets["identity_secret"]

    def token(iat: float) -> str:
        claims = {
            "sub": ANN,
            "aud": world.site.key,
            "iss": world.site.key,
            "iat": int(iat),
            "exp": int(iat) + 300,
        }
        return jwt.encode(claims, secret, algorithm="HS256")

    # A token issued before the challenge does not meet it; one issued after does.
    again = socket(world, node, "203.0.113.9")
    await again.hello(ANN, AWAY, tab="tab-0002", token=token(world.clock() - 60))
    assert welcome(again).reason == "verify"
    world.clock.now += 5
    later = socket(world, node, "203.0.113.9")
    await later.hello(ANN, AWAY, tab="tab-0003", token=token(world.clock()))
    assert welcome(later).state == "admitted"
    assert home.new() == []  # the first browser is not moved


async def test_a_block_verdict_refuses_the_seat_and_names_the_reason(world: World) -> None:
    await with_policy(
        world,
        {
            "name": "two devices",
            "when": {"check": "device_count", "op": ">=", "value": 2},
            "verdict": "block",
        },
    )
    node = await world.node()
    one, two = socket(world, node, "198.51.100.7"), socket(world, node, "198.51.100.7")
    await one.hello(ANN, HOME)
    await two.hello(ANN, AWAY)
    w = welcome(two)
    assert (w.state, w.reason) == ("blocked", "policy")
    # A held browser asking to "use here" is refused.
    await two.channel.receive('{"t":"take_over"}')
    assert not any(isinstance(f, Unblock) for f in two.new())
    assert not any(isinstance(f, Block) for f in one.new())


async def test_a_revoke_verdict_closes_the_tab_and_keeps_it_out(world: World) -> None:
    rule = {"name": "no", "when": {"check": "is_new_ip"}, "verdict": "revoke"}
    await with_policy(world, rule)
    node = await world.node()
    tab = socket(world, node, "198.51.100.7")
    await tab.hello(ANN, HOME)
    frames = tab.new()
    assert not any(isinstance(f, Welcome) for f in frames)
    assert [f.code for f in frames if isinstance(f, Error)] == [CloseCode.revoked]
    assert await world.db.revoked_sessions(world.site.key, [HOME], world.clock()) == {HOME}
    again = socket(world, node, "198.51.100.7")
    await again.hello(ANN, HOME)
    assert again.closed == CloseCode.revoked


async def test_a_suspend_verdict_ends_every_session_and_is_written_down(world: World) -> None:
    rule = {"name": "crowd", "when": {"check": "device_count", "op": ">=", "value": 2}}
    await with_policy(world, {**rule, "verdict": "suspend"})
    notes = Notes()
    a, b = await world.node("A", recorder=notes), await world.node("B", recorder=notes)
    first, second = socket(world, a, "198.51.100.7"), socket(world, b, "203.0.113.9")
    await first.hello(ANN, HOME)
    assert welcome(first).state == "admitted"
    await second.hello(ANN, AWAY)
    assert second.closed == CloseCode.suspended
    await world.hub.deliver()
    assert Suspended(reason="suspended") in first.new() and first.closed == CloseCode.suspended
    suspension = await b.suspension(world.key(ANN))
    assert suspension is not None and suspension.by == "policy"
    assert suspension.reason == "policy rule crowd"
    assert [(s.user, lifted, by) for s, lifted, by in notes.suspensions] == [(ANN, False, "policy")]
    ended = [(o, c) for _, o, c in notes.outcomes if o.ended]
    assert ended and ended[-1][1] == {"by": "policy", "rule": "crowd", "verdict": "suspend"}
    # Refused until lifted, as any suspension.
    third = socket(world, a, "198.51.100.7")
    await third.hello(ANN, "session-three")
    assert third.closed == CloseCode.suspended


async def test_a_site_without_rules_is_not_judged(world: World) -> None:
    kept = Kept()
    node = await world.node()
    node.judgements = kept
    home, away = socket(world, node, "198.51.100.7"), socket(world, node, "203.0.113.9")
    await home.hello(ANN, HOME)
    await away.hello(ANN, AWAY)
    assert welcome(away).state == "admitted"
    assert kept.judgements == []


async def test_a_policy_set_through_the_api_applies_at_once_on_that_node(world: World) -> None:
    node = await world.node()
    home = socket(world, node, "198.51.100.7")
    await home.hello(ANN, HOME)
    assert (await node.policies.get(world.site.key)).rules == ()
    await with_policy(world, SHARED)
    node.policies.forget(world.site.key)  # what PUT /api/v1/policies does
    away = socket(world, node, "203.0.113.9")
    await away.hello(ANN, AWAY)
    assert welcome(away).reason == "verify"


async def test_a_database_that_fails_leaves_hellos_unjudged_not_refused(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await with_policy(world, SHARED)
    node = await world.node()
    home = socket(world, node, "198.51.100.7")
    await home.hello(ANN, HOME)
    welcome(home)

    async def broken(site: str, users: Sequence[str]) -> dict[str, Stored]:
        raise OSError("disk gone")

    node.db.histories = broken  # type: ignore[method-assign]
    away = socket(world, node, "203.0.113.9")
    await away.hello(ANN, AWAY)
    assert welcome(away).state == "admitted"
    assert [r.getMessage() for r in caplog.records] == [
        f"policy of {world.site.key} not applied: OSError"
    ]
    assert not any(isinstance(f, Revoked) for f in home.new())
