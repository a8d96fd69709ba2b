"""Which client a request came from when trusted reverse proxies stand in front.

A proxy appends the address it got the request from to `X-Forwarded-For`, so the header
reads left to right from the farthest hop to the nearest, and everything left of what the
first trusted proxy wrote is whatever the client chose to send. The client is therefore
found by walking from the right: skip the addresses of trusted proxies, and the first
address that is not one is the client. Nothing left of it is ever looked at.

- The peer (the TCP connection's other end) is the client unless it is a trusted proxy;
  only then are `X-Forwarded-For` and `X-Forwarded-Proto` read at all.
- Empty entries are skipped. An entry that is not an IP address (`unknown`, a host name,
  garbage) ends the walk: no trusted proxy wrote it, so neither it nor anything left of
  it can be believed, and the client is taken to be the peer.
- When every entry is a trusted proxy's (or there is no header), the client is the peer:
  the request came from a trusted machine itself.

The trusted proxies are `SEATGUARD_TRUSTED_PROXIES`: IP addresses and CIDR networks,
IPv4 and IPv6, comma-separated (default `127.0.0.1,::1`, a proxy on the same host).
`ProxyHeaders` applies the same rule to every HTTP request (uvicorn's own proxy headers
are off); `sockets.Socket` applies it to the WebSocket upgrade.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ConfigError

__all__ = ["DEFAULT_TRUSTED_PROXIES", "ProxyHeaders", "TrustedProxies", "ip_address", "parse_ip"]

DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = frozenset({"http", "https"})


@lru_cache(maxsize=4096)
def _address(text: str) -> _Address | None:
    """An IP address as a forwarding header or a socket gives it: bare, `v4:port`,
    `[v6]` or `[v6]:port`, an IPv6 zone dropped, IPv4-mapped IPv6 as IPv4; None if not one."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (
            rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit())
        ):
            return None
        text = host
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not (port.isascii() and port.isdigit()):
            return None
    try:
        address = ipaddress.ip_address(text.partition("%")[0] if ":" in text else text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`text` as an IP address (see `_address`: an IPv4-mapped IPv6 address is its IPv4
    address), or None; what every check of a client's address reads it with."""
    return None if len(text) > 64 else _address(text.strip())


def parse_ip(text: str) -> str | None:
    """`text` as the canonical text of an IP address (see `_address`), or None."""
    if len(text) > 64:  # no address is written longer: spare the cache
        return None
    address = _address(text.strip())
    return None if address is None else str(address)


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The proxies whose `X-Forwarded-*` headers count: addresses and networks."""

    addresses: frozenset[_Address]
    networks: tuple[_Network, ...]

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """From a comma-separated list such as `10.0.0.0/8, 192.0.2.7, fd00::/8`; empty
        trusts nobody. A bad entry raises `ConfigError` naming it."""
        addresses: set[_Address] = set()
        networks: list[_Network] = []
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                if "/" in item:
                    networks.append(ipaddress.ip_network(item, strict=True))
                else:
                    addresses.add(ipaddress.ip_address(item))
            except ValueError as exc:
                raise ConfigError(
                    f"SEATGUARD_TRUSTED_PROXIES: {item!r} is not an IP address or a CIDR "
                    f"network such as 10.0.0.0/8 or fd00::/8 ({exc})"
                ) from None
        return cls(frozenset(addresses), tuple(networks))

    def __contains__(self, address: object) -> bool:
        """Whether `address` (an address object, or text a socket gives) is trusted."""
        if isinstance(address, str):
            address = _address(address) if len(address) <= 64 else None
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        return address in self.addresses or any(address in net for net in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address: `peer` unless it is trusted, else the right-most address
        of the `X-Forwarded-For` values (in the order received) that is not a trusted
        proxy's, or `peer` when there is none before an entry that is not an address."""
        if peer not in self:
            return peer
        for hop in reversed(",".join(forwarded_for).split(",")):
            hop = hop.strip()
            if not hop:
                continue
            address = _address(hop) if len(hop) <= 64 else None
            if address is None:
                return peer
            if address not in self:
                return str(address)
        return peer

    def scheme(self, peer: str, forwarded_proto: str | None, default: str) -> str:
        """`X-Forwarded-Proto` from a trusted peer when it says http or https (its first
        value: the one the outermost proxy saw), else `default`."""
        if forwarded_proto is None or peer not in self:
            return default
        first = forwarded_proto.split(",", 1)[0].strip().lower()
        return first if first in _SCHEMES else default


class ProxyHeaders:
    """ASGI middleware: the request's `client` (and `scheme`) as `TrustedProxies` finds
    them, for HTTP requests only."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client"):
            host = scope["client"][0]
            proxies = self.proxies
            if host in proxies:
                forwarded: list[str] = []
                proto = None
                for name, value in scope["headers"]:
                    if name == b"x-forwarded-for":
                        forwarded.append(value.decode("latin-1"))
                    elif name == b"x-forwarded-proto":
                        proto = value.decode("latin-1")
                client = proxies.client(host, forwarded)
                scheme = proxies.scheme(host, proto, scope["scheme"])
                if client != host or scheme != scope["scheme"]:
                    scope = dict(scope)
                    scope["scheme"] = scheme
                    if client != host:
                        scope["client"] = (client, 0)
        await self.app(scope, receive, send)
