"""Sites (tenants): keys, allowed origins and default rules."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from .errors import ConfigError
from .identity import IdentityConfig
from .identity.jwks import check_jwks_uri
from .identity.jws import KeySet
from .presence import Rules
from .protocol import Hello
from .rules import Claims
from .sealing import SecretBox
from .seat.keyset import DEFAULT_TTL, MAX_TTL, MIN_TTL
from .site_secrets import SiteSecrets, issue

__all__ = [
    "ANY_ORIGIN",
    "IDENTITY_LIFETIME",
    "KEY_SOURCES",
    "SELF_ORIGIN",
    "Site",
    "SiteConfig",
    "changed_config",
    "check_identity",
    "identity_config",
    "new_site",
    "normalize_origin",
]


class SiteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A site's optional settings beyond keys, origins and default rules."""

    identity_required: bool = False  # refuse a plain userId: a signed identity token is needed
    identity_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"  # pinned JWT algorithm
    identity_public_key: str | None = None  # PEM for RS256/ES256 identity tokens
    identity_jwks: dict[str, Any] | None = None  # JWKS for RS256/ES256 identity tokens
    identity_jwks_uri: str | None = None  # or where that JWKS is fetched from (https)
    identity_issuer: str | None = None  # required `iss` of identity tokens; default: site key
    identity_max_lifetime: int = 3600  # longest `exp - iat` of an identity token, seconds
    oidc_issuer: str | None = None  # OpenID provider sending back-channel logout tokens
    oidc_client_id: str | None = None  # `aud` of logout tokens
    oidc_jwks: dict[str, Any] | None = None  # the provider's signing keys
    oidc_jwks_uri: str | None = None  # or where they are fetched from (the provider's jwks_uri)
    webhook_url: str | None = None  # where seat events are posted (signed: SiteSecrets.webhook)
    # When the shared presence store (Redis) cannot be reached: "open" admits new browsers
    # on the node they reach and reconciles when it is back; "closed" refuses them (1013).
    store_failure: Literal["open", "closed"] = "open"
    # Whether its seated tabs get seat tokens; a site that checks no seats on its backend
    # can turn them off (its tabs then hold none, and a login costs a signature less).
    seat_tokens: bool = True
    seat_token_ttl: int = DEFAULT_TTL  # lifetime of the seat tokens its tabs get, seconds

    def __post_init__(self) -> None:
        ttl = self.seat_token_ttl
        if isinstance(ttl, bool) or not MIN_TTL <= ttl <= MAX_TTL:
            raise ValueError(f"seat_token_ttl must be {MIN_TTL} to {MAX_TTL} seconds")
        low, high = IDENTITY_LIFETIME
        lifetime = self.identity_max_lifetime
        if isinstance(lifetime, bool) or not low <= lifetime <= high:
            raise ValueError(f"identity_max_lifetime must be {low} to {high} seconds")
        for uri, stored in KEY_SOURCES.items():
            if getattr(self, uri) is None:
                continue
            try:
                check_jwks_uri(getattr(self, uri))
            except ConfigError as exc:
                raise ValueError(f"{uri}: {exc}") from None
            if given := [name for name in stored if getattr(self, name) is not None]:
                raise ValueError(f"{uri} and {' and '.join(given)} are exclusive: give one")


IDENTITY_LIFETIME = (60, 30 * 86_400)
"""Bounds of `identity_max_lifetime`: a minute to 30 days."""

KEY_SOURCES: dict[str, tuple[str, ...]] = {
    "identity_jwks_uri": ("identity_public_key", "identity_jwks"),
    "oidc_jwks_uri": ("oidc_jwks",),
}
"""Each `jwks_uri` setting, and the stored keys it excludes (one source of keys a purpose)."""


SELF_ORIGIN = "self"
"""Allowed-origin entry meaning the presence server's own origin (the demo site)."""
ANY_ORIGIN = "*"


@dataclass(frozen=True, slots=True)
class Site:
    """One tenant of the server."""

    key: str  # public site key, in the script tag
    name: str
    origins: tuple[str, ...]  # page origins allowed to use the site key
    rules: Rules  # default mode, limit and policy
    client_settings: bool  # whether load() options may set mode, limit and policy
    created_at: float
    config: SiteConfig = field(default_factory=SiteConfig)
    secrets: SiteSecrets = field(default_factory=SiteSecrets)  # as stored: hashed or sealed

    def allows_origin(self, origin: str | None, own_origin: str) -> bool:
        """Whether a page from `origin` may use this site key."""
        if ANY_ORIGIN in self.origins:
            return True
        if not origin:
            return False
        origin = origin.lower()
        return origin in self.origins or (SELF_ORIGIN in self.origins and origin == own_origin)

    def page_claims(self, hello: Hello) -> Claims | None:
        """What the page asks for, where the site lets pages choose their rules."""
        if not self.client_settings or not hello.user:
            return None
        return Claims(
            hello.user,
            org=hello.org,
            role=hello.role,
            mode=hello.mode,
            limit=hello.limit,
            policy=hello.policy,
        )


