"""The WebSocket wire format: frames, their codec, and the table of close codes.

Version 1 is documented in ``docs/protocol.md``. The close-code table is mirrored in
``js-sdk/src/constants.js``; ``tests/unit/test_protocol.py`` keeps the two equal.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect

from .names import NAME_PATTERN, NAME_WORDS, Name
from .types import Mode, Policy

__all__ = [
    "PATTERNS",
    "PROTOCOL_VERSION",
    "RETRY",
    "RETRY_LATER",
    "WS_PATH",
    "Ack",
    "Block",
    "BlockReason",
    "Bye",
    "Challenge",
    "ClientFrame",
    "CloseCode",
    "Conflict",
    "Denied",
    "DeviceJwk",
    "Ended",
    "Error",
    "Expired",
    "Heartbeat",
    "Hello",
    "Holder",
    "Logout",
    "Revoked",
    "Seat",
    "ServerFrame",
    "Suspended",
    "TakeOver",
    "Unblock",
    "Welcome",
    "choices_at",
    "decode_client_frame",
    "encode",
    "explain",
]

PROTOCOL_VERSION = 1
WS_PATH = "/ws/v1"
"""The WebSocket endpoint's path; an upgrade anywhere else is answered 404 (`plainhttp`)."""


class CloseCode(enum.IntEnum):
    """WebSocket close codes used by the server; the name is the wire reason."""

    normal = 1000
    going_away = 1001
    protocol_error = 1002  # sent by the WebSocket layer: frames that break RFC 6455
    unsupported_data = 1003
    invalid_data = 1007  # text that is not UTF-8
    too_big = 1009
    internal_error = 1011
    service_restart = 1012
    try_again_later = 1013
    bad_message = 4000
    protocol_order = 4001
    unsupported_version = 4002
    unknown_site = 4003
    origin_not_allowed = 4004
    heartbeat_timeout = 4008
    logged_out = 4009
    revoked = 4010
    expired = 4011
    identity_required = 4012
    identity_invalid = 4013
    device_proof_invalid = 4014
    suspended = 4015


RETRY = frozenset({1001, 1006, 1011, 1012, 1013, 4008})
"""Close codes after which the SDK reconnects (1006 is the browser's abnormal closure)."""
RETRY_LATER = frozenset({1012, 1013})
"""Of those, the ones that ask the SDK to come back later."""


class BlockReason(enum.StrEnum):
    """Why a browser session does not hold a seat."""

    limit = "limit"  # every seat is held by someone else; waiting in line
    evicted = "evicted"  # a newer browser took this seat (evict-oldest, evict-idle)
    challenge = "challenge"  # every seat is taken; this browser may confirm to continue here
    taken_over = "taken_over"  # another browser chose "use here" and took this seat
    policy = "policy"  # the site's policy refuses this browser a seat for now (`block`)
    verify = "verify"  # the site's policy asks the user to sign in again here (`challenge`)


_IDENT = r"^[A-Za-z0-9_-]{8,64}$"
_FINGERPRINT = r"^[A-Za-z0-9_-]{4,64}$"
PATTERNS = {
    _IDENT: "8 to 64 characters of A-Z a-z 0-9 _ -",
    _FINGERPRINT: "4 to 64 characters of A-Z a-z 0-9 _ -",
    NAME_PATTERN: NAME_WORDS,
}
"""What each pattern of a frame field asks for, in words (for error messages)."""
Ident = Annotated[str, msgspec.Meta(pattern=_IDENT)]
Fingerprint = Annotated[str, msgspec.Meta(pattern=_FINGERPRINT)]
Text = Name  # a user id, org, role or site key: names.py
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Touch = Annotated[int, msgspec.Meta(ge=0, le=256)]  # the touch points a page reports
_Short = Annotated[str, msgspec.Meta(max_length=16)]
_Coordinate = Annotated[str, msgspec.Meta(max_length=64)]  # 43 for P-256; checked on use
Proof = Annotated[str, msgspec.Meta(max_length=128)]  # 86 for P-256; checked on use


class DeviceJwk(msgspec.Struct, forbid_unknown_fields=True):
    """A device's public key as a JWK: only the members of an EC public key."""

    kty: _Short
    crv: _Short
    x: _Coordinate
    y: _Coordinate


