"""`seatguard seat-keys`: rotate and list the keys that sign seat tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from ..errors import ConfigError
from ..seat.keyset import SWITCH_DELAY, SeatKey, SeatKeySet, new_key
from ..seat.source import SEAT_KEYS, key_file, load_seat_keys, write
from ..settings import Settings
from .options import db_option, db_settings

__all__ = ["seat_keys"]

_file_option = click.option(
    "--file",
    "seat_keys_file",
    envvar="SEATGUARD_SEAT_KEYS_FILE",
    help="The seat key file [env SEATGUARD_SEAT_KEYS_FILE; default <db>.seat-keys].",
)


def _settings(db: str, seat_keys_file: str | None) -> Settings:
    return db_settings(db, seat_keys_file=seat_keys_file)


@click.group("seat-keys")
def seat_keys() -> None:
    """The keys that sign seat tokens (published at /.well-known/jwks.json)."""


@seat_keys.command()
@db_option
@_file_option
@click.option(
    "--now",
    "at_once",
    is_flag=True,
    help="Sign with the new key at once, not after the usual delay; verifiers that cached "
    "the key set must fetch it again (for a key that leaked).",
)
def rotate(db: str, seat_keys_file: str | None, at_once: bool) -> None:
    """Add a new signing key; the others are retired and stay published until every token
    they signed has expired, then are pruned. Servers pick up the file within seconds."""
    settings = _settings(db, seat_keys_file)
    path = key_file(settings)
    if SEAT_KEYS.value(settings) or path is None:
        raise click.UsageError(
            "the seat keys are not kept in a file (SEATGUARD_SEAT_KEYS, PostgreSQL or an "
            "in-memory database): name one with --file or SEATGUARD_SEAT_KEYS_FILE"
        )
    now = time.time()
    if path.exists():
        try:
            held = SeatKeySet.parse(path.read_text(), f"seat key file {path}")
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        keys = held.rotated(now, switch_delay=0.0 if at_once else SWITCH_DELAY)
    else:
        keys = SeatKeySet((new_key(now),))
    write(path, keys)
    added = keys.keys[-1]
    when = "now" if at_once or len(keys.keys) == 1 else f"in {SWITCH_DELAY:g} s"
    click.echo(f"added key {added.kid} to {path}; it signs {when}")


@seat_keys.command("list")
@db_option
@_file_option
def list_keys(db: str, seat_keys_file: str | None) -> None:
    """Show each key's id, state and times (never private material)."""
    settings = _settings(db, seat_keys_file)
    now = time.time()
    try:
        keys = load_seat_keys(settings, create=False, now=now).current()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    signing = keys.signing(now)
    for key in keys.keys:
        click.echo("  ".join(_row(key, key is signing, now)))


def _row(key: SeatKey, signing: bool, now: float) -> list[Any]:
    if signing:
        state = "signing"
    elif key.retired is not None and key.retired <= now:
        state = "retired" if now < key.published_until() else "expired (pruned at next rotate)"
    elif key.retired is not None:
        state = "retiring"  # added after the signing key, retired by a later rotation
    else:
        state = "next"
    row = [key.kid, state, f"added {_when(key.created)} ({_age(now - key.created)} ago)"]
    if key.retired is not None:
        row.append(f"retired {_when(key.retired)}")
        row.append(f"published until {_when(key.published_until())}")
    return row


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
