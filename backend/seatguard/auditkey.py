"""Where the audit log's HMAC key comes from: never from the database it protects."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from .audit import load_audit_key
from .errors import ConfigError
from .settings import Settings

__all__ = ["audit_key", "default_key_path"]

log = logging.getLogger("seatguard")


def default_key_path(settings: Settings) -> Path:
    """The key file used when none is configured: beside the database file."""
    return Path(settings.db + ".audit-key")


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
