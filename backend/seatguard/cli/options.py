"""Options and helpers shared by the `seatguard` commands: the database, the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ..audit import AuditEvent
from ..db import Database, open_database
from ..errors import ConfigError
from ..keys import audit_key, checkpoint_path, secrets_key
from ..names import NAME_WORDS, is_name
from ..recorder import Recorder
from ..sealing import SecretBox
from ..settings import Settings

__all__ = [
    "DEFAULTS",
    "Audit",
    "audit_writer",
    "by_option",
    "db_option",
    "db_settings",
    "secret_box",
    "settings_from",
    "with_db",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

DEFAULTS = Settings()


def db_option(f: F) -> F:
    """`--db`: a SQLite file or a postgresql:// URL."""
    return click.option(
        "--db",
        envvar=["SEATGUARD_DATABASE_URL", "SEATGUARD_DB"],
        default=DEFAULTS.db,
        show_default=True,
        help="SQLite file or postgresql:// URL [env SEATGUARD_DATABASE_URL, SEATGUARD_DB].",
    )(f)


def settings_from(**flags: Any) -> Settings:
    try:
        return Settings.from_env(**flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def db_settings(db: str, **flags: Any) -> Settings:
    """The settings of a command that names its database with `--db` (a path or a URL)."""
    url = db if db.lower().startswith(("postgresql://", "postgres://")) else None
    return settings_from(db=db, database_url=url, **flags)


def by_option(what: str) -> Callable[[F], F]:
    """`--by`: who makes a change, for the audit trail (a name, as user ids are)."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if not is_name(value):
            raise click.BadParameter(NAME_WORDS)
        return value

    return click.option(
        "--by",
        default="cli",
        show_default=True,
        callback=check,
        help=f"{what}, for the audit trail.",
    )


Audit = Callable[[Database, AuditEvent], Awaitable[None]]


def audit_writer(settings: Settings) -> Audit:
    """What writes a command's audit row to its database's trail, chained and signed with
    the audit key the server uses (made where none exists yet, as the server does), the
    head checkpoint brought up to it."""
    try:
        key = audit_key(settings, create=True)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    async def write(database: Database, event: AuditEvent) -> None:
        recorder = Recorder(
            database.audit,
            key,
            database.site,
            None,
            checkpoint=checkpoint_path(settings),
            checkpoint_lag=settings.audit_checkpoint_lag,
        )
        await recorder.start()
        await recorder.changed(event)
        await recorder.flush()

    return write


def secret_box(settings: Settings, *, create: bool) -> SecretBox:
    """The box of the secrets key the server uses with this database (see `seatguard.keys`)."""
    try:
        return SecretBox(secrets_key(settings, create=create))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def with_db(path: str, fn: Callable[[Database], Awaitable[T]], box: SecretBox | None = None) -> T:
    """Open the database (a SQLite path or a postgresql:// URL), run `fn`, close it.

    The `box` seals the secrets of a database from an earlier version, if need be."""

    async def run() -> T:
        try:
            db = await open_database(path, box)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            return await fn(db)
        finally:
            await db.close()

    return asyncio.run(run())
