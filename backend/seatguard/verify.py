"""Seat token checks for a site's backend: `SeatVerifier`, and `SeatMiddleware` for ASGI apps.

A page sends its tab's seat token in the `Seatguard-Seat` header; the backend checks it
offline against the keys the Seatguard server publishes at `/.well-known/jwks.json`:

    verifier = SeatVerifier(
        "https://seats.example.com/.well-known/jwks.json",
        issuer="https://seats.example.com",  # the server's `public_url`
        audience="pk_...",  # the site key
    )
    claims = await verifier.verify(token)  # raises InvalidSeatToken
    ...
    await verifier.aclose()

The checks follow RFC 8725: the algorithm is pinned (ES256; `none`, HMAC and a key of
another type never verify), the key is the one the token's `kid` names in the key set,
`typ` must be `seat+jwt`, `iss` and `aud` must be the expected ones, `exp` and `iat` must
be there and hold (with `leeway` seconds for clocks), `nbf` too if present, the lifetime
is at most `MAX_TTL`, and `sub`, `sid`, `did` and `jti` must be strings. The key set is
cached (the answer's `max-age`, at least 5 min) and fetched again for an unknown `kid`, at
most once per `refetch_interval`, so that tokens with made-up key ids cannot make the
backend fetch it on every request (`identity.jwks.JwksCache`).

An offline check says the session held a seat when its token was issued (at most the
site's `seat_token_ttl` ago); `POST /api/v1/seats/check` gives the authoritative answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import InvalidSeatToken, KeysUnavailable, SeatTokenExpired
from .identity.jwks import Fetch, JwksCache
from .identity.jws import (
    KeySet,
    check_audience,
    check_issuer,
    check_times,
    token_kid,
    verify_signed,
)
from .seat.keyset import ALGORITHM, MAX_TTL
from .seat.tokens import HEADER, TOKEN_TYPE

__all__ = [
    "InvalidSeatToken",
    "KeysUnavailable",
    "SeatClaims",
    "SeatMiddleware",
    "SeatTokenExpired",
    "SeatVerifier",
    "seat_claims",
]

_ALGORITHMS = (ALGORITHM,)
_TYPES = (TOKEN_TYPE, "application/" + TOKEN_TYPE)  # RFC 7515 §4.1.9: the prefix may go
_WHAT = "seat token"


@dataclass(frozen=True, slots=True)
class SeatClaims:
    """What a valid seat token says."""

    site: str  # `aud`: the site key
    user: str  # `sub`
    session: str  # `sid`: the browser session holding the seat
    device: str  # `did`
    org: str | None
    role: str | None
    issued_at: float  # `iat`
    expires_at: float  # `exp`
    token_id: str  # `jti`
    issuer: str  # `iss`


class SeatVerifier:
    """Checks seat tokens against the key set at `jwks_url` (see the module doc).

    `fetch` and `clock` are for tests; without a `fetch`, the verifier opens an httpx
    client on its first fetch and `aclose()` closes it. The URL is the operator's own
    choice, so private addresses are allowed.
    """

    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str,
        *,
        leeway: float = 5.0,
        refetch_interval: float = 30.0,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not jwks_url.startswith(("https://", "http://")):
            raise ValueError(f"the JWKS URL must be an http(s) URL, not {jwks_url!r}")
        if not 0 <= leeway <= 60:
            raise ValueError("the leeway is 0 to 60 seconds")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._clock = clock
        self._cache = JwksCache(
            fetch, clock=clock, min_interval=refetch_interval, allow_private=True
        )
        self._started = False

    async def verify(self, token: str) -> SeatClaims:
        """The claims of `token`; InvalidSeatToken saying why it is refused (its subclass
        SeatTokenExpired when expiry is all that is wrong), or KeysUnavailable when the
        key set cannot be had (the token may be good)."""
        if not self._started:
            await self._cache.start()
            self._started = True
        kid = token_kid(token)  # unverified: only to pick the key
        keys = (
            KeySet((), by_kid=True)  # no key without a kid: verify_signed says what is wrong
            if kid is None
            else await self._cache.keys(self.jwks_url, _ALGORITHMS, kid=kid)
        )
        header, claims = verify_signed(token, keys, _ALGORITHMS, error=InvalidSeatToken, what=_WHAT)
        return seat_claims(
            header,
            claims,
            issuer=self.issuer,
            audience=self.audience,
            now=self._clock(),
            leeway=self.leeway,
        )

    async def aclose(self) -> None:
        """Stop fetches under way and close the HTTP client."""
        await self._cache.aclose()
        self._started = False

    async def __aenter__(self) -> SeatVerifier:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def seat_claims(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: float,
) -> SeatClaims:
    """The claims of a seat token whose signature checked out (see the module doc), or
    InvalidSeatToken saying why not; SeatTokenExpired when expiry is all that is wrong
    with it. Times are checked last, so a token of another issuer or site is refused as
    such, never as expired."""
    err = InvalidSeatToken
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYPES:
        raise err(f"seat token type {typ!r} is not {TOKEN_TYPE!r}")
    check_issuer(claims, issuer, error=err, what=_WHAT)
    check_audience(claims, audience, error=err, what=_WHAT)
    text = {}
    for name in ("sub", "sid", "did", "jti"):
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            raise err(f"seat token claim {name!r} is missing or not a string")
        text[name] = value
    optional = {}
    for name in ("org", "role"):
        value = claims.get(name)
        if value is not None and not isinstance(value, str):
            raise err(f"seat token claim {name!r} is not a string")
        optional[name] = value
    if "iat" not in claims:
        raise err("seat token has no 'iat' claim")
    exp, iat = check_times(
        claims, now=now, leeway=leeway, error=err, what=_WHAT, expired=SeatTokenExpired
    )
    assert iat is not None  # there, and a NumericDate: check_times reads it
    if exp - iat > MAX_TTL:
        raise err(f"seat token lives {exp - iat:g} s, more than {MAX_TTL} s")
    return SeatClaims(
        site=audience,
        user=text["sub"],
        session=text["sid"],
        device=text["did"],
        org=optional["org"],
        role=optional["role"],
        issued_at=iat,
        expires_at=exp,
        token_id=text["jti"],
        issuer=issuer,
    )


class SeatMiddleware:
    """An ASGI middleware that lets through only requests with a valid seat token.

    The token comes in `header` (exactly one of it). A request without one, or with a
    refused one, is answered 401 with a `WWW-Authenticate: Seatguard-Seat` challenge and a
    problem details body; 503 with `Retry-After` while the key set cannot be had. A
    WebSocket is closed with 1008 (policy violation) in either case. The claims of a
    valid token are put in `scope["state"]["seat"]` (Starlette: `request.state.seat`).
    """

    def __init__(
        self, app: ASGIApp, verifier: SeatVerifier, *, header: str = HEADER, realm: str = "seat"
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.header = header.lower().encode("latin-1")
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        values = [value for name, value in scope["headers"] if name == self.header]
        status, detail, retry = 401, "", 0.0
        if len(values) != 1:
            detail = f"send one {self.header.decode()} header" + (" only" if values else "")
        else:
            try:
                claims = await self.verifier.verify(values[0].decode("latin-1").strip())
            except InvalidSeatToken as exc:
                detail = str(exc)
            except KeysUnavailable as exc:
                status, detail, retry = 503, str(exc), exc.retry_after
            else:
                scope.setdefault("state", {})["seat"] = claims
                await self.app(scope, receive, send)
                return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await self._refuse(send, status, detail, retry, token_sent=len(values) == 1)

    async def _refuse(
        self, send: Send, status: int, detail: str, retry: float, *, token_sent: bool
    ) -> None:
        title = "Unauthorized" if status == 401 else "Service unavailable"
        body = json.dumps({"title": title, "status": status, "detail": detail}).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 401:
            challenge = f'Seatguard-Seat realm="{self.realm}"'
            if token_sent:  # RFC 6750 §3.1: an error only when a token came
                challenge += f', error="invalid_token", error_description="{_quotable(detail)}"'
            headers.append((b"www-authenticate", challenge.encode("latin-1")))
        else:
            headers.append((b"retry-after", str(max(1, round(retry))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _quotable(text: str) -> str:
    """`text` as a quoted-string's content: printable ASCII, no quote or backslash, short."""
    kept = "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)
    return kept[:200]
