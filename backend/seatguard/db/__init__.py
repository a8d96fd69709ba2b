"""Durable records: sites, overrides, the audit trail and the webhook outbox, in SQLite or
PostgreSQL."""

from ..sealing import SecretBox
from .base import AuditLog, Database, WebhookOutbox
from .postgres import PostgresDatabase
from .sqlite import SqliteDatabase

__all__ = [
    "AuditLog",
    "Database",
    "PostgresDatabase",
    "SqliteDatabase",
    "WebhookOutbox",
    "open_database",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_database(target: str, box: SecretBox | None = None) -> Database:
    """Open and migrate the database at `target`.

    A `postgresql://` or `postgres://` URL opens PostgreSQL; anything else is the path of a
    SQLite file (or `:memory:`). The `box` (secrets key) is needed only to seal the secrets
    of a database an earlier version wrote.
    """
    if target.lower().startswith(_POSTGRES_SCHEMES):
        return await PostgresDatabase.open(target, box=box)
    return await SqliteDatabase.open(target, box=box)
