"""Whether and how a hello is admitted, decided in one place.

`admit` checks a hello against its site (key and allowed origins), its identity token (with
the keys fetched for it where the site names a `jwks_uri`), the revocations on record, the
user's suspension and the overrides, and returns one plain verdict: `Refused`, the error
the socket ends with and what the audit trail gets; or `Admitted`, the site, whose seats
and the rules in force. It joins no one and sends nothing: the channel applies the
verdict. What it reads comes in as `Sources`: the node's caches in the server, fakes in
tests.

`rules_for` resolves an account's rules; hellos and `Node.refresh_rules` both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .errors import (
    BadMessage,
    IdentityError,
    IdentityRequired,
    InvalidIdentity,
    KeysUnavailable,
    OriginNotAllowed,
    SeatguardError,
    SessionRevoked,
    SessionSuspended,
    UnknownSite,
    UnsupportedVersion,
    close_code,
)
from .identity import Identity, issued_before, verify_identity
from .identity.jws import KeySet, token_kid
from .presence import Rules
from .protocol import PROTOCOL_VERSION, CloseCode, Hello
from .rules import Claims, Override, Scope, resolve, who
from .sealing import SecretBox
from .site_secrets import opened
from .sites import Site, identity_config
from .suspension import Suspension, lifted_by
from .types import UserKey

__all__ = [
    "Admitted",
    "Keys",
    "Overrides",
    "Refused",
    "Revocations",
    "Sites",
    "Sources",
    "Suspensions",
    "Verdict",
    "admit",
    "rules_for",
]


class Sites(Protocol):
    async def get(self, key: str) -> Site | None:
        """The site with this public key, None if there is none."""
        ...


class Overrides(Protocol):
    async def get(
        self, site: str, wanted: Mapping[Scope, str | None]
    ) -> Mapping[tuple[Scope, str], Override]:
        """The overrides of `site` for the given org, role and user."""
        ...


class Revocations(Protocol):
    async def revoked(self, site: str, session: str, now: float) -> bool:
        """Whether a browser session was revoked and is still refused at `now`."""
        ...

    async def user_revoked_before(self, site: str, user: str) -> float | None:
        """The user's cut-off: identity tokens issued before it are refused."""
        ...


class Suspensions(Protocol):
    async def get(self, site: str, user: str) -> Suspension | None:
        """The user's suspension, None if the user is not suspended."""
        ...


class Keys(Protocol):
    async def keys(self, url: str, algorithms: tuple[str, ...], *, kid: object = None) -> KeySet:
        """The keys at a `jwks_uri` for a token with this `kid`; raises KeysUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class Sources:
    """What a hello is checked against."""

    sites: Sites
    overrides: Overrides
    revocations: Revocations
    keys: Keys  # key sets of the sites' `identity_jwks_uri`
    box: SecretBox  # opens the sites' sealed identity secrets (HS256)
    clock: Callable[[], float]
    suspensions: Suspensions


@dataclass(frozen=True, slots=True)
class Refused:
    """A hello turned away, with the error the socket ends with. Where the site is known and
    the hello well formed, the refusal is written down: under `key`, for `reason`."""

    error: SeatguardError
    key: UserKey | None = None  # None: not written down (no such site, a malformed hello)
    reason: str | None = None

    @property
    def code(self) -> CloseCode:
        return close_code(self.error)

    @property
    def message(self) -> str:
        return str(self.error)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A hello let in: its site, whose seats it takes, what the page and the identity token
    ask for (each None where it does not count) and the rules resolved from them."""

    site: Site
    account: Claims  # the token's account, else the page's, else the hello's user id
    page: Claims | None
    token: Claims | None
    identity: Identity | None
    rules: Rules
    lifts: Suspension | None = None  # the user's suspension, which this identity token lifts

    @property
    def key(self) -> UserKey:
        return (self.site.key, self.account.user)


Verdict = Admitted | Refused


