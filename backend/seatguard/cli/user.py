"""`seatguard user`: suspend a user of a site, lift the suspension, show it.

The command is a short-lived node on the server's database and presence store: the
suspension and its lift are written down (audit trail, webhooks in the outbox) as the
server writes them. With a shared store (`SEATGUARD_REDIS_URL`), the user's live sessions
on every node end at once; with the in-memory store of a single server, this command
cannot reach that server's tabs: they end at their next hello (within the site cache's
lifetime), or at once through the API (`POST /api/v1/users/{user}/suspension`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ..db import open_database
from ..deliveries import DeliveryWorker
from ..errors import ConfigError, StoreUnavailable
from ..keys import audit_key, checkpoint_path
from ..names import NAME_WORDS, is_name
from ..node import Node
from ..recorder import Recorder
from ..settings import Settings
from ..store import MemoryStore, PresenceStore
from ..store.redis import RedisStore
from ..suspension import REASON_MAX, Suspension
from .options import db_option, db_settings, secret_box

__all__ = ["user"]

T = TypeVar("T")


@click.group()
def user() -> None:
    """Suspend a site's user, lift the suspension, show it."""


def _checked(site: str, name: str) -> None:
    if not is_name(name):
        raise click.BadParameter(f"a user id is {NAME_WORDS}", param_hint="USER")
    if not is_name(site):
        raise click.BadParameter(f"a site key is {NAME_WORDS}", param_hint="SITE")


def _run(db: str, fn: Callable[[Node], Awaitable[T]]) -> T:
    """Run `fn` on a node over the server's database and presence store, then close it."""
    settings = db_settings(db)

    # As the server does at its start: the keys are made where none exist yet.
    box = secret_box(settings, create=True)
    try:
        key = audit_key(settings, create=True)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    async def run() -> T:
        try:
            database = await open_database(settings.database, box)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            store = _store(settings)
        except BaseException:
            await database.close()
            raise
        recorder = Recorder(
            database.audit,
            key,
            database.site,
            DeliveryWorker.from_settings(settings, database.outbox, database.site, box),
            box=box,
            checkpoint=checkpoint_path(settings),
            checkpoint_lag=settings.audit_checkpoint_lag,
        )
        node = Node(settings, store, database, box=box, recorder=recorder)
        try:
            await recorder.start()
            await store.start(node)
            return await fn(node)
        finally:
            await recorder.flush()
            await store.close()
            await database.close()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _store(settings: Settings) -> PresenceStore:
    if not settings.redis_url:
        return MemoryStore(time.time)
    return RedisStore(
        settings.redis_url,
        timing=settings.timing,
        lease=settings.node_lease,
        timeout=settings.redis_timeout,
    )


def _describe(s: Suspension) -> dict[str, Any]:
    return {"site": s.site, "user": s.user, "since": s.since, "reason": s.reason, "by": s.by}


@user.command("suspend")
@click.argument("site")
@click.argument("name", metavar="USER")
@click.option("--reason", default="", help=f"Why (at most {REASON_MAX} characters).")
@click.option("--by", default="cli", show_default=True, help="Who suspends, for the audit trail.")
@db_option
def user_suspend(site: str, name: str, reason: str, by: str, db: str) -> None:
    """Suspend USER of SITE: end their sessions, refuse new ones until lifted."""
    _checked(site, name)
    if len(reason) > REASON_MAX or any(ord(c) < 32 or ord(c) == 127 for c in reason):
        raise click.BadParameter(
            f"at most {REASON_MAX} characters, no control characters", param_hint="--reason"
        )
    if not is_name(by):
        raise click.BadParameter(NAME_WORDS, param_hint="--by")

    async def run(node: Node) -> tuple[Suspension, bool, bool]:
        if await node.site(site) is None:
            raise click.ClickException(f"no site with key {site!r}")
        try:
            suspension, created = await node.suspend_user((site, name), reason, by)
        except StoreUnavailable:
            stored = await node.suspension((site, name))
            assert stored is not None
            return stored, True, False
        return suspension, created, True

    suspension, created, ended = _run(db, run)
    click.echo(json.dumps({**_describe(suspension), "created": created}, indent=2))
    if not ended:
        click.echo(
            "the presence store is unavailable: live sessions end when it is back "
            "(or run this again)",
            err=True,
        )


@user.command("unsuspend")
@click.argument("site")
@click.argument("name", metavar="USER")
@click.option("--by", default="cli", show_default=True, help="Who lifts it, for the audit trail.")
@db_option
def user_unsuspend(site: str, name: str, by: str, db: str) -> None:
    """Lift the suspension of USER of SITE."""
    _checked(site, name)
    if not is_name(by):
        raise click.BadParameter(NAME_WORDS, param_hint="--by")
    lifted = _run(db, lambda node: node.lift_suspension((site, name), by))
    if lifted is None:
        raise click.ClickException(f"user {name!r} of site {site!r} is not suspended")
    click.echo(json.dumps(_describe(lifted), indent=2))


@user.command("show")
@click.argument("site")
@click.argument("name", metavar="USER")
@db_option
def user_show(site: str, name: str, db: str) -> None:
    """Show the suspension of USER of SITE (exit 1 if not suspended)."""
    _checked(site, name)

    async def run(node: Node) -> Suspension | None:
        return await node.suspension((site, name))

    found = _run(db, run)
    if found is None:
        raise click.ClickException(f"user {name!r} of site {site!r} is not suspended")
    click.echo(json.dumps(_describe(found), indent=2))
