"""The device key's proof, checked as plain data: what verifies, and everything that must not."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from seatguard.deviceproof import (
    DEVICE_PREFIX,
    new_nonce,
    proof_message,
    verify_proof,
)
from seatguard.errors import DeviceProofInvalid
from seatguard.protocol import DeviceJwk
from seatguard.seat.keyset import thumbprint
from tests.integration.client import b64url, public_jwk, sign_proof

SITE, SESSION, TAB = "pk_site", "session-0001", "tab-00001"


def jwk(key: ec.EllipticCurvePrivateKey) -> DeviceJwk:
    return DeviceJwk(**public_jwk(key))


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_valid_proof_gives_the_keys_thumbprint(key: ec.EllipticCurvePrivateKey) -> None:
    nonce = new_nonce()
    proof = sign_proof(key, nonce, SITE, SESSION, TAB)
    device = verify_proof(jwk(key), proof, proof_message(nonce, SITE, SESSION, TAB))
    assert device == DEVICE_PREFIX + thumbprint(public_jwk(key))
    assert len(device) == 46  # within the 8 to 64 characters of a device id


def test_the_same_key_is_the_same_device_whatever_it_signs(key: ec.EllipticCurvePrivateKey) -> None:
    devices = set()
    for session in ("session-0001", "session-0002"):
        nonce = new_nonce()
        proof = sign_proof(key, nonce, SITE, session, TAB)
        devices.add(verify_proof(jwk(key), proof, proof_message(nonce, SITE, session, TAB)))
    assert len(devices) == 1


def test_nonces_are_fresh() -> None:
    nonces = {new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000 and all(len(n) == 22 for n in nonces)


@pytest.mark.parametrize(
    "signed",
    [
        ("other-nonce-000000000", SITE, SESSION, TAB),  # a proof for another challenge
        (None, "pk_other", SESSION, TAB),  # for another site
        (None, SITE, "session-9999", TAB),  # for another browser session
        (None, SITE, SESSION, "tab-99999"),  # for another tab
    ],
)
def test_a_proof_of_another_message_fails(
    key: ec.EllipticCurvePrivateKey, signed: tuple[str | None, str, str, str]
) -> None:
    nonce = new_nonce()
    other_nonce, site, session, tab = signed
    proof = sign_proof(key, other_nonce or nonce, site, session, tab)
    with pytest.raises(DeviceProofInvalid, match="does not verify"):
        verify_proof(jwk(key), proof, proof_message(nonce, SITE, SESSION, TAB))


def test_another_keys_proof_fails(key: ec.EllipticCurvePrivateKey) -> None:
    thief = ec.generate_private_key(ec.SECP256R1())
    nonce = new_nonce()
    proof = sign_proof(thief, nonce, SITE, SESSION, TAB)
    with pytest.raises(DeviceProofInvalid, match="does not verify"):
        verify_proof(jwk(key), proof, proof_message(nonce, SITE, SESSION, TAB))


def test_a_der_signature_is_not_a_proof(key: ec.EllipticCurvePrivateKey) -> None:
    message = proof_message(new_nonce(), SITE, SESSION, TAB)
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(DeviceProofInvalid, match="64 bytes"):
        verify_proof(jwk(key), b64url(der), message)


def test_a_signature_with_the_halves_swapped_fails(key: ec.EllipticCurvePrivateKey) -> None:
    message = proof_message(new_nonce(), SITE, SESSION, TAB)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    swapped = b64url(s.to_bytes(32, "big") + r.to_bytes(32, "big"))
    with pytest.raises(DeviceProofInvalid):
        verify_proof(jwk(key), swapped, message)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"crv": "P-384"}, "P-256"),
        ({"crv": "secp256k1"}, "P-256"),
        ({"kty": "OKP"}, "P-256"),
        ({"kty": "RSA"}, "P-256"),
        ({"x": "A" * 43}, "not a point"),  # off the curve
        ({"y": b64url(bytes(32))}, "not a point"),
        ({"x": "not base64!" + "A" * 32}, "base64url"),
        ({"x": "A" * 42}, "32 bytes"),  # too short
        ({"x": "A" * 44}, "32 bytes"),  # too long
        ({"x": b64url(bytes(31)) + "="}, "32 bytes"),  # padded, short
    ],
)
def test_a_key_that_is_not_a_p256_point_is_refused(
    key: ec.EllipticCurvePrivateKey, change: dict[str, str], error: str
) -> None:
    nonce = new_nonce()
    proof = sign_proof(key, nonce, SITE, SESSION, TAB)
    bad = DeviceJwk(**{**public_jwk(key), **change})
    with pytest.raises(DeviceProofInvalid, match=error):
        verify_proof(bad, proof, proof_message(nonce, SITE, SESSION, TAB))


def test_a_padded_or_non_canonical_encoding_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    nonce = new_nonce()
    message = proof_message(nonce, SITE, SESSION, TAB)
    proof = sign_proof(key, nonce, SITE, SESSION, TAB)
    good = public_jwk(key)
    with pytest.raises(DeviceProofInvalid):
        verify_proof(jwk(key), proof + "==", message)
    with pytest.raises(DeviceProofInvalid):
        verify_proof(DeviceJwk(**{**good, "x": good["x"] + "="}), proof, message)
    standard = base64.b64encode(base64.urlsafe_b64decode(proof + "==")).decode().rstrip("=")
    if standard != proof:  # "+" or "/" in it: the standard alphabet is not base64url
        with pytest.raises(DeviceProofInvalid):
            verify_proof(jwk(key), standard, message)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_no_forged_signature_verifies(raw: bytes) -> None:
    key = _KEY
    with pytest.raises(DeviceProofInvalid):
        verify_proof(jwk(key), b64url(raw), proof_message("n" * 22, SITE, SESSION, TAB))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=130))
def test_any_proof_text_is_refused_cleanly(text: str) -> None:
    with pytest.raises(DeviceProofInvalid):
        verify_proof(jwk(_KEY), text, proof_message("n" * 22, SITE, SESSION, TAB))


_KEY = ec.generate_private_key(ec.SECP256R1())
