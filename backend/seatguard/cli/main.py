"""The `seatguard` command: serve, demo, and site management."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import uvicorn

from ..db import Database
from ..presence import Rules
from ..sealing import SecretBox
from ..settings import HEALTH_DETAILS, Settings
from ..site_secrets import Stale, rotate
from ..sites import SELF_ORIGIN, new_site
from .options import DEFAULTS, secret_box, settings_from, with_db

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _server_options(f: F) -> F:
    """Flags shared by `serve` and `demo`; each also reads SEATGUARD_<NAME>."""
    options = [
        click.option("--host", help=f"Interface to listen on [default {DEFAULTS.host}]."),
        click.option("--port", type=int, help=f"TCP port [default {DEFAULTS.port}]."),
        click.option("--db", help=f"SQLite file holding sites [default {DEFAULTS.db}]."),
        click.option(
            "--database-url",
            help="postgresql://... to keep sites, overrides and the audit trail in PostgreSQL.",
        ),
        click.option(
            "--redis-url",
            help="redis://host:port to share presence with other nodes [default: in memory].",
        ),
        click.option(
            "--node-lease",
            type=float,
            help="Seconds after which a node that stopped renewing its lease is dead and its "
            f"tabs are released [default {DEFAULTS.node_lease}].",
        ),
        click.option(
            "--heartbeat-interval",
            type=float,
            help=f"Seconds between heartbeats of each tab [default {DEFAULTS.heartbeat_interval}].",
        ),
        click.option(
            "--session-timeout",
            type=float,
            help="Seconds of silence after which a tab is dropped and its seat freed "
            f"[default {DEFAULTS.session_timeout}].",
        ),
        click.option(
            "--reload-grace",
            type=float,
            help="Seconds a browser whose tabs all left keeps its seat, so a reload or a "
            f"navigation re-attaches [default {DEFAULTS.reload_grace}].",
        ),
        click.option(
            "--drop-grace",
            type=float,
            help="Seconds a browser keeps its seat after its last tab's socket closed without "
            f"goodbye (a network drop), at most 600 [default {DEFAULTS.drop_grace}].",
        ),
        click.option(
            "--unload-grace",
            type=float,
            help="Seconds a browser keeps its seat after its last tab left with no hint of a "
            f"next page (a closed tab or a reload) [default {DEFAULTS.unload_grace}].",
        ),
        click.option(
            "--takeover-cooldown",
            type=float,
            help='Seconds after a browser took a seat from another ("use here") before one '
            f"of the same user may do it again; 0: no wait [default {DEFAULTS.takeover_cooldown}].",
        ),
        click.option(
            "--idle-warning",
            type=float,
            help="Seconds before an idle timeout ends a session that its tabs warn the user; "
            f"0: no warning [default {DEFAULTS.idle_warning}].",
        ),
        click.option(
            "--sweep-interval",
            type=float,
            help="Seconds between checks for silent tabs and timeouts "
            f"[default {DEFAULTS.sweep_interval}].",
        ),
        click.option(
            "--hello-timeout",
            type=float,
            help=f"Seconds a new socket has to say hello [default {DEFAULTS.hello_timeout}].",
        ),
        click.option(
            "--handshake-timeout",
            type=float,
            help="Seconds a new connection has to send its whole request head "
            f"[default {DEFAULTS.handshake_timeout}].",
        ),
        click.option(
            "--max-message-bytes",
            type=int,
            help=f"Largest accepted frame [default {DEFAULTS.max_message_bytes}].",
        ),
        click.option(
            "--health-details",
            type=click.Choice(HEALTH_DETAILS),
            help="Who sees /healthz's details (node, tabs, admission times, collector): "
            f"anyone, loopback clients only, or nobody [default {DEFAULTS.health_details}].",
        ),
        click.option(
            "--trusted-proxies",
            help="Comma-separated IP addresses and CIDR networks of the reverse proxies whose "
            "X-Forwarded-For and X-Forwarded-Proto count "
            f"[default {DEFAULTS.trusted_proxies}].",
        ),
        click.option("--log-level", help=f"Log level [default {DEFAULTS.log_level}]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run(settings: Settings, *, demo_secret: str | None = None) -> None:
    from ..app import create_app
    from ..sockets import HttpProtocol

    raise_open_files_limit()
    uvicorn.run(
        create_app(settings, demo_secret=demo_secret),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=HttpProtocol,  # WebSockets on the lean path, the rest on uvicorn's httptools
        ws="none",
        proxy_headers=False,  # the app reads them itself (proxies.ProxyHeaders), as the socket
        loop="uvloop",
        lifespan="on",
        backlog=4096,
        timeout_graceful_shutdown=5,
    )


def raise_open_files_limit() -> None:
    """Every socket is a file: let this process hold as many as the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@click.group()
@click.version_option(package_name="seatguard")
def main() -> None:
    """Seatguard: stop account sharing and control browser sessions in real time."""


@main.command()
@_server_options
def serve(**flags: Any) -> None:
    """Run the presence server."""
    _run(settings_from(**flags))


@main.command()
@_server_options
def demo(**flags: Any) -> None:
    """Run the presence server with the Acme Stream demo site next to it."""
    from demo_site import DEMO_SITE_KEY

    # The demo's own pages, and whatever you try it with, are on this machine.
    settings = settings_from(demo=True, allow_private_urls=True, **flags)
    box = secret_box(settings, create=True)
    secret = with_db(settings.database, lambda db: _seed_demo(db, box, DEMO_SITE_KEY), box)
    url = f"http://{settings.host}:{settings.port}/"
    click.echo(f"Demo site key: {DEMO_SITE_KEY}")
    click.echo(f"Demo secret key (REST API, new at each start): {secret}")
    click.echo(f"Acme Stream demo: {url}  (try {url}watch?user=alice&mode=concurrence&limit=1)")
    _run(settings, demo_secret=secret)


async def _seed_demo(db: Database, box: SecretBox, key: str) -> str:
    """Create the demo site on first use (by whichever of several demo nodes comes first),
    and give it a fresh secret key: the one it had cannot be read back (it is hashed)."""
    site = await db.site(key)
    if site is None:
        site, _ = new_site(
            "Acme Stream (demo)",
            [SELF_ORIGIN],
            Rules(),
            client_settings=True,
            now=time.time(),
            box=box,
            key=key,
        )
        try:
            await db.add_site(site)
        except Exception:
            site = await db.site(key)  # another node seeded it at the same moment
            if site is None:
                raise
    for _ in range(10):
        try:
            return await rotate(db, box, site, "secret_key", overlap=0, now=time.time())
        except Stale:  # another demo node started at the same moment: read it again
            site = await db.site(key) or site
    raise click.ClickException("could not give the demo site a secret key; start it again")


def _register() -> None:
    from ..bench.command import bench
    from .audit import audit
    from .policies import policies
    from .seat import seat_keys
    from .site import site
    from .user import user

    main.add_command(site)
    main.add_command(user)
    main.add_command(audit)
    main.add_command(policies)
    main.add_command(seat_keys)
    main.add_command(bench)


_register()
