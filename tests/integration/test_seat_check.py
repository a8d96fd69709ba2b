"""`POST /api/v1/seats/check` on a real server: the live answer for a seat token.

Sessions are seated through real sockets; their tokens are signed in-process with the
server's own key file (what its node signs with), and checked over HTTP. Bad tokens come
first, then what the sessions behind good tokens do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from seatguard.seat import SeatKey, SeatKeyRing, SeatKeySet, SeatTokens, load_seat_keys
from seatguard.settings import Settings
from tests.helpers import RedisServer, Server, scaled
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab, ident
from tests.integration.cluster import Cluster, start_cluster

pytestmark = pytest.mark.anyio

CHECK = "/seats/check"


@pytest.fixture(scope="module")
def mine(server: Server) -> dict[str, Any]:
    return server.create_site("--name", "Mine", "--origin", "*")


@pytest.fixture(scope="module")
def theirs(server: Server) -> dict[str, Any]:
    return server.create_site("--name", "Theirs", "--origin", "*")


def issuer_of(server: Server) -> SeatTokens:
    """Tokens signed with the server's own key file, as its node signs them."""
    ring = load_seat_keys(Settings(db=str(server.db)), create=False, now=time.time())
    return SeatTokens(ring, server.http)


def signing_key(server: Server) -> SeatKey:
    return issuer_of(server).keys.current().signing(time.time())


async def seated(server: Server, site: dict[str, Any], user: str | None = None) -> Browser:
    """A browser of `user` (a new one by default) holding a seat through a real socket."""
    browser = Browser(user or "user-" + ident())
    _, welcome = await Tab.open(server.ws, site["key"], browser)
    assert welcome["state"] == "admitted", welcome
    return browser


def token_for(server: Server, site: dict[str, Any], browser: Browser, **extra: Any) -> str:
    seat = issuer_of(server).issue(
        site=site["key"], user=browser.user, session=browser.session, device=browser.device, **extra
    )
    return seat.token


async def check(client: httpx.AsyncClient, token: object) -> dict[str, Any]:
    """The 200 answer for `token`."""
    r = await client.post(CHECK, json={"token": token})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = r.json()
    return answer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature))
    )


# --- bad tokens -----------------------------------------------------------------------

Forge = Callable[[Server, dict[str, Any], str], str]
"""Makes a bad token from the server, the site, and a good token of a seated session."""


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _resigned(
    server: Server, good: str, claims: dict[str, Any], key: Any = None, **header: Any
) -> str:
    """`good` with these claims over its own, signed with the server's key (or `key`); a
    header member given as None is left out."""
    signer = signing_key(server)
    given = {"kid": signer.kid, "typ": "seat+jwt", **header}
    headers = {k: v for k, v in given.items() if v is not None}
    body = {k: v for k, v in {**_claims(good), **claims}.items() if v is not None}
    return jwt.encode(body, key or signer.private_key, algorithm="ES256", headers=headers)


def _forged(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {}, key=ec.generate_private_key(ec.SECP256R1()))


def _tampered(server: Server, site: dict[str, Any], good: str) -> str:
    head, _, signature = good.split(".")
    body = b64(json.dumps({**_claims(good), "sub": "mallory"}).encode())
    return f"{head}.{body}.{signature}"


def _expired(server: Server, site: dict[str, Any], good: str) -> str:
    now = int(time.time())
    return _resigned(server, good, {"iat": now - 300, "exp": now - 60})


def _not_yet_valid(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {"nbf": int(time.time()) + 120})


def _issued_in_the_future(server: Server, site: dict[str, Any], good: str) -> str:
    now = int(time.time())
    return _resigned(server, good, {"iat": now + 120, "exp": now + 240})


def _too_long_lived(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {"exp": int(time.time()) + 3600})


def _another_issuer(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {"iss": "https://evil.example"})


def _no_audience(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {"aud": None})


def _another_type(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {}, typ="JWT")


def _no_kid(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {}, kid=None)


def _unknown_kid(server: Server, site: dict[str, Any], good: str) -> str:
    return _resigned(server, good, {}, kid="made-up")


def _alg_none(server: Server, site: dict[str, Any], good: str) -> str:
    header = {"alg": "none", "kid": signing_key(server).kid, "typ": "seat+jwt"}
    return compact(header, _claims(good))


def _hmac_with_the_public_key(server: Server, site: dict[str, Any], good: str) -> str:
    """Algorithm confusion: HS256 keyed with the public key anyone can fetch."""
    key = signing_key(server)
    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = compact({"alg": "HS256", "kid": key.kid, "typ": "seat+jwt"}, _claims(good))
    head, body, _ = unsigned.split(".")
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def _truncated(server: Server, site: dict[str, Any], good: str) -> str:
    return good[:-10]


