"""Where the seat signing keys come from, never the database: like the audit key (`keys.py`).

SEATGUARD_SEAT_KEYS (the JWK Set itself, as JSON), else the file SEATGUARD_SEAT_KEYS_FILE
names, else (SQLite only) `<db>.seat-keys` beside the database, created with one new key,
owner-only (0600) in directories the server creates owner-only (0700). With PostgreSQL one
of the first two must be given: every node signs with the same keys. An in-memory database
gets a key of its own that ends with the process.

A key file is read again when it changes (`seatguard seat-keys rotate` replaces it): each
node looks at its modification time, size and inode at most every `RELOAD_INTERVAL`
seconds, so a rotation reaches every node without a restart. A file that cannot be read
then keeps the last good set in use (and logs a warning).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from ..keys import KeySource, default_key_path, make_private_dirs
from ..settings import Settings
from .keyset import SeatKeySet, new_key

__all__ = ["RELOAD_INTERVAL", "SEAT_KEYS", "SeatKeyRing", "key_file", "load_seat_keys", "write"]

log = logging.getLogger("seatguard")

SEAT_KEYS = KeySource("seat signing keys", "seat_keys", ".seat-keys", "sign seat tokens")

RELOAD_INTERVAL = 5.0
"""Seconds between looks at the key file for a change."""


class SeatKeyRing:
    """The key set in use, read again from `path` (if any) when the file changes."""

    def __init__(
        self,
        keys: SeatKeySet,
        path: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        reload_interval: float = RELOAD_INTERVAL,
    ) -> None:
        self._keys = keys
        self._path = path
        self._clock = clock
        self._interval = reload_interval
        self._checked = clock()
        self._seen = _stamp(path) if path is not None else None

    @property
    def path(self) -> Path | None:
        """The key file, or None when the keys come from the environment or memory."""
        return self._path

    def current(self) -> SeatKeySet:
        """The key set, after reading the file again if it changed since last looked at."""
        if self._path is None or self._clock() - self._checked < self._interval:
            return self._keys
        self._checked = self._clock()
        try:
            stamp = _stamp(self._path)
            if stamp != self._seen:
                self._keys = SeatKeySet.parse(self._path.read_text(), f"seat key file {self._path}")
                self._seen = stamp
        except (OSError, ConfigError) as exc:
            log.warning("could not reload the seat keys: %s; keeping the last good set", exc)
        return self._keys


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


def key_file(settings: Settings) -> Path | None:
    """The key file of these settings: the one named, else the default beside a SQLite
    database; None with PostgreSQL and no file named, or an in-memory database."""
    if named := SEAT_KEYS.file(settings):
        return Path(named)
    if settings.database_url or settings.db == ":memory:":
        return None
    return default_key_path(settings, SEAT_KEYS)


def load_seat_keys(settings: Settings, *, create: bool, now: float) -> SeatKeyRing:
    """The seat keys of these settings (see the module doc); with `create`, a missing
    default key file is made, with one key added at `now`. Raise ConfigError."""
    if value := SEAT_KEYS.value(settings):
        return SeatKeyRing(SeatKeySet.parse(value, SEAT_KEYS.env))
    named = SEAT_KEYS.file(settings)
    if settings.database_url and not named:
        raise ConfigError(
            f"with PostgreSQL, set {SEAT_KEYS.env} or {SEAT_KEYS.env}_FILE: every node must "
            f"{SEAT_KEYS.why} with the same keys (make a file with: seatguard seat-keys rotate "
            "--file PATH)"
        )
    path = key_file(settings)
    if path is None:
        return SeatKeyRing(SeatKeySet((new_key(now),)))
    if not path.exists():
        if not create or named:
            raise ConfigError(f"seat key file {str(path)!r} does not exist")
        if write(path, SeatKeySet((new_key(now),)), exclusive=True):
            log.warning(
                "created new seat signing keys in %s; keep them apart from the database", path
            )
    return SeatKeyRing(SeatKeySet.parse(path.read_text(), f"seat key file {path}"), path)


def write(path: Path, keys: SeatKeySet, *, exclusive: bool = False) -> bool:
    """Write `keys` to `path` owner-only, in one step (readers see the old file or the new
    one); with `exclusive`, only if there is none (False when another process made it)."""
    make_private_dirs(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".new")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp creates it 0600
            f.write(keys.dumps())
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        else:
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return True
