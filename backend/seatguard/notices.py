"""What tabs are told when presence changes, and the notices nodes send each other.

An operation's `Outcome` becomes frames for the tabs it concerns. The node that ran the
operation tells its own tabs and sends a `Notice` to the other nodes holding tabs of the
user, which tell theirs. Every notice carries the snapshot's `seq`; a tab ignores anything
older than what it was last told, so late or repeated notices cannot undo newer news.
"""

from __future__ import annotations

import msgspec

from .presence import EndReason, Outcome, SeatState
from .protocol import (
    Block,
    BlockReason,
    CloseCode,
    Ended,
    Expired,
    Revoked,
    ServerFrame,
    Unblock,
)
from .types import UserKey

__all__ = [
    "ENDINGS",
    "Notice",
    "decode_notice",
    "encode_notice",
    "state_frame",
]

ENDINGS: dict[EndReason, tuple[ServerFrame, CloseCode, str]] = {
    EndReason.logout: (Ended(reason="logout"), CloseCode.logged_out, "signed out"),
    EndReason.revoked: (Revoked(reason="revoked"), CloseCode.revoked, "session revoked"),
    EndReason.idle: (Expired(reason="idle"), CloseCode.expired, "session idle too long"),
    EndReason.absolute: (
        Expired(reason="absolute"),
        CloseCode.expired,
        "session reached its maximum lifetime",
    ),
}
"""What the tabs of a session that ended are told, and how their sockets close; any other
ending closes them with 1000."""


class Notice(msgspec.Struct, array_like=True):
    """An outcome for the tabs of one user on another node."""

    site: str
    user: str
    seq: int  # the snapshot's seq after the operation
    takeover: bool  # whether "use here" is allowed under the rules in force
    outcome: Outcome

    @property
    def key(self) -> UserKey:
        return (self.site, self.user)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Notice)


def encode_notice(notice: Notice) -> bytes:
    return _encoder.encode(notice)


def decode_notice(payload: bytes) -> Notice:
    """Parse a notice; raise `msgspec.DecodeError` or `ValidationError` if invalid."""
    try:
        return _decoder.decode(payload)
    except RecursionError:  # nested past Python's recursion limit
        raise msgspec.DecodeError("notice nested too deeply") from None


def state_frame(state: SeatState, reason: BlockReason | None, takeover: bool) -> ServerFrame:
    """The frame that tells a tab its session's seat state."""
    if state is SeatState.admitted:
        return Unblock()
    return Block(reason=(reason or BlockReason.limit).value, takeover=takeover)