def _without_signature(server: Server, site: dict[str, Any], good: str) -> str:
    return good.rsplit(".", 1)[0] + "."


def _twice_a_member(server: Server, site: dict[str, Any], good: str) -> str:
    """Signed with the server's key: parsers keeping the first `sub` and those keeping the
    last would read two users."""
    doubled = json.dumps(_claims(good))[:-1] + ', "sub": "mallory"}'
    key = signing_key(server)
    headers = {"kid": key.kid, "typ": "seat+jwt"}
    return jwt.api_jws.encode(doubled.encode(), key.private_key, "ES256", headers)


def _another_sites(server: Server, site: dict[str, Any], good: str) -> str:
    claims = _claims(good)
    other = issuer_of(server).issue(
        site="pk_another_site", user=claims["sub"], session=claims["sid"], device=claims["did"]
    )
    return other.token


BAD_TOKENS: list[tuple[str, Forge, str, str]] = [
    # name, how it is made, the reason, words the detail says
    ("forged", _forged, "invalid", "signature is invalid"),
    ("tampered", _tampered, "invalid", "signature is invalid"),
    ("expired", _expired, "expired", "expired"),
    ("not yet valid", _not_yet_valid, "invalid", "not yet valid"),
    ("issued in the future", _issued_in_the_future, "invalid", "in the future"),
    ("lives too long", _too_long_lived, "invalid", "more than 900 s"),
    ("another issuer", _another_issuer, "invalid", "issuer mismatch"),
    ("no audience", _no_audience, "invalid", "no 'aud' claim"),
    ("another site's", _another_sites, "invalid", "audience mismatch"),
    ("another type", _another_type, "invalid", "seat token type 'JWT'"),
    ("no kid", _no_kid, "invalid", "no 'kid' header"),
    ("unknown kid", _unknown_kid, "invalid", "signing key 'made-up' is unknown"),
    ("alg none", _alg_none, "invalid", "algorithm 'none' not allowed"),
    ("HMAC with the public key", _hmac_with_the_public_key, "invalid", "'HS256' not allowed"),
    ("truncated", _truncated, "invalid", "seat token"),
    ("no signature", _without_signature, "invalid", "seat token"),
    ("a claim twice", _twice_a_member, "invalid", "'sub' twice"),
    ("garbage", lambda *_: "not a token at all", "invalid", "malformed"),
    ("three dots of garbage", lambda *_: "a.b.c", "invalid", "malformed"),
    ("not ASCII", lambda *_: "ü.ü.ü", "invalid", "malformed"),
]


