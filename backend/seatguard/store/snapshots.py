"""A user's presence snapshot as the Redis store keeps it, with its format version.

A snapshot is a msgpack map of the fields of `UserPresence` plus `v`, the number of its
format. Snapshots written before the format had a number have no `v`: they are format 1,
which is the same map without it, so nodes of either kind read each other's. A node
never writes over a snapshot it cannot read (every write is a compare-and-set on what it
read): a format it does not know, or bytes that are not a snapshot, raise
`UnreadableSnapshot`, and that user is unavailable on that node while it lasts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast, get_type_hints

import msgspec

from ..errors import UnreadableSnapshot
from ..presence import UserPresence

__all__ = ["SNAPSHOT_FORMAT", "decode_snapshot", "encode_snapshot"]

SNAPSHOT_FORMAT = 1
"""The format this node writes and reads; a new one is read by one release before any
writes it (see docs/operations.md, "Rolling upgrades")."""


class _Numbered(msgspec.Struct):
    """The format number of a stored snapshot; absent: 1, written before it had one."""

    v: int = 1


def _presence_fields() -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """The fields of `UserPresence` with their types and defaults, as `defstruct` takes them."""
    hints = get_type_hints(UserPresence)
    found: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in dataclasses.fields(UserPresence):
        if f.default_factory is not dataclasses.MISSING:
            found.append((f.name, hints[f.name], msgspec.field(default_factory=f.default_factory)))
        elif f.default is not dataclasses.MISSING:
            found.append((f.name, hints[f.name], f.default))
        else:
            found.append((f.name, hints[f.name]))
    return found


_FIELDS = [f.name for f in dataclasses.fields(UserPresence)]
_Stored = cast(
    "type[_Numbered]",
    msgspec.defstruct("_Stored", _presence_fields(), bases=(_Numbered,), kw_only=True),
)
"""`UserPresence` with its format number in front."""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Stored)
_number = msgspec.msgpack.Decoder(_Numbered)


def encode_snapshot(up: UserPresence) -> bytes:
    return _encoder.encode(_Stored(v=SNAPSHOT_FORMAT, **{n: getattr(up, n) for n in _FIELDS}))


def decode_snapshot(blob: bytes) -> UserPresence:
    """The snapshot in `blob` (empty: a user with nothing); raise `UnreadableSnapshot` if
    its format is not this node's, or it is not a snapshot at all."""
    if not blob:
        return UserPresence()
    try:
        stored = _decoder.decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise UnreadableSnapshot(_why(blob, exc)) from None
    if stored.v != SNAPSHOT_FORMAT:
        raise UnreadableSnapshot(_other_format(stored.v))
    return UserPresence(**{n: getattr(stored, n) for n in _FIELDS})


def _other_format(version: int) -> str:
    return f"snapshot format {version}, this node reads format {SNAPSHOT_FORMAT}"


def _why(blob: bytes, exc: Exception) -> str:
    """Why a snapshot could not be read: a format of another node, or bad bytes."""
    try:
        version = _number.decode(blob).v
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        version = SNAPSHOT_FORMAT
    if version != SNAPSHOT_FORMAT:
        return _other_format(version)
    return f"not a snapshot of format {SNAPSHOT_FORMAT}: {exc}"
