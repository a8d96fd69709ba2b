"""Durable records: sites, overrides and the audit trail, in SQLite or PostgreSQL."""

from .base import AuditLog, Database
from .postgres import PostgresDatabase
from .sqlite import SqliteDatabase

__all__ = ["AuditLog", "Database", "PostgresDatabase", "SqliteDatabase", "open_database"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_database(target: str) -> Database:
    """Open and migrate the database at `target`.

    A `postgresql://` or `postgres://` URL opens PostgreSQL; anything else is the path of a
    SQLite file (or `:memory:`).
    """
    if target.lower().startswith(_POSTGRES_SCHEMES):
        return await PostgresDatabase.open(target)
    return await SqliteDatabase.open(target)
