"""A minimal protocol client for integration tests: one instance is one tab."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from tests.helpers import scaled

Frame = dict[str, Any]


def ident() -> str:
    """A random id for a session, tab or device. Never one starting `dk_`: the server takes
    such a device id for a device key's and refuses it without a proof (4014), which a
    race test's 40,000 random ids met now and then (one in 262,144 each)."""
    while (value := secrets.token_urlsafe(12)).startswith("dk_"):
        pass
    return value


def holders_since(frame: Frame) -> list[int]:
    """Take the holders out of a `block` or blocked `welcome` frame, checked to be test
    clients' browsers (no user agent: a computer, browser and OS `Other`); return since
    when each holds its seat."""
    holders: list[Frame] = frame.pop("holders")
    unknown = {"device_type": "computer", "browser": "Other", "os": "Other"}
    assert [{k: v for k, v in h.items() if k != "since"} for h in holders] == [unknown] * len(
        holders
    ), holders
    return [h["since"] for h in holders]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK the SDK sends for a P-256 device key."""
    numbers = key.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return {"kty": "EC", "crv": "P-256", "x": b64url(x), "y": b64url(y)}


def sign_proof(
    key: ec.EllipticCurvePrivateKey, nonce: str, site: str, session: str, tab: str
) -> str:
    """The proof the SDK makes: ECDSA P-256 SHA-256 over the hello's message, r || s."""
    message = "\n".join(("seatguard-device-proof/1", nonce, site, session, tab)).encode()
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass
class Browser:
    """What one browser profile keeps in storage: its session and device."""

    user: str
    session: str = field(default_factory=ident)
    device: str = field(default_factory=ident)
    fp: str | None = None
    key: ec.EllipticCurvePrivateKey | None = None  # a device key: the hello proves it

    @classmethod
    def keyed(cls, user: str, **fields: Any) -> Browser:
        """A browser with a device key of its own (as one with WebCrypto and IndexedDB)."""
        return cls(user, key=ec.generate_private_key(ec.SECP256R1()), **fields)


async def frames_of(tabs: list[Tab], seconds: float) -> list[list[Frame]]:
    """Keep every tab heartbeating for `seconds`; return each one's non-ack frames."""
    results: list[list[Frame]] = [[] for _ in tabs]

    async def run(i: int) -> None:
        results[i] = await tabs[i].frames_for(seconds)

    async with anyio.create_task_group() as tg:
        for i in range(len(tabs)):
            tg.start_soon(run, i)
    return results


