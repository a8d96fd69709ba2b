"""Type aliases shared across the package."""

from typing import Literal, TypeAlias

__all__ = [
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
Policy: TypeAlias = Literal["block-new", "evict-oldest", "evict-idle", "challenge", "monitor"]
DeviceType: TypeAlias = Literal["computer", "tablet", "mobile"]
