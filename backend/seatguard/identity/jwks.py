"""Key sets published at a `jwks_uri`: fetched on first use, cached, refreshed on rotation.

OpenID providers and site backends publish their signing keys as a JWKS document at a URL
and rotate them. The node keeps one `JwksCache` for every site and purpose:

- a URL is fetched the first time a token needs its keys, and the set is kept for the
  response's `Cache-Control: max-age`, bounded to [5 min, 24 h] (1 h when it gives none);
  a set past that age is still used while its refresh runs in the background;
- a token whose `kid` the set lacks (the provider rotated its keys) waits for a refetch,
  but each URL is fetched at most once per 30 s, so tokens with made-up key ids cannot make
  the node hammer the provider: within that time they are checked against the set held;
- concurrent verifications needing one URL share one fetch (single flight);
- a fetch is bounded in time (5 s in all) and size (512 KiB) and must give a JSON object
  with a `keys` array of valid keys;
- when a refresh fails the last good set is kept (and a warning logged); with no good set
  at all, `keys` raises `KeysUnavailable`.

Keys are built by `KeySet.from_jwks` for the algorithms the caller pins, exactly as for a
stored document. Time comes from the injected clock (monotonic by default), so tests drive
expiry without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import httpx

from .. import __version__, outbound
from ..errors import ConfigError, KeysUnavailable
from .jws import ASYMMETRIC, KeySet

__all__ = [
    "JWKS_URI_PATTERN",
    "MAX_URI",
    "Fetch",
    "Fetched",
    "JwksCache",
    "check_jwks_uri",
    "httpx_fetch",
    "max_age",
]

log = logging.getLogger("seatguard")

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts a `jwks_uri` may reach over plain http (tests and local development)."""

MAX_URI = 2048


