"""Nodes, channels and tabs in one process: a fake clock, memory stores, fake sockets.

Nothing here opens a socket or sleeps. Time moves when a test moves `world.clock` and
ticks the nodes. Nodes share one memory store through a `Hub`, which queues what they
publish to each other until the test delivers it, so the test decides when a notice
arrives (or that it never does). A node's link to the hub can be cut (`HubStore.down`)
and its updates held at a point, to stage races.

`make_node` and `make_channel` are the only places tests build a `Node` or a `Channel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec

from seatguard.audit import AuditEvent
from seatguard.channel import Channel
from seatguard.db import Database, open_database
from seatguard.errors import StoreUnavailable
from seatguard.node import Node, Tab
from seatguard.presence import Arrival, Outcome, Rules, SeatState, UserPresence
from seatguard.protocol import (
    PROTOCOL_VERSION,
    BlockReason,
    ClientFrame,
    CloseCode,
    Hello,
    ServerFrame,
)
from seatguard.rules import Claims
from seatguard.sealing import SecretBox
from seatguard.seat import DEFAULT_TTL, SeatKeyRing, SeatKeySet, SeatTokens
from seatguard.seat.keyset import new_key
from seatguard.settings import Settings
from seatguard.sites import Site, SiteConfig, new_site
from seatguard.store import MemoryStore
from seatguard.store.base import Listener
from seatguard.suspension import Suspension
from seatguard.types import SiteKey, UserKey

from .fakes import Clock

__all__ = [
    "ISSUER",
    "SETTINGS",
    "FakeTab",
    "FakeTransport",
    "Hold",
    "Hub",
    "HubStore",
    "Notes",
    "Socket",
    "World",
    "decode_frame",
    "make_channel",
    "make_node",
    "open_world",
]

T = TypeVar("T")

SETTINGS = Settings(
    heartbeat_interval=10.0,
    session_timeout=30.0,
    reload_grace=5.0,
    drop_grace=15.0,
    node_lease=10.0,
)
"""Short timings: heartbeats reach the store within (30 - 10) / 2 = 10 s."""

ISSUER = "https://seatguard.test"
"""The `iss` of the world's seat tokens."""

_frames = msgspec.json.Decoder(ServerFrame)


def decode_frame(text: bytes) -> ServerFrame:
    """One server frame as a socket received it."""
    return _frames.decode(text)


# --- the only constructors of nodes and channels --------------------------------------


async def make_node(
    world: World,
    node_id: str = "",
    *,
    recorder: Notes | None = None,
    settings: Settings = SETTINGS,
    seat_tokens: SeatTokens | None = None,
) -> Node:
    """A node on the world's database and hub, started (it hears its notices); it gives
    seated tabs tokens only when given `seat_tokens`."""
    store = world.hub.store(node_id)
    node = Node(
        settings, store, world.db, box=world.box, recorder=recorder, seat_tokens=seat_tokens
    )
    await store.start(node)
    return node


USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
IP = "192.0.2.10"


def make_channel(
    node: Node,
    transport: FakeTransport,
    *,
    origin: str | None = None,
    ip: str = IP,
    user_agent: str = USER_AGENT,
) -> Channel:
    """The server side of a tab whose socket is `transport`."""
    return Channel(
        node,
        transport,
        origin=origin,
        own_origin="https://seatguard.test",
        user_agent=user_agent,
        ip=ip,
    )


# --- stores -------------------------------------------------------------------------


class Hold:
    """Stops one update of a store at a point until the test releases it."""

    def __init__(self, *, after_write: bool) -> None:
        self.after_write = after_write  # the snapshot is written, the reply not yet back
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

    async def wait(self) -> None:
        self.reached.set()
        await self._released.wait()

    def release(self) -> None:
        self._released.set()


class Hub:
    """One memory store shared by several nodes; what they send each other waits in
    `mail` until `deliver`."""

    def __init__(self, clock: Clock) -> None:
        self.memory = MemoryStore(clock)
        self.listeners: dict[str, Listener] = {}
        self.mail: list[tuple[str, Callable[[Listener], Awaitable[None]]]] = []

    def store(self, node_id: str) -> HubStore:
        return HubStore(self, node_id)

    async def deliver(self) -> int:
        """Hand every queued message to its node in the order sent, with those sent
        meanwhile; return how many."""
        count = 0
        while self.mail:
            node_id, message = self.mail.pop(0)
            listener = self.listeners.get(node_id)
            if listener is not None:
                await message(listener)
            count += 1
        return count

    async def snapshot(self, key: UserKey) -> UserPresence:
        """A copy of the shared truth about one user (empty if none)."""
        return await self.memory.read(key)


