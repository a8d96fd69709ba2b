"""A site's three secrets, as stored, and their rotation with an overlap.

- the **secret key** (`sk_...`): the site's backend calls the REST API with it; stored as a
  keyed hash only (`sealing.py`), so it is shown once, when made;
- the **identity secret** (`ik_...`): signs the site's HS256 identity tokens; stored sealed,
  since the server verifies with it. It is apart from the secret key so that the server
  need not keep the secret key usable;
- the **webhook secret** (`whsec_...`): the server signs webhooks with it; stored sealed.

Rotating one makes a new secret current and keeps the one it replaces valid until the
overlap ends (`previous_until`), so a site's backend can move without a gap: both secret
keys open the API, identity tokens signed with either verify, webhooks are signed with both.
An overlap of 0 ends the old one at once. A rotation is a compare-and-set on the current
secret (`Database.rotate_secret`): of two at once, one wins and the other is told so.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from .sealing import SecretBox
from .webhooks import new_webhook_secret

if TYPE_CHECKING:
    from .db.base import Database
    from .sites import Site

__all__ = [
    "DEFAULT_OVERLAP",
    "KINDS",
    "MAX_OVERLAP",
    "Rotating",
    "SecretKind",
    "SiteSecrets",
    "Stale",
    "authenticate",
    "fresh",
    "issue",
    "opened",
    "rotate",
    "stored",
]

SecretKind = Literal["secret_key", "identity", "webhook"]
KINDS: tuple[SecretKind, ...] = get_args(SecretKind)
DEFAULT_OVERLAP = 86_400
"""Seconds the replaced secret stays valid after a rotation, unless told otherwise (24 h)."""
MAX_OVERLAP = 7 * 86_400
"""The longest overlap a rotation may ask for (7 days)."""


@dataclass(frozen=True, slots=True)
class Rotating:
    """One secret as stored (a keyed hash, or sealed) and the one it replaced, valid until
    `previous_until` (seconds since the epoch)."""

    current: str | None = None
    previous: str | None = None
    previous_until: float | None = None

    def valid(self, now: float) -> tuple[str, ...]:
        """The stored values valid at `now`, the current one first."""
        found: tuple[str, ...] = () if self.current is None else (self.current,)
        until = self.previous_until
        if self.previous is not None and until is not None and now < until:
            found += (self.previous,)
        return found


@dataclass(frozen=True, slots=True)
class SiteSecrets:
    """The stored forms of a site's secrets, read with the site (no extra round trip)."""

    secret_key: Rotating = Rotating()  # keyed hashes of the API secret keys
    identity: Rotating = Rotating()  # sealed identity-token secrets
    webhook: Rotating = Rotating()  # sealed webhook secrets; none until a webhook is set

    def of(self, kind: SecretKind) -> Rotating:
        rotating: Rotating = getattr(self, kind)
        return rotating


class Stale(Exception):
    """The secret changed since it was read: another rotation came first."""


def fresh(kind: SecretKind) -> str:
    """A new random secret of `kind`, in the clear (shown once, then stored as `stored`)."""
    if kind == "webhook":
        return new_webhook_secret()
    prefix = "sk_" if kind == "secret_key" else "ik_"
    return prefix + secrets.token_urlsafe(32)


def stored(box: SecretBox, site: str, kind: SecretKind, secret: str) -> str:
    """What the database keeps of a secret: the secret key hashed, the others sealed."""
    if kind == "secret_key":
        return box.digest(secret)
    return box.seal(secret, site=site, purpose=kind)


def issue(box: SecretBox, site: str) -> tuple[SiteSecrets, dict[str, str]]:
    """A new site's secret key and identity secret: as stored, and in the clear."""
    secret_key, identity = fresh("secret_key"), fresh("identity")
    kept = SiteSecrets(
        secret_key=Rotating(stored(box, site, "secret_key", secret_key)),
        identity=Rotating(stored(box, site, "identity", identity)),
    )
    return kept, {"secret": secret_key, "identity_secret": identity}


def opened(
    box: SecretBox, site: Site, kind: Literal["identity", "webhook"], now: float
) -> tuple[str, ...]:
    """The site's identity or webhook secrets valid at `now`, in the clear, current first."""
    return tuple(
        box.open(value, site=site.key, purpose=kind) for value in site.secrets.of(kind).valid(now)
    )


def authenticate(site: Site, digest: str, now: float) -> bool | None:
    """Whether the secret key whose keyed hash is `digest` is the site's: True if the
    current one, False if the one it replaced (still in its overlap), None if neither.
    Compared in constant time."""
    given = digest.encode()
    held = site.secrets.secret_key
    if held.current is not None and hmac.compare_digest(given, held.current.encode()):
        return True
    if any(hmac.compare_digest(given, v.encode()) for v in held.valid(now)[1:]):
        return False
    return None


async def rotate(
    db: Database,
    box: SecretBox,
    site: Site,
    kind: SecretKind,
    *,
    overlap: float,
    now: float,
) -> str:
    """Make a new secret of `kind` current for `site` and return it in the clear.

    The current one stays valid for `overlap` seconds (0: it ends now). Raises `Stale`
    when the secret is no longer the one `site` was read with (a rotation raced this one),
    and ValueError for an overlap out of [0, MAX_OVERLAP].
    """
    if not 0 <= overlap <= MAX_OVERLAP:
        raise ValueError(f"overlap must be 0 to {MAX_OVERLAP} seconds")
    secret = fresh(kind)
    held = site.secrets.of(kind)
    until = now + overlap if overlap > 0 and held.current is not None else None
    value = stored(box, site.key, kind, secret)
    if not await db.rotate_secret(site.key, kind, held.current, value, until):
        raise Stale(f"the {kind} of {site.key} changed meanwhile; read it again")
    return secret
