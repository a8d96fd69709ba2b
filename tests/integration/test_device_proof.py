"""Device keys over real sockets: the challenge after the upgrade, a proof that holds, and
every proof that must not (forged, replayed on another socket, another key's, another
curve, malformed, half of one, or none before the hello timeout)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from seatguard.seat.keyset import thumbprint
from tests.helpers import Server, scaled
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab, public_jwk, sign_proof

pytestmark = pytest.mark.anyio

SERVER_ENV = {"SEATGUARD_HELLO_TIMEOUT": "1.5"}


def user() -> str:
    return "u-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def keyed_site(server: Server) -> dict[str, Any]:
    return server.create_site("--name", "Devices", "--origin", "*", "--client-settings")


def hello(site: str, browser: Browser, tab: str, **fields: Any) -> dict[str, Any]:
    return {
        "t": "hello",
        "v": 1,
        "site": site,
        "user": browser.user,
        "session": browser.session,
        "tab": tab,
        "device": browser.device,
        **fields,
    }


async def refused(ws_tab: Tab, frame: dict[str, Any]) -> tuple[int, str]:
    await ws_tab.send(frame)
    code, _, frames = await ws_tab.closed()
    assert [f["t"] for f in frames] == ["error"], frames
    return code, str(frames[0]["message"])


async def tab(server: Server, browser: Browser) -> Tab:
    return Tab(await Tab.connect(server.ws), browser, "tab-" + secrets.token_hex(4))


async def test_a_proven_key_is_the_device_in_the_api(
    server: Server, keyed_site: dict[str, Any]
) -> None:
    keyed = Browser.keyed(user())
    _, welcome = await Tab.open(server.ws, keyed_site["key"], keyed)
    assert welcome["state"] == "admitted"
    plain = Browser(keyed.user)
    await Tab.open(server.ws, keyed_site["key"], plain)
    async with api(server, keyed_site) as client:
        r = await client.get(f"/users/{keyed.user}/sessions")
    sessions = {s["id"]: s for s in r.json()["sessions"]}
    assert keyed.key is not None
    device = "dk_" + thumbprint(public_jwk(keyed.key))
    assert (sessions[keyed.session]["device"], sessions[keyed.session]["device_proof"]) == (
        device,
        "verified",
    )
    assert (sessions[plain.session]["device"], sessions[plain.session]["device_proof"]) == (
        plain.device,
        "none",
    )


async def test_one_key_is_one_device_across_sockets(
    server: Server, keyed_site: dict[str, Any]
) -> None:
    browser = Browser.keyed(user())
    first, _ = await Tab.open(server.ws, keyed_site["key"], browser)
    await first.bye("reload")
    again = Browser(browser.user, key=browser.key)  # a new session, the same device key
    _, welcome = await Tab.open(server.ws, keyed_site["key"], again, mode="device-limit")
    assert welcome["state"] == "admitted"


async def test_a_proof_replayed_on_a_second_socket_is_refused(
    server: Server, keyed_site: dict[str, Any]
) -> None:
    browser = Browser.keyed(user())
    assert browser.key is not None
    first = await tab(server, browser)
    proof = sign_proof(browser.key, first.nonce, keyed_site["key"], browser.session, first.tab)
    frame = hello(keyed_site["key"], browser, first.tab, key=public_jwk(browser.key), proof=proof)
    second = Tab(await Tab.connect(server.ws), browser, first.tab)
    code, message = await refused(second, frame)
    assert code == 4014 and "does not verify" in message
    # The first socket's own proof still holds there, once.
    await first.send(frame)
    assert (await first.recv())["t"] == "welcome"


@pytest.mark.parametrize(
    "case",
    [
        "forged",
        "another nonce",
        "another key",
        "another site",
        "wrong curve",
        "key only",
        "proof only",
    ],
)
async def test_a_bad_proof_closes_with_4014(
    server: Server, keyed_site: dict[str, Any], case: str
) -> None:
    browser = Browser.keyed(user())
    assert browser.key is not None
    t = await tab(server, browser)
    site, key = keyed_site["key"], browser.key
    signer, nonce, signed_site = key, t.nonce, site
    if case == "another key":
        signer = ec.generate_private_key(ec.SECP256R1())
    elif case == "another nonce":
        nonce = "A" * 22
    elif case == "another site":
        signed_site = "pk_someone_else"
    jwk = public_jwk(key)
    if case == "wrong curve":
        jwk["crv"] = "P-384"
    proof = sign_proof(signer, nonce, signed_site, browser.session, t.tab)
    if case == "forged":
        proof = "A" * 86
    fields: dict[str, Any] = {"key": jwk, "proof": proof}
    if case == "key only":
        del fields["proof"]
    elif case == "proof only":
        del fields["key"]
    code, message = await refused(t, hello(site, browser, t.tab, **fields))
    assert code == 4014, message


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-256", "x": "A" * 5000, "y": "A" * 43},
        {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43, "d": "A" * 43},
        "not an object",
        [1, 2, 3],
    ],
)
async def test_a_malformed_key_closes_with_4000(
    server: Server, keyed_site: dict[str, Any], jwk: Any
) -> None:
    browser = Browser(user())
    t = await tab(server, browser)
    frame = hello(keyed_site["key"], browser, t.tab, key=jwk, proof="A" * 86)
    code, _ = await refused(t, frame)
    assert code == 4000


async def test_a_challenge_never_answered_ends_at_the_hello_timeout(server: Server) -> None:
    t = await tab(server, Browser(user()))
    assert len(t.nonce) == 22
    code, _, _ = await t.closed(within=scaled(1.5) + 3)
    assert code == 4001


async def test_every_socket_gets_its_own_nonce(server: Server) -> None:
    nonces = {(await tab(server, Browser(user()))).nonce for _ in range(20)}
    assert len(nonces) == 20
