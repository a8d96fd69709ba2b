"""Signed identity tokens: who the user is, and the rules the site's backend grants them.

A site's backend signs a short-lived JWT for the page, so that the user, org, role and any
mode, limit or policy come from the site rather than from the browser (the strongest source
in the order of authority, see PRODUCT.md). Claims:

    sub     required  user id: a name (names.py), as the hello's `user`
    exp     required  expiry (NumericDate), at most `max_lifetime` after iat (or now)
    aud     required  the site key
    iss     required  the site's identity issuer (its `identity_issuer`, else the site key)
    nbf     optional  not before
    iat     optional  issued at; not in the future; compared with revocation cut-offs
    org, role         optional names (names.py), as the hello's `org` and `role`
    mode              optional, one of `types.MODES`
    limit             optional integer, 1..1000
    policy            optional, one of `types.POLICIES`
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ..errors import ConfigError, InvalidIdentity
from ..names import name_problem
from ..types import MODES, POLICIES, Mode, Policy, UserId
from .jws import KeySet, check_audience, check_issuer, check_times, verify_signed

__all__ = ["Identity", "IdentityConfig", "issued_before", "verify_identity"]

_WHAT = "identity token"
_MIN_LIMIT, _MAX_LIMIT = 1, 1000  # the bounds of presence.Rules.limit
_TYPES = ("jwt", "application/jwt")  # `typ`, when present; RFC 7515 §4.1.9 is case-insensitive


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityConfig:
    """How one site signs its identity tokens; validated once, when built."""

    algorithm: Literal["HS256", "RS256", "ES256"]  # pinned: the token's `alg` never chooses
    secret: str | None = field(default=None, repr=False)  # HS256: the site's identity secret
    previous_secret: str | None = field(default=None, repr=False)  # HS256: the one it replaced
    public_key: str | None = None  # RS256/ES256: the verifying key, in PEM
    jwks: dict[str, Any] | None = None  # RS256/ES256: a stored JWKS document; `kid` picks
    key_set: KeySet | None = None  # RS256/ES256: keys fetched from a jwks_uri (jwks.py)
    audience: str  # the site key; tokens must name it in `aud`
    issuer: str  # tokens must carry exactly this `iss` (RFC 8725 §3.8)
    leeway: float = 30  # seconds of clock skew forgiven on exp, nbf and iat
    max_lifetime: float = 3600  # longest `exp - iat` (`exp - now` without iat), seconds
    keys: KeySet = field(init=False, repr=False, compare=False)  # built from the above

    def __post_init__(self) -> None:
        if self.algorithm not in ("HS256", "RS256", "ES256"):
            raise ConfigError(
                f"identity algorithm must be HS256, RS256 or ES256, not {self.algorithm!r}"
            )
        if not isinstance(self.audience, str) or not self.audience:
            raise ConfigError("identity tokens need an audience (the site key)")
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigError("identity tokens need an issuer (a non-empty string)")
        if not math.isfinite(self.leeway) or self.leeway < 0:
            raise ConfigError(f"identity leeway must be zero or more seconds, not {self.leeway}")
        if not 0 < self.max_lifetime < math.inf:
            raise ConfigError(f"identity max lifetime must be positive, not {self.max_lifetime}")
        object.__setattr__(self, "keys", self._keys())

    def _keys(self) -> KeySet:
        """The verifying keys, from exactly one source that suits the algorithm."""
        sources = [s for s in (self.public_key, self.jwks, self.key_set) if s is not None]
        if self.algorithm == "HS256":
            if sources:
                raise ConfigError("HS256 identity tokens take a secret, not a public key or jwks")
            if not self.secret:
                raise ConfigError("HS256 identity tokens need the site secret")
            if self.previous_secret is None:
                return KeySet.from_secret(self.secret)
            return KeySet.from_secret(self.secret, self.previous_secret)  # during a rotation
        if self.secret is not None or self.previous_secret is not None:
            raise ConfigError(f"{self.algorithm} identity tokens take a public key, not a secret")
        if len(sources) != 1:
            raise ConfigError(
                f"{self.algorithm} identity tokens need one of public_key or jwks, or a jwks_uri"
            )
        if self.key_set is not None:
            if any(k.algorithm != self.algorithm for k in self.key_set.keys):
                raise ConfigError(f"identity key set has keys for other than {self.algorithm}")
            return self.key_set
        if self.public_key is not None:
            return KeySet.from_pem(self.public_key, self.algorithm)
        return KeySet.from_jwks(cast(dict[str, Any], self.jwks), (self.algorithm,))


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified identity token says; None where a claim is absent."""

    user: UserId
    org: str | None = None
    role: str | None = None
    mode: Mode | None = None
    limit: int | None = None
    policy: Policy | None = None
    sid: str | None = None  # the identity provider's session id, for back-channel logout
    issued_at: float | None = None  # `iat`, for revocation cut-offs (`issued_before`)


