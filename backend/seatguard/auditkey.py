"""Where the audit log's HMAC key comes from, never the database it protects, and where its
head checkpoint goes (beside the key, by default)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from .audit import load_audit_key
from .errors import ConfigError
from .settings import Settings

__all__ = ["CHECKPOINT_ENV", "audit_key", "checkpoint_path", "default_key_path"]

CHECKPOINT_ENV = "SEATGUARD_AUDIT_CHECKPOINT"
"""The environment variable naming the head checkpoint file (see `audit_checkpoint`)."""

log = logging.getLogger("seatguard")


def default_key_path(settings: Settings) -> Path:
    """The key file used when none is configured: beside the database file."""
    return Path(settings.db + ".audit-key")


def checkpoint_path(settings: Settings, environ: Mapping[str, str] | None = None) -> Path | None:
    """The head checkpoint file: SEATGUARD_AUDIT_CHECKPOINT, else `<audit key file>.head`.

    The key file is the configured one, else the default beside the SQLite database (also
    when the key itself comes from SEATGUARD_AUDIT_KEY). None where there is no such place:
    an in-memory database, or PostgreSQL with the key in the environment and no checkpoint
    named.
    """
    environ = os.environ if environ is None else environ
    if named := environ.get(CHECKPOINT_ENV, "").strip():
        return Path(named)
    if settings.audit_key_file:
        return Path(settings.audit_key_file + ".head")
    if settings.database_url or settings.db == ":memory:":
        return None
    return Path(f"{default_key_path(settings)}.head")


def audit_key(settings: Settings, *, create: bool) -> bytes:
    """The audit key: SEATGUARD_AUDIT_KEY, else the key file, else (if `create`) a new one.

    A new key file is written with mode 0600 beside the database. Keep it (or the
    configured key) somewhere the database's readers cannot reach in production.
    """
    if settings.audit_key:
        return load_audit_key(settings.audit_key)
    if settings.db == ":memory:" and not settings.audit_key_file and not settings.database_url:
        return secrets.token_bytes(32)
    if settings.database_url and not settings.audit_key_file:
        raise ConfigError(
            "with PostgreSQL, set SEATGUARD_AUDIT_KEY or SEATGUARD_AUDIT_KEY_FILE: every "
            "node must sign the audit chain with the same key"
        )
    path = Path(settings.audit_key_file) if settings.audit_key_file else default_key_path(settings)
    if path.exists():
        return load_audit_key(path.read_text().strip())
    if not create or settings.audit_key_file:
        raise ConfigError(f"audit key file {str(path)!r} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    log.warning("created a new audit key in %s; keep it safe and apart from the database", path)
    return load_audit_key(path.read_text().strip())
