"""Seat tokens: short-lived JWTs (RFC 7519) that say a browser session holds a seat.

A page sends its tab's token with its own requests (header `Seatguard-Seat`), and the
site's backend checks it offline against `/.well-known/jwks.json` (`seatguard.verify`).
Header: `alg` ES256, `kid`, `typ` `seat+jwt` (explicit typing, RFC 8725 §3.11), so a seat
token is never taken for another kind of JWT. Claims:

- `iss` the server's public URL (`Settings.issuer`), `aud` the site key, `sub` the user;
- `sid` the browser session, `did` the device; `org` and `role` when the user has them;
- `iat`, `exp` (`iat` + the site's `seat_token_ttl`), `jti` unique to the token.

PyJWT signs (its JWS layer: the claims are encoded here, with msgspec, as the JWT layer
would with the standard library's json, only faster); nothing here touches the signature.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec

from ..errors import ConfigError
from .keyset import ALGORITHM, DEFAULT_TTL, MAX_TTL, MIN_TTL
from .source import SeatKeyRing

__all__ = ["HEADER", "TOKEN_TYPE", "SeatToken", "SeatTokens", "Wanted"]

TOKEN_TYPE = "seat+jwt"
"""The `typ` header of every seat token."""

HEADER = "Seatguard-Seat"
"""The request header a page sends its seat token in."""

_JWS = jwt.PyJWS()


@dataclass(frozen=True, slots=True)
class SeatToken:
    """One issued token and when it expires (give the tab a new one before then)."""

    token: str
    expires_at: int  # its `exp`, seconds since the epoch
    kid: str  # the key that signed it


class TokenIds:
    """Unique token ids without a system call each: 16 random bytes drawn once, then a
    counter (`jti` need only be unique; it is no secret, and no token is guessed by it)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_urlsafe(16)
        self._count = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}.{next(self._count):x}"


@dataclass(frozen=True, slots=True)
class Wanted:
    """A token asked for (`SeatTokens.issue_soon`): `issue`'s arguments."""

    site: str
    user: str
    session: str
    device: str
    org: str | None = None
    role: str | None = None
    ttl: int = DEFAULT_TTL


class SeatTokens:
    """Issues the seat tokens of one server, signed with its seat keys, and publishes the
    keys that verify them."""

    def __init__(
        self, keys: SeatKeyRing, issuer: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self._clock = clock
        self._ids = TokenIds()
        self._wanted: list[tuple[Wanted, asyncio.Future[SeatToken]]] = []

    async def issue_soon(self, wanted: Wanted) -> SeatToken:
        """`issue`, signed together with every token asked for in the same turn of the event
        loop, one right after another.

        In a login storm the hellos that a group commit lets through together all reach
        their tokens in one turn. Signed in one go, the signatures find the signing code and
        its tables in the caches, and leave the rest of each login's work its own: signed one
        per login, in between, a signature costs about twice as much CPU, and the login
        around it more (docs/performance.md)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SeatToken] = loop.create_future()
        if not self._wanted:
            loop.call_soon(self._sign_wanted)
        self._wanted.append((wanted, future))
        return await future

    def _sign_wanted(self) -> None:
        wanted, self._wanted = self._wanted, []
        for w, future in wanted:
            if future.done():  # its tab went away meanwhile
                continue
            try:
                future.set_result(
                    self.issue(
                        site=w.site,
                        user=w.user,
                        session=w.session,
                        device=w.device,
                        org=w.org,
                        role=w.role,
                        ttl=w.ttl,
                    )
                )
            except Exception as e:  # the caller's to log (a token it could not get)
                future.set_exception(e)

    def issue(
        self,
        *,
        site: str,
        user: str,
        session: str,
        device: str,
        org: str | None = None,
        role: str | None = None,
        ttl: int = DEFAULT_TTL,
    ) -> SeatToken:
        """A token for a session of `user` on `site` that holds a seat now, valid `ttl`
        seconds (the site's `seat_token_ttl`, from `MIN_TTL` to `MAX_TTL`)."""
        if isinstance(ttl, bool) or not MIN_TTL <= ttl <= MAX_TTL:
            raise ConfigError(f"a seat token lives {MIN_TTL} to {MAX_TTL} seconds, not {ttl!r}")
        now = int(self._clock())
        key = self.keys.current().signing(now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": site,
            "sub": user,
            "sid": session,
            "did": device,
            "iat": now,
            "exp": now + int(ttl),
            "jti": self._ids.next(),
        }
        if org is not None:
            claims["org"] = org
        if role is not None:
            claims["role"] = role
        headers = {"kid": key.kid, "typ": TOKEN_TYPE}
        payload = msgspec.json.encode(claims)
        token = _JWS.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers=headers, sort_headers=False
        )
        return SeatToken(token, claims["exp"], key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set that verifies every token still valid."""
        return self.keys.current().jwks(self._clock())
