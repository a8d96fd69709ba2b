"""Back-Channel Logout tokens: spec section 2.6, step by step, and how long a jti is kept.

Refusing a replayed jti is the endpoint's, against the database: see
tests/integration/test_backchannel_logout.py and the database contract.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from seatguard.errors import ConfigError, IdentityError, InvalidLogoutToken
from seatguard.identity.backchannel import (
    LOGOUT_ALGORITHMS,
    LOGOUT_EVENT,
    BackchannelConfig,
    LogoutRequest,
    verify_logout_token,
)
from seatguard.identity.jws import KeySet

NOW = 1_700_000_000.0
ISSUER = "https://idp.example"
CLIENT = "seatguard-acme"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for tokens PyJWT refuses to make."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def claims(**changes: Any) -> dict[str, Any]:
    """A valid logout token's claims for session sess-1; a change of None removes the claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": NOW,
        "exp": NOW + 120,
        "jti": "jti-1",
        "events": {LOGOUT_EVENT: {}},
        "sid": "sess-1",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@dataclass(frozen=True)
class Keys:
    rsa: RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    attacker: RSAPrivateKey

    def sign(self, body: dict[str, Any], *, typ: str | None = "logout+jwt", kid: str = "r1") -> str:
        return jwt.encode(body, self.rsa, algorithm="RS256", headers={"typ": typ, "kid": kid})

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "kid": "r1"},
                {**ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "kid": "e1"},
            ]
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        attacker=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def config(keys: Keys) -> BackchannelConfig:
    return BackchannelConfig(issuer=ISSUER, audience=CLIENT, jwks=keys.jwks())


def verify(token: str, config: BackchannelConfig) -> LogoutRequest:
    return verify_logout_token(token, config, now=NOW)


# -- accepted tokens ----------------------------------------------------------------------


def test_session_logout(keys: Keys, config: BackchannelConfig) -> None:
    assert verify(keys.sign(claims()), config) == LogoutRequest(
        sub=None, sid="sess-1", jti="jti-1", exp=NOW + 120, until=NOW + 120 + 30
    )


def test_user_logout(keys: Keys, config: BackchannelConfig) -> None:
    request = verify(keys.sign(claims(sid=None, sub="u1")), config)
    assert (request.sub, request.sid) == ("u1", None)


def test_user_and_session_logout(keys: Keys, config: BackchannelConfig) -> None:
    request = verify(keys.sign(claims(sub="u1")), config)
    assert (request.sub, request.sid) == ("u1", "sess-1")


def test_es256_token(keys: Keys, config: BackchannelConfig) -> None:
    token = jwt.encode(
        claims(), keys.ec, algorithm="ES256", headers={"typ": "logout+jwt", "kid": "e1"}
    )
    assert verify(token, config).sid == "sess-1"


@pytest.mark.parametrize(
    ("typ", "body"),
    [
        (None, claims()),  # providers that predate explicit typing
        ("application/logout+jwt", claims()),
        ("Logout+JWT", claims()),
        ("logout+jwt", claims(events={LOGOUT_EVENT: {}, "https://other.example/event": {}})),
        ("logout+jwt", claims(iat=NOW - 329)),  # max_age 300 plus leeway 30, less 1 s
        ("logout+jwt", claims(iat=NOW + 30, exp=NOW + 150)),  # a provider clock 30 s ahead
    ],
    ids=["no-typ", "typ-media-type", "typ-case", "more-events", "old", "ahead"],
)
def test_accepted_edges(
    keys: Keys, config: BackchannelConfig, typ: str | None, body: dict[str, Any]
) -> None:
    assert verify(keys.sign(body, typ=typ), config).jti == "jti-1"


# -- refused tokens -----------------------------------------------------------------------


# The attacks every signed token must withstand (algorithms, keys, shape, times, audience,
# issuer, claim types) are in test_jwt_matrix.py; these are logout tokens' own.
REFUSALS: list[tuple[str, Callable[[Keys], str], str]] = [
    ("events-missing", lambda k: k.sign(claims(events=None)), "no 'events' claim"),
    (
        "events-array",
        lambda k: k.sign(claims(events=[LOGOUT_EVENT])),
        "'events' must be a JSON object",
    ),
    (
        "wrong-event",
        lambda k: k.sign(claims(events={"http://schemas.openid.net/event/other": {}})),
        "lacks the back-channel logout event",
    ),
    (
        "event-not-object",
        lambda k: k.sign(claims(events={LOGOUT_EVENT: True})),
        "logout event must be a JSON object",
    ),
    ("nonce", lambda k: k.sign(claims(nonce="n-0S6_WzA2Mj")), "must not contain a 'nonce' claim"),
    ("no-sub-no-sid", lambda k: k.sign(claims(sid=None)), "neither a 'sub' nor a 'sid'"),
    ("sid-empty", lambda k: k.sign(claims(sid="")), "'sid' must be a non-empty string"),
    (
        "too-old",
        lambda k: k.sign(claims(iat=NOW - 330)),
        r"too old \(issued 330 s ago, at most 300 s\)",
    ),
    ("jti-missing", lambda k: k.sign(claims(jti=None)), "no 'jti' claim"),
    ("jti-number", lambda k: k.sign(claims(jti=12)), "'jti' must be a non-empty string"),
    (
        "ec-signature-for-rsa-kid",
        lambda k: jwt.encode(claims(), k.ec, algorithm="ES256", headers={"kid": "r1"}),
        "signing key 'r1' is unknown",
    ),
    ("typ-id-token", lambda k: k.sign(claims(), typ="at+jwt"), "type 'at\\+jwt' not accepted"),
]


