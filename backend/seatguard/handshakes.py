"""Connections that have not finished their handshake: how long, how big, how many.

Every connection is a file, and a client can open one and then say nothing, or half a
request: without a bound, a few hundred such sockets use up the process's open files and
lock out every site. So from accept until its request head is in (plain HTTP) or its hello
is answered (`/ws/v1`), a connection

- must send its request head within `handshake_timeout` (after the upgrade, the hello
  timeout takes over), or it is aborted;
- may send at most `max_head_bytes` of request head, or it is answered 431 (414 for the
  request line alone) and closed;
- counts against `max_handshakes`, and against `max_handshakes_per_ip` for its TCP peer
  (IPv6: its /64). A connection over either cap is answered a minimal `503` with
  `Retry-After: 1` and closed at once, before a byte of it is read.

The trusted proxies (`SEATGUARD_TRUSTED_PROXIES`, see `proxies`) are exempt from the
per-address cap: behind one, every browser shares its address (the overall cap still holds).
Refusals and timeouts are logged through `RateLog`, at most one line of each kind per 10 s.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sized

from .proxies import TrustedProxies
from .ratelog import RateLog
from .settings import Settings

__all__ = [
    "Handshake",
    "Handshakes",
    "client_key",
    "default_limit",
    "head_size",
    "plain_response",
]

log = logging.getLogger("seatguard")

_refused = RateLog(log, logging.WARNING)
_timed_out = RateLog(log, logging.INFO)


def default_limit(open_files: int) -> int:
    """Unfinished handshakes allowed at once when the settings leave it to the process: a
    quarter of its open-files limit, so that most files stay for the sockets that got in,
    the database and the logs."""
    return max(16, open_files // 4)


def client_key(ip: str) -> str:
    """Whom the per-address cap counts a peer as: its IPv4 address, or its IPv6 /64 (one
    subscriber's share, which a single client can fill with addresses)."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip.partition("%")[0])
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def head_size(target: Sized, fields: Iterable[tuple[Sized, Sized]]) -> int:
    """The size of a parsed request head, near enough: its target and header fields, with
    their separators; what a parser holds of it."""
    return len(target) + sum(len(name) + len(value) + 4 for name, value in fields)


def plain_response(status: int, reason: str, text: str, *headers: str) -> bytes:
    """A minimal HTTP/1.1 response that closes the connection, for refusals written
    before (or instead of) any framework seeing the request."""
    body = text.encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        *headers,
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


_BUSY = plain_response(
    503, "Service Unavailable", "too many unfinished connections; try again\n", "Retry-After: 1"
)


class Handshakes:
    """The caps and counts of unfinished handshakes of one server process."""

    __slots__ = (
        "_by_key",
        "count",
        "limit",
        "max_head",
        "per_ip",
        "proxies",
        "refused",
        "timed_out",
        "timeout",
    )

    def __init__(
        self,
        *,
        timeout: float,
        max_head: int,
        limit: int,
        per_ip: int,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.timeout = timeout  # seconds from accept to a complete request head
        self.max_head = max_head  # bytes of request head
        self.limit = limit  # unfinished handshakes at once
        self.per_ip = per_ip  # of those from one client (see `client_key`)
        # exempt from `per_ip` (default: the settings' default)
        self.proxies = proxies if proxies is not None else Settings().proxies
        self.count = 0
        self.refused = 0  # connections turned away since start
        self.timed_out = 0  # connections aborted for a request head not in time
        self._by_key: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, open_files: int, proxies: TrustedProxies | None = None
    ) -> Handshakes:
        """The caps `settings` ask for; `open_files` is the process's soft limit; `proxies`
        the settings' trusted proxies, if already parsed."""
        return cls(
            timeout=settings.handshake_timeout,
            max_head=settings.max_head_bytes,
            limit=settings.max_handshakes or default_limit(open_files),
            per_ip=settings.max_handshakes_per_ip,
            proxies=settings.proxies if proxies is None else proxies,
        )

    def enter(self, ip: str) -> str | None:
        """Count a new connection from `ip`; its key for `leave`, or None when a cap is full
        (the connection must be turned away)."""
        if self.count >= self.limit:
            self.refused += 1
            _refused(
                "refusing connections: %d handshakes unfinished (limit %d; a client from %s)",
                self.count,
                self.limit,
                ip,
            )
            return None
        key = "" if ip in self.proxies else client_key(ip)
        if key:
            held = self._by_key.get(key, 0)
            if held >= self.per_ip:
                self.refused += 1
                _refused(
                    "refusing connections from %s: %d handshakes unfinished (limit %d each)",
                    key,
                    held,
                    self.per_ip,
                )
                return None
            self._by_key[key] = held + 1
        self.count += 1
        return key

    def leave(self, key: str) -> None:
        """A connection counted under `key` finished its handshake or closed."""
        self.count -= 1
        if key:
            held = self._by_key[key] - 1
            if held:
                self._by_key[key] = held
            else:
                del self._by_key[key]

    def stats(self) -> dict[str, int]:
        """For `/healthz`: unfinished handshakes now, their cap, and how many were turned
        away or timed out since start."""
        return {
            "unfinished": self.count,
            "limit": self.limit,
            "refused": self.refused,
            "timed_out": self.timed_out,
        }

    def start(self, transport: asyncio.Transport) -> Handshake | None:
        """A new connection's handshake, timed from now; None when it was turned away (it
        was answered 503 and is closing)."""
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else ""
        key = self.enter(ip)
        if key is None:
            transport.write(_BUSY)
            transport.close()
            return None
        return Handshake(self, key, ip, transport)


class Handshake:
    """One connection's way from accept to its hello: its place under the caps and its
    deadline. Whichever protocol holds the connection calls `done` once it is past the
    handshake, or closed; the timer never outlives that."""

    __slots__ = ("_gate", "_key", "_timer", "_transport", "ip")

    def __init__(self, gate: Handshakes, key: str, ip: str, transport: asyncio.Transport) -> None:
        self._gate: Handshakes | None = gate
        self._key = key
        self.ip = ip
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(gate.timeout, self._expired)

    @property
    def max_head(self) -> int:
        """Bytes a request head may take (0 once done)."""
        return self._gate.max_head if self._gate is not None else 0

    @property
    def timeout(self) -> float:
        """Seconds a request head may take (0 once done)."""
        return self._gate.timeout if self._gate is not None else 0.0

    def upgraded(self) -> None:
        """The request head is in and the socket upgraded: the hello timeout takes over
        from here, and the connection still counts until its hello is answered."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def done(self) -> None:
        """Past the handshake, or closed: stop the timer and free the place (idempotent)."""
        self.upgraded()
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.leave(self._key)

    def _expired(self) -> None:
        self._timer = None
        gate = self._gate
        assert gate is not None  # `done` cancels the timer
        gate.timed_out += 1
        _timed_out(
            "closed a connection from %s that sent no complete request within %g s",
            self.ip,
            gate.timeout,
        )
        self._transport.abort()  # not close(): nothing it has not read is worth waiting for
