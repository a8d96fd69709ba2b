"""One tab's socket as a protocol state machine, independent of the web framework.

The shell feeds it frames (`receive`) and tells it when the socket closed (`closed`);
it answers through a `Transport`. Every error ends the socket with one `error` frame and
the close code from `errors.close_code`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from typing import Protocol

import msgspec

from .admission import Refused, admit
from .devicehint import DeviceProof, device_hint, platform_of
from .deviceproof import DEVICE_PREFIX, new_nonce, proof_message, verify_proof
from .devices import NO_HINTS, Hints, device_type
from .errors import (
    BadMessage,
    DeviceProofInvalid,
    OutOfOrder,
    ProtocolError,
    SeatguardError,
    SessionExpired,
    SessionRevoked,
    SessionSuspended,
    TooBig,
    UnsupportedData,
    close_code,
)
from .node import Node
from .notices import holder_frames
from .presence import Arrival, Leave, Refusal, Rules, SeatState
from .protocol import (
    PROTOCOL_VERSION,
    Ack,
    BlockReason,
    Bye,
    Challenge,
    CloseCode,
    Conflict,
    Denied,
    Error,
    Heartbeat,
    Hello,
    Logout,
    Seat,
    ServerFrame,
    TakeOver,
    Welcome,
    decode_client_frame,
    encode,
    explain,
)
from .ratelog import RateLog
from .refusals import log_refused
from .rules import Claims
from .types import UserKey

__all__ = ["Channel", "ChannelState", "Transport", "unexpected"]

log = logging.getLogger("seatguard")
_bad_frames = RateLog(log, logging.INFO)  # any client can send them
unexpected = RateLog(log, logging.ERROR)
"""A server bug met on a socket, with its traceback: a client that found a way to cause it
must not fill the log with it."""


class Transport(Protocol):
    """What a channel needs from the socket underneath."""

    async def send(self, text: bytes) -> None:
        """Send one text frame (its UTF-8 bytes)."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class ChannelState(enum.Enum):
    awaiting_hello = "awaiting_hello"
    joined = "joined"
    closed = "closed"


_NEXT: dict[ChannelState, frozenset[ChannelState]] = {
    ChannelState.awaiting_hello: frozenset({ChannelState.joined, ChannelState.closed}),
    ChannelState.joined: frozenset({ChannelState.closed}),
    ChannelState.closed: frozenset(),
}


