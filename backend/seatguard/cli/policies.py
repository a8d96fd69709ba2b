"""`seatguard policies`: show and set a site's policy (see docs/policies.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..audit import AuditKind
from ..db import Database
from ..errors import InvalidPolicy
from ..recorder import change_event, policy_summary
from ..signals.policies import Policy, encode_policy, parse_policy
from .options import audit_writer, by_option, db_option, db_settings, with_db

__all__ = ["policies"]


@click.group()
def policies() -> None:
    """Show and set a site's policy: rules over sharing checks and risk."""


async def _known(database: Database, key: str) -> None:
    if await database.site(key) is None:
        raise click.ClickException(f"no site with key {key!r}")


def _echo(policy: Policy) -> None:
    click.echo(json.dumps(json.loads(encode_policy(policy)), indent=2, ensure_ascii=False))


@policies.command("show")
@click.argument("key")
@db_option
def policies_show(key: str, db: str) -> None:
    """Show the policy of the site KEY, every setting written out."""

    async def show(database: Database) -> Policy:
        await _known(database, key)
        return await database.policy(key) or Policy()

    _echo(with_db(db, show))


@policies.command("set")
@click.argument("key")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file holding the policy.",
)
@by_option("Who sets it")
@db_option
def policies_set(key: str, path: Path, by: str, db: str) -> None:
    """Replace the policy of the site KEY with the one in a JSON file; print it as stored
    (and write it to the audit trail)."""
    try:
        raw = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise click.UsageError(f"{path}: not JSON ({exc})") from None
    try:
        policy = parse_policy(raw)
    except InvalidPolicy as exc:
        raise click.UsageError(f"{path}: {exc}") from None

    audit = audit_writer(db_settings(db))

    async def store(database: Database) -> None:
        await _known(database, key)
        await database.set_policy(key, policy)
        detail = {"by": by, **policy_summary(policy)}
        await audit(database, change_event(key, AuditKind.policy_set, time.time(), detail))

    with_db(db, store)
    _echo(policy)
