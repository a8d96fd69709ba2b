"""Sites' secrets at rest: hashed or sealed under the secrets key, bound to their site and
purpose, and valid in pairs while they rotate."""

from __future__ import annotations

import dataclasses

import jwt
import pytest

from seatguard.errors import ConfigError, InvalidIdentity
from seatguard.identity import IdentityConfig, verify_identity
from seatguard.presence import Rules
from seatguard.sealing import SecretBox
from seatguard.site_secrets import Rotating, authenticate, fresh, opened, stored
from seatguard.sites import Site, new_site

BOX = SecretBox(bytes(range(32)))
OTHER_KEY = SecretBox(bytes(range(1, 33)))
NOW = 1_700_000_000.0


def a_site(name: str = "Shop") -> tuple[Site, dict[str, str]]:
    return new_site(name, ["*"], Rules(), client_settings=False, now=NOW, box=BOX)


def test_a_sealed_secret_opens_only_for_its_site_and_purpose_under_its_key() -> None:
    secret = fresh("webhook")
    sealed = BOX.seal(secret, site="pk_a", purpose="webhook")
    assert secret not in sealed and secret.removeprefix("whsec_") not in sealed
    assert BOX.open(sealed, site="pk_a", purpose="webhook") == secret
    for box, site, purpose in [
        (BOX, "pk_b", "webhook"),  # copied to another site's row
        (BOX, "pk_a", "identity"),  # moved to the identity column
        (OTHER_KEY, "pk_a", "webhook"),  # opened with another secrets key
    ]:
        with pytest.raises(ConfigError, match="does not open"):
            box.open(sealed, site=site, purpose=purpose)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),  # the tag
        lambda s: s[:3] + ("B" if s[3] != "B" else "C") + s[4:],  # the nonce
        lambda s: s[:20],  # cut short
        lambda s: "s1:!!!",  # not base64
        lambda s: "s2:" + s[3:],  # an unknown version
        lambda s: s.removeprefix("s1:"),  # no version
    ],
    ids=["tag", "nonce", "short", "garbage", "version", "bare"],
)
def test_a_tampered_sealed_value_does_not_open(damage: object) -> None:
    sealed = BOX.seal("ik_" + "x" * 43, site="pk_a", purpose="identity")
    assert callable(damage)
    with pytest.raises(ConfigError):
        BOX.open(damage(sealed), site="pk_a", purpose="identity")


def test_each_seal_is_fresh_and_each_hash_is_keyed() -> None:
    secret = fresh("secret_key")
    one, two = (BOX.seal(secret, site="pk_a", purpose="identity") for _ in range(2))
    assert one != two  # a new nonce each time
    assert BOX.digest(secret) == BOX.digest(secret) != OTHER_KEY.digest(secret)
    assert BOX.digest(secret) != BOX.digest(fresh("secret_key"))
    assert secret not in BOX.digest(secret)


def test_the_box_keeps_its_key_to_itself_and_wants_a_long_one() -> None:
    assert repr(BOX) == "SecretBox(...)"
    assert "00010203" not in repr(BOX)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        SecretBox(bytes(31))


def test_the_replaced_secret_is_valid_until_its_overlap_ends() -> None:
    rotating = Rotating("new", "old", NOW + 60)
    assert rotating.valid(NOW) == ("new", "old")
    assert rotating.valid(NOW + 59.9) == ("new", "old")
    assert rotating.valid(NOW + 60) == ("new",)
    assert Rotating("new", "old", None).valid(NOW) == ("new",)
    assert Rotating().valid(NOW) == ()


def test_a_secret_key_is_told_current_replaced_or_unknown() -> None:
    site, shown = a_site()
    other, other_shown = a_site("Other")
    assert authenticate(site, BOX.digest(shown["secret"]), NOW) is True
    assert authenticate(site, BOX.digest(other_shown["secret"]), NOW) is None
    assert authenticate(site, BOX.digest(shown["identity_secret"]), NOW) is None
    new = fresh("secret_key")
    keys = Rotating(
        stored(BOX, site.key, "secret_key", new), site.secrets.secret_key.current, NOW + 60
    )
    rotated = dataclasses.replace(site, secrets=dataclasses.replace(site.secrets, secret_key=keys))
    assert authenticate(rotated, BOX.digest(new), NOW) is True
    assert authenticate(rotated, BOX.digest(shown["secret"]), NOW) is False  # in its overlap
    assert authenticate(rotated, BOX.digest(shown["secret"]), NOW + 60) is None  # past it
    assert other.key != site.key


def test_identity_tokens_signed_with_either_secret_verify_while_they_rotate() -> None:
    site, shown = a_site()
    new = fresh("identity")
    pair = Rotating(stored(BOX, site.key, "identity", new), site.secrets.identity.current, NOW + 60)
    rotated = dataclasses.replace(site, secrets=dataclasses.replace(site.secrets, identity=pair))
    claims = {"sub": "u1", "aud": site.key, "iss": site.key, "iat": NOW, "exp": NOW + 300}

    def check(signed_with: str, now: float) -> str:
        secrets = opened(BOX, rotated, "identity", now)
        config = IdentityConfig(
            algorithm="HS256",
            secret=secrets[0],
            previous_secret=secrets[1] if len(secrets) > 1 else None,
            audience=site.key,
            issuer=site.key,
        )
        token = jwt.encode(claims, signed_with, algorithm="HS256")
        return verify_identity(token, config, now=now).user

    assert check(new, NOW) == "u1"
    assert check(shown["identity_secret"], NOW) == "u1"
    assert check(new, NOW + 61) == "u1"
    with pytest.raises(InvalidIdentity, match="signature is invalid"):
        check(shown["identity_secret"], NOW + 61)  # the overlap is over
    with pytest.raises(InvalidIdentity, match="signature is invalid"):
        check(shown["secret"], NOW)  # the API secret key never signs identity tokens