class Channel:
    """The server side of one tab."""

    __slots__ = (
        "_early",
        "active_at",
        "arrival",
        "hints",
        "idle",
        "ip",
        "key",
        "node",
        "nonce",
        "origin",
        "own_origin",
        "page",
        "rules",
        "seen",
        "seq",
        "since",
        "state",
        "token",
        "told",
        "transport",
        "user_agent",
    )

    def __init__(
        self,
        node: Node,
        transport: Transport,
        *,
        origin: str | None,
        own_origin: str,
        user_agent: str,
        ip: str = "",
        hints: Hints = NO_HINTS,
    ) -> None:
        self.node = node
        self.transport = transport
        self.origin = origin
        self.own_origin = own_origin
        self.user_agent = user_agent
        self.ip = ip
        self.hints = hints  # the client hint headers of the upgrade (see `devices`)
        self.state = ChannelState.awaiting_hello
        # Notices that beat the welcome, with the seq of the news each tells.
        self._early: list[tuple[int, ServerFrame]] | None = None
        # What the node keeps of this tab (see `node.Tab`).
        self.key: UserKey | None = None
        self.arrival: Arrival | None = None
        self.rules = Rules()
        self.page: Claims | None = None  # what the page asked for, where the site allows it
        self.token: Claims | None = None  # what the identity token says
        self.seen = 0.0
        self.active_at: float | None = None
        self.seq = 0
        self.told: tuple[SeatState, BlockReason | None] | None = None
        self.since: float | None = None
        self.idle: float | None = None
        # The nonce of this socket's challenge, until the hello uses it (None: none sent,
        # or already used).
        self.nonce: str | None = None

    def challenge(self) -> bytes:
        """The `challenge` frame the shell sends right after the upgrade: a fresh nonce
        that only this socket's hello can use, once."""
        self.nonce = new_nonce()
        return encode(Challenge(nonce=self.nonce))

    def _device(self, hello: Hello) -> tuple[str, DeviceProof]:
        """This hello's device id and whether a device key proved it; `DeviceProofInvalid`
        for a key or proof that does not hold (never a silent fall back to the page's id)."""
        nonce, self.nonce = self.nonce, None  # single use, whatever happens
        if hello.key is None and hello.proof is None:
            if hello.device.startswith(DEVICE_PREFIX):
                # Proven keys' ids: a page cannot claim one by its word.
                raise DeviceProofInvalid(f"a device id starting {DEVICE_PREFIX!r} needs a proof")
            return hello.device, "none"
        if hello.key is None or hello.proof is None:
            missing = "key" if hello.key is None else "proof"
            raise DeviceProofInvalid(
                f"a device proof needs both key and proof; {missing} is missing"
            )
        if nonce is None:
            raise DeviceProofInvalid("no challenge was sent on this socket")
        message = proof_message(nonce, hello.site, hello.session, hello.tab)
        return verify_proof(hello.key, hello.proof, message), "verified"

    def _move(self, to: ChannelState) -> None:
        if to not in _NEXT[self.state]:
            raise RuntimeError(f"illegal channel transition {self.state.name} -> {to.name}")
        self.state = to

    async def receive(self, data: str | bytes) -> None:
        """Handle one frame; on any error, tell the tab and close."""
        if self.state is ChannelState.closed:
            return
        try:
            await self._receive(data)
        except SeatguardError as exc:
            if isinstance(exc, ProtocolError):
                _bad_frames("refused a frame from %s: %r", self.ip or "?", str(exc))
            await self.end(close_code(exc), str(exc))
        except Exception:
            unexpected("unexpected error handling a frame", exc_info=True)
            await self.end(CloseCode.internal_error, "internal error")

    def heartbeat_now(self, data: bytes) -> bytes | None:
        """Answer a heartbeat (the frame's UTF-8 bytes) at once, without an await: its ack,
        or None when `receive` must handle the frame (any other frame, or a heartbeat that
        does not pass)."""
        if self.state is not ChannelState.joined or len(data) > 256:
            return None
        try:
            frame = decode_client_frame(data)
        except msgspec.MsgspecError:
            return None
        if not isinstance(frame, Heartbeat) or not self.node.heartbeat(self, frame.active):
            return None
        return encode(Ack(ref=frame.ref))

    async def _receive(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            raise UnsupportedData("binary frames are not supported; send JSON text")
        limit = self.node.settings.max_message_bytes
        if len(data) * 4 > limit and (size := len(data.encode())) > limit:  # UTF-8 bytes
            raise TooBig(f"frame of {size} bytes is over the limit of {limit}")
        try:
            frame = decode_client_frame(data)
        except msgspec.ValidationError as exc:
            raise BadMessage(f"invalid frame: {explain(exc)}") from None
        except msgspec.DecodeError as exc:
            raise BadMessage(f"malformed JSON: {exc}") from None
        if self.state is ChannelState.awaiting_hello:
            if not isinstance(frame, Hello):
                raise OutOfOrder(f"expected hello first, got {_kind(frame)}")
            await self._hello(frame)
        elif isinstance(frame, Heartbeat):
            await self._heartbeat(frame)
        elif isinstance(frame, Bye):
            await self._bye(frame)
        elif isinstance(frame, Logout):
            await self._logout()
        elif isinstance(frame, TakeOver):
            await self._take_over()
        else:
            raise OutOfOrder("hello was already received")

    def _hints(self, hello: Hello) -> Hints:
        """The upgrade's client hints, with the page's touch points if it told them."""
        if hello.touch is None:
            return self.hints
        return dataclasses.replace(self.hints, touch=hello.touch)

    async def _hello(self, hello: Hello) -> None:
        device, proof = self._device(hello)
        verdict = await admit(
            hello, self.node.sources, origin=self.origin, own_origin=self.own_origin
        )
        if isinstance(verdict, Refused):
            log_refused(verdict.error, hello.site, self.origin)
            if verdict.key is not None and verdict.reason is not None:
                await self._refused(verdict.key, hello, verdict.reason, device)
            raise verdict.error
        self.page, self.token, self.rules = verdict.page, verdict.token, verdict.rules
        self.seen = self.node.clock()
        account, hints = verdict.account, self._hints(hello)
        self.arrival = Arrival(
            session=hello.session,
            tab=hello.tab,
            device=device,
            device_type=device_type(self.user_agent, hints),
            org=account.org,
            role=account.role,
            sid=account.sid,
            ip=self.ip,
            user_agent=self.user_agent,
            node=self.node.store.node_id,
            hint=device_hint(hello.fp, self.ip, platform_of(self.user_agent, hints)),
            device_proof=proof,
            signed_in_at=verdict.identity.issued_at if verdict.identity is not None else None,
        )
        if verdict.lifts is not None:  # re-authenticated after the suspension began
            await self.node.lift_suspension(
                verdict.key, "reauthentication", since=verdict.lifts.since
            )
        fail_open = verdict.site.config.store_failure == "open"
        joined = await self.node.join(verdict.key, self, fail_open=fail_open)
        hb = round(self.node.settings.heartbeat_interval * 1000)
        if joined.refused is not None:
            await self._refused(verdict.key, hello, joined.refused.value, device)
        if joined.refused is Refusal.revoked:
            raise SessionRevoked("this browser session was revoked; sign in again")
        if joined.refused is Refusal.suspended:
            raise SessionSuspended("this user is suspended")
        if joined.refused is Refusal.expired:
            raise SessionExpired("this browser session has expired; sign in again")
        if self.state is ChannelState.closed:
            return  # ended while it joined: a newer socket of the tab took over, or shutdown
        await self.push(
            Welcome(
                v=PROTOCOL_VERSION,
                session=hello.session,
                state=joined.state.value,
                reason=joined.reason.value if joined.reason else None,
                hb=hb,
                mode=joined.rules.mode,
                limit=joined.rules.limit,
                policy=joined.rules.policy,
                takeover=joined.rules.takeover,
                activity=_activity_ms(joined.rules.idle_timeout, hb),
                holders=holder_frames(joined.holders),
                idle=_ms(joined.rules.idle_timeout),
                warn=_warning_ms(joined.rules.idle_timeout, self.node.settings.idle_warning),
            )
        )
        self._move(ChannelState.joined)
        if joined.conflict:
            await self.push(Conflict())
        early, self._early = self._early or [], None
        for seq, frame in early:
            if seq > joined.seq:  # older news is already in the welcome
                await self.push(frame)
        await self.node.give_seat(self)

    async def _refused(self, key: UserKey, hello: Hello, reason: str, device: str) -> None:
        await self.node.refused(key, hello.session, self.ip, reason, device)

    async def _take_over(self) -> None:
        outcome, wait = await self.node.take_over(self)
        if outcome.refused is Refusal.takeover_cooldown:
            retry = math.ceil(wait)
            await self.push(
                Denied(
                    action="takeover",
                    reason=outcome.refused.value,
                    message=f"the account was just taken over; try again in {retry} s",
                    retry=retry,
                )
            )
        elif outcome.refused is not None:
            await self.push(
                Denied(
                    action="takeover",
                    reason=outcome.refused.value,
                    message=_DENIED.get(outcome.refused, "using the account here was refused"),
                )
            )

    async def _heartbeat(self, hb: Heartbeat) -> None:
        if not self.node.heartbeat(self, hb.active):
            await self.end(CloseCode.heartbeat_timeout, "this tab was dropped; reconnect")
            return
        await self.push(Ack(ref=hb.ref))

    async def _bye(self, bye: Bye) -> None:
        await self._leave(Leave(bye.next))
        await self._close(CloseCode.normal, "goodbye")

    async def _logout(self) -> None:
        await self.node.logout(self)

    async def closed(self) -> None:
        """The socket closed underneath (or the channel ended itself)."""
        if self.state is ChannelState.joined:
            await self._leave(Leave.drop)
        if self.state is not ChannelState.closed:
            self._move(ChannelState.closed)

    async def _leave(self, how: Leave) -> None:
        if self.state is not ChannelState.joined:
            return
        await self.node.leave(self, how)

    # Tab interface, used by the node.

    async def push(self, frame: ServerFrame) -> None:
        if self.state is ChannelState.closed:
            return
        if self.state is ChannelState.awaiting_hello and isinstance(frame, Seat):
            return  # the tab gets its token right after the welcome, if it is seated then
        if self.state is ChannelState.awaiting_hello and not isinstance(frame, Welcome | Error):
            # A notice raced ahead of this tab's welcome: it is sent right after it.
            if self._early is None:
                self._early = []
            self._early.append((self.seq, frame))
            return
        try:
            await self.transport.send(encode(frame))
        except Exception:
            log.debug("send failed; the socket is closing", exc_info=True)

    async def end(self, code: CloseCode, message: str) -> None:
        """Send one error frame (for error codes), then close."""
        if self.state is ChannelState.closed:
            return
        if code not in _QUIET_CODES:
            await self.push(Error(code=int(code), reason=code.name, message=message))
        if self.state is ChannelState.joined and code is not CloseCode.logged_out:
            await self._leave(Leave.drop)
        await self._close(code, message)

    async def _close(self, code: CloseCode, message: str) -> None:
        if self.state is ChannelState.closed:
            return
        self._move(ChannelState.closed)
        try:
            await self.transport.close(int(code), _truncate(message))
        except Exception:
            log.debug("close failed; the socket is already gone", exc_info=True)


_DENIED = {
    Refusal.takeover_not_allowed: "this site's policy does not allow using the account here",
    Refusal.unavailable: "the presence service is unavailable; try again in a moment",
}

_QUIET_CODES = frozenset({CloseCode.normal, CloseCode.going_away, CloseCode.logged_out})
"""Close codes that end a socket without an `error` frame."""


def _activity_ms(idle_timeout: float | None, hb_ms: int) -> int | None:
    """How often a tab must report user input so that an active user never looks idle:
    a quarter of the idle timeout, where that is sooner than the next heartbeat."""
    if idle_timeout is None:
        return None
    ms = max(250, round(idle_timeout * 250))
    return ms if ms < hb_ms else None


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _warning_ms(idle_timeout: float | None, warning: float) -> int | None:
    """How long before the idle timeout the page warns: the setting, at most half the
    timeout (a warning that opens the session is no warning); None: no warning."""
    if idle_timeout is None or warning <= 0:
        return None
    return round(min(warning, idle_timeout / 2) * 1000)


def _kind(frame: object) -> str:
    tag: str = frame.__struct_config__.tag  # type: ignore[attr-defined]
    return tag


def _truncate(message: str) -> str:
    """Close reasons are limited to 123 bytes of UTF-8."""
    encoded = message.encode()
    return encoded[:123].decode(errors="ignore")
