"""Rows of the durable tables, the same in every database: how values are written and read.

Sites keep their origins and their `SiteConfig` as JSON text; an audit record keeps its
`detail` as JSON text exactly as written, so that it re-encodes to the bytes that were signed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec

from ..audit import AuditRecord, decode
from ..errors import ConfigError
from ..outbox import Backlog, Delivery, DeliveryState
from ..presence import Rules
from ..ratelog import RateLog
from ..rules import Override
from ..sealing import SecretBox
from ..signals.evaluations import EvaluationRecord
from ..signals.history import Stored, decode_stored, encode_stored
from ..signals.policies import Policy, encode_policy, parse_policy
from ..site_secrets import KINDS, Rotating, SecretKind, SiteSecrets
from ..sites import Site, SiteConfig
from ..suspension import Suspension
from ..webhooks import EventType

log = logging.getLogger("seatguard")

__all__ = [
    "AUDIT_COLUMNS",
    "BACKLOG",
    "EVALUATION_COLUMNS",
    "HISTORY_SCHEMA",
    "HISTORY_TRIES",
    "LEGACY_SITES",
    "OUTBOX_COLUMNS",
    "OUTBOX_STATE_INDEX",
    "OVERRIDE_COLUMNS",
    "POLICIES_SCHEMA",
    "REVOCATIONS_SCHEMA",
    "SECRETS_SCHEMA",
    "SECRET_COLUMNS",
    "SETTINGS_COLUMNS",
    "SITE_COLUMNS",
    "HistoryConflict",
    "audit_records",
    "audit_row",
    "backlog_from",
    "changed_history",
    "deliveries_filter",
    "delivery_from_row",
    "delivery_row",
    "evaluation_row",
    "evaluations_from_rows",
    "evaluations_schema",
    "history_from_text",
    "outbox_schema",
    "override_from_row",
    "override_row",
    "policy_from_text",
    "policy_text",
    "sealed_legacy",
    "settings_row",
    "site_from_row",
    "site_row",
]

SETTINGS_COLUMNS = (
    "name, origins, mode, seat_limit, policy, client_settings, idle_timeout, absolute_timeout, "
    "config"
)
SECRET_COLUMNS: dict[SecretKind, tuple[str, str, str]] = {
    "secret_key": ("secret_hash", "previous_secret_hash", "previous_secret_until"),
    "identity": ("identity_secret", "previous_identity_secret", "previous_identity_until"),
    "webhook": ("webhook_secret", "previous_webhook_secret", "previous_webhook_until"),
}
"""Each secret's columns: the current one, the one it replaced, and until when that is valid."""
SITE_COLUMNS = (
    "key, created_at, "
    + SETTINGS_COLUMNS
    + ", "
    + ", ".join(c for kind in KINDS for c in SECRET_COLUMNS[kind])
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

SUSPENSIONS_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE suspensions (  -- users refused until lifted (suspension.py)
        site text NOT NULL,
        user_id text NOT NULL,
        since double precision NOT NULL,
        reason text NOT NULL,
        suspended_by text NOT NULL,
        PRIMARY KEY (site, user_id)
    )
    """,
)
"""The suspended users, as one migration step (the same text for both databases)."""
SUSPENSION_COLUMNS = "site, user_id, since, reason, suspended_by"


def suspension_from_row(row: Sequence[Any]) -> Suspension:
    site, user, since, reason, by = row
    return Suspension(str(site), str(user), float(since), str(reason), str(by))


POLICIES_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE policies (  -- a site's policy, as `encode_policy` writes it
        site text PRIMARY KEY REFERENCES sites(key) ON DELETE CASCADE,
        document text NOT NULL
    )
    """,
)
"""The sites' policies (`seatguard.signals.policies`), one JSON document a site, as one
migration step for both databases."""


def policy_text(policy: Policy) -> str:
    """A policy as stored: its JSON, every setting written out."""
    return encode_policy(policy).decode()


def policy_from_text(text: object) -> Policy:
    """A stored policy, checked again as it is read (InvalidPolicy if it no longer holds)."""
    return parse_policy(msgspec.json.decode(str(text)))


SECRETS_SCHEMA: tuple[str, ...] = (
    "ALTER TABLE sites RENAME COLUMN secret TO secret_hash",  # filled by `sealed_legacy`
    *(
        f"ALTER TABLE sites ADD COLUMN {name} {'double precision' if i == 2 else 'text'}"
        for kind in KINDS
        for i, name in enumerate(SECRET_COLUMNS[kind])
        if name != "secret_hash"
    ),
    "CREATE INDEX sites_previous_secret ON sites (previous_secret_hash)",
)
"""The columns of the secrets as stored (`site_secrets.py`), as one migration step; the
rows written before it are converted by `sealed_legacy` in the same transaction."""

OUTBOX_COLUMNS = (
    "id, site, endpoint, event, payload, created_at, state, attempts, next_attempt_at, "
    "retrying_since, last_status, last_error, updated_at, claimed_by, claimed_until"
)
"""The columns of an outbox row as `add` writes them; reads add `seq` at the end."""


