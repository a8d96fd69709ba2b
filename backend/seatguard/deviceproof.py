"""Device identity: the proof that a browser holds its device key, and the fingerprint hint.

Right after the upgrade the server sends a `challenge` with a fresh nonce; a browser that
keeps a device key (ECDSA P-256, made with WebCrypto, its private half never leaving the
browser) signs `proof_message(nonce, site, session, tab)` and sends its public key and the
signature in the hello. A valid proof makes the device id the key's RFC 7638 thumbprint
(`dk_<thumbprint>`), whatever the page calls its device; a hello without a key keeps the
page's device id and says so (`device_proof: "none"`). See docs/device-identity.md.

The page's fingerprint is only a hint: see `devicehint.py`.

Everything here is pure; the signature check is `cryptography`'s.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import DeviceProofInvalid
from .protocol import DeviceJwk
from .seat.keyset import thumbprint

__all__ = ["DEVICE_PREFIX", "PROOF_CONTEXT", "new_nonce", "proof_message", "verify_proof"]

DEVICE_PREFIX = "dk_"
"""Device ids made from a proven key: `dk_` and the key's thumbprint (46 characters)."""

PROOF_CONTEXT = "seatguard-device-proof/1"
"""The first line of every signed message: a signature made for anything else never fits."""

_COORDINATE_BYTES = 32  # P-256


def new_nonce() -> str:
    """A challenge nonce: 128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def proof_message(nonce: str, site: str, session: str, tab: str) -> bytes:
    """What a browser signs: the context, then nonce, site, session and tab, one per line
    (none of them can hold a line break: the frame's patterns refuse control characters)."""
    return "\n".join((PROOF_CONTEXT, nonce, site, session, tab)).encode()


def _unb64(text: str, size: int, what: str) -> bytes:
    """Exactly `size` bytes from unpadded base64url, or `DeviceProofInvalid`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise DeviceProofInvalid(f"{what} is not base64url") from None
    if len(raw) != size or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise DeviceProofInvalid(f"{what} must be {size} bytes in unpadded base64url")
    return raw


def verify_proof(key: DeviceJwk, proof: str, message: bytes) -> str:
    """The device id (`dk_<thumbprint>`) that a valid `proof` of `message` by `key` gives;
    `DeviceProofInvalid` for a key that is not a P-256 point or a signature that fails.

    `proof` is the signature as WebCrypto makes it: r || s, 64 bytes, base64url.
    """
    if key.kty != "EC" or key.crv != "P-256":
        raise DeviceProofInvalid("the device key must be an EC key on P-256")
    x = _unb64(key.x, _COORDINATE_BYTES, "the device key's x")
    y = _unb64(key.y, _COORDINATE_BYTES, "the device key's y")
    raw = _unb64(proof, 2 * _COORDINATE_BYTES, "the device proof")
    try:
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x), int.from_bytes(y), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise DeviceProofInvalid("the device key is not a point on P-256") from None
    r, s = int.from_bytes(raw[:_COORDINATE_BYTES]), int.from_bytes(raw[_COORDINATE_BYTES:])
    try:
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise DeviceProofInvalid(
            "the device proof does not verify for this key, challenge and hello"
        ) from None
    return DEVICE_PREFIX + thumbprint({"kty": "EC", "crv": "P-256", "x": key.x, "y": key.y})
