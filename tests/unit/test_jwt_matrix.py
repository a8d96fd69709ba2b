"""The attacks every signed token Seatguard accepts must withstand, one table for all kinds.

Each kind of token (identity tokens, back-channel logout tokens; a third joins by adding a
`Kind` to `KINDS`) is verified the way the server does it, with an RS256 key of a JWKS
picked by `kid`. Each row builds a token from the kind's valid claims and keys, and says
the exact refusal (`{what}` is the kind's name, `{algs}` the algorithms it pins, `{aud}`
and `{iss}` what it expects), or None where the token must be accepted: headers that name
keys (`jwk`, `jku`, `x5u`) are ignored, not obeyed. Rows that only concern one kind say
so with a refusal per kind; a kind without an entry skips the row.

Decided here: `aud` may be an array that contains our audience among others (RFC 7519
§4.1.3; OpenID providers send such tokens); it is accepted. Header and payload JSON with a
member twice is refused (RFC 7515 §5.2 allows either refusing or keeping the last; two
parsers keeping different ones would read two different tokens).
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from seatguard.errors import IdentityError, InvalidIdentity, InvalidLogoutToken
from seatguard.identity import IdentityConfig, verify_identity
from seatguard.identity.backchannel import LOGOUT_EVENT, BackchannelConfig, verify_logout_token
from seatguard.identity.jws import MAX_TOKEN_BYTES

NOW = 1_700_000_000.0
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the signer's key
ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # another site's key
KID = "k1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs256(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    return lambda message: jwt.get_algorithm_by_name("RS256").sign(message, key)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256"}


PUBLIC_PEM = RSA.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


@dataclass(frozen=True)
class Kind:
    """One kind of signed token: its valid claims, how it is verified, what it refuses with."""

    name: str
    what: str  # how its refusals name it
    algs: str  # the pinned algorithms, as refusals list them
    aud: str
    iss: str
    typ: str  # the `typ` header it is sent with
    error: type[IdentityError]
    base: Callable[[], dict[str, Any]]  # valid claims at NOW
    verify: Callable[[str], object]  # as the server verifies it for the site
    verify_elsewhere: Callable[[str], object]  # as another site of the same issuer does

    def __repr__(self) -> str:
        return f"Kind({self.name})"

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Valid claims with `changes`; a change of None removes the claim."""
        return {k: v for k, v in {**self.base(), **changes}.items() if v is not None}

    def header(self, **changes: Any) -> dict[str, Any]:
        return {
            k: v
            for k, v in {"alg": "RS256", "kid": KID, "typ": self.typ, **changes}.items()
            if v is not None
        }

    def sign(self, claims: dict[str, Any] | None = None, key: Any = RSA, **headers: Any) -> str:
        return self.raw(self.header(**headers), claims or self.claims(), rs256(key))

    def raw(
        self,
        header: dict[str, Any] | bytes,
        payload: dict[str, Any] | bytes,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> str:
        """A compact JWS built by hand, for tokens no library makes (parts as given);
        signed RS256 with the signer's key unless `sign` says otherwise."""
        sign = sign or rs256(RSA)
        parts = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in (header, payload)]
        signing_input = f"{b64(parts[0])}.{b64(parts[1])}"
        return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def _identity(audience: str, key: rsa.RSAPrivateKey) -> IdentityConfig:
    jwks = {"keys": [jwk(key, KID)]}
    return IdentityConfig(algorithm="RS256", jwks=jwks, audience=audience, issuer=audience)


IDENTITY = Kind(
    name="identity",
    what="identity token",
    algs="RS256",
    aud="pk_acme",
    iss="pk_acme",
    typ="JWT",
    error=InvalidIdentity,
    base=lambda: {"sub": "u1", "aud": "pk_acme", "iss": "pk_acme", "iat": NOW, "exp": NOW + 300},
    verify=lambda t: verify_identity(t, _identity("pk_acme", RSA), now=NOW),
    verify_elsewhere=lambda t: verify_identity(t, _identity("pk_other", OTHER), now=NOW),
)


def _logout(audience: str) -> BackchannelConfig:
    return BackchannelConfig(
        issuer="https://idp.example", audience=audience, jwks={"keys": [jwk(RSA, KID)]}
    )