class Hello(msgspec.Struct, tag_field="t", tag="hello", forbid_unknown_fields=True):
    """First frame of a tab: who it is and what it asks for.

    `user` names the account unless a signed identity `token` does; `org`, `role`, `mode`,
    `limit` and `policy` from the page count only where the site allows client settings.
    """

    v: int
    site: Text
    session: Ident
    tab: Ident
    device: Ident
    user: Text | None = None
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)] | None = None
    org: Text | None = None
    role: Text | None = None
    fp: Fingerprint | None = None
    mode: Mode | None = None
    limit: Limit | None = None
    policy: Policy | None = None
    touch: Touch | None = None  # navigator.maxTouchPoints: tells an iPad from a Mac
    key: DeviceJwk | None = None  # the device's public key (docs/device-identity.md)
    proof: Proof | None = None  # its signature over the challenge and this hello


class Heartbeat(msgspec.Struct, tag_field="t", tag="hb", forbid_unknown_fields=True):
    """Keep-alive; `active` tells whether the user touched this tab since the last one."""

    ref: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]  # a safe integer in JavaScript
    active: bool = False


class Bye(msgspec.Struct, tag_field="t", tag="bye", forbid_unknown_fields=True):
    """The tab is going away; `next` says whether a page of the site follows."""

    next: Literal["close", "reload", "navigate", "unload"] = "unload"


class Logout(msgspec.Struct, tag_field="t", tag="logout", forbid_unknown_fields=True):
    """The user signed out on this browser."""


class TakeOver(msgspec.Struct, tag_field="t", tag="takeover", forbid_unknown_fields=True):
    """A blocked browser asks to use the account here ("use here", "continue here")."""


ClientFrame = Hello | Heartbeat | Bye | Logout | TakeOver


class Challenge(msgspec.Struct, tag_field="t", tag="challenge"):
    """Sent right after the upgrade: the nonce a device key signs in the hello."""

    nonce: str


class Holder(msgspec.Struct):
    """Where one of the account's seats is held, as a blocked browser is told: the kind of
    device, its browser and OS family (from its user agent) and since when (seconds since
    the epoch). Never an address or an id of the other browser."""

    device_type: Literal["computer", "tablet", "mobile"]
    browser: Annotated[str, msgspec.Meta(max_length=64)]
    os: Annotated[str, msgspec.Meta(max_length=64)]
    since: int


Holders = Annotated[tuple[Holder, ...], msgspec.Meta(max_length=3)]


class Welcome(msgspec.Struct, tag_field="t", tag="welcome"):
    v: int
    session: str
    state: Literal["admitted", "blocked"]
    reason: str | None
    hb: int
    mode: str
    limit: int
    policy: str
    takeover: bool  # whether "use here" is allowed under these rules
    activity: int | None = None  # ms: report user input at least this often (short idle)
    holders: Holders = ()  # blocked: where the seats are held
    idle: int | None = None  # ms: the idle timeout, when there is one
    warn: int | None = None  # ms: how long before the idle timeout the page warns


class Ack(msgspec.Struct, tag_field="t", tag="ack"):
    ref: int


class Block(msgspec.Struct, tag_field="t", tag="block", omit_defaults=True):
    reason: str
    takeover: bool
    holders: Holders = ()  # where the seats are held


class Conflict(msgspec.Struct, tag_field="t", tag="conflict"):
    """Monitor policy: this browser is over the limit, recorded but not blocked."""


class Denied(msgspec.Struct, tag_field="t", tag="denied"):
    """A request (e.g. takeover) was refused; the socket stays open."""

    action: str
    reason: str
    message: str
    retry: int | None = None  # seconds after which asking again may succeed (a cooldown)


class Revoked(msgspec.Struct, tag_field="t", tag="revoked"):
    reason: str


class Suspended(msgspec.Struct, tag_field="t", tag="suspended"):
    """The user is suspended: every session of the account ends until it is lifted."""

    reason: str


class Expired(msgspec.Struct, tag_field="t", tag="expired"):
    reason: str


class Unblock(msgspec.Struct, tag_field="t", tag="unblock"):
    pass


class Seat(msgspec.Struct, tag_field="t", tag="seat"):
    """This tab's seat token (see docs/seat-tokens.md), replacing any earlier one."""

    token: str
    exp: int  # when it expires, seconds since the epoch; a new one comes before then


class Ended(msgspec.Struct, tag_field="t", tag="ended"):
    reason: str