async def admit(hello: Hello, sources: Sources, *, origin: str | None, own_origin: str) -> Verdict:
    """The verdict on a hello from a page of `origin`, this server being `own_origin`.

    Checks in order, each read only once the ones before passed: protocol version, site,
    origin, identity token (or user id), revoked session, token issued before the user's
    revocation, the user's suspension (lifted by an identity token issued after it began:
    the verdict says so, the channel lifts it); then resolves the rules. Other errors are
    raised, not turned into refusals: a database that fails (so a suspension is never
    missed: the hello fails closed), identity secrets that cannot be opened.
    """
    if hello.v != PROTOCOL_VERSION:
        return Refused(
            UnsupportedVersion(
                f"protocol version {hello.v} is not supported; this server speaks "
                f"{PROTOCOL_VERSION}"
            )
        )
    site = await sources.sites.get(hello.site)
    if site is None:
        return Refused(UnknownSite(f"unknown site key {hello.site!r}"))
    asked = (site.key, hello.user or "")  # the account the hello names, as yet unproved
    if not site.allows_origin(origin, own_origin):
        not_allowed = OriginNotAllowed(f"origin {origin!r} is not allowed for this site")
        return Refused(not_allowed, asked, "origin_not_allowed")
    identity = None
    if hello.token is None:
        if site.config.identity_required:
            required = IdentityRequired("this site requires a signed identity token")
            return Refused(required, asked, close_code(required).name)
        if not hello.user:
            return Refused(BadMessage("hello needs a user id or an identity token"))
    else:
        try:
            identity = await _verified(hello.token, hello.user, site, sources)
        except IdentityError as exc:
            return Refused(exc, asked, close_code(exc).name)
    token = _claims(identity) if identity is not None else None
    page = site.page_claims(hello)
    account = who(page, token, hello.user)
    key = (site.key, account.user)
    # Revocations are kept in the database: they hold even when presence was lost.
    if await sources.revocations.revoked(site.key, hello.session, sources.clock()):
        revoked = SessionRevoked("this browser session was revoked; sign in again")
        return Refused(revoked, key, "revoked")
    if identity is not None and issued_before(
        identity, await sources.revocations.user_revoked_before(site.key, account.user)
    ):
        too_old = SessionRevoked(
            "this identity token was issued before the user's sessions were revoked; sign in again"
        )
        return Refused(too_old, key, "token_revoked")
    # Kept in the database too; the presence snapshot's mark catches a hello racing it.
    suspension = await sources.suspensions.get(site.key, account.user)
    if suspension is not None and not lifted_by(identity, suspension):
        if identity is None:
            message = "this user is suspended"
        else:
            message = "this identity token was issued before the user was suspended; sign in again"
        return Refused(SessionSuspended(message), key, "suspended")
    rules = await rules_for(sources.overrides, site, page=page, token=token, user=account.user)
    return Admitted(site, account, page, token, identity, rules, suspension)


async def rules_for(
    overrides: Overrides,
    site: Site,
    *,
    page: Claims | None,
    token: Claims | None,
    user: str,
) -> Rules:
    """The rules in force for the account `user` of a site, from the site's defaults, what
    its page and identity token ask for, and the overrides of its org, role and user id."""
    account = who(page, token, user)
    wanted: dict[Scope, str | None] = {"org": account.org, "role": account.role, "user": user}
    found = await overrides.get(site.key, wanted)
    return resolve(site.rules, page=page, token=token, overrides=found, user=user)


async def _verified(token: str, user: str | None, site: Site, sources: Sources) -> Identity:
    """The identity an identity token proves for `site`; raises IdentityError."""
    fetched = None
    if site.config.identity_jwks_uri is not None:
        fetched = await _fetched_keys(site, site.config.identity_jwks_uri, token, sources.keys)
    now = sources.clock()
    secrets: tuple[str, ...] = ()
    if site.config.identity_algorithm == "HS256":
        secrets = opened(sources.box, site, "identity", now)  # read with the site
    identity = verify_identity(token, identity_config(site, fetched, secrets), now=now)
    if user and user != identity.user:
        raise InvalidIdentity("the user id does not match the identity token's subject")
    return identity


async def _fetched_keys(site: Site, uri: str, token: str, keys: Keys) -> KeySet:
    """The keys at the site's `identity_jwks_uri` for this token.

    Why they could not be had goes to the server's log (once per fetch), never to the
    page: what answered at the URL is none of the page's business (`outbound.py`).
    """
    algorithms = (site.config.identity_algorithm,)
    try:
        return await keys.keys(uri, algorithms, kid=token_kid(token))
    except KeysUnavailable as exc:
        raise KeysUnavailable(
            "identity token keys could not be fetched; try again later",
            reason=exc.reason,
            retry_after=exc.retry_after,
        ) from None


def _claims(identity: Identity) -> Claims:
    return Claims(
        identity.user,
        org=identity.org,
        role=identity.role,
        mode=identity.mode,
        limit=identity.limit,
        policy=identity.policy,
        sid=identity.sid,
    )
