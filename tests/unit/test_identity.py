"""Signed identity tokens: the keys a site may configure, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from seatguard.errors import ConfigError, IdentityError, IdentityRequired, InvalidIdentity
from seatguard.identity import Identity, IdentityConfig, issued_before, verify_identity
from seatguard.identity.jws import MAX_TOKEN_BYTES, KeySet

NOW = 1_700_000_000.0
SITE = "pk_acme"
ISSUER = "https://acme.example"
SECRET = "sk_" + "x" * 43  # the shape of a site secret from sites.new_site


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for tokens PyJWT refuses to make."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for SITE from ISSUER; a change of None removes the claim."""
    base: dict[str, Any] = {"sub": "u1", "aud": SITE, "iss": ISSUER, "exp": NOW + 300, "iat": NOW}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@dataclass(frozen=True)
class Keys:
    rsa: RSAPrivateKey
    rsa2: RSAPrivateKey  # a second RSA key: rotation, and an attacker's key
    ec: ec.EllipticCurvePrivateKey

    def rs256(self, body: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(body, self.rsa, algorithm="RS256", headers=headers or None)

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**RSAAlgorithm.to_jwk(self.rsa2.public_key(), as_dict=True), "kid": "old"},
                {**RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "kid": "new"},
                {**ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "kid": "ec"},
            ]
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa2=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture(scope="module")
def rs256(keys: Keys) -> IdentityConfig:
    return IdentityConfig(algorithm="RS256", public_key=pem(keys.rsa), audience=SITE, issuer=ISSUER)


# -- accepted tokens ----------------------------------------------------------------------


def test_hs256_token_with_every_claim() -> None:
    config = IdentityConfig(algorithm="HS256", secret=SECRET, audience=SITE, issuer=ISSUER)
    body = claims(org="acme", role="viewer", mode="device-limit", limit=3, policy="evict-oldest")
    token = jwt.encode(body, SECRET, algorithm="HS256")
    assert verify_identity(token, config, now=NOW) == Identity(
        user="u1",
        org="acme",
        role="viewer",
        mode="device-limit",
        limit=3,
        policy="evict-oldest",
        issued_at=NOW,
    )


def test_absent_optional_claims_are_none(keys: Keys, rs256: IdentityConfig) -> None:
    token = keys.rs256({"sub": "u1", "aud": SITE, "iss": ISSUER, "exp": NOW + 60})
    assert verify_identity(token, rs256, now=NOW) == Identity(user="u1")


def test_rs256_with_a_pem_key(keys: Keys, rs256: IdentityConfig) -> None:
    identity = verify_identity(keys.rs256(claims(policy="monitor")), rs256, now=NOW)
    assert (identity.user, identity.policy) == ("u1", "monitor")


def test_rs256_with_jwks_picks_the_key_by_kid(keys: Keys) -> None:
    config = IdentityConfig(algorithm="RS256", jwks=keys.jwks(), audience=SITE, issuer=ISSUER)
    assert verify_identity(keys.rs256(claims(), kid="new"), config, now=NOW).user == "u1"
    old = jwt.encode(claims(sub="u2"), keys.rsa2, algorithm="RS256", headers={"kid": "old"})
    assert verify_identity(old, config, now=NOW).user == "u2"
    with pytest.raises(InvalidIdentity, match="signature is invalid"):
        verify_identity(keys.rs256(claims(), kid="old"), config, now=NOW)
    with pytest.raises(InvalidIdentity, match="signing key 'gone' is unknown"):
        verify_identity(keys.rs256(claims(), kid="gone"), config, now=NOW)
    with pytest.raises(InvalidIdentity, match="no 'kid' header"):
        verify_identity(keys.rs256(claims()), config, now=NOW)  # no kid, two RSA keys


def test_jwks_with_one_usable_key_needs_no_kid(keys: Keys) -> None:
    jwks = {"keys": [RSAAlgorithm.to_jwk(keys.rsa.public_key(), as_dict=True)]}
    config = IdentityConfig(algorithm="RS256", jwks=jwks, audience=SITE, issuer=ISSUER)
    assert verify_identity(keys.rs256(claims()), config, now=NOW).user == "u1"


