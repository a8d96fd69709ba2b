"""OpenID Connect Back-Channel Logout 1.0: the logout tokens an identity provider posts.

Validation follows the specification's section 2.6, with the claims of section 2.4
(https://openid.net/specs/openid-connect-backchannel-1_0.html): a signature by one of the
issuer's keys with a pinned algorithm (never `none`), `iss`, `aud`, `iat` and `exp` as for ID
tokens, a `jti`, the back-channel logout event, a `sub` or a `sid` or both, and no `nonce`.
The `typ` header, when present, must be `logout+jwt` (section 2.4 explicit typing; an absent
`typ` is accepted for providers that predate it). A `jti` is accepted once (step 8): that
is the caller's to enforce, with `LogoutRequest.until` (see `oidc.py`), since the ids it has
seen live in the database, shared by every process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..errors import ConfigError, InvalidLogoutToken
from .jws import ASYMMETRIC, KeySet, check_audience, check_issuer, check_times, verify_signed

__all__ = [
    "LOGOUT_ALGORITHMS",
    "LOGOUT_EVENT",
    "BackchannelConfig",
    "LogoutRequest",
    "verify_logout_token",
]

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
"""The member of the `events` claim that makes a JWT a logout token."""

LOGOUT_ALGORITHMS = ("RS256", "ES256")
"""The algorithms logout tokens may be signed with; never `none` nor HMAC."""

_WHAT = "logout token"
_TYPES = ("logout+jwt", "application/logout+jwt")  # RFC 7515 §4.1.9: case-insensitive


@dataclass(frozen=True, slots=True)
class BackchannelConfig:
    """One identity provider whose logout tokens this site accepts."""

    issuer: str  # the provider's issuer identifier, exactly as in its tokens
    audience: str  # our client id at the provider
    jwks: dict[str, Any] | None = None  # the provider's keys, a stored JWKS document
    key_set: KeySet | None = None  # or its keys fetched from its jwks_uri (jwks.py)
    algorithms: tuple[str, ...] = LOGOUT_ALGORITHMS  # pinned; never `none` nor HMAC
    leeway: float = 30  # seconds of clock skew forgiven on exp and iat
    max_age: float = 300  # tokens issued longer ago than this are refused
    keys: KeySet = field(init=False, repr=False, compare=False)  # from jwks or key_set

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ConfigError("back-channel logout needs an issuer and an audience (client id)")
        if not self.algorithms:
            raise ConfigError("back-channel logout needs at least one algorithm")
        if unsafe := [a for a in self.algorithms if a not in ASYMMETRIC]:
            raise ConfigError(f"logout tokens must use public-key algorithms, not {unsafe}")
        if not math.isfinite(self.leeway) or self.leeway < 0:
            raise ConfigError(f"logout leeway must be zero or more seconds, not {self.leeway}")
        if not math.isfinite(self.max_age) or self.max_age <= 0:
            raise ConfigError(f"logout max_age must be positive seconds, not {self.max_age}")
        if (self.jwks is None) == (self.key_set is None):
            raise ConfigError("back-channel logout needs the provider's keys: jwks or jwks_uri")
        if self.key_set is not None:
            if any(k.algorithm not in self.algorithms for k in self.key_set.keys):
                raise ConfigError(f"logout key set has keys for other than {self.algorithms}")
            keys = self.key_set
        else:
            keys = KeySet.from_jwks(cast(dict[str, Any], self.jwks), self.algorithms)
        object.__setattr__(self, "keys", keys)


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """Whom a verified logout token logs out: a user (`sub`), a session (`sid`), or both."""

    sub: str | None
    sid: str | None
    jti: str
    exp: float
    until: float  # from then on the token fails these checks: remember its jti until then


def verify_logout_token(token: str, config: BackchannelConfig, *, now: float) -> LogoutRequest:
    """Whom a back-channel logout token logs out, once it passes section 2.6 of the spec.

    The token's `alg` must be one of `config.algorithms` and its `kid` must pick a key of
    `config.jwks`; `iss` must equal `config.issuer` and `aud` contain `config.audience`.
    `exp` and `iat` are required and compared with `now` (seconds since the epoch, from the
    caller's clock) forgiving `config.leeway`; a token issued `config.max_age` seconds ago
    or earlier (plus the leeway) is refused. The `events` claim must hold the back-channel
    logout event as a JSON object; `sub`, `sid` or both must be present; `nonce` must not be.
    The caller refuses a replay: it accepts a `jti` once per issuer (`jti` values are only
    unique per issuer), remembering it until `until`, the time the token would fail anyway.

    Raises InvalidLogoutToken with a human message on any failure; the endpoint answers
    it with HTTP 400.
    """
    header, claims = verify_signed(
        token, config.keys, config.algorithms, error=InvalidLogoutToken, what=_WHAT
    )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
        raise InvalidLogoutToken(f"{_WHAT} type {typ!r} not accepted (expected logout+jwt)")
    check_issuer(claims, config.issuer, error=InvalidLogoutToken, what=_WHAT)
    check_audience(claims, config.audience, error=InvalidLogoutToken, what=_WHAT)
    exp, iat = check_times(
        claims, now=now, leeway=config.leeway, error=InvalidLogoutToken, what=_WHAT
    )
    if iat is None:
        raise InvalidLogoutToken(f"{_WHAT} has no 'iat' claim")
    if iat <= now - config.max_age - config.leeway:
        raise InvalidLogoutToken(
            f"{_WHAT} too old (issued {now - iat:.0f} s ago, at most {config.max_age:.0f} s)"
        )
    jti = _text(claims, "jti")
    if jti is None:
        raise InvalidLogoutToken(f"{_WHAT} has no 'jti' claim")
    _check_events(claims)
    if "nonce" in claims:
        raise InvalidLogoutToken(f"{_WHAT} must not contain a 'nonce' claim")
    sub, sid = _text(claims, "sub"), _text(claims, "sid")
    if sub is None and sid is None:
        raise InvalidLogoutToken(f"{_WHAT} has neither a 'sub' nor a 'sid' claim")
    until = min(exp, iat + config.max_age) + config.leeway  # past this, the checks above fail
    return LogoutRequest(sub=sub, sid=sid, jti=jti, exp=exp, until=until)


def _check_events(claims: Mapping[str, Any]) -> None:
    """Check that `events` is an object holding the logout event, itself an object."""
    events = claims.get("events")
    if events is None:
        raise InvalidLogoutToken(f"{_WHAT} has no 'events' claim")
    if not isinstance(events, dict):
        raise InvalidLogoutToken(f"{_WHAT} claim 'events' must be a JSON object")
    if LOGOUT_EVENT not in events:
        raise InvalidLogoutToken(f"{_WHAT} 'events' lacks the back-channel logout event")
    if not isinstance(events[LOGOUT_EVENT], dict):
        raise InvalidLogoutToken(f"{_WHAT} back-channel logout event must be a JSON object")


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    """An optional non-empty string claim."""
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise InvalidLogoutToken(f"{_WHAT} claim {name!r} must be a non-empty string")
    return value
