"""Signed-token checks shared by identity and logout tokens: pinned algorithms, keys, claims.

Follows RFC 8725 (JWT Best Current Practices): the verifier, never the token, chooses the
algorithm; each key is bound to one algorithm, so an HMAC token cannot be checked against a
public key; `none` is never accepted; tokens are length-capped before parsing; the signature is
checked before any claim is read; times are compared with the caller's `now`.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import ConfigError, IdentityError

__all__ = [
    "ASYMMETRIC",
    "MAX_TOKEN_BYTES",
    "KeySet",
    "VerifyKey",
    "check_audience",
    "check_issuer",
    "check_times",
    "token_kid",
    "verify_signed",
]

MAX_TOKEN_BYTES = 8192
"""Longest token accepted; longer ones are refused before any parsing."""

ASYMMETRIC: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
"""Public-key algorithms a JWKS or PEM key may be bound to."""

_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_PRIVATE_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
_MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One key a token may be signed with, bound to exactly one algorithm."""

    algorithm: str
    key: Any  # bytes for HMAC, a `cryptography` public key otherwise
    kid: str | None = None


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys a verifier trusts; with `by_kid`, a token's `kid` header picks one."""

    keys: tuple[VerifyKey, ...]
    by_kid: bool = False

    @classmethod
    def from_secret(cls, *secrets: str) -> KeySet:
        """HS256 shared secrets of at least 32 bytes each; a token is tried with each in
        turn (two while a secret is being rotated)."""
        keys = []
        for secret in secrets:
            if len(secret.encode()) < _MIN_SECRET_BYTES:
                raise ConfigError(f"an HS256 secret must be at least {_MIN_SECRET_BYTES} bytes")
            try:
                key = jwt.get_algorithm_by_name("HS256").prepare_key(secret)
            except jwt.PyJWTError:  # PyJWT refuses secrets that look like PEM or SSH keys
                raise ConfigError("an HS256 secret must not be a public key") from None
            keys.append(VerifyKey("HS256", key))
        if not keys:
            raise ConfigError("HS256 needs a secret")
        return cls(tuple(keys))

    @classmethod
    def from_pem(cls, pem: str, algorithm: str) -> KeySet:
        """One public key in PEM, for an asymmetric `algorithm`."""
        return cls((VerifyKey(algorithm, _public_key(pem, algorithm, "public_key")),))

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], algorithms: Collection[str]) -> KeySet:
        """The signing keys of a JWKS document usable with `algorithms`; others are skipped."""
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise ConfigError("jwks must be a JSON object with a 'keys' array")
        keys: list[VerifyKey] = []
        for jwk in entries:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            kid = jwk.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise ConfigError(f"jwks key id {kid!r} is not a string")
            for algorithm in _algorithms_for(jwk, algorithms):
                keys.append(
                    VerifyKey(algorithm, _public_key(jwk, algorithm, f"jwks key {kid!r}"), kid)
                )
        if not keys:
            raise ConfigError(f"jwks has no signing key for {_either(algorithms)}")
        ids = [(k.kid, k.algorithm) for k in keys]
        if len(set(ids)) != len(ids):
            raise ConfigError("jwks has two keys with the same kid")
        return cls(tuple(keys), by_kid=True)

    def select(self, kid: object, algorithm: str) -> tuple[VerifyKey, ...]:
        """The keys to try for a token's `kid` and `alg` headers: in a JWKS, the one key
        that fits (none if several do); otherwise every key of the algorithm, in order."""
        fits = tuple(
            k
            for k in self.keys
            if k.algorithm == algorithm and (not self.by_kid or kid is None or k.kid == kid)
        )
        return fits if len(fits) == 1 or not self.by_kid else ()


def _algorithms_for(jwk: dict[str, Any], allowed: Collection[str]) -> list[str]:
    """The allowed algorithms a JWK may verify: its `alg`, else what its type implies."""
    if "alg" in jwk:
        return [jwk["alg"]] if jwk["alg"] in allowed else []
    if jwk.get("kty") == "RSA":
        return [a for a in sorted(allowed) if a[:2] in ("RS", "PS")]
    if jwk.get("kty") == "EC":
        return [a for a in sorted(allowed) if _EC_CURVES.get(a) == jwk.get("crv")]
    return []


def _public_key(material: str | dict[str, Any], algorithm: str, name: str) -> Any:
    """A public key from PEM or a JWK, checked against `algorithm`; raise ConfigError."""
    if algorithm not in ASYMMETRIC:
        raise ConfigError(f"{algorithm!r} is not a public-key signing algorithm")
    impl = jwt.get_algorithm_by_name(algorithm)
    try:
        key = impl.prepare_key(impl.from_jwk(material) if isinstance(material, dict) else material)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ConfigError(f"{name} is not a valid {algorithm} key: {exc}") from None
    if isinstance(key, _PRIVATE_KEYS):
        raise ConfigError(f"{name} is a private key; give only the public key")
    if message := impl.check_key_length(key):
        raise ConfigError(f"{name}: {message}")
    return key


def _either(algorithms: Collection[str]) -> str:
    return " or ".join(algorithms)