def test_jwks_skips_encryption_keys(keys: Keys) -> None:
    enc = {**RSAAlgorithm.to_jwk(keys.rsa2.public_key(), as_dict=True), "use": "enc"}
    sig = RSAAlgorithm.to_jwk(keys.rsa.public_key(), as_dict=True)
    config = IdentityConfig(
        algorithm="RS256", jwks={"keys": [enc, sig]}, audience=SITE, issuer=ISSUER
    )
    assert verify_identity(keys.rs256(claims()), config, now=NOW).user == "u1"


def test_es256_with_a_pem_key_and_with_jwks(keys: Keys) -> None:
    token = jwt.encode(claims(), keys.ec, algorithm="ES256", headers={"kid": "ec"})
    for config in (
        IdentityConfig(algorithm="ES256", public_key=pem(keys.ec), audience=SITE, issuer=ISSUER),
        IdentityConfig(algorithm="ES256", jwks=keys.jwks(), audience=SITE, issuer=ISSUER),
    ):
        assert verify_identity(token, config, now=NOW).user == "u1"


@pytest.mark.parametrize(
    "changes",
    [
        {"typ_header": "jwt"},
        {"iat": NOW - 100, "exp": NOW - 100 + 3600},  # exactly the longest lifetime
        {"iat": None, "exp": NOW + 3600 + 30},  # without iat: from now, with the leeway
    ],
    ids=["typ", "max-lifetime", "max-lifetime-no-iat"],
)
def test_accepted_edges(keys: Keys, rs256: IdentityConfig, changes: dict[str, Any]) -> None:
    typ = changes.pop("typ_header", "JWT")
    token = keys.rs256(claims(**changes), typ=typ)
    assert verify_identity(token, rs256, now=NOW).user == "u1"


@pytest.mark.parametrize(
    "sub", ["u" * 256, "a/b", "50% off?#x", " spaced user ", "ünïcødé 用户"], ids=repr
)
def test_any_user_id_is_a_subject(keys: Keys, rs256: IdentityConfig, sub: str) -> None:
    assert verify_identity(keys.rs256(claims(sub=sub)), rs256, now=NOW).user == sub


def test_issuer_must_match_exactly(keys: Keys, rs256: IdentityConfig) -> None:
    # RFC 8725 §3.8: `iss` is always required and compared as a string, never as a prefix.
    for iss in (ISSUER + "/", ISSUER.upper(), SITE):
        with pytest.raises(InvalidIdentity, match="issuer mismatch"):
            verify_identity(keys.rs256(claims(iss=iss)), rs256, now=NOW)
    listed = forge({"alg": "RS256"}, claims(iss=[ISSUER]), _rs(keys))  # PyJWT refuses to
    with pytest.raises(InvalidIdentity, match="issuer mismatch"):
        verify_identity(listed, rs256, now=NOW)


def test_zero_leeway(keys: Keys) -> None:
    config = IdentityConfig(
        algorithm="RS256", public_key=pem(keys.rsa), audience=SITE, issuer=ISSUER, leeway=0
    )
    assert verify_identity(keys.rs256(claims(exp=NOW + 1)), config, now=NOW).user == "u1"
    with pytest.raises(InvalidIdentity, match="expired"):
        verify_identity(keys.rs256(claims(exp=NOW)), config, now=NOW)


def test_issued_before_a_revocation_cutoff() -> None:
    # Timeline: the token is issued at NOW; the user is revoked at NOW + 1.
    fresh = Identity(user="u1", issued_at=NOW)
    assert not issued_before(fresh, None)  # never revoked
    assert issued_before(fresh, NOW + 1)  # issued before the revocation: refused
    assert not issued_before(fresh, NOW)  # issued at the very cut-off: accepted
    assert not issued_before(fresh, NOW - 1)  # issued after it
    # Without `iat` a token cannot show it came after the cut-off.
    assert issued_before(Identity(user="u1"), NOW - 1)
    assert not issued_before(Identity(user="u1"), None)


