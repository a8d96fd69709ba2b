"""The sites' secrets at rest: keyed hashes of what is only checked, sealed boxes of what
the server must use again.

A database copy, a backup or a reader of the SQLite file must not be able to call the API
as a site, sign its identity tokens or forge its webhooks. So the database holds:

- the API secret key (`sk_...`) only as an HMAC-SHA256 under the secrets key: the server
  looks a caller up by that hash and compares it in constant time; the key itself cannot
  be read back, not even by the operator (rotate it to get a new one);
- the secrets the server signs or verifies with (identity-token secrets `ik_...`, webhook
  secrets `whsec_...`) sealed with AES-256-GCM under the secrets key, with the site key and
  the secret's purpose as associated data, so that a sealed value copied to another site's
  row, or from the webhook column to the identity one, does not open.

The secrets key is kept outside the database, like the audit key (`keys.py`). The hash
and the seal use two keys derived from it with HKDF-SHA256, one per use. Primitives come
from `hmac` and `cryptography`; nothing here is hand-made crypto.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError

__all__ = ["HASH_PREFIX", "SEAL_PREFIX", "SecretBox"]

HASH_PREFIX = "h1:"
"""Marks a stored keyed hash (version 1: HMAC-SHA256, hex)."""
SEAL_PREFIX = "s1:"
"""Marks a stored sealed secret (version 1: AES-256-GCM, 96-bit nonce, base64url)."""
_NONCE_BYTES = 12
_MIN_KEY_BYTES = 32


def _derive(key: bytes, use: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=use).derive(key)


class SecretBox:
    """Hashes and seals the secrets of sites under one secrets key (>= 32 bytes)."""

    __slots__ = ("_aead", "_hash_key")

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigError(f"the secrets key needs at least {_MIN_KEY_BYTES} bytes")
        self._hash_key = _derive(key, b"seatguard site secret hash v1")
        self._aead = AESGCM(_derive(key, b"seatguard site secret seal v1"))

    def __repr__(self) -> str:
        return "SecretBox(...)"

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """A box under a random key, for a database that lives in memory only."""
        return cls(secrets.token_bytes(32))

    def digest(self, secret: str) -> str:
        """The keyed hash a secret key is stored and looked up as."""
        mac = hmac.new(self._hash_key, secret.encode(), hashlib.sha256).hexdigest()
        return HASH_PREFIX + mac

    def seal(self, secret: str, *, site: str, purpose: str) -> str:
        """`secret` encrypted and authenticated, bound to `site` and `purpose`."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), _bound(site, purpose))
        return SEAL_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, *, site: str, purpose: str) -> str:
        """The secret `seal` sealed for `site` and `purpose`; ConfigError for anything else
        (another key, site or purpose, or a value tampered with)."""
        if not sealed.startswith(SEAL_PREFIX):
            raise ConfigError(f"a sealed {purpose} secret of {site} is not in a known form")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(SEAL_PREFIX) :].encode("ascii"))
            plain = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _bound(site, purpose)
            )
        except (InvalidTag, ValueError, binascii.Error, UnicodeError):
            raise ConfigError(
                f"the {purpose} secret of {site} does not open with this secrets key "
                "(SEATGUARD_SECRETS_KEY / SEATGUARD_SECRETS_KEY_FILE must be the one that "
                "sealed it)"
            ) from None
        return plain.decode()


def _bound(site: str, purpose: str) -> bytes:
    """Associated data: what a sealed value belongs to (NUL cannot occur in either)."""
    return f"{site}\x00{purpose}".encode()