def verify_identity(token: str, config: IdentityConfig, *, now: float) -> Identity:
    """The identity an identity token asserts, once its signature and claims check out.

    The algorithm is the site's (`config.algorithm`): a token whose `alg` header differs
    is refused, whatever it is (`none`, or HS256 presented to an RS256 site, the classic
    key-confusion attack). With a JWKS, the token's `kid` picks the key. Tokens over
    8 KiB are refused unparsed. `exp` is required and compared with `now` (seconds since
    the epoch, from the caller's clock), as are `nbf` and `iat`, forgiving `config.leeway`
    seconds of skew; `exp` may be at most `config.max_lifetime` after `iat` (after `now`
    when there is no `iat`). `aud` must name `config.audience` and `iss` must equal
    `config.issuer` (RFC 8725 §3.8: a token without `iss` is refused). Optional claims
    must have the documented types and values.

    Raises InvalidIdentity with a human message ("identity token expired", ...) on any
    failure. Callers raise IdentityRequired themselves when a site requires a token and
    the page sent none.
    """
    header, claims = verify_signed(
        token, config.keys, (config.algorithm,), error=InvalidIdentity, what=_WHAT
    )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
        raise InvalidIdentity(f"{_WHAT} type {typ!r} not accepted (expected JWT)")
    exp, iat = check_times(claims, now=now, leeway=config.leeway, error=InvalidIdentity, what=_WHAT)
    _check_lifetime(exp, iat, config, now=now)
    check_audience(claims, config.audience, error=InvalidIdentity, what=_WHAT)
    check_issuer(claims, config.issuer, error=InvalidIdentity, what=_WHAT)
    if "sub" not in claims:
        raise InvalidIdentity(f"{_WHAT} has no 'sub' claim")
    return Identity(
        user=cast(str, _name(claims, "sub")),
        org=_name(claims, "org"),
        role=_name(claims, "role"),
        mode=cast("Mode | None", _choice(claims, "mode", MODES)),
        limit=_limit(claims),
        policy=cast("Policy | None", _choice(claims, "policy", POLICIES)),
        sid=_text(claims, "sid"),
        issued_at=iat,
    )


def _check_lifetime(exp: float, iat: float | None, config: IdentityConfig, *, now: float) -> None:
    """Refuse a token meant to live longer than the site allows: a leaked one would be good
    for that long. Measured from `iat`, else from `now` (forgiving the clock skew)."""
    if iat is not None:
        lifetime, start, allowed = exp - iat, "iat", config.max_lifetime
    else:
        lifetime, start, allowed = exp - now, "now", config.max_lifetime + config.leeway
    if lifetime > allowed:
        raise InvalidIdentity(
            f"{_WHAT} lives too long: exp is {lifetime:.0f} s after {start}, at most "
            f"{config.max_lifetime:.0f} s (the site's identity_max_lifetime)"
        )


def issued_before(identity: Identity, cutoff: float | None) -> bool:
    """Whether a token was issued before `cutoff` (a user's revocation time), so is refused.

    A token without `iat` cannot show that it came after the cut-off, so it counts as
    issued before; with no cut-off (None) nothing is.
    """
    if cutoff is None:
        return False
    return identity.issued_at is None or identity.issued_at < cutoff


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    """An optional non-empty string claim."""
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, str) or not value.strip():
        raise InvalidIdentity(f"{_WHAT} claim {name!r} must be a non-empty string")
    return value


def _name(claims: Mapping[str, Any], name: str) -> str | None:
    """An optional claim that must be a name (names.py), as the hello's `user`, `org` and
    `role` must: an id the REST API could not address (its sessions, its override, its
    org's revocation) is refused, not admitted."""
    value = _text(claims, name)
    problem = None if value is None else name_problem(value, f"{_WHAT} claim {name!r}")
    if problem is not None:
        raise InvalidIdentity(problem)
    return value


def _choice(claims: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    """An optional claim that must be one of `choices`."""
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, str) or value not in choices:
        raise InvalidIdentity(
            f"{_WHAT} claim {name!r} is {value!r}, not one of {', '.join(choices)}"
        )
    return value


def _limit(claims: Mapping[str, Any]) -> int | None:
    """The optional seat limit: an integer (not a string, float or boolean) in range."""
    if "limit" not in claims:
        return None
    value = claims["limit"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidIdentity(f"{_WHAT} claim 'limit' must be an integer, not {value!r}")
    if not _MIN_LIMIT <= value <= _MAX_LIMIT:
        raise InvalidIdentity(
            f"{_WHAT} claim 'limit' must be between {_MIN_LIMIT} and {_MAX_LIMIT}, not {value}"
        )
    return value
