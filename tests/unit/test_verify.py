"""A site backend's seat token checks, hostile tokens first: `SeatVerifier`, `SeatMiddleware`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from seatguard.identity.jwks import Fetched
from seatguard.identity.jws import MAX_TOKEN_BYTES
from seatguard.seat import SeatKeyRing, SeatKeySet, SeatTokens
from seatguard.seat.keyset import PUBLISHED_AFTER_RETIREMENT, SWITCH_DELAY, SeatKey, new_key
from seatguard.verify import (
    InvalidSeatToken,
    KeysUnavailable,
    SeatClaims,
    SeatMiddleware,
    SeatTokenExpired,
    SeatVerifier,
)
from tests.unit.fakes import Clock

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
URL = "https://seats.example/.well-known/jwks.json"
ISSUER = "https://seats.example"
SITE = "pk_site"


class Server:
    """The Seatguard side: a key set, its tokens, and a fake fetch of its JWKS that counts."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ring = SeatKeyRing(SeatKeySet((new_key(clock.now),)))
        self.tokens = SeatTokens(self.ring, ISSUER, clock=clock)
        self.fetches = 0
        self.down = False

    async def fetch(self, url: str, limit: int) -> Fetched:
        assert url == URL
        self.fetches += 1
        if self.down:
            return Fetched(503, b"down")
        body = json.dumps(self.tokens.jwks()).encode()
        return Fetched(200, body, "public, max-age=300")

    def use(self, keys: SeatKeySet) -> None:
        """Sign with `keys` from now on (what a changed key file does)."""
        self.ring = SeatKeyRing(keys)
        self.tokens = SeatTokens(self.ring, ISSUER, clock=self.clock)

    @property
    def key(self) -> SeatKey:
        return self.ring.current().signing(self.clock.now)

    def token(self, **claims: Any) -> str:
        return self.tokens.issue(site=SITE, user="alice", session="s1", device="d1", **claims).token

    def signed(
        self, claims: dict[str, Any], *, key: Any = None, drop: tuple[str, ...] = (), **header: Any
    ) -> str:
        """A token with these claims over the usual ones, signed with the server's key;
        a header given as None is left out."""
        now = int(self.clock.now)
        usual = {"iss": ISSUER, "aud": SITE, "sub": "alice", "sid": "s1", "did": "d1",
                 "iat": now, "exp": now + 120, "jti": "j1"}  # fmt: skip
        body = {k: v for k, v in {**usual, **claims}.items() if k not in drop}
        given = {"kid": self.key.kid, "typ": "seat+jwt", **header}
        headers = {name: value for name, value in given.items() if value is not None}
        return jwt.encode(body, key or self.key.private_key, algorithm="ES256", headers=headers)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def server(clock: Clock) -> Server:
    return Server(clock)


@pytest.fixture
def verifier(server: Server, clock: Clock) -> SeatVerifier:
    return SeatVerifier(URL, ISSUER, SITE, leeway=5, fetch=server.fetch, clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature))
    )


async def refused(verifier: SeatVerifier, token: str, why: str) -> None:
    with pytest.raises(InvalidSeatToken, match=why):
        await verifier.verify(token)


async def test_a_good_token_gives_its_claims(server: Server, verifier: SeatVerifier) -> None:
    claims = await verifier.verify(server.token(org="acme", role="admin"))
    assert (claims.site, claims.user, claims.session, claims.device) == (SITE, "alice", "s1", "d1")
    assert (claims.org, claims.role, claims.issuer) == ("acme", "admin", ISSUER)
    assert (claims.issued_at, claims.expires_at) == (int(T0), int(T0) + 120)
    assert server.fetches == 1
    await verifier.verify(server.token())
    assert server.fetches == 1  # the key set is cached


async def test_a_forged_signature_is_refused(server: Server, verifier: SeatVerifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())  # same kid, another key
    await refused(verifier, server.signed({}, key=other), "signature is invalid")
    good = server.token()
    head, body, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered = b64(json.dumps({**claims, "sub": "mallory"}).encode())
    await refused(verifier, f"{head}.{tampered}.{signature}", "signature is invalid")


async def test_alg_none_is_refused(server: Server, verifier: SeatVerifier) -> None:
    claims = jwt.decode(server.token(), options={"verify_signature": False})
    header = {"alg": "none", "kid": server.key.kid, "typ": "seat+jwt"}
    await refused(verifier, compact(header, claims), "algorithm 'none' not allowed")


async def test_hs256_signed_with_the_public_key_is_refused(
    server: Server, verifier: SeatVerifier
) -> None:
    """Algorithm confusion: a verifier that let the token pick HS256 would check the HMAC
    with the public key's bytes, which anyone can fetch."""
    claims = jwt.decode(server.token(), options={"verify_signature": False})
    public = server.key.private_key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = json.dumps(server.key.public_jwk()).encode()
    for secret in (pem, jwk):
        unsigned = compact({"alg": "HS256", "kid": server.key.kid, "typ": "seat+jwt"}, claims)
        head, body, _ = unsigned.split(".")
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        await refused(verifier, f"{head}.{body}.{b64(mac)}", "algorithm 'HS256' not allowed")


