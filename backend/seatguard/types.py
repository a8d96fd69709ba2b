"""Type aliases shared across the package, and the names each `Literal` allows."""

from typing import Literal, TypeAlias, get_args

__all__ = [
    "MODES",
    "POLICIES",
    "DeviceKey",
    "DeviceType",
    "Mode",
    "Policy",
    "SessionId",
    "SiteKey",
    "TabId",
    "Timestamp",
    "UserId",
    "UserKey",
]

SiteKey: TypeAlias = str
UserId: TypeAlias = str
SessionId: TypeAlias = str
TabId: TypeAlias = str
DeviceKey: TypeAlias = str
Timestamp: TypeAlias = float
"""Seconds since the epoch, from the injected clock."""
UserKey: TypeAlias = tuple[SiteKey, UserId]
Mode: TypeAlias = Literal["concurrence", "device-limit"]
"""What a seat counts: the browser session, or the device."""
MODES: tuple[Mode, ...] = get_args(Mode)
Policy: TypeAlias = Literal["block-new", "evict-oldest", "evict-idle", "challenge", "monitor"]
"""What happens to a browser over the limit (see the README's table)."""
POLICIES: tuple[Policy, ...] = get_args(Policy)
DeviceType: TypeAlias = Literal["computer", "tablet", "mobile"]
