"""Where the server's keys come from, never the database they protect: the audit log's HMAC
key, the secrets key that hashes and seals the sites' secrets (`sealing.py`), and where the
audit log's head checkpoint goes (beside the audit key, by default).

Each key is an environment value, else a key file, else (where the caller may create one) a
new file beside the SQLite database, written owner-only (0600) in a directory the server
creates owner-only (0700). With PostgreSQL it must be given: every node needs the same one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .audit.chain import MIN_KEY_BYTES
from .errors import ConfigError
from .settings import Settings

__all__ = [
    "AUDIT",
    "CHECKPOINT_ENV",
    "SECRETS",
    "KeySource",
    "audit_key",
    "checkpoint_path",
    "default_key_path",
    "load_audit_key",
    "make_private_dirs",
    "secrets_key",
]

CHECKPOINT_ENV = "SEATGUARD_AUDIT_CHECKPOINT"
"""The environment variable naming the head checkpoint file (see `seatguard.audit.checkpoint`)."""

log = logging.getLogger("seatguard")


@dataclass(frozen=True, slots=True)
class KeySource:
    """One key of the server: its settings, its default file, and what it is for."""

    name: str  # "audit key"
    field: str  # the Settings field of its value; `<field>_file` names its file
    suffix: str  # the default file: the SQLite database's path plus this
    why: str  # why every node needs the same one

    @property
    def env(self) -> str:
        return "SEATGUARD_" + self.field.upper()

    def value(self, settings: Settings) -> str:
        text: str = getattr(settings, self.field)
        return text

    def file(self, settings: Settings) -> str:
        path: str = getattr(settings, self.field + "_file")
        return path


AUDIT = KeySource("audit key", "audit_key", ".audit-key", "sign the audit chain")
SECRETS = KeySource("secrets key", "secrets_key", ".secrets-key", "read the sites' secrets")


def load_audit_key(value: str, what: str = "the audit key") -> bytes:
    """The audit key (or another key, `what`) from text (a key file's content or an
    environment value).

    `hex:` or `base64:` in front says how it is written; without it, text made only of hex
    digits is hex, anything else base64 (standard or URL-safe, padding optional). Surrounding
    whitespace is ignored. ConfigError unless it decodes to at least `MIN_KEY_BYTES` bytes.
    """
    text = value.strip()
    if not text:
        raise ConfigError(f"{what} is empty")
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("hex", "base64"):
        scheme, text = scheme.lower(), rest.strip()
    else:
        scheme = "hex" if re.fullmatch(r"[0-9a-fA-F]+", text) else "base64"
    try:
        if scheme == "hex":
            key = bytes.fromhex(text)
        else:
            padded = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
            key = base64.b64decode(padded, validate=True)
    except (ValueError, binascii.Error):
        raise ConfigError(f"{what} is not valid {scheme}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{what} has {len(key)} bytes, it needs at least {MIN_KEY_BYTES}"
            " (make one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return key


def default_key_path(settings: Settings, source: KeySource = AUDIT) -> Path:
    """The key file used when none is configured: beside the database file."""
    return Path(settings.db + source.suffix)


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
    """The audit key (see `server_key`)."""
    return server_key(AUDIT, settings, create=create)


def secrets_key(settings: Settings, *, create: bool) -> bytes:
    """The secrets key (see `server_key`)."""
    return server_key(SECRETS, settings, create=create)


def server_key(source: KeySource, settings: Settings, *, create: bool) -> bytes:
    """A key: SEATGUARD_<KEY>, else its key file, else (if `create`) a new one.

    A new key file is written with mode 0600 beside the database. Keep it (or the
    configured key) somewhere the database's readers cannot reach in production.
    """
    what = f"the {source.name}"
    if value := source.value(settings):
        return load_audit_key(value, what)
    named = source.file(settings)
    if settings.db == ":memory:" and not named and not settings.database_url:
        return secrets.token_bytes(32)
    if settings.database_url and not named:
        raise ConfigError(
            f"with PostgreSQL, set {source.env} or {source.env}_FILE: every node must "
            f"{source.why} with the same key"
        )
    path = Path(named) if named else default_key_path(settings, source)
    if path.exists():
        return load_audit_key(path.read_text().strip(), what)
    if not create or named:
        raise ConfigError(f"{source.name} file {str(path)!r} does not exist")
    make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return load_audit_key(path.read_text().strip(), what)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    log.warning(
        "created a new %s in %s; keep it safe and apart from the database", source.name, path
    )
    return load_audit_key(path.read_text().strip(), what)


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents, each readable by the owner only (0700);
    directories that exist already are left as they are."""
    missing = []
    for parent in (directory, *directory.parents):
        if parent.exists():
            break
        missing.append(parent)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=0o700)