async def test_a_key_of_another_type_under_es256_is_refused(server: Server, clock: Clock) -> None:
    """A JWKS entry that says ES256 but holds an RSA key never verifies anything."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    entry = {**jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True),
             "kid": "rsa", "alg": "ES256", "use": "sig"}  # fmt: skip

    async def fetch(url: str, limit: int) -> Fetched:
        return Fetched(200, json.dumps({"keys": [entry]}).encode())

    verifier = SeatVerifier(URL, ISSUER, SITE, fetch=fetch, clock=clock)
    with pytest.raises(KeysUnavailable, match="not a valid ES256 key"):
        await verifier.verify(server.signed({}, kid="rsa"))


async def test_the_kid_must_name_the_key_that_signed(server: Server, clock: Clock) -> None:
    keys = server.ring.current().rotated(T0)  # a second, published key
    server.use(keys)
    verifier = SeatVerifier(URL, ISSUER, SITE, fetch=server.fetch, clock=clock)
    first, second = keys.keys
    wrong = server.signed({}, key=first.private_key, kid=second.kid)
    await refused(verifier, wrong, "signature is invalid")
    await refused(verifier, server.signed({}, drop=(), kid=None), "no 'kid' header")


async def test_an_unknown_kid_fetches_once_then_not_again_for_a_while(
    server: Server, verifier: SeatVerifier, clock: Clock
) -> None:
    await verifier.verify(server.token())
    assert server.fetches == 1
    clock.now += 31  # past the refetch interval
    await refused(
        verifier, server.signed({}, kid="made-up-1"), "signing key 'made-up-1' is unknown"
    )
    assert server.fetches == 2  # the set may have been rotated: fetched again, once
    for i in range(50):
        await refused(verifier, server.signed({}, kid=f"made-up-{i + 2}"), "is unknown")
    assert server.fetches == 2  # forged key ids do not make it fetch on every request
    clock.now += 31
    await refused(verifier, server.signed({}, kid="made-up-x"), "is unknown")
    assert server.fetches == 3


async def test_a_new_key_is_found_by_fetching_again(
    server: Server, verifier: SeatVerifier, clock: Clock
) -> None:
    await verifier.verify(server.token())
    clock.now += 31  # past the refetch interval
    keys = server.ring.current().rotated(clock.now, switch_delay=0)  # a key that leaked
    server.use(keys)
    assert (await verifier.verify(server.token())).user == "alice"
    assert server.fetches == 2


async def test_time_claims(server: Server, verifier: SeatVerifier) -> None:
    now = int(T0)
    await refused(verifier, server.signed({"exp": now - 6}), "expired")
    await verifier.verify(server.signed({"exp": now - 4}))  # within the leeway
    await refused(verifier, server.signed({"nbf": now + 60}), "not yet valid")
    await refused(verifier, server.signed({"iat": now + 60, "exp": now + 120}), "in the future")
    await refused(verifier, server.signed({}, drop=("exp",)), "no 'exp' claim")
    await refused(verifier, server.signed({}, drop=("iat",)), "no 'iat' claim")
    await refused(verifier, server.signed({"exp": "soon"}), "must be a NumericDate")
    await refused(verifier, server.signed({"exp": now + 3600}), "more than 900 s")


async def test_expiry_alone_is_told_apart_from_other_faults(
    server: Server, verifier: SeatVerifier
) -> None:
    now = int(T0)
    with pytest.raises(SeatTokenExpired, match="expired"):
        await verifier.verify(server.signed({"iat": now - 200, "exp": now - 60}))
    for other in ({"aud": "pk_other"}, {"iss": "https://evil.example"}, {"sub": 5}):
        stale = server.signed({"iat": now - 200, "exp": now - 60, **other})
        with pytest.raises(InvalidSeatToken) as refused:
            await verifier.verify(stale)
        assert not isinstance(refused.value, SeatTokenExpired), refused.value


async def test_another_sites_token_or_another_issuers_is_refused(
    server: Server, verifier: SeatVerifier
) -> None:
    other_site = server.tokens.issue(site="pk_other", user="alice", session="s1", device="d1")
    await refused(verifier, other_site.token, "audience mismatch")
    await refused(verifier, server.signed({"aud": ["pk_other"]}), "audience mismatch")
    await refused(verifier, server.signed({"iss": "https://evil.example"}), "issuer mismatch")
    await refused(verifier, server.signed({}, drop=("iss",)), "no 'iss' claim")
    await refused(verifier, server.signed({}, drop=("aud",)), "no 'aud' claim")


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "seat", None, 1])
async def test_another_type_of_jwt_is_refused(
    typ: object, server: Server, verifier: SeatVerifier
) -> None:
    await refused(verifier, server.signed({}, typ=typ), "seat token type")


async def test_the_type_may_have_its_media_prefix(server: Server, verifier: SeatVerifier) -> None:
    await verifier.verify(server.signed({}, typ="application/Seat+JWT"))


@pytest.mark.parametrize("name", ["sub", "sid", "did", "jti"])
async def test_each_required_claim_must_be_a_string(
    name: str, server: Server, verifier: SeatVerifier
) -> None:
    await refused(verifier, server.signed({}, drop=(name,)), f"claim '{name}' is missing")
    await refused(verifier, server.signed({name: 7}), f"claim '{name}' is missing")
    await refused(verifier, server.signed({name: ""}), f"claim '{name}' is missing")


async def test_org_and_role_are_strings_when_present(
    server: Server, verifier: SeatVerifier
) -> None:
    await refused(verifier, server.signed({"org": ["a"]}), "claim 'org' is not a string")


async def test_oversized_and_malformed_tokens_are_refused_before_any_fetch(
    server: Server, verifier: SeatVerifier
) -> None:
    padded = server.signed({"pad": "x" * MAX_TOKEN_BYTES})
    await refused(verifier, padded, "too long")
    await refused(verifier, "", "empty")
    await refused(verifier, "a.b", "malformed")
    await refused(verifier, "ü.ü.ü", "malformed")
    assert server.fetches == 0


async def test_a_rotated_key_verifies_its_tokens_until_they_expire(
    server: Server, clock: Clock
) -> None:
    verifier = SeatVerifier(URL, ISSUER, SITE, fetch=server.fetch, clock=clock)
    server.use(server.ring.current().rotated(clock.now))
    old, new = server.ring.current().keys
    clock.now += SWITCH_DELAY - 1
    last_of_old = server.tokens.issue(site=SITE, user="u", session="s", device="d", ttl=900)
    assert last_of_old.kid == old.kid
    clock.now += 1
    assert server.key.kid == new.kid
    clock.now += 899 - 1  # the old key's last token is still valid: its key is still published
    assert {k["kid"] for k in server.tokens.jwks()["keys"]} == {old.kid, new.kid}
    assert (await verifier.verify(last_of_old.token)).user == "u"
    # Once every token it signed has expired, the old key is pruned from the set.
    clock.now = old.created + SWITCH_DELAY + PUBLISHED_AFTER_RETIREMENT
    assert [k["kid"] for k in server.tokens.jwks()["keys"]] == [new.kid]
    fresh = SeatVerifier(URL, ISSUER, SITE, fetch=server.fetch, clock=Clock(T0 + SWITCH_DELAY))
    await refused(fresh, last_of_old.token, f"signing key '{old.kid}' is unknown")


async def test_keys_that_cannot_be_had_are_not_a_refusal(
    server: Server, verifier: SeatVerifier
) -> None:
    server.down = True
    with pytest.raises(KeysUnavailable, match="HTTP 503"):
        await verifier.verify(server.token())


async def test_a_verifier_refuses_what_is_not_a_url_or_a_sane_leeway() -> None:
    with pytest.raises(ValueError, match="http"):
        SeatVerifier("file:///etc/jwks.json", ISSUER, SITE)
    with pytest.raises(ValueError, match="leeway"):
        SeatVerifier(URL, ISSUER, SITE, leeway=3600)


def app(verifier: SeatVerifier) -> SeatMiddleware:
    async def page(request: Request) -> JSONResponse:
        seat: SeatClaims = request.state.seat
        return JSONResponse({"user": seat.user, "session": seat.session})

    return SeatMiddleware(Starlette(routes=[Route("/page", page)]), verifier)


def client(verifier: SeatVerifier) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(verifier))
    return httpx.AsyncClient(transport=transport, base_url="http://site.example")


async def test_the_middleware_lets_a_seat_through_with_its_claims(
    server: Server, verifier: SeatVerifier
) -> None:
    async with client(verifier) as c:
        r = await c.get("/page", headers={"Seatguard-Seat": server.token()})
    assert r.status_code == 200 and r.json() == {"user": "alice", "session": "s1"}


async def test_the_middleware_answers_401_without_a_good_token(
    server: Server, verifier: SeatVerifier, clock: Clock
) -> None:
    async with client(verifier) as c:
        missing = await c.get("/page")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Seatguard-Seat realm="seat"'
        assert missing.headers["content-type"] == "application/problem+json"
        assert "send one seatguard-seat header" in missing.json()["detail"]
        forged = server.signed({}, kid='a"b\\c')
        bad = await c.get("/page", headers={"Seatguard-Seat": forged})
        assert bad.status_code == 401
        challenge = bad.headers["www-authenticate"]
        assert challenge.startswith('Seatguard-Seat realm="seat", error="invalid_token"')
        assert challenge.count('"') == 6  # the kid's quote and backslash did not break it
        expired = server.token()
        clock.now += 3600
        r = await c.get("/page", headers={"Seatguard-Seat": expired})
        assert r.status_code == 401 and "expired" in r.json()["detail"]
        clock.now -= 3600
        two = [("Seatguard-Seat", server.token()), ("Seatguard-Seat", server.token())]
        r = await c.get("/page", headers=two)
        assert r.status_code == 401 and "only" in r.json()["detail"]


async def test_the_middleware_answers_503_while_the_keys_cannot_be_had(
    server: Server, verifier: SeatVerifier
) -> None:
    server.down = True
    async with client(verifier) as c:
        r = await c.get("/page", headers={"Seatguard-Seat": server.token()})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
