"""Audit events and records: what each holds, how an event is checked before it is signed,
and the JSON lines `seatguard audit export` writes. Nothing here does I/O."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = [
    "DETAIL_BYTES",
    "AuditEvent",
    "AuditKind",
    "AuditRecord",
    "Detail",
    "Scalar",
    "decode",
    "from_json",
    "normalized",
    "to_json",
]
DETAIL_BYTES = 2048
"""The most an event's `detail` may take as canonical JSON."""


class AuditKind(StrEnum):
    """What happened to a browser session (or, with no session, to its user or its site)."""

    created = "created"
    admitted = "admitted"
    blocked = "blocked"
    unblocked = "unblocked"
    taken_over = "taken_over"
    evicted = "evicted"
    idle_expired = "idle_expired"
    absolute_expired = "absolute_expired"
    revoked = "revoked"
    suspended = "suspended"  # a session ended by its user's suspension, or (no session) the
    unsuspended = "unsuspended"  # suspension itself; its lift (no session)
    refused = "refused"
    ended = "ended"
    # Changes to the site's settings (no session; `user` is empty but for a user's
    # override), with who made them in `detail["by"]`.
    site_changed = "site_changed"  # its rules, token settings or key URLs
    override_set = "override_set"  # an org's, role's or user's override, set or replaced
    override_removed = "override_removed"
    policy_set = "policy_set"  # the policy replaced
    device_trusted = "device_trusted"  # a device of the user marked trusted (no session)
    device_untrusted = "device_untrusted"  # no longer trusted


Scalar: TypeAlias = str | int | float | bool | None
Detail: TypeAlias = Mapping[str, Scalar]
"""Small, flat extra facts about an event: names to scalars."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One lifecycle event of one user's browser session."""

    at: float  # seconds since the epoch, from the injected clock
    site: str
    user: str
    session: str | None
    device: str | None
    ip: str | None
    kind: AuditKind
    reason: str | None
    detail: Detail = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An event in the log: its place `seq`, the previous record's hash, and its own."""

    seq: int
    prev: str
    hash: str
    event: AuditEvent


def to_json(record: AuditRecord) -> str:
    """One JSON line for export, without the newline; `from_json` reads it back exactly."""
    e = record.event
    doc = {
        "seq": record.seq,
        "prev": record.prev,
        "hash": record.hash,
        "at": e.at,
        "site": e.site,
        "user": e.user,
        "session": e.session,
        "device": e.device,
        "ip": e.ip,
        "kind": e.kind,
        "reason": e.reason,
        "detail": dict(e.detail) if isinstance(e.detail, Mapping) else e.detail,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def from_json(line: str) -> AuditRecord:
    """A record from a line written by `to_json`; ValueError if it is not one."""
    doc = json.loads(line)
    if not isinstance(doc, dict) or set(doc) != set(_FIELDS):
        raise ValueError("not an audit record: expected the fields " + ", ".join(_FIELDS))
    return decode(doc)


def decode(fields: Mapping[str, Any]) -> AuditRecord:
    """A record from stored values, named as in `to_json`'s lines, kept exactly as stored.

    Only what `verify` needs to walk is required (an integer seq, text prev and hash):
    anything else stored wrong, such as an unknown kind, is kept as it is and fails its hash.
    """
    seq, prev, digest = fields["seq"], fields["prev"], fields["hash"]
    if type(seq) is not int or not isinstance(prev, str) or not isinstance(digest, str):
        raise ValueError(f"not an audit record: seq {seq!r}, prev {prev!r}, hash {digest!r}")
    kind = fields["kind"]
    if isinstance(kind, str) and kind in _KINDS:
        kind = _KINDS[kind]  # an unknown kind stays as stored, and fails its hash
    event = AuditEvent(
        at=fields["at"],
        site=fields["site"],
        user=fields["user"],
        session=fields["session"],
        device=fields["device"],
        ip=fields["ip"],
        kind=kind,
        reason=fields["reason"],
        detail=fields["detail"],
    )
    return AuditRecord(seq, prev, digest, event)


_FIELDS = (
    "seq",
    "prev",
    "hash",
    "at",
    "site",
    "user",
    "session",
    "device",
    "ip",
    "kind",
    "reason",
    "detail",
)
_KINDS: dict[str, AuditKind] = {k.value: k for k in AuditKind}


def normalized(event: AuditEvent) -> AuditEvent:
    """The event as it is signed and stored; ValueError if it cannot be."""
    at = event.at
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError(f"at must be a finite number of seconds, not {at!r}")
    for name in ("site", "user", "session", "device", "ip", "reason"):
        value = getattr(event, name)
        optional = name not in ("site", "user")
        if not isinstance(value, str) and not (optional and value is None):
            raise ValueError(f"{name} must be text, not {value!r}")
        _check_text(name, value)
    if not isinstance(event.kind, str) or event.kind not in _KINDS:
        raise ValueError(f"unknown audit kind {event.kind!r}")
    if not isinstance(event.detail, Mapping):
        raise ValueError(f"detail must be a mapping, not {event.detail!r}")
    detail = dict(event.detail)
    for name, value in detail.items():
        if not isinstance(name, str) or not isinstance(value, Scalar):
            raise ValueError(f"detail must map names to scalars, not {name!r}: {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"detail {name!r} must be finite, not {value!r}")
        _check_text(f"detail {name!r}", name)
        _check_text(f"detail {name!r}", value)
    size = len(json.dumps(detail, separators=(",", ":"), ensure_ascii=True))
    if size > DETAIL_BYTES:
        raise ValueError(f"detail takes {size} bytes, more than {DETAIL_BYTES}")
    # `+ 0.0` turns -0.0 into 0.0, which is what SQLite gives back.
    return replace(event, at=float(at) + 0.0, kind=_KINDS[event.kind], detail=detail)


def _check_text(name: str, value: object) -> None:
    """Refuse text that cannot be stored as UTF-8 (lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{name} is not valid Unicode text") from None
