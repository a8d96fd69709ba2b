"""Device classification from the browser's user agent."""

from __future__ import annotations

from functools import lru_cache

import user_agents

from .types import DeviceType

__all__ = ["device_type"]


@lru_cache(maxsize=1024)
def device_type(user_agent: str) -> DeviceType:
    """Computer, tablet or mobile; unknown agents count as computers."""
    ua = user_agents.parse(user_agent or "")
    if ua.is_tablet:
        return "tablet"
    if ua.is_mobile:
        return "mobile"
    return "computer"