@pytest.mark.parametrize(
    ("forge", "reason", "words"),
    [case[1:] for case in BAD_TOKENS],
    ids=[case[0] for case in BAD_TOKENS],
)
async def test_a_bad_token_is_inactive_with_its_reason_and_harms_nobody(
    server: Server, mine: dict[str, Any], forge: Forge, reason: str, words: str
) -> None:
    browser = await seated(server, mine)
    good = token_for(server, mine, browser)
    async with api(server, mine) as client:
        answer = await check(client, forge(server, mine, good))
        assert answer["active"] is False and answer["reason"] == reason, answer
        assert words in answer["detail"], answer
        assert set(answer) == {"active", "reason", "detail"}
        # The session behind the good token holds its seat still.
        assert (await check(client, good))["active"] is True
        r = await client.get(f"/users/{browser.user}/seat")
        assert r.json()["admitted"] == [browser.session]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"token": "x" * 8193}, 422, "token"),  # over 8 KiB: refused before any parsing
        ({"token": "x" * 20_000}, 413, "16 KiB"),  # the body itself is over 16 KiB
        ({}, 422, "token"),
        ({"token": ""}, 422, "token"),
        ({"token": 1}, 422, "token"),
        ({"token": None}, 422, "token"),
        ({"token": ["a.b.c"]}, 422, "token"),
        ({"token": "a.b.c", "site": "pk_x"}, 422, "site"),
        ([], 422, ""),
    ],
    ids=[
        "oversized",
        "body too big",
        "missing",
        "empty",
        "number",
        "null",
        "array",
        "extra field",
        "not an object",
    ],
)
async def test_a_malformed_request_is_refused_with_problem_details(
    server: Server, mine: dict[str, Any], body: Any, status: int, words: str
) -> None:
    async with api(server, mine) as client:
        r = await client.post(CHECK, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert words in r.json()["detail"]


async def test_malformed_json_is_400(server: Server, mine: dict[str, Any]) -> None:
    async with api(server, mine) as client:
        r = await client.post(CHECK, content=b'{"token": ', headers={"content-type": "x"})
    assert r.status_code == 400 and r.json()["title"] == "Malformed JSON"


async def test_only_the_sites_secret_key_may_ask(server: Server, mine: dict[str, Any]) -> None:
    token = token_for(server, mine, await seated(server, mine))
    async with httpx.AsyncClient(base_url=server.http + "/api/v1") as anonymous:
        r = await anonymous.post(CHECK, json={"token": token})
        assert r.status_code == 401 and "error=" not in r.headers["www-authenticate"]
        for wrong in (mine["key"], "sk_" + "0" * 40, token):  # the public key, a guess, the token
            r = await anonymous.post(
                CHECK, json={"token": token}, headers={"Authorization": f"Bearer {wrong}"}
            )
            assert r.status_code == 401, r.text
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            assert "admitted" not in r.text and "active" not in r.text
        r = await anonymous.get(CHECK, headers={"Authorization": f"Bearer {mine['secret']}"})
        assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_another_sites_secret_key_learns_nothing_of_the_session(
    server: Server, mine: dict[str, Any], theirs: dict[str, Any]
) -> None:
    """Their key asking about our token gets `invalid`, never our session's state: the
    answer is the same whether the session holds a seat, waits or was revoked."""
    browser = await seated(server, mine)
    token = token_for(server, mine, browser, org="acme", role="admin")
    async with api(server, theirs) as them, api(server, mine) as us:
        assert (await check(us, token))["active"] is True  # verified, and kept, for us
        seen = await check(them, token)
        assert seen == {
            "active": False,
            "reason": "invalid",
            "detail": f"seat token audience mismatch (expected {theirs['key']!r})",
        }
        r = await us.delete(f"/users/{browser.user}/sessions/{browser.session}")
        assert r.status_code == 200
        assert await check(them, token) == seen
        assert (await check(us, token))["reason"] == "revoked"


async def test_a_replaced_secret_key_stops_checking_seats_at_once(server: Server) -> None:
    """The seat check takes its caller's site from the node's cache: the node that
    replaced a secret key with no overlap refuses the old one at the very next call."""
    site = server.create_site("--name", "Rotating", "--origin", "*")
    token = token_for(server, site, await seated(server, site))
    async with api(server, site) as old:
        assert (await check(old, token))["active"] is True  # the old key is now cached
        r = await old.post("/site/secret", json={"kind": "secret_key", "overlap": 0})
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
        r = await old.post(CHECK, json={"token": token})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        r = await old.post(CHECK, json={"token": token}, headers={"Authorization": f"Bearer {new}"})
        assert r.status_code == 200 and r.json()["active"] is True


# --- what the session behind a good token does -----------------------------------------


async def test_a_seated_sessions_token_is_active_with_its_claims(
    server: Server, mine: dict[str, Any]
) -> None:
    browser = await seated(server, mine)
    token = token_for(server, mine, browser, org="acme", role="admin")
    async with api(server, mine) as client:
        answer = await check(client, token)
    claims = _claims(token)
    assert answer == {"active": True, **claims}
    assert answer["sub"] == browser.user and answer["sid"] == browser.session
    assert answer["did"] == browser.device and answer["aud"] == mine["key"]
    assert answer["iss"] == server.http and (answer["org"], answer["role"]) == ("acme", "admin")
    plain = token_for(server, mine, browser)  # no org or role: none in the answer either
    async with api(server, mine) as client:
        assert set(await check(client, plain)) == {"active", *_claims(plain)} - {"org", "role"}


async def test_a_revoked_session_fails_at_once_with_an_unexpired_token(
    server: Server, mine: dict[str, Any]
) -> None:
    browser = await seated(server, mine)
    token = token_for(server, mine, browser)
    async with api(server, mine) as client:
        assert (await check(client, token))["active"] is True
        r = await client.delete(f"/users/{browser.user}/sessions/{browser.session}")
        assert r.status_code == 200
        answer = await check(client, token)  # the very next call, the token good for 2 min
    assert answer == {"active": False, "reason": "revoked", "detail": "the session was revoked"}


async def test_a_blocked_sessions_token_is_inactive(server: Server, mine: dict[str, Any]) -> None:
    """Limit 1: the second browser of the user waits, whatever token it holds."""
    first = await seated(server, mine)
    second = Browser(first.user)
    _, welcome = await Tab.open(server.ws, mine["key"], second)
    assert welcome["state"] == "blocked"
    async with api(server, mine) as client:
        answer = await check(client, token_for(server, mine, second))
        assert answer["reason"] == "blocked" and "limit" in answer["detail"], answer
        assert (await check(client, token_for(server, mine, first)))["active"] is True


async def test_a_session_that_signed_out_has_ended(server: Server, mine: dict[str, Any]) -> None:
    browser = Browser("user-" + ident())
    tab, _ = await Tab.open(server.ws, mine["key"], browser)
    token = token_for(server, mine, browser)
    await tab.send({"t": "logout"})
    await tab.closed()
    async with api(server, mine) as client:
        answer = await check(client, token)
    assert answer["active"] is False and answer["reason"] == "ended", answer


async def test_a_token_for_another_device_of_the_session_is_inactive(
    server: Server, mine: dict[str, Any]
) -> None:
    browser = await seated(server, mine)
    elsewhere = Browser(browser.user, browser.session, device="another-device")
    async with api(server, mine) as client:
        answer = await check(client, token_for(server, mine, elsewhere))
    assert answer["reason"] == "ended", answer


async def test_a_user_nobody_seated_has_no_active_token(
    server: Server, mine: dict[str, Any]
) -> None:
    async with api(server, mine) as client:
        answer = await check(client, token_for(server, mine, Browser("nobody-" + ident())))
    assert answer["reason"] == "ended", answer


# --- any node, and the shared store ---------------------------------------------------

PUBLIC_URL = "https://seats.example"  # the issuer every node of the cluster signs with


def two_nodes(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str,
    server_env: dict[str, str],
    **env: str,
) -> Iterator[tuple[Cluster, RedisServer]]:
    """Two nodes signing as PUBLIC_URL, on a Redis of their own, which the test may stop."""
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    tmp = tmp_path_factory.mktemp("pair")
    try:
        for cluster in start_cluster(
            tmp, redis, postgres_url, server_env, 2, SEATGUARD_PUBLIC_URL=PUBLIC_URL, **env
        ):
            yield cluster, redis
    finally:
        redis.stop()


@pytest.fixture
def pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, server_env: dict[str, str]
) -> Iterator[tuple[Cluster, RedisServer]]:
    yield from two_nodes(tmp_path_factory, postgres_url, server_env)