def identity_config(
    site: Site, fetched: KeySet | None = None, secrets: tuple[str, ...] = ()
) -> IdentityConfig:
    """How identity tokens of a site are checked: pinned algorithm, key, audience, issuer.

    The audience is the site key, and so is the issuer unless the site configures its own.
    A site with an `identity_jwks_uri` needs the keys `fetched` from it (`JwksCache`); an
    HS256 site needs its identity `secrets` opened (`site_secrets.opened`): the current one,
    and the one it replaced while their overlap lasts.
    """
    c = site.config
    if c.identity_jwks_uri is not None and fetched is None:
        raise ConfigError(f"identity keys come from {c.identity_jwks_uri}: fetch them first")
    hs256 = c.identity_algorithm == "HS256"
    return IdentityConfig(
        algorithm=c.identity_algorithm,
        secret=secrets[0] if hs256 and secrets else None,
        previous_secret=secrets[1] if hs256 and len(secrets) > 1 else None,
        public_key=c.identity_public_key,
        jwks=c.identity_jwks,
        key_set=fetched,
        audience=site.key,
        issuer=c.identity_issuer or site.key,
        max_lifetime=c.identity_max_lifetime,
    )


def check_identity(site: Site) -> None:
    """Refuse identity settings that cannot verify a token; raise ConfigError saying why.

    Run before a site is saved. An HS256 site verifies with its identity secret, which
    every site has from its creation on; so only public-key settings are checked.
    """
    c = site.config
    if c.identity_jwks_uri is not None:
        if c.identity_algorithm == "HS256":
            raise ConfigError(
                "a JWKS URI serves RS256/ES256 keys: set the identity algorithm to one of "
                "them, or clear the URI (HS256 tokens are signed with the identity secret)"
            )
        return  # its one source of keys (SiteConfig checks); they are fetched on use
    if c.identity_algorithm != "HS256":
        identity_config(site)


def changed_config(config: SiteConfig, changes: dict[str, Any]) -> SiteConfig:
    """`config` with `changes`, where a source of keys given replaces the others of its
    purpose (a JWKS URI the stored key or JWKS, and the other way round).

    Raise ConfigError when `changes` give two sources of one purpose, or are invalid.
    """
    fields = {f: getattr(config, f) for f in config.__struct_fields__}
    for uri, stored in KEY_SOURCES.items():
        given = [name for name in (*stored, uri) if changes.get(name) is not None]
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(given)} are exclusive: give one")
        if given:
            fields.update(dict.fromkeys((*stored, uri)))
    try:
        return SiteConfig(**{**fields, **changes})
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def normalize_origin(value: str) -> str:
    """`https://Example.com:443/` -> `https://example.com`; raise ConfigError if not an origin."""
    if value in (SELF_ORIGIN, ANY_ORIGIN):
        return value
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not an origin: {value!r} (expected e.g. https://example.com)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"an origin has no path: {value!r}")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    try:
        given = parts.port
    except ValueError as exc:  # not a number, or out of range
        raise ConfigError(f"not an origin: {value!r} ({exc})") from None
    port = "" if given in (None, default_port) else f":{given}"
    return f"{parts.scheme}://{parts.hostname}{port}"


def new_site(
    name: str,
    origins: Iterable[str],
    rules: Rules,
    *,
    client_settings: bool,
    now: float,
    box: SecretBox,
    key: str | None = None,
    config: SiteConfig | None = None,
) -> tuple[Site, dict[str, str]]:
    """A new site with fresh random keys, and its secrets in the clear (`secret`,
    `identity_secret`), to show once: the site keeps only their stored forms."""
    if not name.strip():
        raise ConfigError("a site needs a name")
    normalized = tuple(dict.fromkeys(normalize_origin(o) for o in origins))
    if not normalized:
        raise ConfigError("a site needs at least one allowed origin")
    key = key or "pk_" + secrets.token_urlsafe(18)
    kept, shown = issue(box, key)
    site = Site(
        key=key,
        name=name.strip(),
        origins=normalized,
        rules=rules,
        client_settings=client_settings,
        created_at=now,
        config=config or SiteConfig(),
        secrets=kept,
    )
    return site, shown
