"""A hello's device proof through a channel and node in one process: the challenge, the
device id it gives, the fingerprint hint in device-limit mode, and every proof refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from seatguard.deviceproof import DEVICE_PREFIX
from seatguard.presence import Rules
from seatguard.protocol import Challenge, CloseCode, Error, Hello, Welcome, decode_client_frame
from seatguard.recorder import audit_events
from seatguard.seat.keyset import thumbprint
from tests.integration.client import public_jwk, sign_proof

from .inprocess import Notes, Socket, World, decode_frame, open_world

pytestmark = pytest.mark.anyio

ALICE = "alice"
S1, S2 = "session-one", "session-two"
TAB = "tab-0001"
OTHER_NETWORK = "198.51.100.20"
MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7; rv:131.0) Gecko/20100101 Firefox/131.0"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world(Rules(limit=1)) as w:
        yield w


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def challenged(socket: Socket) -> str:
    """Send the socket its challenge, as the shell does after the upgrade; its nonce."""
    frame = decode_frame(socket.channel.challenge())
    assert isinstance(frame, Challenge)
    return frame.nonce


async def prove(
    world: World,
    socket: Socket,
    key: ec.EllipticCurvePrivateKey,
    session: str = S1,
    *,
    nonce: str | None = None,
    **page: str | int | dict[str, str],
) -> None:
    """A hello with `key` and its proof over this socket's challenge (or `nonce`)."""
    nonce = nonce or challenged(socket)
    proof = sign_proof(key, nonce, world.site.key, session, TAB)
    await say(socket, session, key=public_jwk(key), proof=proof, **page)


async def say(socket: Socket, session: str, **fields: object) -> None:
    """Alice's hello from browser `session`, tab `TAB`, with `fields`."""
    frame = {"v": 1, "site": socket.world.site.key, "session": session, "tab": TAB}
    frame |= {"device": f"dev-{session}", "user": ALICE, **fields}
    await socket.send(msgspec.convert(frame, Hello))


def refused(socket: Socket, code: CloseCode, words: str) -> None:
    frames = socket.new()
    assert socket.closed == code, frames
    assert len(frames) == 1 and isinstance(frames[0], Error), frames
    assert words in frames[0].message, frames[0].message


async def test_a_proven_key_is_the_device(world: World) -> None:
    node = await world.node()
    key = new_key()
    socket = world.socket(node)
    await prove(world, socket, key)
    assert isinstance(socket.new()[0], Welcome)
    s = (await world.hub.snapshot(world.key(ALICE))).sessions[S1]
    assert s.device == DEVICE_PREFIX + thumbprint(public_jwk(key))
    assert s.device_proof == "verified"


async def test_without_a_key_the_pages_device_stays_and_says_so(world: World) -> None:
    node = await world.node()
    socket = world.socket(node)
    challenged(socket)
    await socket.hello(ALICE, S1, TAB, device="page-device-1")
    assert isinstance(socket.new()[0], Welcome)
    s = (await world.hub.snapshot(world.key(ALICE))).sessions[S1]
    assert (s.device, s.device_proof) == ("page-device-1", "none")


async def test_the_audit_row_of_a_new_session_tells_the_proof(world: World) -> None:
    notes = Notes()
    node = await world.node(recorder=notes)
    await prove(world, world.socket(node), new_key())
    plain = world.socket(node)
    await plain.hello(ALICE, S2, TAB)
    created = [
        (e.session, e.detail["device_proof"])
        for key, outcome, context in notes.outcomes
        for e in audit_events(key, outcome, 0.0, context)
        if e.kind == "created"
    ]
    assert created == [(S1, "verified"), (S2, "none")]


async def test_a_page_cannot_claim_a_proven_keys_id_by_its_word(world: World) -> None:
    node = await world.node()
    victim = world.socket(node)
    await prove(world, victim, new_key())
    stolen = (await world.hub.snapshot(world.key(ALICE))).sessions[S1].device
    thief = world.socket(node)
    challenged(thief)
    await thief.hello(ALICE, S2, TAB, device=stolen, mode="device-limit")
    refused(thief, CloseCode.device_proof_invalid, "needs a proof")


async def test_a_forged_proof_is_refused(world: World) -> None:
    node = await world.node()
    socket = world.socket(node)
    challenged(socket)
    key = public_jwk(new_key())
    await socket.hello(ALICE, S1, TAB, key=key, proof="A" * 86)
    refused(socket, CloseCode.device_proof_invalid, "does not verify")


async def test_a_proof_replayed_on_another_socket_is_refused(world: World) -> None:
    node = await world.node()
    key = new_key()
    first = world.socket(node)
    nonce = challenged(first)
    second = world.socket(node)
    challenged(second)
    await prove(world, second, key, nonce=nonce)  # the first socket's proof, on the second
    refused(second, CloseCode.device_proof_invalid, "does not verify")


async def test_another_keys_proof_is_refused(world: World) -> None:
    node = await world.node()
    socket = world.socket(node)
    nonce = challenged(socket)
    proof = sign_proof(new_key(), nonce, world.site.key, S1, TAB)
    await socket.hello(ALICE, S1, TAB, key=public_jwk(new_key()), proof=proof)
    refused(socket, CloseCode.device_proof_invalid, "does not verify")