class Tab:
    """One tab's socket. Seat token frames (`seat`) are put aside in `seats` as they
    arrive, so that what a test reads is the rest of the conversation."""

    opened: ClassVar[list[ClientConnection]] = []  # every socket, closed after each test
    nonces: ClassVar[dict[int, str]] = {}  # each open socket's challenge, by id(socket)

    def __init__(self, ws: ClientConnection, browser: Browser, tab: str) -> None:
        self.ws = ws
        self.browser = browser
        self.tab = tab
        self.ref = 0
        self.seats: list[Frame] = []  # the seat frames received, in order

    @property
    def nonce(self) -> str:
        """The nonce of this socket's challenge."""
        return self.nonces[id(self.ws)]

    async def _next(self) -> Frame:
        """The next frame other than a seat token."""
        while True:
            frame: Frame = json.loads(await self.ws.recv())
            if frame.get("t") != "seat":
                return frame
            self.seats.append(frame)

    @classmethod
    async def connect(
        cls,
        url: str,
        origin: str | None = None,
        source: str | None = None,
        user_agent: str | None = None,
    ) -> ClientConnection:
        """Connect (from the loopback address `source`, and with a `User-Agent`, if given)
        and read the challenge."""
        more: dict[str, Any] = {}
        if source is not None:
            more["local_addr"] = (source, 0)
        if user_agent is not None:
            more["user_agent_header"] = user_agent
        ws = await connect(
            url,
            origin=None if origin is None else Origin(origin),
            open_timeout=scaled(5),
            close_timeout=scaled(2),
            compression=None,
            **more,
        )
        cls.opened.append(ws)
        await cls.challenged(ws)
        return ws

    @classmethod
    async def challenged(cls, ws: ClientConnection) -> None:
        """Read the device key's challenge, the first frame after the upgrade."""
        with anyio.fail_after(scaled(3)):
            challenge = json.loads(await ws.recv())
        assert challenge["t"] == "challenge", challenge
        cls.nonces[id(ws)] = challenge["nonce"]

    @classmethod
    async def close_all(cls) -> None:
        opened, cls.opened = cls.opened, []
        cls.nonces.clear()
        await asyncio.gather(*(ws.close() for ws in opened))

    @classmethod
    async def open(
        cls,
        url: str,
        site: str,
        browser: Browser,
        *,
        tab: str | None = None,
        origin: str | None = None,
        source: str | None = None,
        user_agent: str | None = None,
        **options: Any,
    ) -> tuple[Tab, Frame]:
        """Connect (from `source`, with `user_agent`, if given), say hello, and return the
        tab with its welcome."""
        ws = await cls.connect(url, origin, source, user_agent)
        t = cls(ws, browser, tab or ident())
        hello: Frame = {
            "t": "hello",
            "v": 1,
            "site": site,
            "user": browser.user,
            "session": browser.session,
            "tab": t.tab,
            "device": browser.device,
            **options,
        }
        if browser.fp:
            hello["fp"] = browser.fp
        if browser.key is not None and "key" not in options:
            hello["key"] = public_jwk(browser.key)
            hello["proof"] = sign_proof(browser.key, t.nonce, site, browser.session, t.tab)
        await t.send(hello)
        welcome = await t.recv()
        assert welcome["t"] == "welcome", welcome
        return t, welcome

    @classmethod
    async def try_hello(
        cls, url: str, site: str, browser: Browser, **fields: Any
    ) -> tuple[int, Frame]:
        """Say a hello of `browser` with `fields` (no user unless they name one): 0 and the
        welcome if it is welcomed, else the close code and the first frame it got."""
        t = cls(await cls.connect(url), browser, ident())
        await t.send({"t": "hello", "v": 1, "site": site, "session": browser.session,
                      "tab": t.tab, "device": browser.device, **fields})  # fmt: skip
        frame = await t.recv()
        if frame["t"] == "welcome":
            return 0, frame
        code, _, _ = await t.closed()
        return code, frame

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, within: float = 3) -> Frame:
        with anyio.fail_after(scaled(within)):
            return await self._next()

    async def seat(self, within: float = 3) -> Frame:
        """The next seat frame (one put aside already, first); any frame but an ack before
        it fails the test."""
        with anyio.fail_after(scaled(within)):
            while not self.seats:
                frame: Frame = json.loads(await self.ws.recv())
                if frame["t"] == "seat":
                    return frame
                assert frame["t"] == "ack", f"expected a seat frame, got {frame!r}"
        return self.seats.pop(0)

    async def heartbeat(self, active: bool = False) -> Frame:
        self.ref += 1
        await self.send({"t": "hb", "ref": self.ref, "active": active})
        return await self.recv()

    async def frames_for(self, seconds: float) -> list[Frame]:
        """Keep heartbeating for `seconds` and return every frame other than acks.

        Stops early when the server closes the socket (after reading what it sent).
        """
        frames: list[Frame] = []
        with anyio.move_on_after(scaled(seconds)):
            try:
                while True:
                    self.ref += 1
                    with contextlib.suppress(ConnectionClosed):  # then read what it sent
                        await self.send({"t": "hb", "ref": self.ref})
                    with anyio.move_on_after(scaled(0.25)):
                        while True:
                            frame = await self._next()
                            if frame.get("t") != "ack":
                                frames.append(frame)
            except ConnectionClosed:
                pass
        return frames

    async def expect_nothing(self, seconds: float = 0.3) -> None:
        """Assert that nothing but acks arrives for a while (heartbeating meanwhile)."""
        frames = await self.frames_for(seconds)
        assert frames == [], f"unexpected frames {frames!r}"

    async def closed(self, within: float = 3) -> tuple[int, str, list[Frame]]:
        """Wait for the server to close; return the code, reason and frames before it."""
        frames: list[Frame] = []
        with anyio.fail_after(scaled(within)):
            try:
                while True:
                    frames.append(await self._next())
            except ConnectionClosed as exc:
                assert exc.rcvd is not None, "closed without a close frame"
                return exc.rcvd.code, exc.rcvd.reason, frames

    async def drop(self) -> None:
        """Vanish without goodbye, like a lost network or a killed browser."""
        self.ws.transport.abort()
        await self.ws.wait_closed()

    async def bye(self, next: str = "close") -> int:
        await self.send({"t": "bye", "next": next})
        code, _, _ = await self.closed()
        return code