@pytest.mark.parametrize(
    ("make", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refused(
    keys: Keys, config: BackchannelConfig, make: Callable[[Keys], str], message: str
) -> None:
    with pytest.raises(InvalidLogoutToken, match=message):
        verify(make(keys), config)


def test_logout_errors_belong_to_the_identity_branch() -> None:
    assert issubclass(InvalidLogoutToken, IdentityError)


# -- how long a jti is kept -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "until"),
    [
        (claims(), NOW + 120 + 30),  # exp comes first
        (claims(exp=NOW + 3600), NOW + 300 + 30),  # max_age comes first
    ],
    ids=["exp", "max-age"],
)
def test_a_jti_is_kept_until_its_token_would_fail_anyway(
    keys: Keys, config: BackchannelConfig, body: dict[str, Any], until: float
) -> None:
    assert verify(keys.sign(body), config).until == until
    verify_logout_token(keys.sign(body), config, now=until - 1)  # still passes just before
    with pytest.raises(InvalidLogoutToken, match=r"expired|too old"):
        verify_logout_token(keys.sign(body), config, now=until)


def test_checking_a_token_twice_is_pure(keys: Keys, config: BackchannelConfig) -> None:
    # Verifying remembers nothing: the endpoint decides about replays, in the database.
    token = keys.sign(claims())
    assert verify(token, config) == verify(token, config)


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algorithms": ("RS256", "HS256")}, "public-key algorithms"),
        ({"algorithms": ("none",)}, "public-key algorithms"),
        ({"algorithms": ()}, "at least one algorithm"),
        ({"algorithms": ("PS256",), "jwks": {"keys": []}}, "no signing key for PS256"),
        ({"issuer": ""}, "issuer and an audience"),
        ({"audience": ""}, "issuer and an audience"),
        ({"max_age": 0}, "max_age"),
        ({"leeway": float("nan")}, "leeway"),
    ],
    ids=["hs256", "none", "no-algorithms", "no-keys", "issuer", "audience", "max-age", "leeway"],
)
def test_bad_config_is_refused(keys: Keys, changes: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": CLIENT, "jwks": keys.jwks()}
    with pytest.raises(ConfigError, match=message):
        BackchannelConfig(**{**settings, **changes})


def test_rsa_keys_serve_every_allowed_rsa_algorithm(keys: Keys) -> None:
    config = BackchannelConfig(
        issuer=ISSUER, audience=CLIENT, jwks=keys.jwks(), algorithms=("RS256", "PS256")
    )
    headers = {"typ": "logout+jwt", "kid": "r1"}
    token = jwt.encode(claims(), keys.rsa, algorithm="PS256", headers=headers)
    assert verify(token, config).sid == "sess-1"
    with pytest.raises(InvalidLogoutToken, match="algorithm 'ES256' not allowed"):
        verify(jwt.encode(claims(), keys.ec, algorithm="ES256", headers=headers), config)


def test_fetched_keys_verify_like_a_stored_jwks(keys: Keys) -> None:
    fetched = KeySet.from_jwks(keys.jwks(), LOGOUT_ALGORITHMS)  # from the JWKS cache
    config = BackchannelConfig(issuer=ISSUER, audience=CLIENT, key_set=fetched)
    assert verify(keys.sign(claims()), config).sid == "sess-1"
    with pytest.raises(ConfigError, match="jwks or jwks_uri"):
        BackchannelConfig(issuer=ISSUER, audience=CLIENT)
    with pytest.raises(ConfigError, match="jwks or jwks_uri"):
        BackchannelConfig(issuer=ISSUER, audience=CLIENT, jwks=keys.jwks(), key_set=fetched)
    wider = KeySet.from_jwks(keys.jwks(), ("RS256", "PS256", "ES256"))
    with pytest.raises(ConfigError, match="other than"):
        BackchannelConfig(issuer=ISSUER, audience=CLIENT, key_set=wider)
