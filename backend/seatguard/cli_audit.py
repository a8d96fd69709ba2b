"""`seatguard audit`: verify the hash chain, export it as JSON lines."""

from __future__ import annotations

import sys
from typing import Any

import click

from .audit import to_json
from .audit_chain import verify
from .auditkey import audit_key
from .cli import db_option, with_db
from .db import Database
from .errors import ConfigError
from .settings import Settings

__all__ = ["audit"]


def _key(db: str, key_file: str | None) -> bytes:
    try:
        url = db if db.startswith(("postgresql://", "postgres://")) else None
        settings = Settings.from_env(db=db, database_url=url, audit_key_file=key_file)
        return audit_key(settings, create=False)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


_key_option = click.option(
    "--audit-key-file",
    help="File holding the audit key [env SEATGUARD_AUDIT_KEY_FILE, or SEATGUARD_AUDIT_KEY; "
    "default <db>.audit-key].",
)


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
@click.option(
    "--expect-head",
    help="SEQ:HASH of the last record, kept elsewhere; catches a truncated tail.",
)
@_key_option
@db_option
def audit_verify(db: str, audit_key_file: str | None, expect_head: str | None) -> None:
    """Check every record of the chain; exit 1 and say where if anything was tampered with."""
    key = _key(db, audit_key_file)
    anchor = None
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or not digest:
            raise click.BadParameter("--expect-head takes SEQ:HASH")
        anchor = (int(seq), digest)

    async def run(database: Database) -> Any:
        records = [r async for r in database.audit.all_records()]
        return verify(records, key, expected_head=anchor)

    report = with_db(db, run)
    click.echo(report.format())
    sys.exit(0 if report.ok else 1)


@audit.command("export")
@click.option("--out", type=click.File("w"), default="-", help="JSONL file ('-' = stdout).")
@click.option("--site", help="Only this site's records.")
@click.option("--user", help="Only this user's records.")
@click.option("--after", type=int, default=0, help="Only records after this sequence number.")
@db_option
def audit_export(db: str, out: Any, site: str | None, user: str | None, after: int) -> None:
    """Write the audit trail as JSON lines, in sequence order."""

    async def run(database: Database) -> int:
        count = 0
        async for record in database.audit.all_records():
            e = record.event
            if record.seq <= after or (site and e.site != site) or (user and e.user != user):
                continue
            out.write(to_json(record) + "\n")
            count += 1
        return count

    count = with_db(db, run)
    click.echo(f"exported {count} records", err=True)
