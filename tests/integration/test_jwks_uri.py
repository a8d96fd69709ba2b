"""Keys fetched from a `jwks_uri`: a real key server on a free port, a real Seatguard server.

The key server is `http.server` in a thread, serving whatever document the test puts up and
counting what it was asked. The Seatguard server fetches at most once per
SEATGUARD_JWKS_REFETCH_INTERVAL (here `REFETCH` seconds instead of 30).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import SEATGUARD, Server, free_port, scaled, seatguard
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab, ident

pytestmark = pytest.mark.anyio

REFETCH = scaled(1.5)
"""Seconds between two fetches of one key URL, for this module's server."""
SERVER_ENV = {
    "SEATGUARD_JWKS_REFETCH_INTERVAL": str(REFETCH),
    "SEATGUARD_ALLOW_PRIVATE_URLS": "1",  # the key servers listen on loopback
}


def user() -> str:
    return "u-" + secrets.token_hex(4)


class KeyServer:
    """A provider's key endpoint: `document` at /jwks, on a port of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.hits += 1
                    body = json.dumps(owner.document).encode()
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None


class Signer:
    """A signing key with its key id, and its public half as a JWK."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, **headers})


@pytest.fixture(scope="module")
def signers() -> tuple[Signer, Signer]:
    return Signer("k1"), Signer("k2")


@pytest.fixture
def keys(signers: tuple[Signer, Signer]) -> Iterator[KeyServer]:
    """A live key server publishing the first signer's key."""
    served = KeyServer()
    served.document = {"keys": [signers[0].jwk]}
    served.start()
    yield served
    served.stop()


ISSUER, CLIENT = "https://op.example", "acme-client"


def logout_token(signer: Signer, **claims: Any) -> str:
    now = int(time.time())
    return signer.sign(
        {
            "iss": ISSUER,
            "aud": CLIENT,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_hex(8),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            **claims,
        },
        typ="logout+jwt",
    )


def oidc_site(server: Server, uri: str) -> str:
    created = server.create_site(
        "--name", "OIDC by URI", "--origin", "*", "--limit", "2",
        "--oidc-issuer", ISSUER, "--oidc-client-id", CLIENT, "--oidc-jwks-uri", uri,
    )  # fmt: skip
    return str(created["key"])


async def post_logout(server: Server, site: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=scaled(10)) as client:
        return await client.post(
            f"{server.http}/oidc/v1/{site}/backchannel-logout", data={"logout_token": token}
        )


# Back-channel logout.


async def test_a_logout_token_signed_by_a_fetched_key_revokes_the_session(
    server: Server, keys: KeyServer, signers: tuple[Signer, Signer]
) -> None:
    site, u = oidc_site(server, keys.url), user()
    assert keys.hits == 0  # nothing is fetched before a token needs it
    a, _ = await Tab.open(server.ws, site, Browser(u))
    b, _ = await Tab.open(server.ws, site, Browser(u))
    r = await post_logout(server, site, logout_token(signers[0], sub=u))
    assert r.status_code == 200, r.text
    for tab in (a, b):
        assert (await tab.closed())[0] == 4010
    # The set is cached: the next token needs no fetch.
    r = await post_logout(server, site, logout_token(signers[0], sub=user()))
    assert r.status_code == 200, r.text
    assert keys.hits == 1


async def test_a_rotated_key_is_picked_up_on_its_unknown_kid_but_not_too_often(
    server: Server, keys: KeyServer, signers: tuple[Signer, Signer]
) -> None:
    old, new = signers
    site, u = oidc_site(server, keys.url), user()
    assert (await post_logout(server, site, logout_token(old, sub=user()))).status_code == 200
    started = time.monotonic()
    # The provider rotates: the new key, under a new kid, replaces the old one.
    keys.document = {"keys": [new.jwk]}
    # Within the refetch interval of the first fetch the held set answers: unknown key.
    early = await post_logout(server, site, logout_token(new, sub=u))
    assert time.monotonic() - started < REFETCH, "too slow to test the rate limit"
    assert early.status_code == 400, early.text
    assert early.json()["error_description"] == "logout token signing key 'k2' is unknown"
    assert keys.hits == 1
    # Once the interval has passed, the unknown kid fetches the set again, and it is in.
    await anyio.sleep(REFETCH)
    tab, _ = await Tab.open(server.ws, site, Browser(u))
    late = await post_logout(server, site, logout_token(new, sub=u))
    assert late.status_code == 200, late.text
    assert (await tab.closed())[0] == 4010
    assert keys.hits == 2
    # The old key is gone from the set: its tokens are refused now, without another fetch.
    gone = await post_logout(server, site, logout_token(old, sub=u))
    assert gone.status_code == 400 and "'k1' is unknown" in gone.text
    assert keys.hits == 2