@pytest.fixture
def caching_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, server_env: dict[str, str]
) -> Iterator[tuple[Cluster, RedisServer]]:
    """Two nodes that would keep a site's settings for ten minutes if nobody told them."""
    yield from two_nodes(tmp_path_factory, postgres_url, server_env, SEATGUARD_SITE_CACHE_TTL="600")


def cluster_token(cluster: Cluster, site: dict[str, Any], browser: Browser) -> str:
    """A seat token for `browser`, signed with the cluster's keys as its nodes sign."""
    ring = SeatKeyRing(SeatKeySet.parse(cluster.env["SEATGUARD_SEAT_KEYS"], "the cluster's keys"))
    issued = SeatTokens(ring, PUBLIC_URL).issue(
        site=site["key"], user=browser.user, session=browser.session, device=browser.device
    )
    return issued.token


async def test_a_secret_key_replaced_on_one_node_stops_checking_seats_on_the_other(
    caching_pair: tuple[Cluster, RedisServer],
) -> None:
    """The other node hears of the rotation through the store's notices: the old key stops
    there at once, not when its site cache would have expired (here, ten minutes)."""
    cluster, _ = caching_pair
    site = cluster.create_site("--name", "Rotated", "--origin", "*")
    browser = await seated(cluster.nodes[0], site)
    token = cluster_token(cluster, site, browser)
    async with api(cluster.nodes[1], site) as old1, api(cluster.nodes[0], site) as old0:
        assert (await check(old1, token))["active"] is True  # node 1 now caches the old key
        r = await old0.post("/site/secret", json={"kind": "secret_key", "overlap": 0})
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
        with anyio.fail_after(scaled(5)):  # the notice's way through Redis
            while True:
                r = await old1.post(CHECK, json={"token": token})
                if r.status_code != 200:
                    break
                await anyio.sleep(0.05)
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        r = await old1.post(
            CHECK, json={"token": token}, headers={"Authorization": f"Bearer {new}"}
        )
        assert r.status_code == 200 and r.json()["active"] is True


async def test_any_node_answers_from_the_shared_store_and_503_without_it(
    pair: tuple[Cluster, RedisServer],
) -> None:
    cluster, redis = pair
    site = cluster.create_site("--name", "Pair", "--origin", "*")
    # Seated through node 0, checked on node 1, which holds no tab of the user.
    browser = await seated(cluster.nodes[0], site)
    token = cluster_token(cluster, site, browser)
    other = Browser("user-" + ident())
    await Tab.open(cluster.nodes[0].ws, site["key"], other)
    other_token = cluster_token(cluster, site, other)
    async with api(cluster.nodes[1], site) as node1, api(cluster.nodes[0], site) as node0:
        assert (await check(node1, token))["active"] is True
        r = await node0.delete(f"/users/{browser.user}/sessions/{browser.session}")
        assert r.status_code == 200
        assert (await check(node1, token))["reason"] == "revoked"
        assert (await check(node1, other_token))["active"] is True
        redis.stop()
        for node in (node0, node1):
            r = await node.post(CHECK, json={"token": other_token})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert int(r.headers["retry-after"]) >= 1
            assert "active" not in r.text
        # A bad token needs no store: it is refused as such, even now.
        assert (await check(node1, other_token[:-5]))["reason"] == "invalid"