class HubStore:
    """One node's link to a hub, as a `PresenceStore`; `down` cuts it."""

    def __init__(self, hub: Hub, node_id: str) -> None:
        self.hub = hub
        self.node_id = node_id
        self.down = False
        self._holds: list[Hold] = []

    def now(self) -> float:
        return self.hub.memory.now()

    @property
    def healthy(self) -> bool:
        return not self.down

    def hold(self, *, after_write: bool) -> Hold:
        """Stop the next update before it runs, or after it is written."""
        hold = Hold(after_write=after_write)
        self._holds.append(hold)
        return hold

    def _reach(self) -> None:
        if self.down:
            raise StoreUnavailable("the presence store cannot be reached")

    async def update(self, key: UserKey, op: Callable[[UserPresence, float], T]) -> T:
        self._reach()
        hold = self._holds.pop(0) if self._holds else None
        if hold is not None and not hold.after_write:
            await hold.wait()
            self._reach()
        result = self.hub.memory.update_now(key, op)
        if hold is not None and hold.after_write:
            await hold.wait()
        return result

    async def read(self, key: UserKey) -> UserPresence:
        self._reach()
        return await self.hub.memory.read(key)

    async def users(self, site: SiteKey) -> list[UserKey]:
        self._reach()
        return await self.hub.memory.users(site)

    async def start(self, listener: Listener) -> None:
        self.hub.listeners[self.node_id] = listener

    async def publish(self, nodes: Iterable[str], payload: bytes) -> None:
        if self.down:
            return  # lost, as a notice sent while Redis is away
        for node_id in nodes:
            self.hub.mail.append((node_id, lambda listener: listener.notice(payload)))

    async def broadcast_rules(self, site: SiteKey) -> None:
        if self.down:
            return
        for node_id in self.hub.listeners:
            if node_id != self.node_id:
                self.hub.mail.append((node_id, lambda listener: listener.refresh_rules(site)))

    async def back(self) -> None:
        """The link is back: as a Redis store does, the node is told to resynchronise."""
        self.down = False
        await self.hub.listeners[self.node_id].reconnected()

    async def close(self) -> None:
        self.hub.listeners.pop(self.node_id, None)


# --- tabs ---------------------------------------------------------------------------


@dataclass(eq=False)
class FakeTab:
    """A tab as the node sees it (`node.Tab`), without a channel: what it is told is kept."""

    key: UserKey | None = None
    arrival: Arrival | None = None
    rules: Rules = field(default_factory=Rules)
    page: Claims | None = None
    token: Claims | None = None
    seen: float = 0.0
    active_at: float | None = None
    seq: int = 0
    told: tuple[SeatState, BlockReason | None] | None = None
    since: float | None = None
    idle: float | None = None
    frames: list[ServerFrame] = field(default_factory=list)
    ended: CloseCode | None = None

    async def push(self, frame: ServerFrame) -> None:
        assert self.ended is None, f"{frame!r} pushed to an ended tab"
        self.frames.append(frame)

    async def end(self, code: CloseCode, message: str) -> None:
        assert self.ended is None, "ended twice"
        self.ended = code

    def new(self) -> list[ServerFrame]:
        """The frames pushed since the last call."""
        frames, self.frames = self.frames, []
        return frames


