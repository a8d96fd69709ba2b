"""`seatguard audit`: verify the hash chain and its head checkpoint, export it as JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..audit import to_json
from ..audit.chain import verify
from ..audit.checkpoint import Checkpoint, CheckpointError, read_checkpoint
from ..db import Database
from ..errors import ConfigError
from ..keys import audit_key, checkpoint_path, secrets_key
from ..sealing import SecretBox
from ..settings import Settings
from .options import db_option, db_settings, with_db

__all__ = ["audit"]


class Missing(click.ClickException):
    """What the command reads is not there: one line on stderr and exit 2, as a usage error
    but without the usage text above it."""

    exit_code = 2


def _settings(db: str, key_file: str | None) -> Settings:
    _exists(db)
    return db_settings(db, audit_key_file=key_file)


def _exists(db: str) -> None:
    """Refuse to read the audit trail of a SQLite file that is not there (opening it would
    make an empty one, whose empty chain would verify)."""
    if "://" not in db and db != ":memory:" and not Path(db).is_file():
        where = Path(db).resolve()
        raise Missing(f"no database at {str(where)!r} (--db names the server's database)")


def _box(settings: Settings) -> SecretBox | None:
    """The secrets key, if there is one: opening a database of an earlier version seals
    its sites' secrets first, which needs it."""
    try:
        return SecretBox(secrets_key(settings, create=False))
    except ConfigError:
        return None


def _key(settings: Settings) -> bytes:
    try:
        return audit_key(settings, create=False)
    except ConfigError as exc:
        raise Missing(str(exc)) from None


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
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The head checkpoint the server writes [env SEATGUARD_AUDIT_CHECKPOINT; default "
    "<audit key file>.head].",
)
@click.option(
    "--no-checkpoint", is_flag=True, help="Check the chain alone, without the head checkpoint."
)
@_key_option
@db_option
def audit_verify(
    db: str,
    audit_key_file: str | None,
    expect_head: str | None,
    checkpoint_file: Path | None,
    no_checkpoint: bool,
) -> None:
    """Check every record of the chain and, by default, the head checkpoint kept outside the
    database, which catches a cut tail; exit 1 and say where if anything was tampered with."""
    settings = _settings(db, audit_key_file)
    key = _key(settings)
    anchor = None
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or not digest:
            raise click.BadParameter("--expect-head takes SEQ:HASH")
        anchor = (int(seq), digest)
    path = None if no_checkpoint else checkpoint_file or checkpoint_path(settings)
    checkpoint: Checkpoint | None = None
    broken = None
    if path is not None:
        try:
            checkpoint = read_checkpoint(path, key)
        except CheckpointError as exc:
            broken = f"checkpoint BROKEN: {path}: {exc}"

    async def run(database: Database) -> Any:
        records = [r async for r in database.audit.all_records()]
        head = None if checkpoint is None else (checkpoint.seq, checkpoint.hash)
        return verify(records, key, expected_head=anchor, checkpoint=head)

    report = with_db(db, run, _box(settings))
    click.echo(report.format())
    if no_checkpoint:
        line = "checkpoint skipped (--no-checkpoint): a cut tail would go unnoticed"
    elif path is None:
        line = "checkpoint: none configured (set SEATGUARD_AUDIT_CHECKPOINT to keep one)"
    elif broken is not None:
        line = broken
    elif checkpoint is None and report.count:
        broken = line = (
            f"checkpoint MISSING: {path} does not exist, so a cut tail cannot be told; the "
            "server writes it after appends (or pass --no-checkpoint)"
        )
    elif checkpoint is None:
        line = f"checkpoint: none yet at {path} (the log is empty)"
    else:
        line = f"checkpoint at {path}: seq {checkpoint.seq}"
        behind = (report.head[0] if report.head else 0) - checkpoint.seq
        if behind > 0:
            line += f" ({behind} later record(s) not yet in it)"
    click.echo(line)
    sys.exit(0 if report.ok and broken is None else 1)


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

    _exists(db)
    count = with_db(db, run, _box(db_settings(db)))
    click.echo(f"exported {count} records", err=True)