def outbox_schema(seq: str) -> tuple[str, ...]:
    """The webhook outbox as one migration step, with `seq` the rising key's definition
    (each database spells it its own way)."""
    return (
        f"""
        CREATE TABLE webhook_outbox (  -- webhook messages until delivered or dead (outbox.py)
            seq {seq},
            id text NOT NULL UNIQUE,  -- the webhook-id, the same on every attempt
            site text NOT NULL,
            endpoint text NOT NULL,
            event text NOT NULL,
            payload text NOT NULL,  -- the JSON body as posted
            created_at double precision NOT NULL,
            state text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
            attempts integer NOT NULL,
            next_attempt_at double precision,  -- when a pending message is due
            retrying_since double precision NOT NULL,  -- the retry window opened
            last_status integer,
            last_error text,
            updated_at double precision NOT NULL,
            claimed_by text,  -- the node posting it now, until claimed_until
            claimed_until double precision
        )
        """,
        "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) "
        "WHERE state = 'pending'",
        "CREATE INDEX webhook_outbox_site ON webhook_outbox (site, seq)",
    )


OUTBOX_STATE_INDEX = (
    "CREATE INDEX webhook_outbox_state ON webhook_outbox (state, retrying_since)",
)
"""The index that counts the outbox's pending and dead messages, as one migration step."""

BACKLOG = (
    "SELECT state, count(*), min(retrying_since) FROM webhook_outbox "
    "WHERE state IN ('pending', 'dead') GROUP BY state"
)
"""The outbox's backlog in one query over `webhook_outbox_state`; read by `backlog_from`."""


def deliveries_filter(
    state: str | None, event: str | None, before: int | None, mark: Callable[[int], str]
) -> tuple[str, list[object]]:
    """The conditions of the delivery history after `site`, and their values; `mark(n)`
    writes the placeholder of the n-th value (the site is the first)."""
    sql, args = "", list[object]()
    for condition, value in (("state =", state), ("event =", event), ("seq <", before)):
        if value is not None:
            args.append(value if isinstance(value, int) else str(value))
            sql += f" AND {condition} {mark(len(args) + 1)}"
    return sql, args


def backlog_from(rows: Iterable[Sequence[Any]]) -> Backlog:
    """The backlog from the rows of `BACKLOG`: (state, count, earliest retrying_since)."""
    found = {str(state): (int(count), since) for state, count, since in rows}
    pending, since = found.get("pending", (0, None))
    return Backlog(pending, found.get("dead", (0, None))[0], since)


def delivery_row(d: Delivery) -> tuple[object, ...]:
    """A message's values in `OUTBOX_COLUMNS` order."""
    return (
        d.id,
        d.site,
        d.endpoint,
        d.event.value,
        d.payload,
        d.created_at,
        d.state.value,
        d.attempts,
        d.next_attempt_at,
        d.retrying_since,
        d.last_status,
        d.last_error,
        d.updated_at,
        d.claimed_by,
        d.claimed_until,
    )


def delivery_from_row(row: Iterable[object]) -> Delivery:
    """A message from values in `OUTBOX_COLUMNS` order, then `seq`."""
    (id_, site, endpoint, event, payload, created, state, attempts, due, since, status,
     error, updated, claimed_by, claimed_until, seq) = row  # fmt: skip
    return Delivery(
        id=str(id_),
        site=str(site),
        endpoint=str(endpoint),
        event=EventType(str(event)),
        payload=str(payload),
        created_at=float(str(created)),
        state=DeliveryState(str(state)),
        attempts=int(str(attempts)),
        next_attempt_at=_float(due),
        retrying_since=float(str(since)),
        last_status=None if status is None else int(str(status)),
        last_error=_text(error),
        updated_at=float(str(updated)),
        claimed_by=_text(claimed_by),
        claimed_until=_float(claimed_until),
        seq=int(str(seq)),
    )


LEGACY_SITES = "SELECT key, secret_hash, config FROM sites WHERE identity_secret IS NULL"
"""Rows from before `SECRETS_SCHEMA`: their secret key in the clear, no identity secret."""


def sealed_legacy(
    box: SecretBox | None, key: str, secret: str, config: str
) -> tuple[str, str, str | None, str]:
    """A site row from before secrets were sealed, converted: the keyed hash of its secret
    key, that same key sealed as its identity secret (so HS256 tokens signed as before
    still verify), its webhook secret moved out of the config and sealed, and the config
    without it. Raise ConfigError without a `box`: the conversion needs the secrets key."""
    if box is None:
        raise ConfigError(
            "this database keeps the sites' secret keys in the clear (written by an earlier "
            "version): open it once with the secrets key (SEATGUARD_SECRETS_KEY or "
            "SEATGUARD_SECRETS_KEY_FILE, created beside a SQLite file by `seatguard serve` or "
            "`seatguard site`) so that they are hashed and sealed"
        )
    settings = json.loads(config)
    webhook = settings.pop("webhook_secret", None)
    return (
        box.digest(secret),
        box.seal(secret, site=key, purpose="identity"),
        None if webhook is None else box.seal(webhook, site=key, purpose="webhook"),
        json.dumps(settings, separators=(",", ":")),
    )