def test_issued_at_comes_from_iat(keys: Keys, rs256: IdentityConfig) -> None:
    assert verify_identity(keys.rs256(claims(iat=NOW - 5)), rs256, now=NOW).issued_at == NOW - 5
    assert verify_identity(keys.rs256(claims(iat=None)), rs256, now=NOW).issued_at is None


# -- refused tokens -----------------------------------------------------------------------


def _hs256_with_public_pem(k: Keys) -> str:
    """The key-confusion attack: HMAC keyed with the site's public key, which is public."""
    secret = pem(k.rsa).encode()
    return forge(
        {"alg": "HS256", "typ": "JWT"}, claims(), lambda m: hmac.digest(secret, m, "sha256")
    )


# The attacks every signed token must withstand (algorithms, keys, shape, times, audience,
# issuer, claim types, lifetime) are in test_jwt_matrix.py; these are identity tokens' own.
REFUSALS: list[tuple[str, Callable[[Keys], str], str]] = [
    (
        "es256-to-rs256-site",
        lambda k: jwt.encode(claims(), k.ec, algorithm="ES256"),
        "algorithm 'ES256' not allowed",
    ),
    ("sub-missing", lambda k: k.rs256(claims(sub=None)), "no 'sub' claim"),
    ("sub-empty", lambda k: k.rs256(claims(sub=" ")), "'sub' must be a non-empty string"),
    # `sub` is a user id as the hello's `user` is (names.py): what the API can address.
    ("sub-257", lambda k: k.rs256(claims(sub="u" * 257)), "'sub' must be printable text"),
    ("sub-control", lambda k: k.rs256(claims(sub="u\x00v")), "without control characters"),
    ("sub-c1-control", lambda k: k.rs256(claims(sub="u\x85")), "without control characters"),
    ("sub-surrogate", lambda k: k.rs256(claims(sub="\ud800")), "without control characters"),
    ("sub-tab", lambda k: k.rs256(claims(sub="\tu")), "'sub' must be printable text"),
    ("org-number", lambda k: k.rs256(claims(org=7)), "'org' must be a non-empty string"),
    ("org-257", lambda k: k.rs256(claims(org="o" * 257)), "'org' must be printable text"),
    ("role-control", lambda k: k.rs256(claims(role="r\x1b[31m")), "'role' must be printable"),
    ("role-empty", lambda k: k.rs256(claims(role="")), "'role' must be a non-empty string"),
    ("limit-zero", lambda k: k.rs256(claims(limit=0)), "between 1 and 1000, not 0"),
    ("limit-string", lambda k: k.rs256(claims(limit="3")), "'limit' must be an integer"),
    ("limit-1001", lambda k: k.rs256(claims(limit=1001)), "between 1 and 1000, not 1001"),
    ("limit-float", lambda k: k.rs256(claims(limit=2.0)), "'limit' must be an integer"),
    ("limit-boolean", lambda k: k.rs256(claims(limit=True)), "'limit' must be an integer"),
    ("mode-unknown", lambda k: k.rs256(claims(mode="sharing")), "'mode' is 'sharing', not one"),
    ("policy-unknown", lambda k: k.rs256(claims(policy="kick")), "'policy' is 'kick', not one"),
    ("policy-number", lambda k: k.rs256(claims(policy=1)), "'policy' is 1, not one"),
]


def _rs(k: Keys) -> Callable[[bytes], bytes]:
    """An RS256 signer for hand-made tokens."""
    return lambda m: jwt.get_algorithm_by_name("RS256").sign(m, k.rsa)