async def test_no_keys_at_all_answers_503_and_the_retry_passes_once_they_are_up(
    server: Server, signers: tuple[Signer, Signer]
) -> None:
    down = KeyServer()  # not started: nothing listens on its port
    down.document = {"keys": [signers[0].jwk]}
    site, u = oidc_site(server, down.url), user()
    token = logout_token(signers[0], sub=u)
    r = await post_logout(server, site, token)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"
    assert "signing keys could not be fetched" in r.json()["error_description"]
    assert r.headers["cache-control"] == "no-store"
    assert 1 <= int(r.headers["retry-after"]) <= max(1, round(REFETCH + 0.5))
    down.start()
    try:
        # Within the interval the node does not ask again, even though the server is up.
        again = await post_logout(server, site, token)
        assert again.status_code == 503 and down.hits == 0
        await anyio.sleep(REFETCH)
        # The same token: its jti was not remembered when its keys could not be had.
        tab, _ = await Tab.open(server.ws, site, Browser(u))
        retry = await post_logout(server, site, token)
        assert retry.status_code == 200, retry.text
        assert (await tab.closed())[0] == 4010
        assert down.hits == 1
    finally:
        down.stop()


async def test_a_site_with_stored_keys_moves_to_a_uri_through_the_api(
    server: Server, keys: KeyServer, signers: tuple[Signer, Signer], tmp_path: Path
) -> None:
    stored = tmp_path / "jwks.json"
    stored.write_text(json.dumps({"keys": [signers[1].jwk]}))
    site = server.create_site(
        "--name", "Moving", "--origin", "*",
        "--oidc-issuer", ISSUER, "--oidc-client-id", CLIENT, "--oidc-jwks", str(stored),
    )  # fmt: skip
    key = str(site["key"])
    assert (await post_logout(server, key, logout_token(signers[1], sub=user()))).status_code == 200
    async with api(server, site) as client:
        r = await client.patch("/site", json={"oidc_jwks_uri": keys.url})
        assert r.status_code == 200, r.text
        assert (r.json()["oidc_jwks_uri"], r.json()["identity_jwks_uri"]) == (keys.url, None)
        assert (await client.get("/site")).json()["oidc_jwks_uri"] == keys.url
        # The URI replaced the stored document: the keys now come from the key server.
        shown = json.loads(seatguard("site", "show", key, "--db", str(server.db)))
        assert shown["oidc_jwks_uri"] == keys.url and "oidc_jwks" not in shown
        r = await post_logout(server, key, logout_token(signers[0], sub=user()))
        assert r.status_code == 200, r.text
        assert keys.hits == 1
        for body, status, why in [
            ({"oidc_jwks_uri": "http://op.example/jwks"}, 422, "must use https"),
            ({"oidc_jwks_uri": "https://user:pw@op.example/jwks"}, 422, "user name or password"),
            ({"oidc_jwks_uri": 42}, 422, "Expected `str | null`"),
            # Well formed, but this site signs with HS256: a conflict with its settings.
            ({"identity_jwks_uri": keys.url}, 409, "RS256/ES256"),
        ]:
            refused = await client.patch("/site", json=body)
            assert refused.status_code == status, refused.text
            assert why in refused.json()["detail"], refused.json()
        assert (await client.get("/site")).json()["oidc_jwks_uri"] == keys.url
        # null clears it: back-channel logout is then no longer set up.
        r = await client.patch("/site", json={"oidc_jwks_uri": None})
        assert r.status_code == 200 and r.json()["oidc_jwks_uri"] is None
    r = await post_logout(server, key, logout_token(signers[0], sub=user()))
    assert r.status_code == 404 and "not set up" in r.text


# Identity tokens.


def identity_token(signer: Signer, site: str, sub: str, **headers: Any) -> str:
    now = int(time.time())
    claims = {"sub": sub, "aud": site, "iss": site, "iat": now, "exp": now + 300}
    return signer.sign(claims, **headers)


async def hello(server: Server, site: str, token: str) -> tuple[dict[str, Any], Tab]:
    """Say hello with `token`; the first frame back, and the tab."""
    browser = Browser(user())
    tab = Tab(await Tab.connect(server.ws), browser, ident())
    await tab.send({"t": "hello", "v": 1, "site": site, "session": browser.session,
                    "tab": tab.tab, "device": browser.device, "token": token})  # fmt: skip
    return await tab.recv(within=10), tab