async def test_a_proof_for_another_session_is_refused(world: World) -> None:
    node = await world.node()
    key, socket = new_key(), world.socket(node)
    nonce = challenged(socket)
    proof = sign_proof(key, nonce, world.site.key, S2, TAB)
    await socket.hello(ALICE, S1, TAB, key=public_jwk(key), proof=proof)
    refused(socket, CloseCode.device_proof_invalid, "does not verify")


async def test_a_proof_without_a_challenge_is_refused(world: World) -> None:
    node = await world.node()
    socket = world.socket(node)  # never challenged
    await prove(world, socket, new_key(), nonce="made-up-nonce-0000000")
    refused(socket, CloseCode.device_proof_invalid, "no challenge")


@pytest.mark.parametrize("half", ["key", "proof"])
async def test_one_half_of_a_proof_is_refused(world: World, half: str) -> None:
    node = await world.node()
    key, socket = new_key(), world.socket(node)
    nonce = challenged(socket)
    both: dict[str, str | dict[str, str]] = {
        "key": public_jwk(key),
        "proof": sign_proof(key, nonce, world.site.key, S1, TAB),
    }
    await say(socket, S1, **{half: both[half]})
    missing = "proof" if half == "key" else "key"
    refused(socket, CloseCode.device_proof_invalid, f"{missing} is missing")


async def test_a_key_on_another_curve_is_refused(world: World) -> None:
    node = await world.node()
    key, socket = new_key(), world.socket(node)
    nonce = challenged(socket)
    proof = sign_proof(key, nonce, world.site.key, S1, TAB)
    await socket.hello(ALICE, S1, TAB, key={**public_jwk(key), "crv": "P-384"}, proof=proof)
    refused(socket, CloseCode.device_proof_invalid, "P-256")


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-256", "x": "A" * 65, "y": "A" * 43},  # oversized
        {"kty": "EC", "crv": "P-256", "x": "A" * 43},  # no y
        {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43, "d": "A" * 43},  # private
        {"kty": "EC", "crv": "P-256" * 10, "x": "A" * 43, "y": "A" * 43},
    ],
)
async def test_a_malformed_key_is_a_bad_message(world: World, jwk: dict[str, str]) -> None:
    node = await world.node()
    socket = world.socket(node)
    challenged(socket)
    frame = {"t": "hello", "v": 1, "site": world.site.key, "user": ALICE, "session": S1}
    frame |= {"tab": TAB, "device": "device-01", "key": jwk, "proof": "A" * 86}
    await socket.channel.receive(json.dumps(frame))
    refused(socket, CloseCode.bad_message, "invalid frame")


def test_a_proof_longer_than_any_signature_does_not_parse() -> None:
    text = '{"t":"hello","v":1,"site":"s","session":"session-1","tab":"tab-0001",'
    text += '"device":"device-1","proof":"' + "A" * 129 + '"}'
    with pytest.raises(Exception, match="length"):
        decode_client_frame(text)


async def test_a_nonce_serves_one_hello_only(world: World) -> None:
    node = await world.node()
    socket = world.socket(node)
    await prove(world, socket, new_key())
    assert socket.channel.nonce is None


# --- the fingerprint hint in device-limit mode ------------------------------------------


async def two_browsers(
    world: World, *, ip: str = "192.0.2.10", user_agent: str = ""
) -> tuple[Socket, Socket]:
    """Two browsers with keys of their own and one fingerprint; the second from `ip`."""
    node = await world.node()
    first = world.socket(node)
    await prove(world, first, new_key(), S1, fp="fp-same", mode="device-limit", limit=1)
    assert isinstance(welcome := first.new()[0], Welcome) and welcome.state == "admitted"
    kw = {"ip": ip} | ({"user_agent": user_agent} if user_agent else {})
    second = world.socket(node, **kw)
    await prove(world, second, new_key(), S2, fp="fp-same", mode="device-limit", limit=1)
    return first, second


async def test_an_fp_from_the_same_network_and_platform_is_one_device(world: World) -> None:
    _, second = await two_browsers(world, ip="192.0.2.77")
    assert isinstance(welcome := second.new()[0], Welcome) and welcome.state == "admitted"
    up = await world.hub.snapshot(world.key(ALICE))
    assert up.sessions[S1].device == up.sessions[S2].device


async def test_an_fp_from_another_network_is_another_device(world: World) -> None:
    _, second = await two_browsers(world, ip=OTHER_NETWORK)
    assert isinstance(welcome := second.new()[0], Welcome) and welcome.state == "blocked"
    up = await world.hub.snapshot(world.key(ALICE))
    assert up.sessions[S1].device != up.sessions[S2].device


async def test_an_fp_from_another_platform_is_another_device(world: World) -> None:
    _, second = await two_browsers(world, user_agent=MAC)
    assert isinstance(welcome := second.new()[0], Welcome) and welcome.state == "blocked"