def settings_row(site: Site) -> tuple[object, ...]:
    """A site's settings in `SETTINGS_COLUMNS` order (`client_settings` a bool)."""
    return (
        site.name,
        json.dumps(list(site.origins)),
        site.rules.mode,
        site.rules.limit,
        site.rules.policy,
        bool(site.client_settings),
        site.rules.idle_timeout,
        site.rules.absolute_timeout,
        msgspec.json.encode(site.config).decode(),
    )


def site_row(site: Site) -> tuple[object, ...]:
    """A site's values in `SITE_COLUMNS` order."""
    stored = site.secrets
    secrets = [getattr(stored.of(k), f) for k in KINDS for f in _ROTATING]
    return (site.key, site.created_at, *settings_row(site), *secrets)


_ROTATING = ("current", "previous", "previous_until")


def site_from_row(row: Iterable[object]) -> Site:
    """A site from values in `SITE_COLUMNS` order."""
    values = list(row)
    key, created, name, origins, mode, limit, policy, client, idle, absolute, config = values[:11]
    held = [values[11 + 3 * i : 14 + 3 * i] for i in range(len(KINDS))]
    return Site(
        key=str(key),
        secrets=SiteSecrets(
            **{
                kind: Rotating(_text(current), _text(previous), _float(until))
                for kind, (current, previous, until) in zip(KINDS, held, strict=True)
            }
        ),
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


def _text(value: object) -> str | None:
    return None if value is None else str(value)


HISTORY_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE user_history (  -- a user's devices and networks (signals/history.py)
        site text NOT NULL,
        user_id text NOT NULL,
        version integer NOT NULL,  -- raised by every write: the compare-and-set's witness
        document text NOT NULL,  -- `encode_stored`: JSON with its format number
        PRIMARY KEY (site, user_id)
    )
    """,
)
"""The users' remembered devices and networks, one document a user, as one migration step
for both databases."""

HISTORY_TRIES = 16
"""Compare-and-set attempts of one history change before it gives up (HistoryConflict)."""


class HistoryConflict(RuntimeError):
    """A history kept changing under a compare-and-set (`HISTORY_TRIES` times)."""


def history_from_text(text: object) -> Stored | None:
    """A stored history; None (logged) for one that no longer decodes, which the next write
    replaces."""
    try:
        return decode_stored(str(text))
    except ValueError as exc:
        log.warning("a stored history is unreadable and starts again: %s", exc)
        return None


async def changed_history(
    read: Callable[[], Awaitable[tuple[int, str] | None]],
    write: Callable[[int | None, str], Awaitable[bool]],
    change: Callable[[Stored | None], Stored | None],
) -> Stored | None:
    """The compare-and-set loop of `Database.update_history`: `read` gives (version, text)
    or None, `write(expected_version, text)` stores the text if the version is still the
    expected one (None: if there is no row yet) and says whether it did."""
    for _ in range(HISTORY_TRIES):
        row = await read()
        current = None if row is None else history_from_text(row[1])
        new = change(current)
        if new is None:
            return None
        if await write(None if row is None else row[0], encode_stored(new)):
            return new
    raise HistoryConflict(f"the history changed {HISTORY_TRIES} times under one update")


def evaluations_schema(seq: str) -> tuple[str, ...]:
    """The evaluations of the sites' policies, one row each, as one migration step, with
    `seq` the rising key's definition (each database spells it its own way): of records
    of one instant, the one stored last is the newest."""
    return (
        f"""
        CREATE TABLE evaluations (  -- what a policy said of a session (signals/evaluations.py)
            seq {seq},
            site text NOT NULL,
            user_id text NOT NULL,
            session text NOT NULL,
            at double precision NOT NULL,
            document text NOT NULL  -- the `EvaluationRecord` as JSON
        )
        """,
        # A user's records newest first, a page at a time; and the purge of old ones.
        "CREATE INDEX evaluations_user ON evaluations (site, user_id, at, seq)",
        "CREATE INDEX evaluations_at ON evaluations (at)",
    )


EVALUATION_COLUMNS = "site, user_id, session, at, document"
"""The columns of an evaluation row as `add_evaluations` writes them."""

_record_decoder = msgspec.json.Decoder(EvaluationRecord)
_unreadable = RateLog(log)


def evaluation_row(record: EvaluationRecord) -> tuple[str, str, str, float, str]:
    """A record's values in `EVALUATION_COLUMNS` order."""
    document = msgspec.json.encode(record).decode()
    return record.site, record.user, record.session, record.at, document


def evaluations_from_rows(rows: Iterable[Sequence[Any]]) -> list[EvaluationRecord]:
    """The records of `(document,)` rows; one that no longer decodes is left out (logged)."""
    found = []
    for (document,) in rows:
        try:
            found.append(_record_decoder.decode(str(document)))
        except msgspec.DecodeError as exc:
            _unreadable("a stored evaluation is unreadable and left out: %s", exc)
    return found