def _anycase(word: str) -> str:
    """`word` in a pattern that ignores case without a flag (JSON Schema has none)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
_LOCAL = "|".join(_anycase(host) for host in ("localhost", "127.0.0.1"))
JWKS_URI_PATTERN = (
    rf"^(?:{_anycase('https://')}(?:[A-Za-z0-9_.-]+|\[::1\])"
    rf"|{_anycase('http://')}(?:{_LOCAL}|\[::1\]))"
    + _PORT
    + r"(?:[/?][A-Za-z0-9._~!$&()*+,;=:@/?%-]*)?$"
)
"""Every JWKS URI `check_jwks_uri` accepts matches this (its last check), so that the REST
API's schema can show it: a host name or address, a port, a path and query of the
characters URLs are written with, and nothing else."""
_JWKS_URI = re.compile(JWKS_URI_PATTERN)


def check_jwks_uri(value: str) -> str:
    """A JWKS URL as given, once it is an https URL (http only to this machine).

    Raise ConfigError saying what is wrong.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError("a JWKS URI must be a non-empty URL")
    if len(value) > MAX_URI:
        raise ConfigError(f"a JWKS URI has at most {MAX_URI} characters")
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"JWKS URI {value!r} has spaces or characters URLs do not have")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError as exc:
        raise ConfigError(f"JWKS URI {value!r} is not a URL: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(f"JWKS URI {value!r} must be an https:// URL")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise ConfigError(
            f"JWKS URI {value!r} must use https (http only for localhost, 127.0.0.1 or ::1)"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"JWKS URI {value!r} must not carry a user name or password")
    if parts.fragment or "#" in value:
        raise ConfigError(f"JWKS URI {value!r} must not have a #fragment")
    if not _JWKS_URI.match(value):
        raise ConfigError(
            f"JWKS URI {value!r} is not a plain URL: a host name or address, an optional "
            "port, a path and query of letters, digits and - . _ ~ ! $ & ( ) * + , ; = : @ / ? %"
        )
    return value


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a key set URL answered."""

    status: int
    body: bytes  # at most the limit asked for, plus one byte to show it was over
    cache_control: str | None = None


Fetch: TypeAlias = Callable[[str, int], Awaitable[Fetched]]
"""GETs a URL reading at most `limit + 1` bytes of body; raises on network errors."""


def httpx_fetch(client: httpx.AsyncClient) -> Fetch:
    """A fetch through `client` (which the caller owns and closes); redirects not followed."""

    async def fetch(url: str, limit: int) -> Fetched:
        headers = {"accept": "application/jwk-set+json, application/json"}
        async with client.stream("GET", url, headers=headers, follow_redirects=False) as reply:
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    break
            return Fetched(
                reply.status_code, bytes(body[: limit + 1]), reply.headers.get("cache-control")
            )

    return fetch


def max_age(cache_control: str | None, *, default: float, low: float, high: float) -> float:
    """Seconds to keep a response: its `max-age` (0 for `no-store`/`no-cache`), else
    `default`, bounded to [low, high]."""
    seconds = default
    for directive in (cache_control or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            seconds = 0
            break
        if name == "max-age":
            value = value.strip().strip('"')
            if value.isdigit():
                seconds = int(value)
    return min(max(seconds, low), high)


@dataclass(slots=True)
class _Entry:
    """What the cache holds for one URL."""

    document: dict[str, Any] | None = None  # the last good key set
    kids: frozenset[str] = frozenset()  # its key ids
    fresh_until: float = -math.inf  # refetched once this is past
    attempted: float = -math.inf  # when the last fetch began
    error: str = ""  # why the last fetch failed, if it did
    flight: asyncio.Task[None] | None = None  # the fetch under way
    sets: dict[tuple[str, ...], KeySet] = field(default_factory=dict)  # by pinned algorithms


class JwksCache:
    """The key sets of `jwks_uri` URLs, for every site of the node (see the module doc).

    Without a `fetch`, the first fetch after `start()` opens an `httpx.AsyncClient` (most
    nodes never need one) that reaches public addresses only, unless `allow_private`
    (`outbound.py`), and `aclose()` closes it; before `start()` every fetch fails. The
    bounds are parameters so tests can vary them.
    """

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 5.0,  # seconds a fetch may take in all
        max_bytes: int = 512 * 1024,  # larger documents are refused
        min_ttl: float = 300.0,  # shortest time a set is kept
        max_ttl: float = 86_400.0,  # longest time a set is kept
        default_ttl: float = 3600.0,  # when the response gives no max-age
        min_interval: float = 30.0,  # at most one fetch per URL this often
        max_urls: int = 1000,  # the least recently used URL is forgotten past this
        allow_private: bool = False,  # let URLs reach loopback and private addresses
    ) -> None:
        positive = (timeout, max_bytes, min_interval, max_urls)
        if (
            not all(0 < x < math.inf for x in positive)
            or not 0 <= min_ttl <= default_ttl <= max_ttl
        ):
            raise ConfigError("JWKS cache bounds must be positive and min <= default <= max ttl")
        self._fetch = fetch
        self._clock = clock
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._ttl = (min_ttl, default_ttl, max_ttl)
        self._min_interval = min_interval
        self._max_urls = max_urls
        self._allow_private = allow_private
        self._client: httpx.AsyncClient | None = None
        self._started = False
        self._entries: dict[str, _Entry] = {}

    async def start(self) -> None:
        """From now on the cache opens its HTTP client when a fetch first needs it."""
        self._started = True

    async def aclose(self) -> None:
        """Stop the fetches under way and close the HTTP client the cache opened."""
        flights = [e.flight for e in self._entries.values() if e.flight is not None]
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)
        self._started = False
        if self._client is not None:
            await self._client.aclose()
            self._client, self._fetch = None, None  # the fetch was through that client

    async def idle(self) -> None:
        """Wait until no fetch is under way."""
        while flights := [e.flight for e in self._entries.values() if e.flight is not None]:
            await asyncio.gather(*flights, return_exceptions=True)

    async def keys(self, url: str, algorithms: tuple[str, ...], *, kid: object = None) -> KeySet:
        """The keys at `url` usable with `algorithms`, for a token whose `kid` header is `kid`.

        Fetches the set when none is held, and waits for a refetch when `kid` is a key id
        the held set lacks (at most once per `min_interval`); a set past its age is
        refreshed in the background meanwhile. Raises KeysUnavailable when no good set
        could be had, or the one held has no key for `algorithms`.
        """
        entry = self._entry(url)
        now = self._clock()
        if entry.document is None or (isinstance(kid, str) and kid not in entry.kids):
            flight = self._refetch(url, entry, now)
            if flight is not None:
                await asyncio.shield(flight)
        elif now >= entry.fresh_until:
            self._refetch(url, entry, now)
        if entry.document is None:
            retry = max(0.0, entry.attempted + self._min_interval - self._clock())
            raise KeysUnavailable(
                f"the signing keys at {url} could not be fetched: {entry.error}",
                reason=entry.error,
                retry_after=retry,
            )
        found = entry.sets.get(algorithms)
        if found is None:
            try:
                found = entry.sets[algorithms] = KeySet.from_jwks(entry.document, algorithms)
            except ConfigError as exc:
                raise KeysUnavailable(
                    f"the key set at {url} cannot be used: {exc}",
                    reason=str(exc),
                    retry_after=self._min_interval,
                ) from None
        return found

    def _entry(self, url: str) -> _Entry:
        """The entry of `url`, made most recently used; the oldest idle one goes past the cap."""
        entry = self._entries.pop(url, None)
        if entry is None:
            entry = _Entry()
            if len(self._entries) >= self._max_urls:
                for old, held in self._entries.items():
                    if held.flight is None:
                        del self._entries[old]
                        break
        self._entries[url] = entry
        return entry

    def _refetch(self, url: str, entry: _Entry, now: float) -> asyncio.Task[None] | None:
        """The fetch of `url` under way, starting one unless one began too recently."""
        if entry.flight is None and now - entry.attempted >= self._min_interval:
            entry.attempted = now
            entry.flight = asyncio.create_task(self._run(url, entry))
        return entry.flight

    async def _run(self, url: str, entry: _Entry) -> None:
        try:
            document, kids, ttl = await self._get(url)
        except Exception as exc:  # anything the network or the document throws at us
            entry.error = str(exc) or type(exc).__name__
            kept = "keeping the last good set" if entry.document is not None else "no keys yet"
            log.warning("could not fetch the signing keys at %s: %s; %s", url, entry.error, kept)
        else:
            entry.document, entry.kids, entry.sets = document, kids, {}
            entry.error = ""
            entry.fresh_until = self._clock() + ttl
        finally:
            entry.flight = None

    async def _get(self, url: str) -> tuple[dict[str, Any], frozenset[str], float]:
        """Fetch and check one key set: its document, its key ids, how long to keep it."""
        if self._fetch is None:
            if not self._started:
                raise RuntimeError("the JWKS cache was not started")
            self._client = outbound.client(
                timeout=self._timeout,
                user_agent=f"Seatguard/{__version__}",
                allow_private=self._allow_private,
            )
            self._fetch = httpx_fetch(self._client)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._fetch(url, self._max_bytes)
        except TimeoutError:
            raise _Refused(f"no answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _Refused(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from None
        if reply.status != 200:
            hint = " (redirects are not followed)" if 300 <= reply.status < 400 else ""
            raise _Refused(f"HTTP {reply.status}{hint}")
        if len(reply.body) > self._max_bytes:
            raise _Refused(f"the document is over {self._max_bytes} bytes")
        try:
            document = json.loads(reply.body)
        except (ValueError, RecursionError):
            raise _Refused("the document is not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise _Refused("the document is not a JWKS (a JSON object with a 'keys' array)")
        try:
            every = KeySet.from_jwks(document, ASYMMETRIC)  # each signing key must be valid
        except ConfigError as exc:
            raise _Refused(str(exc)) from None
        kids = frozenset(k.kid for k in every.keys if k.kid is not None)
        low, default, high = self._ttl
        ttl = max_age(reply.cache_control, default=default, low=low, high=high)
        return document, kids, ttl


class _Refused(Exception):
    """A fetch that did not give a usable key set; the message says why."""
