"""Options and helpers shared by the `seatguard` commands: the database, the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ..db import Database, open_database
from ..errors import ConfigError
from ..keys import secrets_key
from ..sealing import SecretBox
from ..settings import Settings

__all__ = ["DEFAULTS", "db_option", "db_settings", "secret_box", "settings_from", "with_db"]

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