LOGOUT = Kind(
    name="logout",
    what="logout token",
    algs="RS256 or ES256",
    aud="acme-client",
    iss="https://idp.example",
    typ="logout+jwt",
    error=InvalidLogoutToken,
    base=lambda: {
        "iss": "https://idp.example",
        "aud": "acme-client",
        "iat": NOW,
        "exp": NOW + 120,
        "jti": "jti-1",
        "events": {LOGOUT_EVENT: {}},
        "sid": "sess-1",
    },
    verify=lambda t: verify_logout_token(t, _logout("acme-client"), now=NOW),
    verify_elsewhere=lambda t: verify_logout_token(t, _logout("other-client"), now=NOW),
)

KINDS = (IDENTITY, LOGOUT)

Refusal = str | None | dict[str, str | None]


@dataclass(frozen=True)
class Row:
    name: str
    make: Callable[[Kind], str]
    refusal: Refusal  # the exact message; None: accepted; by kind name where kinds differ


def _hmac_with_public_key(k: Kind) -> str:
    """The key-confusion attack: HS256 keyed with the RSA public key, which anyone has."""
    header = k.header(alg="HS256")
    return k.raw(header, k.claims(), lambda m: hmac.digest(PUBLIC_PEM, m, "sha256"))


def _with_signature(token: str, signature: str) -> str:
    return token.rsplit(".", 1)[0] + "." + signature


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _cut_mid_character(token: str) -> str:
    """The token with its signature's last four characters cut, and the new last character
    carrying bits past the end of the data (a random signature leaves them zero one time in
    sixteen, which would make the cut a shorter but well-formed signature)."""
    cut = token[:-4]
    last = _B64URL[_B64URL.index(cut[-1]) | 1]
    return cut[:-1] + last


def _swap_payload(token: str, claims: dict[str, Any]) -> str:
    """The token with other claims under its signature."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def _shorter(token: str) -> str:
    """The token's signature without its last byte, well encoded."""
    signature = token.rsplit(".", 1)[1]
    return b64(base64.urlsafe_b64decode(signature + "==")[:-1])


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _attacker_jwk() -> dict[str, Any]:
    return jwk(ATTACKER, KID)


