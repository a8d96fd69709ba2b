"""What tabs are told when presence changes, and the notices nodes send each other.

An operation's `Outcome` becomes frames for the tabs it concerns. The node that ran the
operation tells its own tabs and sends a `Notice` to the other nodes holding tabs of the
user, which tell theirs. Every notice carries the snapshot's `seq`; a tab ignores anything
older than what it was last told, so late or repeated notices cannot undo newer news.

A notice carries the number of its format. A node that gets one of a format it does not
know (a newer node sent it) drops it and syncs the user's tabs with the store instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from .devices import browser_family, os_family
from .presence import EndReason, Holder, Outcome, SeatState
from .protocol import (
    Block,
    BlockReason,
    CloseCode,
    Ended,
    Expired,
    Revoked,
    ServerFrame,
    Suspended,
    Unblock,
)
from .protocol import Holder as HolderFrame
from .types import UserKey

__all__ = [
    "ENDINGS",
    "NOTICE_FORMAT",
    "Notice",
    "UnknownFormat",
    "decode_notice",
    "encode_notice",
    "holder_frames",
    "state_frame",
]

ENDINGS: dict[EndReason, tuple[ServerFrame, CloseCode, str]] = {
    EndReason.logout: (Ended(reason="logout"), CloseCode.logged_out, "signed out"),
    EndReason.revoked: (Revoked(reason="revoked"), CloseCode.revoked, "session revoked"),
    EndReason.suspended: (Suspended(reason="suspended"), CloseCode.suspended, "user suspended"),
    EndReason.idle: (Expired(reason="idle"), CloseCode.expired, "session idle too long"),
    EndReason.absolute: (
        Expired(reason="absolute"),
        CloseCode.expired,
        "session reached its maximum lifetime",
    ),
}
"""What the tabs of a session that ended are told, and how their sockets close; any other
ending closes them with 1000."""


NOTICE_FORMAT = 1
"""The notice format this node sends and reads; a new one is read by one release before
any sends it (see docs/operations.md, "Rolling upgrades")."""


class Notice(msgspec.Struct, array_like=True):
    """An outcome for the tabs of one user on another node.

    An array whose first two items are the site and user and whose sixth is the format, in
    every format. Nodes from before formats had numbers send five items (format 1) and
    ignore the sixth; nodes that do not know the seventh (a deadline handed over) ignore it.
    """

    site: str
    user: str
    seq: int  # the snapshot's seq after the operation
    takeover: bool  # whether "use here" is allowed under the rules in force
    outcome: Outcome
    v: int = NOTICE_FORMAT
    deadline: float | None = None  # the user's next deadline, from a node that is leaving

    @property
    def key(self) -> UserKey:
        return (self.site, self.user)


@dataclass(frozen=True, slots=True)
class UnknownFormat:
    """A notice in a format this node cannot read, and the user it is about if known."""

    version: int
    key: UserKey | None


class _Numbered(msgspec.Struct, array_like=True):
    """A notice of any format: who it is about and its format are where they always are."""

    site: Any
    user: Any
    seq: Any = None
    takeover: Any = None
    outcome: Any = None
    v: int = 1


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Notice)
_number = msgspec.msgpack.Decoder(_Numbered)


def encode_notice(notice: Notice) -> bytes:
    return _encoder.encode(notice)


def decode_notice(payload: bytes) -> Notice | UnknownFormat:
    """Parse a notice; raise `msgspec.DecodeError` or `ValidationError` if invalid."""
    try:
        notice = _decoder.decode(payload)
    except RecursionError:  # nested past Python's recursion limit
        raise msgspec.DecodeError("notice nested too deeply") from None
    except msgspec.ValidationError:
        other = _other_format(payload)
        if other is None:
            raise
        return other
    if notice.v != NOTICE_FORMAT:
        return UnknownFormat(notice.v, notice.key)
    return notice


def _other_format(payload: bytes) -> UnknownFormat | None:
    """A notice this node cannot validate, if its format is another one."""
    try:
        numbered = _number.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if numbered.v == NOTICE_FORMAT:
        return None
    site, user = numbered.site, numbered.user
    key = (site, user) if isinstance(site, str) and isinstance(user, str) else None
    return UnknownFormat(numbered.v, key)


def state_frame(
    state: SeatState,
    reason: BlockReason | None,
    takeover: bool,
    holders: tuple[Holder, ...] = (),
) -> ServerFrame:
    """The frame that tells a tab its session's seat state (blocked: where seats are held)."""
    if state is SeatState.admitted:
        return Unblock()
    return Block(
        reason=(reason or BlockReason.limit).value,
        takeover=takeover,
        holders=holder_frames(holders),
    )


_OS_NAMES = {"Mac OS X": "macOS"}
"""Operating systems whose ua-parser family is not the name people know."""


def holder_frames(holders: tuple[Holder, ...]) -> tuple[HolderFrame, ...]:
    """Holders as a blocked tab is told of them: browser and OS families, not the agent."""
    frames = []
    for h in holders:
        system = os_family(h.user_agent)
        frames.append(
            HolderFrame(
                device_type=h.device_type,
                browser=browser_family(h.user_agent)[:64],
                os=_OS_NAMES.get(system, system)[:64],
                since=int(h.since),
            )
        )
    return tuple(frames)