class FakeTransport:
    """A socket that keeps what was sent and how it closed."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self._read = 0

    async def send(self, text: bytes) -> None:
        assert self.closed is None, "sent after close"
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        assert self.closed is None, "closed twice"
        self.closed = (code, reason)

    def frames(self) -> list[ServerFrame]:
        return [decode_frame(text) for text in self.sent]

    def new(self) -> list[ServerFrame]:
        """The frames sent since the last call."""
        frames = [decode_frame(text) for text in self.sent[self._read :]]
        self._read = len(self.sent)
        return frames


class Socket:
    """A browser tab's socket to a node: a channel fed client frames."""

    def __init__(
        self,
        world: World,
        node: Node,
        *,
        origin: str | None = None,
        ip: str = IP,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.world = world
        self.transport = FakeTransport()
        self.channel = make_channel(
            node, self.transport, origin=origin, ip=ip, user_agent=user_agent
        )

    async def send(self, frame: ClientFrame) -> None:
        await self.channel.receive(msgspec.json.encode(frame).decode())

    async def hello(
        self,
        user: str,
        session: str,
        tab: str = "tab-0001",
        device: str = "",
        **page: str | int | dict[str, str],
    ) -> None:
        """Say hello as `user` from browser `session`; `page` are the page's load() options."""
        await self.send(
            msgspec.convert(
                {
                    "v": PROTOCOL_VERSION,
                    "site": self.world.site.key,
                    "session": session,
                    "tab": tab,
                    "device": device or f"dev-{session}",
                    "user": user,
                    **page,
                },
                Hello,
            )
        )

    def new(self) -> list[ServerFrame]:
        return self.transport.new()

    @property
    def closed(self) -> int | None:
        """The close code, once closed."""
        return None if self.transport.closed is None else self.transport.closed[0]


# --- what nodes write down ----------------------------------------------------------


class Notes:
    """A recorder that keeps every outcome and refusal it is given."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[UserKey, Outcome, Mapping[str, str] | None]] = []
        self.refusals: list[tuple[UserKey, str | None, str]] = []
        self.suspensions: list[tuple[Suspension, bool, str]] = []
        self.changes: list[AuditEvent] = []

    async def record(
        self,
        key: UserKey,
        outcome: Outcome,
        now: float,
        context: Mapping[str, str] | None = None,
        decision: int | None = None,
    ) -> None:
        self.outcomes.append((key, outcome, context))

    async def refused(
        self,
        key: UserKey,
        session: str | None,
        ip: str | None,
        reason: str,
        now: float,
        device: str | None = None,
    ) -> None:
        self.refusals.append((key, session, reason))

    async def suspension(
        self, suspension: Suspension, *, lifted: bool, by: str, now: float
    ) -> None:
        self.suspensions.append((suspension, lifted, by))

    async def changed(self, event: AuditEvent) -> None:
        self.changes.append(event)


# --- the world ----------------------------------------------------------------------


class World:
    """A fake clock, a hub, a SQLite database in memory, one site, and the seat tokens'
    issuer (one key, the world's clock, issuer `ISSUER`)."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        site: Site,
        clock: Clock,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.site = site
        self.secrets = dict(secrets or {})  # the site's secrets as created (`identity_secret`)
        self.clock = clock
        self.hub = Hub(clock)
        keys = SeatKeyRing(SeatKeySet((new_key(clock() - 3600),)))
        self.seat_tokens = SeatTokens(keys, ISSUER, clock=clock)

    async def node(
        self, node_id: str = "", *, recorder: Notes | None = None, tokens: bool = False
    ) -> Node:
        """A node; with `tokens`, one that gives seated tabs seat tokens."""
        seat_tokens = self.seat_tokens if tokens else None
        return await make_node(self, node_id, recorder=recorder, seat_tokens=seat_tokens)

    def socket(self, node: Node, *, ip: str = IP, user_agent: str = USER_AGENT) -> Socket:
        return Socket(self, node, ip=ip, user_agent=user_agent)

    def tab(
        self, node: Node, session: str, tab: str = "tab-0001", rules: Rules | None = None
    ) -> FakeTab:
        """A tab of browser `session` arriving at `node`, with the site's rules (or `rules`)."""
        return FakeTab(
            arrival=Arrival(session, tab, f"dev-{session}", node=node.store.node_id),
            rules=rules or self.site.rules,
            seen=self.clock(),
        )

    def key(self, user: str) -> UserKey:
        return (self.site.key, user)

    async def set_rules(self, rules: Rules) -> None:
        """Change the site's default rules in the database (nodes learn of it separately)."""
        self.site = dataclasses.replace(self.site, rules=rules)
        await self.db.update_site(self.site)

    async def set_config(self, **changes: Any) -> None:
        """Change the site's settings in the database (nodes learn of it separately)."""
        config = msgspec.structs.replace(self.site.config, **changes)
        self.site = dataclasses.replace(self.site, config=config)
        await self.db.update_site(self.site)

    async def elapse(
        self, seconds: float, nodes: Iterable[Node], beating: Iterable[Tab] = (), step: float = 1.0
    ) -> None:
        """Let time pass in steps: every step, the `beating` tabs send a heartbeat (no user
        input) to whichever node holds them, every node ticks, and what they sent is
        delivered."""
        nodes, beating = list(nodes), list(beating)
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            for node in nodes:
                for tab in beating:
                    node.heartbeat(tab, active=False)
                await node.tick()
            await self.hub.deliver()


@contextlib.asynccontextmanager
async def open_world(
    rules: Rules | None = None,
    *,
    store_failure: Literal["open", "closed"] = "open",
    seat_token_ttl: int = DEFAULT_TTL,
) -> AsyncIterator[World]:
    """A world whose site lets pages choose their rules, from any origin."""
    clock = Clock(1_700_000_000.0)
    box = SecretBox.ephemeral()
    db = await open_database(":memory:")
    config = SiteConfig(store_failure=store_failure, seat_token_ttl=seat_token_ttl)
    site, secrets = new_site(
        "Test", ["*"], rules or Rules(), client_settings=True, now=clock(), box=box, config=config
    )
    await db.add_site(site)
    try:
        yield World(db, box, site, clock, secrets)
    finally:
        await db.close()
