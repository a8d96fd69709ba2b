"""`POST /api/v1/seats/check`: whether the session behind a seat token holds a seat now.

The authoritative answer, beside the offline one of `seatguard.verify`: the token is
checked as strictly as there (pinned ES256, `typ`, `iss`, `aud`, times, claims) against
this server's own published keys, retired ones included, then the session it names is
looked up in the shared presence store, so that a revoked, blocked or ended session fails
at once on every node, its token unexpired. The answer follows RFC 7662 (token
introspection): 200 with `active`, the token's claims when true, and when false a
`reason` from `InactiveReason` and a plain `detail`. A token of another site is
`invalid`, whatever its session does: nothing of another site is told. While the store
cannot be reached the answer is 503 (`api._authenticated` maps `StoreUnavailable`), never
a guess.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidSeatToken, SeatTokenExpired
from ..identity.jws import MAX_TOKEN_BYTES, KeySet, VerifyKey, token_kid, verify_signed
from ..inputs import read_json
from ..node import Node
from ..presence import Refusal, SeatState, UserPresence
from ..sites import Site
from ..verify import SeatClaims, seat_claims
from .keyset import ALGORITHM, SeatKeySet
from .tokens import SeatTokens

__all__ = [
    "LEEWAY",
    "InactiveReason",
    "SeatActiveOut",
    "SeatCheckIn",
    "SeatInactiveOut",
    "VerifiedSeats",
    "check_seat",
    "own_claims",
    "verdict",
]

LEEWAY = 5.0
"""Seconds of clock difference between nodes allowed on `exp`, `iat` and `nbf`: the
default of `SeatVerifier`."""

InactiveReason = Literal["invalid", "expired", "blocked", "revoked", "ended"]
"""Why a token is not active: `invalid` (not a seat token of this server for the caller's
site), `expired` (its own `exp` passed), `blocked` (its session waits for a seat),
`revoked` (its session was revoked), `ended` (its session is gone: signed out, closed,
timed out)."""


class SeatCheckIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_BYTES)]


class SeatActiveOut(msgspec.Struct, omit_defaults=True):
    """The session holds a seat; the token's claims."""

    active: Literal[True]
    sub: str
    sid: str
    did: str
    aud: str
    iss: str
    exp: int
    iat: int
    jti: str
    org: str | UnsetType = UNSET
    role: str | UnsetType = UNSET


class SeatInactiveOut(msgspec.Struct):
    """The token gives no seat, and why."""

    active: Literal[False]
    reason: InactiveReason
    detail: str


_NO_KEY = KeySet((), by_kid=True)  # a token without a kid: verify_signed says so


def _keys(keys: SeatKeySet, now: float) -> KeySet:
    """The public keys of every published key, each for its `kid`."""
    published = keys.published(now)
    verify = (VerifyKey(ALGORITHM, k.private_key.public_key(), k.kid) for k in published)
    return KeySet(tuple(verify), by_kid=True)


def own_claims(tokens: SeatTokens, token: str, *, audience: str, now: float) -> SeatClaims:
    """The claims of `token` if this server signed it for `audience` and it holds at
    `now`; InvalidSeatToken (SeatTokenExpired) saying why not."""
    keys = _keys(tokens.keys.current(), now) if token_kid(token) is not None else _NO_KEY
    header, claims = verify_signed(
        token, keys, (ALGORITHM,), error=InvalidSeatToken, what="seat token"
    )
    return seat_claims(
        header, claims, issuer=tokens.issuer, audience=audience, now=now, leeway=LEEWAY
    )


class VerifiedSeats:
    """The claims of the seat tokens this node verified, by site and token, until they
    expire: a gateway checks the same token with every request of a tab until the tab's
    next token, and its signature (the ES256 verification, the larger part of a check's own
    work) is verified once.

    What a token's bytes say cannot change, so a kept token is as valid as when it was
    verified but for time: each use checks that the key that signed it is still published
    and its `iat` and expiry against `now`, as `own_claims` does; a token that fails is
    dropped, and refused as `own_claims` would refuse it. Only verified tokens are kept,
    at most `size`, the oldest verified dropped first: only this server can make one, so
    nobody can fill it with forgeries."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._kept: dict[tuple[str, str], tuple[SeatClaims, str]] = {}

    def claims(self, tokens: SeatTokens, token: str, *, audience: str, now: float) -> SeatClaims:
        """`own_claims(tokens, token, audience=audience, now=now)`, verified once."""
        kept = self._kept.get((audience, token))
        if kept is not None:
            claims, kid = kept
            published = tokens.keys.current().published(now)
            if claims.issued_at <= now + LEEWAY and any(k.kid == kid for k in published):
                if claims.expires_at > now - LEEWAY:
                    return claims
                del self._kept[(audience, token)]
                raise SeatTokenExpired("seat token expired")
            del self._kept[(audience, token)]
        claims = own_claims(tokens, token, audience=audience, now=now)
        signer = token_kid(token)
        assert signer is not None  # verified against the key it names
        if len(self._kept) >= self._size:
            del self._kept[next(iter(self._kept))]
        self._kept[(audience, token)] = (claims, signer)
        return claims


def verdict(up: UserPresence, claims: SeatClaims) -> tuple[InactiveReason, str] | None:
    """None when the session of `claims` holds a seat in the user's snapshot `up`, else
    why not."""
    session = up.sessions.get(claims.session)
    if session is not None and session.device == claims.device:
        if up.state(session.id) is SeatState.admitted:
            return None
        return "blocked", f"the session waits for a seat (reason: {session.reason.value})"
    tombstone = up.tombstones.get(claims.session)
    if tombstone is not None and tombstone[0] is Refusal.revoked:
        return "revoked", "the session was revoked"
    return "ended", "the session ended: signed out, closed, gone silent or timed out"


def _answer(out: SeatActiveOut | SeatInactiveOut) -> Response:
    return Response(msgspec.json.encode(out), media_type="application/json")


def _inactive(reason: InactiveReason, detail: str) -> Response:
    return _answer(SeatInactiveOut(False, reason, detail))


async def check_seat(request: Request, node: Node, site: Site) -> Response:
    """Whether the session behind the token holds a seat now (see the module doc)."""
    body = await read_json(request, SeatCheckIn)
    tokens: SeatTokens = request.app.state.seat_tokens
    verified: VerifiedSeats = request.app.state.verified_seats
    try:
        claims = verified.claims(tokens, body.token, audience=site.key, now=node.clock())
    except SeatTokenExpired:
        return _inactive("expired", "the seat token expired")
    except InvalidSeatToken as exc:
        return _inactive("invalid", str(exc))
    why = verdict(await node.shared_snapshot((site.key, claims.user)), claims)
    if why is not None:
        return _inactive(*why)
    return _answer(
        SeatActiveOut(
            active=True,
            sub=claims.user,
            sid=claims.session,
            did=claims.device,
            aud=claims.site,
            iss=claims.issuer,
            exp=int(claims.expires_at),
            iat=int(claims.issued_at),
            jti=claims.token_id,
            org=UNSET if claims.org is None else claims.org,
            role=UNSET if claims.role is None else claims.role,
        )
    )