class Error(msgspec.Struct, tag_field="t", tag="error"):
    code: int
    reason: str
    message: str


ServerFrame = (
    Challenge
    | Welcome
    | Ack
    | Block
    | Unblock
    | Seat
    | Conflict
    | Denied
    | Revoked
    | Suspended
    | Expired
    | Ended
    | Error
)


class _Versioned(msgspec.Struct):
    """Just enough of a hello to read its version when the rest does not parse."""

    t: str
    v: int


_decoder = msgspec.json.Decoder(ClientFrame)
_versioned = msgspec.json.Decoder(_Versioned)
_encoder = msgspec.json.Encoder()


def decode_client_frame(data: str | bytes) -> ClientFrame:
    """Parse one client frame; raise `msgspec.DecodeError` or `ValidationError` if invalid
    (nothing else, whatever `data` is).

    A hello of another protocol version may carry fields this one does not know: it
    parses as a `Hello` with that version, so the caller refuses the version, not the
    fields.
    """
    try:
        frame: ClientFrame = _decoder.decode(data)
    except msgspec.ValidationError as invalid:
        try:
            seen = _versioned.decode(data)
        except (msgspec.MsgspecError, RecursionError):
            raise invalid from None
        if seen.t != "hello" or seen.v == PROTOCOL_VERSION:
            raise
        return Hello(v=seen.v, site="?", session="?", tab="?", device="?")
    except RecursionError:
        # msgspec walks nested arrays and objects by recursion, even where the schema
        # wants a scalar: a 2 KB frame of brackets reaches Python's recursion limit.
        raise msgspec.DecodeError("JSON nested too deeply") from None
    return frame


def explain(exc: msgspec.ValidationError, kind: Any = None) -> str:
    """A validation error in words: patterns are named by what they ask for and, where
    `kind` (what was decoded) has a fixed set of values at the error's path (a `Literal` or
    an enum), the message lists them: `Invalid enum value 'x', expected one of: a, b`."""
    message = str(exc)
    for pattern, words in PATTERNS.items():
        message = message.replace(f"matching regex {pattern!r}", f"of {words}")
    text, at, where = message.partition(" - at `$")
    choices = None if kind is None else choices_at(kind, where.removesuffix("`"))
    if choices:
        text += f", expected one of: {', '.join(map(str, choices))}"
    return text + at + where


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def choices_at(kind: Any, path: str) -> tuple[object, ...] | None:
    """The values allowed at `path` (`.rules[2].verdict`, msgspec's error path less its
    `$`) in `kind`, if they are a fixed set; None otherwise."""
    node: list[msgspec.inspect.Type] = [msgspec.inspect.type_info(kind)]
    for step in _STEP.finditer(path):
        node = [n for t in node for n in _step(t, step[1], step[2])]
    values = [v for t in node for v in _values(t)]
    return tuple(dict.fromkeys(values)) or None


_SEQUENCES = (msgspec.inspect.ListType, msgspec.inspect.VarTupleType, msgspec.inspect.SetType)


def _members(t: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    """`t` with its constraints and unions unwrapped."""
    if isinstance(t, msgspec.inspect.Metadata):
        return _members(t.type)
    if isinstance(t, msgspec.inspect.UnionType):
        return [m for u in t.types for m in _members(u)]
    return [t]


def _step(t: msgspec.inspect.Type, field: str | None, index: str | None) -> list[Any]:
    """What a field (or an item, or a dict value) of `t` may be."""
    found: list[msgspec.inspect.Type] = []
    for m in _members(t):
        if field is not None and isinstance(m, msgspec.inspect.StructType):
            found += [f.type for f in m.fields if f.encode_name == field]
        elif index is not None and isinstance(m, _SEQUENCES):
            found.append(m.item_type)
        elif index is not None and isinstance(m, msgspec.inspect.DictType):
            found.append(m.value_type)
    return found


def _values(t: msgspec.inspect.Type) -> list[object]:
    found: list[object] = []
    for m in _members(t):
        if isinstance(m, msgspec.inspect.LiteralType):
            found += m.values
        elif isinstance(m, msgspec.inspect.EnumType):
            found += [e.value for e in m.cls]
    return found


def encode(frame: ServerFrame) -> bytes:
    """Serialise one server frame to JSON text, as UTF-8."""
    return _encoder.encode(frame)