ROWS = [
    # Algorithms: the verifier pins them, never the token.
    Row("alg-none", lambda k: k.raw(k.header(alg="none"), k.claims(), lambda m: b""),
        "{what} algorithm 'none' not allowed (expected {algs})"),
    Row("alg-none-signed", lambda k: k.raw(k.header(alg="none"), k.claims(), lambda m: b"x"),
        "{what} algorithm 'none' not allowed (expected {algs})"),
    Row("alg-NONE", lambda k: k.raw(k.header(alg="NONE"), k.claims(), lambda m: b""),
        "{what} algorithm 'NONE' not allowed (expected {algs})"),
    Row("alg-missing", lambda k: k.raw(k.header(alg=None), k.claims()),
        "{what} algorithm None not allowed (expected {algs})"),
    Row("alg-not-a-string", lambda k: k.raw(k.header(alg=["RS256"]), k.claims()),
        "{what} algorithm ['RS256'] not allowed (expected {algs})"),
    Row("alg-confusion-hs256-with-public-key", _hmac_with_public_key,
        "{what} algorithm 'HS256' not allowed (expected {algs})"),
    Row("alg-rs512-same-key", lambda k: k.raw(
        k.header(alg="RS512"), k.claims(),
        lambda m: jwt.get_algorithm_by_name("RS512").sign(m, RSA)),
        "{what} algorithm 'RS512' not allowed (expected {algs})"),
    # Keys: the token's kid picks one of ours; keys it names or carries are ignored.
    Row("kid-unknown", lambda k: k.sign(kid="k9"), "{what} signing key 'k9' is unknown"),
    Row("kid-not-a-string", lambda k: k.sign(kid=7), "{what} 'kid' header must be a string"),
    Row("kid-ours-key-the-attackers", lambda k: k.sign(key=ATTACKER),
        "{what} signature is invalid"),
    Row("jwk-header-with-the-attackers-key",
        lambda k: k.sign(key=ATTACKER, jwk=_attacker_jwk()), "{what} signature is invalid"),
    Row("jku-header-to-the-attackers-keys",
        lambda k: k.sign(key=ATTACKER, jku="https://evil.example/jwks"),
        "{what} signature is invalid"),
    Row("x5u-header-to-the-attackers-certificate",
        lambda k: k.sign(key=ATTACKER, x5u="https://evil.example/cert.pem"),
        "{what} signature is invalid"),
    Row("jwk-header-ignored", lambda k: k.sign(jwk=_attacker_jwk()), None),
    Row("jku-header-ignored", lambda k: k.sign(jku="https://evil.example/jwks"), None),
    Row("x5u-header-ignored", lambda k: k.sign(x5u="https://evil.example/cert.pem"), None),
    # Header extensions this server does not process.
    Row("crit-unknown", lambda k: k.sign(None, RSA, crit=["exp-v2"], **{"exp-v2": 1}),
        "{what} has critical header parameters this server does not process"),
    Row("crit-empty", lambda k: k.sign(crit=[]),
        "{what} has critical header parameters this server does not process"),
    Row("b64-false", lambda k: k.sign(b64=False),
        "{what} has an unencoded payload (b64), which is not accepted"),
    Row("b64-false-critical", lambda k: k.sign(b64=False, crit=["b64"]),
        "{what} has critical header parameters this server does not process"),
    # The signature.
    Row("signature-stripped", lambda k: _with_signature(k.sign(), ""),
        "{what} signature is invalid"),
    Row("signature-a-byte-short", lambda k: _with_signature(k.sign(), _shorter(k.sign())),
        "{what} signature is invalid"),
    Row("signature-cut-mid-character", lambda k: _cut_mid_character(k.sign()),
        "{what} is malformed (its signature is not base64url)"),
    Row("signature-cut-to-a-bad-length", lambda k: k.sign()[:-1],
        "{what} is malformed (its signature is not base64url)"),
    Row("signature-of-other-claims",
        lambda k: _with_signature(k.sign(), k.sign(k.claims(aud=[k.aud, "x"])).rsplit(".")[2]),
        "{what} signature is invalid"),
    Row("claims-tampered-after-signing",
        lambda k: _swap_payload(k.sign(), k.claims(sid="s2", sub="u2")),
        "{what} signature is invalid"),
    Row("signature-padded", lambda k: k.sign() + "==",
        "{what} is malformed (its signature is not base64url)"),
    # Shape.
    Row("two-segments", lambda k: k.sign().rsplit(".", 1)[0],
        "{what} is malformed (expected three base64url parts)"),
    Row("four-segments", lambda k: k.sign() + ".e30",
        "{what} is malformed (expected three base64url parts)"),
    Row("five-segments-like-jwe", lambda k: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
        "{what} is malformed (expected three base64url parts)"),
    Row("empty", lambda k: "", "{what} is empty"),
    Row("garbage", lambda k: "not a token", "{what} is malformed (expected three base64url parts)"),
    Row("non-ascii", lambda k: "é.é.é", "{what} is malformed (expected three base64url parts)"),
    Row("header-not-base64url", lambda k: "a+b." + k.sign().split(".", 1)[1],
        "{what} is malformed (its header is not base64url)"),
    Row("header-not-json", lambda k: k.raw(b"not json", k.claims()),
        "{what} is malformed (its header is not a JSON object)"),
    Row("payload-not-json", lambda k: k.raw(k.header(), b"not json"),
        "{what} is malformed (its payload is not a JSON object)"),
    Row("payload-array", lambda k: k.raw(k.header(), b"[1]"),
        "{what} is malformed (its payload is not a JSON object)"),
    Row("payload-not-utf8", lambda k: k.raw(k.header(), b'{"sub": "\xff"}'),
        "{what} is malformed (its payload is not a JSON object)"),
    Row("header-alg-twice", lambda k: k.raw(
        b'{"alg":"none","alg":"RS256","kid":"k1"}', k.claims()),
        "{what} is malformed (its header has 'alg' twice)"),
    Row("claim-twice", lambda k: k.raw(
        k.header(), (json.dumps(k.claims())[:-1] + ', "iss": "https://evil.example"}').encode()),
        "{what} is malformed (its payload has 'iss' twice)"),
    Row("oversized", lambda k: k.sign(k.claims(pad="x" * MAX_TOKEN_BYTES)),
        "{what} is too long ({size} bytes, at most 8192)"),
    Row("header-nested-deeply", lambda k: k.raw(k.header(x=_nested(17)), k.claims()),
        "{what} is malformed (its header nests deeper than 16 levels)"),
    Row("payload-nested-deeply", lambda k: k.sign(k.claims(x=_nested(17))),
        "{what} is malformed (its payload nests deeper than 16 levels)"),
    Row("payload-nested-past-the-parser", lambda k: k.raw(
        k.header(), ('{"x":' + "[" * 3000 + "]" * 3000 + "}").encode()),
        "{what} is too long ({size} bytes, at most 8192)"),
    Row("payload-nested-past-the-recursion-limit", lambda k: k.raw(
        k.header(), ('{"x":' + "[" * 2000 + "]" * 2000 + "}").encode()),
        "{what} is malformed (its payload nests deeper than 16 levels)"),
    Row("nested-at-the-limit", lambda k: k.sign(k.claims(x=_nested(15))), None),
    # Times, with 30 s of leeway.
    Row("expired", lambda k: k.sign(k.claims(exp=NOW - 31)), "{what} expired"),
    Row("expired-at-the-leeway", lambda k: k.sign(k.claims(exp=NOW - 30)), "{what} expired"),
    Row("expired-within-the-leeway", lambda k: k.sign(k.claims(exp=NOW - 29)), None),
    Row("exp-missing", lambda k: k.sign(k.claims(exp=None)), "{what} has no 'exp' claim"),
    Row("nbf-in-the-future", lambda k: k.sign(k.claims(nbf=NOW + 31)), "{what} not yet valid"),
    Row("nbf-within-the-leeway", lambda k: k.sign(k.claims(nbf=NOW + 29)), None),
    Row("iat-in-the-future", lambda k: k.sign(k.claims(iat=NOW + 31, exp=NOW + 60)),
        "{what} issued in the future"),
    Row("iat-within-the-leeway", lambda k: k.sign(k.claims(iat=NOW + 29, exp=NOW + 60)), None),
    Row("past-the-longest-lifetime", lambda k: k.sign(k.claims(iat=NOW - 60, exp=NOW + 7200)), {
        "identity": "{what} lives too long: exp is 7260 s after iat, at most 3600 s (the site's "
        "identity_max_lifetime)",
        "logout": None,  # its age is bounded by `iat` instead: the next row
    }),
    Row("issued-too-long-ago", lambda k: k.sign(k.claims(iat=NOW - 331, exp=NOW + 60)), {
        "identity": None,  # within the longest lifetime, not expired: fine
        "logout": "{what} too old (issued 331 s ago, at most 300 s)",
    }),
    Row("no-iat-too-long-from-now", lambda k: k.sign(k.claims(iat=None, exp=NOW + 3631)), {
        "identity": "{what} lives too long: exp is 3631 s after now, at most 3600 s (the site's "
        "identity_max_lifetime)",
        "logout": "{what} has no 'iat' claim",
    }),
    # Audience and issuer.
    Row("aud-another", lambda k: k.sign(k.claims(aud="someone-else")),
        "{what} audience mismatch (expected '{aud}')"),
    Row("aud-missing", lambda k: k.sign(k.claims(aud=None)), "{what} has no 'aud' claim"),
    Row("aud-list-with-ours-among-others", lambda k: k.sign(k.claims(aud=["x", k.aud, "y"])),
        None),
    Row("aud-list-without-ours", lambda k: k.sign(k.claims(aud=["x", "y"])),
        "{what} audience mismatch (expected '{aud}')"),
    Row("aud-empty-list", lambda k: k.sign(k.claims(aud=[])),
        "{what} audience mismatch (expected '{aud}')"),
    Row("aud-number", lambda k: k.sign(k.claims(aud=7)),
        "{what} claim 'aud' must be a string or an array of strings"),
    Row("aud-list-with-a-number", lambda k: k.sign(k.claims(aud=[k.aud, 7])),
        "{what} claim 'aud' must be a string or an array of strings"),
    Row("iss-another", lambda k: k.sign(k.claims(iss="https://evil.example")),
        "{what} issuer mismatch (expected '{iss}')"),
    Row("iss-missing", lambda k: k.sign(k.claims(iss=None)), "{what} has no 'iss' claim"),
    Row("iss-as-a-list", lambda k: k.sign(k.claims(iss=[k.iss])),
        "{what} issuer mismatch (expected '{iss}')"),
    Row("iss-with-a-trailing-slash", lambda k: k.sign(k.claims(iss=k.iss + "/")),
        "{what} issuer mismatch (expected '{iss}')"),
    # Claims of the wrong type.
    Row("exp-a-string", lambda k: k.sign(k.claims(exp="tomorrow")),
        "{what} claim 'exp' must be a NumericDate (seconds since the epoch)"),
    Row("exp-a-boolean", lambda k: k.sign(k.claims(exp=True)),
        "{what} claim 'exp' must be a NumericDate (seconds since the epoch)"),
    Row("exp-too-large-for-a-float", lambda k: k.sign(k.claims(exp=10**400)),
        "{what} claim 'exp' must be a NumericDate (seconds since the epoch)"),
    Row("iat-a-string", lambda k: k.sign(k.claims(iat="now")),
        "{what} claim 'iat' must be a NumericDate (seconds since the epoch)"),
    Row("nbf-null", lambda k: k.raw(k.header(), {**k.claims(), "nbf": None}),
        "{what} claim 'nbf' must be a NumericDate (seconds since the epoch)"),
    Row("sub-a-number", lambda k: k.sign(k.claims(sub=42)),
        "{what} claim 'sub' must be a non-empty string"),
    Row("sid-an-object", lambda k: k.sign(k.claims(sid={"id": 1})),
        "{what} claim 'sid' must be a non-empty string"),
    # Tokens meant for another site, or of the other kind.
    Row("the-other-kinds-typ", lambda k: k.sign(typ={"JWT": "logout+jwt"}.get(k.typ, "JWT")), {
        "identity": "{what} type 'logout+jwt' not accepted (expected JWT)",
        "logout": "{what} type 'JWT' not accepted (expected logout+jwt)",
    }),
]  # fmt: skip


