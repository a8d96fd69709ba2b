"""Outbound HTTP to URLs a site chose (JWKS URIs, webhook endpoints): public addresses only.

A site's secret key can set its `oidc_jwks_uri` and `identity_jwks_uri`, and the server then
fetches them: without a guard, a tenant could make the server reach its own loopback ports
or the machines of its private network (server-side request forgery). So, unless the
operator allows private addresses (`SEATGUARD_ALLOW_PRIVATE_URLS`, for development, tests
and the demo), every connection the server makes for a site:

- resolves the URL's host itself and keeps only public addresses (`is_public`): no
  loopback, private, link-local, unspecified, multicast, reserved, shared (CGNAT) or
  documentation range, in IPv4 or IPv6, nor an IPv6 address carrying such an IPv4 one
  (IPv4-mapped, 6to4, Teredo); a name such as `localhost` is judged by what it resolves to;
- connects to the very address it checked, so a name that resolves differently a moment
  later (DNS rebinding) cannot slip through; TLS still names the URL's host (SNI and
  certificate check) and so does the Host header, because httpcore passes its origin's host
  to `start_tls` and the request keeps its URL.

The hook is httpcore's `network_backend` (a documented argument of its connection pool),
installed under httpx's transport, whose `_pool` attribute is not public: pyproject.toml
bounds both versions. `check_literal` refuses, when a URL is set, what can be told from
the URL alone (an IP literal or a local name); the connection-time check is the one that
holds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import httpcore
import httpx

from .errors import ConfigError

__all__ = [
    "LOCAL_NAMES",
    "PrivateAddress",
    "PublicOnly",
    "PublicTransport",
    "Resolve",
    "check_literal",
    "client",
    "getaddrinfo",
    "is_public",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

LOCAL_NAMES = ("localhost", "localhost.", "localhost.localdomain")
"""Names that are this machine whatever DNS says (RFC 6761 §6.3), and their subdomains."""


class PrivateAddress(httpcore.ConnectError):
    """A host resolved to no public address; httpx reports it as a ConnectError."""


_SPECIAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
"""IANA special-purpose ranges, spelled out: `ipaddress` knows fewer of them in older Pythons."""


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a globally reachable unicast address a site may make us connect to."""
    if any(ip in network for network in _SPECIAL):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(embedded):
            return False
        if ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
    )


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone id is not ours
    except ValueError:
        return None


def check_literal(url: str, what: str) -> None:
    """Refuse a URL whose host is, as written, a non-public IP address or a local name.

    Raise ConfigError saying so. Names that resolve to private addresses pass here and are
    refused when connecting.
    """
    host = (urlsplit(url).hostname or "").lower()
    ip = _address(host)
    local = host in LOCAL_NAMES or host.endswith(".localhost") or host.endswith(".localhost.")
    if local or (ip is not None and not is_public(ip)):
        raise ConfigError(
            f"{what} {url!r} points to a local or private address; the server reaches only "
            "public addresses (an operator may allow others: SEATGUARD_ALLOW_PRIVATE_URLS)"
        )


Resolve: TypeAlias = Callable[[str, int], Awaitable[list[str]]]
"""The addresses of a host name, as text (an IP literal resolves to itself)."""


async def getaddrinfo(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, each once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicOnly(httpcore.AsyncNetworkBackend):
    """Resolves each host once, keeps the addresses `allowed` accepts, connects to one.

    `inner` makes the connection (httpcore's anyio backend by default), always to an
    address, never to a name, so nothing is resolved again after the check.
    """

    def __init__(
        self,
        *,
        resolve: Resolve = getaddrinfo,
        allowed: Callable[[IPAddress], bool] = is_public,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolve = resolve
        self._allowed = allowed
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                found = await self._resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        usable = [a for a in found if (ip := _address(a)) is not None and self._allowed(ip)]
        if not usable:
            raise PrivateAddress(
                f"{host} resolves to no public address ({', '.join(found) or 'none'}); "
                "private addresses are refused (SEATGUARD_ALLOW_PRIVATE_URLS)"
            )
        error: Exception | None = None
        for address in usable:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise PrivateAddress("unix sockets are never reached for a site")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PublicTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go through `backend`."""

    def __init__(
        self, *, backend: PublicOnly | None = None, verify: ssl.SSLContext | bool = True
    ) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            network_backend=backend if backend is not None else PublicOnly(),
        )


def client(*, timeout: float, user_agent: str, allow_private: bool) -> httpx.AsyncClient:
    """An HTTP client for URLs a site chose: public addresses only unless `allow_private`.

    No proxy from the environment either way (a proxy would connect on our behalf).
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False) if allow_private else PublicTransport()
    return httpx.AsyncClient(
        timeout=timeout,
        headers={"user-agent": user_agent},
        transport=transport,
        trust_env=False,
    )