def token_kid(token: object) -> str | None:
    """The `kid` header of a compact JWS, unverified: to pick a key set, never to trust.

    None when the token has no string `kid` or is too long or malformed to read (the
    verification then refuses it as such).
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:  # the header alone, read as `verify_signed` reads it
        head = _base64url(token.split(".", 1)[0], "header", IdentityError, "token")
        kid = _json_object(head, "header", IdentityError, "token").get("kid")
    except IdentityError:
        return None
    return kid if isinstance(kid, str) else None


def verify_signed(
    token: str,
    keys: KeySet,
    algorithms: Collection[str],
    *,
    error: type[IdentityError],
    what: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS whose signature checks out.

    `algorithms` is the verifier's pinned choice; the token's `alg` header must be one of
    them and match the key its `kid` selects. The header and the claims are parsed here,
    strictly, rather than by PyJWT: each part must be base64url of a JSON object without a
    repeated member (parsers that keep the first and those that keep the last would read
    two different tokens) nested at most `_MAX_DEPTH` deep; `crit` extensions and an
    unencoded payload (`b64: false`) are refused, and headers naming keys (`jwk`, `jku`,
    `x5u`, `x5c`) are never used. PyJWT checks the signature. Claims are not checked
    here. Every failure raises `error` with a message starting with `what`.
    """
    if not isinstance(token, str) or not token:
        raise error(f"{what} is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise error(f"{what} is too long ({len(token)} bytes, at most {MAX_TOKEN_BYTES})")
    if not token.isascii() or token.count(".") != 2:
        raise error(f"{what} is malformed (expected three base64url parts)")
    head, body, signature = token.split(".")
    header = _json_object(_base64url(head, "header", error, what), "header", error, what)
    _base64url(signature, "signature", error, what)
    if "crit" in header:
        raise error(f"{what} has critical header parameters this server does not process")
    if header.get("b64", True) is not True:
        raise error(f"{what} has an unencoded payload (b64), which is not accepted")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise error(f"{what} algorithm {alg!r} not allowed (expected {_either(algorithms)})")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise error(f"{what} 'kid' header must be a string")
    candidates = keys.select(kid, alg)
    if not candidates and kid is None:
        raise error(f"{what} has no 'kid' header to pick one of several keys")
    if not candidates:
        raise error(f"{what} signing key {kid!r} is unknown")
    for key in candidates:
        try:
            jwt.api_jws.decode_complete(token, key.key, algorithms=[key.algorithm])
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise error(f"{what} is malformed ({exc})") from None
        payload = _base64url(body, "payload", error, what)
        return header, _json_object(payload, "payload", error, what)
    raise error(f"{what} signature is invalid")


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_MAX_DEPTH = 16  # JSON nesting of a header or payload; ours are at most 3 deep


def _base64url(part: str, name: str, error: type[IdentityError], what: str) -> bytes:
    """One part of a compact JWS, decoded: unpadded base64url (RFC 7515 §2) in its one
    canonical spelling (no stray bits in the last character), nothing else."""
    if _BASE64URL.fullmatch(part) and len(part) % 4 != 1:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") == part.encode():
            return decoded
    raise error(f"{what} is malformed (its {name} is not base64url)")


def _json_object(raw: bytes, name: str, error: type[IdentityError], what: str) -> dict[str, Any]:
    """A header or payload: a JSON object, no member twice, nested at most `_MAX_DEPTH`."""

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) != len(pairs):
            twice = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
            raise error(f"{what} is malformed (its {name} has {twice!r} twice)")
        return found

    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=members)
    except RecursionError:
        value = None
        depth = _MAX_DEPTH + 1
    except ValueError:  # not UTF-8, not JSON
        raise error(f"{what} is malformed (its {name} is not a JSON object)") from None
    else:
        depth = _depth(value)
    if depth > _MAX_DEPTH:
        raise error(f"{what} is malformed (its {name} nests deeper than {_MAX_DEPTH} levels)")
    if not isinstance(value, dict):
        raise error(f"{what} is malformed (its {name} is not a JSON object)")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        if level <= _MAX_DEPTH:
            stack.extend((child, level + 1) for child in children)
    return deepest


def _numeric_date(
    claims: Mapping[str, Any], name: str, error: type[IdentityError], what: str
) -> float | None:
    """A NumericDate claim in seconds, or None when absent."""
    if name not in claims:
        return None
    value = claims[name]
    try:
        seconds = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        seconds = math.inf
    if isinstance(value, bool) or not math.isfinite(seconds):
        raise error(f"{what} claim {name!r} must be a NumericDate (seconds since the epoch)")
    return seconds


def check_times(
    claims: Mapping[str, Any],
    *,
    now: float,
    leeway: float,
    error: type[IdentityError],
    what: str,
    expired: type[IdentityError] | None = None,
) -> tuple[float, float | None]:
    """Check `exp` (required), `nbf` and `iat` against `now` with `leeway`; return exp and
    iat. A token past its `exp` raises `expired`, when given, rather than `error`."""
    exp = _numeric_date(claims, "exp", error, what)
    nbf = _numeric_date(claims, "nbf", error, what)
    iat = _numeric_date(claims, "iat", error, what)
    if exp is None:
        raise error(f"{what} has no 'exp' claim")
    if exp <= now - leeway:
        raise (expired or error)(f"{what} expired")
    if nbf is not None and nbf > now + leeway:
        raise error(f"{what} not yet valid")
    if iat is not None and iat > now + leeway:
        raise error(f"{what} issued in the future")
    return exp, iat


def check_audience(
    claims: Mapping[str, Any], audience: str, *, error: type[IdentityError], what: str
) -> None:
    """Check that `aud`, a string or an array of strings, names `audience`."""
    aud = claims.get("aud")
    if aud is None:
        raise error(f"{what} has no 'aud' claim")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
        raise error(f"{what} claim 'aud' must be a string or an array of strings")
    if audience not in auds:
        raise error(f"{what} audience mismatch (expected {audience!r})")


def check_issuer(
    claims: Mapping[str, Any], issuer: str, *, error: type[IdentityError], what: str
) -> None:
    """Check that `iss` is exactly `issuer`."""
    if "iss" not in claims:
        raise error(f"{what} has no 'iss' claim")
    if claims["iss"] != issuer:
        raise error(f"{what} issuer mismatch (expected {issuer!r})")