def _cases() -> list[Any]:
    cases = []
    for row in ROWS:
        for kind in KINDS:
            refusal = row.refusal
            if isinstance(refusal, dict):
                if kind.name not in refusal:
                    continue
                refusal = refusal[kind.name]
            cases.append(pytest.param(kind, row.make, refusal, id=f"{kind.name}-{row.name}"))
    return cases


def refusal_of(kind: Kind, verify: Callable[[str], object], token: str) -> str | None:
    """What `verify` says of `token`: None if accepted, else the exact message."""
    try:
        verify(token)
    except kind.error as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(("kind", "make", "refusal"), _cases())
def test_attack(kind: Kind, make: Callable[[Kind], str], refusal: str | None) -> None:
    token = make(kind)
    expected = None
    if refusal is not None:
        expected = refusal.format(
            what=kind.what, algs=kind.algs, aud=kind.aud, iss=kind.iss, size=len(token)
        )
    assert refusal_of(kind, kind.verify, token) == expected


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_token_for_one_site_is_refused_by_another(kind: Kind) -> None:
    token = kind.sign()
    assert refusal_of(kind, kind.verify, token) is None
    refused = refusal_of(kind, kind.verify_elsewhere, token)
    expected = {
        "identity": "identity token signature is invalid",  # another site, its own key
        "logout": "logout token audience mismatch (expected 'other-client')",  # same provider
    }
    assert refused == expected[kind.name]


def test_every_kind_has_a_valid_token_and_rows_cover_every_kind() -> None:
    for kind in KINDS:
        assert refusal_of(kind, kind.verify, kind.sign()) is None
    assert {c.values[0].name for c in _cases()} == {k.name for k in KINDS}
