"""The page's fingerprint as a hint only: when it may merge two browsers into one device.

A page computes its `fp` from a few traits of the machine and can send any value it likes.
`merged_device` lets it join the device of another session of the user only when what the
server itself observes agrees: the same network prefix (/24 for IPv4, /48 for IPv6) and the
same platform (device type, from the User-Agent and its client hints, and operating system).
Otherwise each proven device key, or each fallback id, is a device of its own. See
docs/device-identity.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

from .devices import NO_HINTS, Hints, device_type, os_family
from .proxies import ip_address

__all__ = ["DeviceProof", "device_hint", "merged_device", "network_of", "platform_of"]

DeviceProof = Literal["none", "verified"]
"""Whether a session's device id comes from a proven device key, or is the page's word."""


def network_of(ip: str) -> str:
    """The network a client address is counted in: its /24 (IPv4) or /48 (IPv6) prefix;
    an IPv4 address mapped into IPv6 counts as IPv4. Not an address: itself."""
    address = ip_address(ip)
    if address is None:
        return ip
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@lru_cache(maxsize=1024)
def platform_of(user_agent: str, hints: Hints = NO_HINTS) -> str:
    """The platform a browser claims: its device type (from the user agent and `hints`, as
    the session's `device_type`) and its operating system family."""
    return f"{device_type(user_agent, hints)}/{os_family(user_agent)}"


def device_hint(fp: str | None, ip: str, platform: str) -> str | None:
    """The fingerprint hint of an arrival: the page's `fp` together with what the server
    itself observes (network prefix, platform); None without an `fp`."""
    if fp is None:
        return None
    return f"{fp}|{network_of(ip)}|{platform}"


def merged_device(own: str, hint: str | None, others: Iterable[tuple[str, str | None]]) -> str:
    """The device a new browser session counts as: the device of another session of the
    user (`others`: device and hint of each) whose hint equals this one's (the same `fp`
    from the same network prefix and platform), else its own proven or fallback id."""
    if hint is not None:
        for device, other in others:
            if other == hint:
                return device
    return own
