"""`seatguard site`: create, update, list and show sites, and rotate their secrets."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..audit import AuditKind
from ..db import Database
from ..errors import ConfigError
from ..keys import secrets_key
from ..outbound import check_literal
from ..presence import MAX_TIMEOUT, RULE_FIELDS, Rules
from ..recorder import change_event, site_changes
from ..sealing import SecretBox
from ..seat.keyset import DEFAULT_TTL, MAX_TTL, MIN_TTL
from ..site_secrets import (
    DEFAULT_OVERLAP,
    MAX_OVERLAP,
    Rotating,
    SecretKind,
    Stale,
    fresh,
    rotate,
    stored,
)
from ..sites import (
    IDENTITY_LIFETIME,
    KEY_SOURCES,
    Site,
    SiteConfig,
    changed_config,
    check_identity,
    new_site,
    normalize_origin,
)
from ..types import MODES, POLICIES
from .options import (
    DEFAULTS,
    audit_writer,
    by_option,
    db_option,
    db_settings,
    secret_box,
    with_db,
)

__all__ = ["site"]

F = TypeVar("F", bound=Callable[..., Any])


def _site_options(f: F) -> F:
    """Options shared by `create` and `update`; on update, only given ones change."""
    options = [
        click.option("--name", help="Display name."),
        click.option(
            "--origin",
            "origins",
            multiple=True,
            help="Page origin allowed to use the site key, e.g. https://example.com "
            "(repeatable; 'self' = this server's own origin; '*' = any).",
        ),
        click.option("--mode", type=click.Choice(MODES), help="What a seat counts."),
        click.option("--limit", type=click.IntRange(1, 1000), help="Seats per user."),
        click.option("--policy", type=click.Choice(sorted(POLICIES)), help="Over the limit."),
        click.option(
            "--client-settings/--no-client-settings",
            default=None,
            help="Let load() options set mode, limit and policy (demo and testing only).",
        ),
        click.option(
            "--idle-timeout",
            type=click.FloatRange(0, MAX_TIMEOUT),
            help="Seconds without user input (0: off, as null is in the API).",
        ),
        click.option(
            "--absolute-timeout",
            type=click.FloatRange(0, MAX_TIMEOUT),
            help="Longest session, seconds (0: off, as null is in the API).",
        ),
        click.option(
            "--require-identity/--no-require-identity",
            default=None,
            help="Refuse a plain userId: require a signed identity token.",
        ),
        click.option(
            "--identity-algorithm",
            type=click.Choice(["HS256", "RS256", "ES256"]),
            help="Algorithm of identity tokens (HS256 is signed with the site's identity secret).",
        ),
        click.option(
            "--identity-public-key",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="PEM file verifying RS256/ES256 identity tokens.",
        ),
        click.option(
            "--identity-jwks",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="JWKS file verifying RS256/ES256 identity tokens.",
        ),
        click.option(
            "--identity-jwks-uri",
            help="https URL of the JWKS verifying RS256/ES256 identity tokens, fetched and "
            "cached by the server; replaces a stored key ('' to stop).",
        ),
        click.option(
            "--identity-issuer", help="Required `iss` of identity tokens [default: the site key]."
        ),
        click.option(
            "--identity-max-lifetime",
            type=click.IntRange(*IDENTITY_LIFETIME),
            help="Longest lifetime of an identity token (exp - iat), seconds [default 3600].",
        ),
        click.option(
            "--seat-tokens/--no-seat-tokens",
            default=None,
            help="Whether seated tabs get seat tokens [default: yes].",
        ),
        click.option(
            "--seat-token-ttl",
            type=click.IntRange(MIN_TTL, MAX_TTL),
            help=f"Lifetime of the seat tokens its tabs get, seconds [default {DEFAULT_TTL}].",
        ),
        click.option("--oidc-issuer", help="OpenID provider sending back-channel logouts."),
        click.option("--oidc-client-id", help="Client id: the `aud` of logout tokens."),
        click.option(
            "--oidc-jwks",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="JWKS file of the OpenID provider.",
        ),
        click.option(
            "--oidc-jwks-uri",
            help="The OpenID provider's jwks_uri (https), fetched and cached by the server; "
            "replaces a stored JWKS ('' to stop).",
        ),
        click.option(
            "--webhook-url", help="Where seat events are posted ('' to stop); a secret is made."
        ),
        click.option(
            "--store-failure",
            type=click.Choice(["open", "closed"]),
            help="When Redis cannot be reached: 'open' admits newcomers on the node they reach "
            "and reconciles later (default); 'closed' refuses them with 1013.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _json_file(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"{path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{path}: a JWKS is a JSON object")
    return value


_EXCLUSIVE = tuple((*stored, uri) for uri, stored in KEY_SOURCES.items())
"""Options naming the keys of one purpose: one at a time."""


def _apply(site: Site, o: dict[str, Any]) -> Site:
    """The site with the given options changed."""
    for group in _EXCLUSIVE:
        if len(given := [f"--{n.replace('_', '-')}" for n in group if o[n]]) > 1:
            raise click.UsageError(f"{' and '.join(given)} are exclusive: give one")
    rules_changes = {n: o[n] for n in RULE_FIELDS if o[n] is not None}
    for name in ("idle_timeout", "absolute_timeout"):
        if name in rules_changes:
            rules_changes[name] = rules_changes[name] or None  # 0: off
    config: dict[str, Any] = {}
    names = {
        "require_identity": "identity_required",
        "identity_algorithm": "identity_algorithm",
        "identity_issuer": "identity_issuer",
        "identity_max_lifetime": "identity_max_lifetime",
        "seat_tokens": "seat_tokens",
        "seat_token_ttl": "seat_token_ttl",
        "oidc_issuer": "oidc_issuer",
        "oidc_client_id": "oidc_client_id",
        "store_failure": "store_failure",
    }
    for option, field in names.items():
        if o[option] is not None:
            config[field] = o[option]
    if o["identity_public_key"] is not None:
        config["identity_public_key"] = o["identity_public_key"].read_text()
    for option, field in (("identity_jwks", "identity_jwks"), ("oidc_jwks", "oidc_jwks")):
        if o[option] is not None:
            config[field] = _json_file(o[option])
    for field in ("identity_jwks_uri", "oidc_jwks_uri"):
        if o[field] is not None:
            config[field] = o[field] or None
    if o["webhook_url"] is not None:
        config["webhook_url"] = o["webhook_url"] or None
    _warn_if_private(config)
    changes: dict[str, Any] = {}
    if o["name"]:
        changes["name"] = o["name"]
    if o["origins"]:
        changes["origins"] = tuple(dict.fromkeys(normalize_origin(x) for x in o["origins"]))
    if o["client_settings"] is not None:
        changes["client_settings"] = o["client_settings"]
    try:
        rules = dataclasses.replace(site.rules, **rules_changes)
        merged = changed_config(site.config, config)
    except (ValueError, TypeError, ConfigError) as exc:
        raise click.BadParameter(str(exc)) from None
    return dataclasses.replace(site, rules=rules, config=merged, **changes)


def _warn_if_private(config: dict[str, Any]) -> None:
    """Say (without refusing: this is the operator) when a URL the server will fetch names
    an address the server refuses to reach unless SEATGUARD_ALLOW_PRIVATE_URLS is set."""
    if db_settings(DEFAULTS.db).allow_private_urls:
        return
    for name in ("identity_jwks_uri", "oidc_jwks_uri", "webhook_url"):
        if isinstance(url := config.get(name), str):
            try:
                check_literal(url, name)
            except ConfigError as exc:
                click.echo(f"warning: {exc}", err=True)


def _config_fields(config: SiteConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__struct_fields__}


def _check(site: Site) -> Site:
    """Refuse a site whose identity settings cannot verify a token."""
    try:
        check_identity(site)
    except ConfigError as exc:
        raise click.BadParameter(f"identity tokens: {exc}") from None
    return site


@click.group()
def site() -> None:
    """Manage sites (tenants)."""


def _box(db: str, *, needed: bool = True) -> SecretBox | None:
    """The secrets key's box for the database `db` (the server's, from the same settings).

    Needed to make or rotate secrets (a new key file is made beside a SQLite file, as the
    server would); elsewhere only to seal the secrets of a database from an earlier
    version, so it may be missing."""
    settings = db_settings(db)
    if needed:
        return secret_box(settings, create=True)
    try:
        return SecretBox(secrets_key(settings, create=False))
    except ConfigError:
        return None


def _say_where(db: str) -> None:
    """Tell on stderr where a site was written when the database was not named."""
    source = click.get_current_context().get_parameter_source("db")
    if source is click.core.ParameterSource.DEFAULT and "://" not in db:
        click.echo(f"wrote to the SQLite database {Path(db).resolve()} (--db to choose)", err=True)


@site.command("create")
@_site_options
@db_option
def site_create(db: str, **options: Any) -> None:
    """Create a site and print its keys and secrets (shown this once: the secret key is
    kept only as a keyed hash)."""
    if not options["name"] or not options["origins"]:
        raise click.UsageError("a new site needs --name and at least one --origin")
    box = _box(db)
    assert box is not None
    try:
        base, shown = new_site(
            options["name"],
            options["origins"],
            Rules(),
            client_settings=False,
            now=time.time(),
            box=box,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    created = _check(_apply(base, options))
    if created.config.webhook_url:
        shown["webhook_secret"] = secret = fresh("webhook")
        webhook = Rotating(stored(box, created.key, "webhook", secret))
        created = dataclasses.replace(
            created, secrets=dataclasses.replace(created.secrets, webhook=webhook)
        )
    with_db(db, lambda database: database.add_site(created), box)
    _say_where(db)
    click.echo(json.dumps({**describe(created), **shown}, indent=2))


@site.command("update")
@click.argument("key")
@_site_options
@by_option("Who changes it")
@db_option
def site_update(key: str, by: str, db: str, **options: Any) -> None:
    """Change a site's settings (only the options given), written to the audit trail. A
    first --webhook-url makes the webhook secret, printed this once."""
    box = _box(db, needed=bool(options["webhook_url"]))
    audit = audit_writer(db_settings(db))

    async def update(database: Database) -> tuple[Site, dict[str, str]]:
        found = await database.site(key)
        if found is None:
            raise click.ClickException(f"no site with key {key!r}")
        updated = _check(_apply(found, options))
        await database.update_site(updated)
        if changes := site_changes(found, updated):
            detail = {"by": by, **changes}
            await audit(database, change_event(key, AuditKind.site_changed, time.time(), detail))
        shown = {}
        if updated.config.webhook_url and found.secrets.webhook.current is None:
            assert box is not None  # needed, so loaded
            try:
                secret = await rotate(database, box, found, "webhook", overlap=0, now=time.time())
            except Stale:
                raise click.ClickException("the site changed meanwhile; try again") from None
            shown["webhook_secret"] = secret
        return updated, shown

    updated, shown = with_db(db, update, box)
    click.echo(json.dumps({**describe(updated), **shown}, indent=2))


@site.command("rotate-secret")
@click.argument("key")
@click.option(
    "--identity",
    "kind",
    flag_value="identity",
    help="Rotate the identity-token secret (ik_...) instead of the secret key.",
)
@click.option(
    "--webhook",
    "kind",
    flag_value="webhook",
    help="Rotate the webhook signing secret (whsec_...) instead of the secret key.",
)
@click.option(
    "--overlap",
    type=click.IntRange(0, MAX_OVERLAP),
    default=DEFAULT_OVERLAP,
    show_default=True,
    help="Seconds the replaced secret stays valid (0: it stops at once).",
)
@db_option
def site_rotate_secret(key: str, kind: str | None, overlap: int, db: str) -> None:
    """Replace a site's secret key (or identity or webhook secret) and print the new one,
    this once; the old one keeps working for --overlap seconds. Servers pick up the change
    within SEATGUARD_SITE_CACHE_TTL seconds."""
    which: SecretKind = "identity" if kind == "identity" else "webhook" if kind else "secret_key"
    box = _box(db)
    assert box is not None

    async def run(database: Database) -> dict[str, Any]:
        found = await database.site(key)
        if found is None:
            raise click.ClickException(f"no site with key {key!r}")
        if found.secrets.of(which).current is None:
            raise click.ClickException(f"site {key!r} has no {which} secret (no --webhook-url)")
        now = time.time()
        try:
            secret = await rotate(database, box, found, which, overlap=overlap, now=now)
        except Stale:
            raise click.ClickException("another rotation came first; nothing changed") from None
        return {
            "key": key,
            "kind": which,
            "secret": secret,
            "previous_valid_until": now + overlap if overlap else None,
        }

    click.echo(json.dumps(with_db(db, run, box), indent=2))


@site.command("list")
@db_option
def site_list(db: str) -> None:
    """List sites."""
    for s in with_db(db, lambda database: database.sites(), _box(db, needed=False)):
        rules = s.rules
        click.echo(f"{s.key}\t{s.name}\t{rules.mode} {rules.limit} {rules.policy}")


@site.command("show")
@click.argument("key")
@click.option("--secret", is_flag=True, hidden=True)
@db_option
def site_show(key: str, secret: bool, db: str) -> None:
    """Show one site (never its secrets: see `seatguard site rotate-secret`)."""
    if secret:
        raise click.UsageError(
            "secrets cannot be shown: the secret key is kept only as a keyed hash, and the "
            "identity and webhook secrets are sealed; make new ones with "
            f"`seatguard site rotate-secret {key} [--identity | --webhook]`"
        )
    found = with_db(db, lambda database: database.site(key), _box(db, needed=False))
    if found is None:
        raise click.ClickException(f"no site with key {key!r}")
    click.echo(json.dumps(describe(found), indent=2))


def describe(s: Site) -> dict[str, Any]:
    """A site as JSON for people, without its secrets."""
    config = _config_fields(s.config)
    return {
        "key": s.key,
        "name": s.name,
        "origins": list(s.origins),
        **{n: getattr(s.rules, n) for n in RULE_FIELDS},
        "client_settings": s.client_settings,
        # Unset settings and switches left off are not shown; a switch turned off is.
        **{k: v for k, v in config.items() if v is not None and v is not _OFF.get(k)},
    }


_OFF = {f: False for f in SiteConfig.__struct_fields__ if getattr(SiteConfig(), f) is False}
"""The switches that are off unless turned on: `describe` leaves them out while off."""