def identity_site(server: Server, uri: str) -> dict[str, Any]:
    return server.create_site(
        "--name", "Identity by URI", "--origin", "*", "--require-identity",
        "--identity-algorithm", "RS256", "--identity-jwks-uri", uri,
    )  # fmt: skip


async def test_rs256_identity_tokens_are_checked_with_fetched_keys(
    server: Server, keys: KeyServer, signers: tuple[Signer, Signer]
) -> None:
    created = identity_site(server, keys.url)
    site, u = str(created["key"]), user()
    _, first = await Tab.open(
        server.ws, site, Browser(u), token=identity_token(signers[0], site, u)
    )
    assert first["state"] == "admitted"
    assert keys.hits == 1
    # A token from a key the set does not hold: refused as an invalid identity.
    frame, tab = await hello(server, site, identity_token(signers[1], site, user()))
    assert frame["t"] == "error" and frame["code"] == 4013, frame
    assert frame["message"] == "identity token signing key 'k2' is unknown"
    assert (await tab.closed())[0] == 4013
    # A known kid whose signature is another key's: refused too.
    forged = jwt.encode(
        {"sub": "mallory", "aud": site, "iss": site, "exp": int(time.time()) + 60},
        signers[1].key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    frame, tab = await hello(server, site, forged)
    assert (frame["code"], frame["message"]) == (4013, "identity token signature is invalid")
    # An HS256 token signed with the site's identity secret is not accepted by an RS256 site.
    claims = {"sub": u, "aud": site, "iss": site, "exp": int(time.time()) + 60}
    hs = jwt.encode(claims, str(created["identity_secret"]), algorithm="HS256")
    frame, tab = await hello(server, site, hs)
    assert frame["code"] == 4013 and "algorithm 'HS256' not allowed" in frame["message"]
    assert keys.hits == 1  # within the interval, made-up and forged tokens fetched nothing


async def test_an_identity_with_unreachable_keys_is_refused_saying_so(
    server: Server, signers: tuple[Signer, Signer]
) -> None:
    down = KeyServer()  # nothing listens there
    created = identity_site(server, down.url)
    site = str(created["key"])
    frame, tab = await hello(server, site, identity_token(signers[0], site, user()))
    assert frame["t"] == "error" and frame["code"] == 4013, frame
    assert frame["message"].startswith("identity token keys could not be fetched")
    code, reason, _ = await tab.closed()
    assert code == 4013 and "could not be fetched" in reason
    async with api(server, created) as client:
        rows = (await client.get("/audit")).json()["records"]
    assert [(r["kind"], r["reason"]) for r in rows] == [("refused", "identity_invalid")]


# The CLI.


def test_the_cli_takes_one_source_of_keys_per_purpose(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [Signer("k1").jwk]}))
    base = ["site", "create", "--name", "X", "--origin", "*", "--db", db]
    cases = [
        (["--oidc-jwks", str(jwks), "--oidc-jwks-uri", "https://op.example/jwks"],
         "--oidc-jwks and --oidc-jwks-uri are exclusive"),
        (["--identity-algorithm", "RS256", "--identity-jwks", str(jwks),
          "--identity-jwks-uri", "https://id.example/jwks"],
         "--identity-jwks and --identity-jwks-uri are exclusive"),
        (["--oidc-jwks-uri", "http://op.example/jwks"], "must use https"),
        (["--oidc-jwks-uri", "op.example/jwks"], "must be an https:// URL"),
        (["--identity-jwks-uri", "https://id.example/jwks"], "RS256/ES256"),
    ]  # fmt: skip
    for args, message in cases:
        done = subprocess.run(
            [*SEATGUARD, *base, *args], capture_output=True, text=True, check=False
        )
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
    # Given on its own, a URI replaces the stored keys of its purpose, and '' clears it.
    created = json.loads(seatguard(*base, "--identity-algorithm", "RS256", "--identity-jwks", str(jwks)))  # fmt: skip  # noqa: E501
    key = str(created["key"])
    uri = "https://id.example/jwks"
    moved = json.loads(seatguard("site", "update", key, "--identity-jwks-uri", uri, "--db", db))
    assert moved["identity_jwks_uri"] == uri and "identity_jwks" not in moved
    done = subprocess.run(
        [*SEATGUARD, "site", "update", key, "--identity-jwks-uri", "", "--db", db],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "one of public_key or jwks" in done.stderr  # no key left
    back = json.loads(seatguard("site", "update", key, "--identity-jwks", str(jwks), "--db", db))
    assert "identity_jwks_uri" not in back and back["identity_jwks"]["keys"][0]["kid"] == "k1"
