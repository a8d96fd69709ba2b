"""The seat signing key set: ES256 keys with their times, as a private JWK Set.

Pure: every choice takes `now`. The key file (`source.py`) is a JWK Set (RFC 7517) whose
keys are private EC P-256 keys with two members of Seatguard's own beside the standard
ones: `created` (when the key was added, seconds since the epoch) and `retired` (when it
stops signing; absent while it may sign).

Rotation (`rotated`) adds a key and retires the others `switch_delay` later; until then the
old key signs and the new one is only published, so that a verifier whose cached key set is
as old as the JWKS answer's `max-age` already holds the new key when the first token signed
with it arrives. A retired key stays published until every token it signed has expired
(`retired + PUBLISHED_AFTER_RETIREMENT`), then is pruned. Key ids are RFC 7638 thumbprints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from ..errors import ConfigError

__all__ = [
    "ALGORITHM",
    "DEFAULT_TTL",
    "JWKS_MAX_AGE",
    "MAX_TTL",
    "MIN_TTL",
    "PUBLISHED_AFTER_RETIREMENT",
    "SWITCH_DELAY",
    "SeatKey",
    "SeatKeySet",
    "new_key",
    "thumbprint",
]

ALGORITHM = "ES256"
"""The one algorithm of seat tokens: ECDSA on P-256 with SHA-256 (RFC 7518 §3.4)."""

MIN_TTL, DEFAULT_TTL, MAX_TTL = 30, 120, 900
"""Bounds and default of a seat token's lifetime (`exp - iat`), in seconds."""

JWKS_MAX_AGE = 300
"""Seconds verifiers may cache `/.well-known/jwks.json` (its `Cache-Control: max-age`)."""

SWITCH_DELAY = 360.0
"""Seconds between adding a key and signing with it: the JWKS `max-age`, plus the time
nodes take to notice a changed key file (`source.RELOAD_INTERVAL`), with a margin."""

PUBLISHED_AFTER_RETIREMENT = MAX_TTL + 60.0
"""Seconds a retired key stays published: the longest token lifetime, plus a margin for
clocks and for nodes that notice the rotation a little late."""

_ec = ECAlgorithm(ECAlgorithm.SHA256)


@dataclass(frozen=True, slots=True)
class SeatKey:
    """One signing key and its times."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey
    created: float  # when it was added (published)
    retired: float | None = None  # when it stops signing; None: not scheduled

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK: `kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`, nothing private."""
        jwk = _ec.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def private_jwk(self) -> dict[str, Any]:
        """The JWK kept in the key file: the public members, `d`, and the times."""
        jwk = {**_ec.to_jwk(self.private_key, as_dict=True), **self.public_jwk()}
        jwk["created"] = self.created
        if self.retired is not None:
            jwk["retired"] = self.retired
        return jwk

    def published_until(self) -> float:
        """When it leaves the published set (never, while not retired)."""
        return math.inf if self.retired is None else self.retired + PUBLISHED_AFTER_RETIREMENT


def thumbprint(public_jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK."""
    members = {name: public_jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def new_key(now: float) -> SeatKey:
    """A fresh P-256 key added at `now`."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    return SeatKey(_thumbprint_of(private_key), private_key, created=now)


def _thumbprint_of(private_key: ec.EllipticCurvePrivateKey) -> str:
    return thumbprint(_ec.to_jwk(private_key.public_key(), as_dict=True))


@dataclass(frozen=True, slots=True)
class SeatKeySet:
    """The keys of a key file, oldest first."""

    keys: tuple[SeatKey, ...]

    @classmethod
    def parse(cls, text: str, what: str) -> SeatKeySet:
        """A key set from a key file's text (or SEATGUARD_SEAT_KEYS); ConfigError naming
        `what` when it is not a JWK Set of private P-256 keys with distinct ids."""
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigError(f'{what} is not JSON (a JWK Set: {{"keys": [...]}})') from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{what} must be a JWK Set with at least one key")
        keys = tuple(_parse_key(jwk, f"{what}, key {i}") for i, jwk in enumerate(entries))
        if len({k.kid for k in keys}) != len(keys):
            raise ConfigError(f"{what} has two keys with the same kid")
        return cls(tuple(sorted(keys, key=lambda k: k.created)))

    def dumps(self) -> str:
        """The key file's text: the private JWK Set, one key a line."""
        lines = ",\n".join("    " + json.dumps(k.private_jwk()) for k in self.keys)
        return '{\n  "keys": [\n' + lines + "\n  ]\n}\n"

    def signing(self, now: float) -> SeatKey:
        """The key that signs at `now`: among those not retired, the newest added at least
        `SWITCH_DELAY` ago, else the oldest (a set's first key, until the next is ready)."""
        active = [k for k in self.keys if k.retired is None or k.retired > now]
        if not active:
            raise ConfigError("every seat signing key is retired: run `seatguard seat-keys rotate`")
        ready = [k for k in active if k.created + SWITCH_DELAY <= now]
        if ready:
            return max(ready, key=lambda k: k.created)
        return min(active, key=lambda k: k.created)

    def published(self, now: float) -> tuple[SeatKey, ...]:
        """The keys verifiers need at `now`: all but those retired long enough to be pruned."""
        return tuple(k for k in self.keys if now < k.published_until())

    def jwks(self, now: float) -> dict[str, Any]:
        """The public JWK Set published at `now` (`/.well-known/jwks.json`)."""
        return {"keys": [k.public_jwk() for k in self.published(now)]}

    def pruned(self, now: float) -> SeatKeySet:
        """Without the keys no token still valid at `now` can have been signed with."""
        return SeatKeySet(self.published(now))

    def rotated(self, now: float, *, switch_delay: float = SWITCH_DELAY) -> SeatKeySet:
        """With a new key that signs from `now + switch_delay` on, when every other key is
        retired (earlier retirements stay), and without the keys pruned by then."""
        until = now + switch_delay
        kept = tuple(
            replace(k, retired=until if k.retired is None else min(k.retired, until))
            for k in self.pruned(now).keys
        )
        return SeatKeySet((*kept, new_key(now)))


def _parse_key(jwk: object, what: str) -> SeatKey:
    """One private key of a key file."""
    if not isinstance(jwk, dict):
        raise ConfigError(f"{what} is not a JSON object")
    if (
        jwk.get("kty") != "EC"
        or jwk.get("crv") != "P-256"
        or jwk.get("alg", ALGORITHM) != ALGORITHM
    ):
        raise ConfigError(f"{what} must be an EC P-256 key for {ALGORITHM}")
    if "d" not in jwk:
        raise ConfigError(f"{what} has no private part ('d'): it cannot sign")
    try:
        private_key = _ec.from_jwk(jwk)
    except Exception as exc:  # PyJWT raises InvalidKeyError, cryptography ValueError
        raise ConfigError(f"{what} is not a valid P-256 key: {exc}") from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{what} has no private part ('d'): it cannot sign")
    kid = jwk.get("kid", _thumbprint_of(private_key))
    if not isinstance(kid, str) or not kid:
        raise ConfigError(f"{what} has a 'kid' that is not a non-empty string")
    created, retired = jwk.get("created", 0), jwk.get("retired")
    for name, value in (("created", created), ("retired", retired)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{what}: {name!r} must be seconds since the epoch")
    return SeatKey(kid, private_key, float(created), None if retired is None else float(retired))
