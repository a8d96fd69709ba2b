"""Rows of the durable tables, the same in every database: how values are written and read.

Sites keep their origins and their `SiteConfig` as JSON text; an audit record keeps its
`detail` as JSON text exactly as written, so that it re-encodes to the bytes that were signed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ..audit import AuditRecord, decode
from ..presence import Rules
from ..rules import Override
from ..sites import Site, SiteConfig

__all__ = [
    "AUDIT_COLUMNS",
    "OVERRIDE_COLUMNS",
    "REVOCATIONS_SCHEMA",
    "SITE_COLUMNS",
    "audit_records",
    "audit_row",
    "override_from_row",
    "override_row",
    "site_from_row",
    "site_row",
]

SITE_COLUMNS = (
    "key, secret, name, origins, mode, seat_limit, policy, client_settings, created_at, "
    "idle_timeout, absolute_timeout, config"
)
OVERRIDE_COLUMNS = "scope, name, mode, seat_limit, policy, idle_timeout, absolute_timeout"
AUDIT_COLUMNS = "seq, prev, hash, at, site, user_id, session, device, ip, kind, reason, detail"
_AUDIT_NAMES = tuple(AUDIT_COLUMNS.replace("user_id", "user").split(", "))  # as in to_json

REVOCATIONS_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE seen_tokens (  -- ids of one-time tokens (OIDC logout tokens) already used
        site text NOT NULL,
        issuer text NOT NULL,
        jti text NOT NULL,
        expires_at double precision NOT NULL,  -- past it the token fails its checks anyway
        PRIMARY KEY (site, issuer, jti)
    )
    """,
    "CREATE INDEX seen_tokens_expiry ON seen_tokens (expires_at)",
    """
    CREATE TABLE revoked_sessions (  -- browser sessions that may never re-attach
        site text NOT NULL,
        session text NOT NULL,
        user_id text NOT NULL,
        revoked_at double precision NOT NULL,
        expires_at double precision NOT NULL,  -- refused until then
        PRIMARY KEY (site, session)
    )
    """,
    "CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at)",
    """
    CREATE TABLE revoked_users (  -- identity tokens issued before the cut-off are refused
        site text NOT NULL,
        user_id text NOT NULL,
        cutoff double precision NOT NULL,
        PRIMARY KEY (site, user_id)
    )
    """,
)
"""The tables of used one-time token ids, revoked sessions and user cut-offs, as one
migration step; the same text serves both databases (SQLite reads `double precision` as
REAL)."""


def site_row(site: Site) -> tuple[object, ...]:
    """A site's values in `SITE_COLUMNS` order (`client_settings` a bool)."""
    return (
        site.key,
        site.secret,
        site.name,
        json.dumps(list(site.origins)),
        site.rules.mode,
        site.rules.limit,
        site.rules.policy,
        bool(site.client_settings),
        site.created_at,
        site.rules.idle_timeout,
        site.rules.absolute_timeout,
        msgspec.json.encode(site.config).decode(),
    )


def site_from_row(row: Iterable[object]) -> Site:
    """A site from values in `SITE_COLUMNS` order."""
    key, secret, name, origins, mode, limit, policy, client, created, idle, absolute, config = row
    return Site(
        key=str(key),
        secret=str(secret),
        name=str(name),
        origins=tuple(json.loads(str(origins))),
        rules=Rules(
            mode=mode,  # type: ignore[arg-type]
            limit=int(str(limit)),
            policy=policy,  # type: ignore[arg-type]
            idle_timeout=_float(idle),
            absolute_timeout=_float(absolute),
        ),
        client_settings=bool(client),
        created_at=float(str(created)),
        config=msgspec.json.decode(str(config), type=SiteConfig),
    )


def override_row(site: str, override: Override) -> tuple[object, ...]:
    """An override's values: its site, then `OVERRIDE_COLUMNS` order."""
    return (
        site,
        override.scope,
        override.name,
        override.mode,
        override.limit,
        override.policy,
        override.idle_timeout,
        override.absolute_timeout,
    )


def override_from_row(row: Iterable[object]) -> Override:
    """An override from values in `OVERRIDE_COLUMNS` order."""
    scope, name, mode, limit, policy, idle, absolute = row
    return Override(
        scope=scope,  # type: ignore[arg-type]
        name=str(name),
        mode=None if mode is None else str(mode),
        limit=None if limit is None else int(str(limit)),
        policy=None if policy is None else str(policy),
        idle_timeout=_float(idle),
        absolute_timeout=_float(absolute),
    )


def audit_row(r: AuditRecord) -> tuple[object, ...]:
    """A record's values in `AUDIT_COLUMNS` order, `detail` as canonical-order JSON text."""
    e = r.event
    detail = json.dumps(dict(e.detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    head = (r.seq, r.prev, r.hash, e.at, e.site, e.user, e.session, e.device, e.ip)
    return (*head, e.kind.value, e.reason, detail)


def audit_records(rows: Iterable[Sequence[Any]]) -> list[AuditRecord]:
    """Decode rows as stored: a tampered value stays as it is, for `verify` to judge."""
    records = []
    for row in rows:
        fields = dict(zip(_AUDIT_NAMES, map(_plain, row), strict=True))
        if isinstance(fields["detail"], str):
            with contextlib.suppress(ValueError):  # not JSON: kept as text, fails its hash
                fields["detail"] = json.loads(fields["detail"])
        records.append(decode(fields))
    return records


def _plain(value: Any) -> Any:
    """A BLOB written into a column reads as text, so that exports and messages work."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))