@pytest.mark.parametrize(
    ("make", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refused(
    keys: Keys, rs256: IdentityConfig, make: Callable[[Keys], str], message: str
) -> None:
    with pytest.raises(InvalidIdentity, match=message):
        verify_identity(make(keys), rs256, now=NOW)


def test_rs256_token_refused_by_an_hs256_site(keys: Keys) -> None:
    config = IdentityConfig(algorithm="HS256", secret=SECRET, audience=SITE, issuer=ISSUER)
    with pytest.raises(InvalidIdentity, match=r"algorithm 'RS256' not allowed \(expected HS256\)"):
        verify_identity(keys.rs256(claims()), config, now=NOW)


def test_hs256_token_with_another_secret() -> None:
    config = IdentityConfig(algorithm="HS256", secret=SECRET, audience=SITE, issuer=ISSUER)
    token = jwt.encode(claims(), "sk_" + "y" * 43, algorithm="HS256")
    with pytest.raises(InvalidIdentity, match="signature is invalid"):
        verify_identity(token, config, now=NOW)


def test_hs256_keyed_with_public_pem_fails_even_to_a_site_allowing_hs256(keys: Keys) -> None:
    # Even a site that did take HS256 would check the HMAC with its own secret, not the PEM.
    config = IdentityConfig(algorithm="HS256", secret=SECRET, audience=SITE, issuer=ISSUER)
    with pytest.raises(InvalidIdentity, match="signature is invalid"):
        verify_identity(_hs256_with_public_pem(keys), config, now=NOW)


def test_errors_belong_to_the_identity_branch() -> None:
    assert issubclass(InvalidIdentity, IdentityError)
    assert issubclass(IdentityRequired, IdentityError)


def test_token_just_under_the_cap_is_parsed(keys: Keys, rs256: IdentityConfig) -> None:
    token = keys.rs256(claims(extra="x" * 5000))  # a claim of the site's own, not checked
    assert len(token) <= MAX_TOKEN_BYTES
    assert verify_identity(token, rs256, now=NOW).user == "u1"


def test_hmac_digest_matches_pyjwt() -> None:
    # The forge helper signs like PyJWT does, so a refusal above is the verifier's doing.
    token = forge(
        {"alg": "HS256"}, claims(), lambda m: hmac.new(SECRET.encode(), m, hashlib.sha256).digest()
    )
    config = IdentityConfig(algorithm="HS256", secret=SECRET, audience=SITE, issuer=ISSUER)
    assert verify_identity(token, config, now=NOW).user == "u1"


# -- configuration ------------------------------------------------------------------------


def _weak_rsa_pem() -> str:
    return pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


CONFIG_ERRORS: list[tuple[str, Callable[[Keys], dict[str, Any]], str]] = [
    ("hs256-no-secret", lambda k: {"algorithm": "HS256"}, "need the site secret"),
    (
        "hs256-short-secret",
        lambda k: {"algorithm": "HS256", "secret": "short"},
        "at least 32 bytes",
    ),
    (
        "hs256-pem-secret",
        lambda k: {"algorithm": "HS256", "secret": pem(k.rsa)},
        "not be a public key",
    ),
    (
        "hs256-with-public-key",
        lambda k: {"algorithm": "HS256", "secret": SECRET, "public_key": pem(k.rsa)},
        "not a public key or jwks",
    ),
    ("rs256-with-secret", lambda k: {"algorithm": "RS256", "secret": SECRET}, "not a secret"),
    ("rs256-no-key", lambda k: {"algorithm": "RS256"}, "one of public_key or jwks"),
    (
        "rs256-both-keys",
        lambda k: {"algorithm": "RS256", "public_key": pem(k.rsa), "jwks": k.jwks()},
        "one of public_key or jwks",
    ),
    (
        "rs256-ec-key",
        lambda k: {"algorithm": "RS256", "public_key": pem(k.ec)},
        "not a valid RS256 key",
    ),
    (
        "es256-rsa-key",
        lambda k: {"algorithm": "ES256", "public_key": pem(k.rsa)},
        "not a valid ES256 key",
    ),
    (
        "es256-p384-key",
        lambda k: {
            "algorithm": "ES256",
            "public_key": pem(ec.generate_private_key(ec.SECP384R1())),
        },
        "not a valid ES256 key",
    ),
    (
        "rs256-private-key",
        lambda k: {"algorithm": "RS256", "public_key": private_pem(k.rsa)},
        "private key",
    ),
    (
        "rs256-garbage-pem",
        lambda k: {"algorithm": "RS256", "public_key": "-----BEGIN nonsense"},
        "not a valid",
    ),
    (
        "rs256-weak-key",
        lambda k: {"algorithm": "RS256", "public_key": _weak_rsa_pem()},
        "1024 bits",
    ),
    (
        "jwks-without-keys",
        lambda k: {"algorithm": "RS256", "jwks": {"keys": []}},
        "no signing key for RS256",
    ),
    ("jwks-not-a-set", lambda k: {"algorithm": "RS256", "jwks": {"kty": "RSA"}}, "'keys' array"),
    (
        "jwks-only-ec",
        lambda k: {"algorithm": "RS256", "jwks": {"keys": k.jwks()["keys"][2:]}},
        "no signing key for RS256",
    ),
    (
        "jwks-private-key",
        lambda k: {
            "algorithm": "RS256",
            "jwks": {"keys": [RSAAlgorithm.to_jwk(k.rsa, as_dict=True)]},
        },
        "private key",
    ),
    (
        "jwks-duplicate-kid",
        lambda k: {"algorithm": "RS256", "jwks": {"keys": k.jwks()["keys"][:2] * 2}},
        "same kid",
    ),
    ("algorithm-none", lambda k: {"algorithm": "none", "secret": SECRET}, "HS256, RS256 or ES256"),
    (
        "algorithm-hs512",
        lambda k: {"algorithm": "HS512", "secret": SECRET},
        "HS256, RS256 or ES256",
    ),
    ("negative-leeway", lambda k: {"algorithm": "HS256", "secret": SECRET, "leeway": -1}, "leeway"),
    ("empty-issuer", lambda k: {"algorithm": "HS256", "secret": SECRET, "issuer": ""}, "issuer"),
    ("no-issuer", lambda k: {"algorithm": "HS256", "secret": SECRET, "issuer": None}, "issuer"),
]


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS]
)
def test_bad_config_is_refused(
    keys: Keys, make: Callable[[Keys], dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        IdentityConfig(**{"audience": SITE, "issuer": ISSUER, **make(keys)})


def test_config_needs_an_audience() -> None:
    with pytest.raises(ConfigError, match="audience"):
        IdentityConfig(algorithm="HS256", secret=SECRET, audience="", issuer=ISSUER)


def test_config_keeps_its_secret_out_of_repr() -> None:
    config = IdentityConfig(algorithm="HS256", secret=SECRET, audience=SITE, issuer=ISSUER)
    assert SECRET not in repr(config)


def test_fetched_keys_verify_like_a_stored_jwks(keys: Keys) -> None:
    fetched = KeySet.from_jwks(keys.jwks(), ("RS256",))  # what the JWKS cache hands over
    config = IdentityConfig(algorithm="RS256", key_set=fetched, audience=SITE, issuer=ISSUER)
    assert verify_identity(keys.rs256(claims(), kid="new"), config, now=NOW).user == "u1"
    with pytest.raises(InvalidIdentity, match="signing key 'gone' is unknown"):
        verify_identity(keys.rs256(claims(), kid="gone"), config, now=NOW)


def test_fetched_keys_are_one_source_pinned_to_the_algorithm(keys: Keys) -> None:
    both = KeySet.from_jwks(keys.jwks(), ("RS256", "ES256"))
    with pytest.raises(ConfigError, match="other than RS256"):
        IdentityConfig(algorithm="RS256", key_set=both, audience=SITE, issuer=ISSUER)
    fetched = KeySet.from_jwks(keys.jwks(), ("RS256",))
    with pytest.raises(ConfigError, match="one of public_key or jwks"):
        IdentityConfig(
            algorithm="RS256",
            key_set=fetched,
            public_key=pem(keys.rsa),
            audience=SITE,
            issuer=ISSUER,
        )
    with pytest.raises(ConfigError, match="not a public key or jwks"):
        IdentityConfig(
            algorithm="HS256", secret=SECRET, key_set=fetched, audience=SITE, issuer=ISSUER
        )
