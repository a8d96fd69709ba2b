"""The ASGI application: `create_app(settings)` and the lifespan that owns resources."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import re
import resource
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from . import __version__, api, apidocs
from . import oidc as oidc_routes
from . import openapi as openapi_doc
from .assets import Assets
from .collector import Collector
from .db import open_database
from .deliveries import DeliveryWorker
from .events import EventFeed
from .handshakes import Handshakes
from .headers import SecurityHeaders
from .identity.jwks import JwksCache
from .keys import audit_key, checkpoint_path, secrets_key
from .lookups import OverrideCache, RevocationChecks, SiteCache
from .node import Node
from .problems import problem
from .proxies import ProxyHeaders, TrustedProxies
from .recorder import Recorder
from .sealing import SecretBox
from .seat import SeatTokens, load_seat_keys
from .seat import routes as seat_routes
from .seat.check import VerifiedSeats
from .settings import Settings
from .signals.evaluations import EvaluationWriter
from .signals.geo import open_geoip
from .signals.recording import HistoryWriter
from .store import MemoryStore, PresenceStore
from .store.redis import RedisStore

__all__ = ["SDK_LANGUAGES", "SDK_PATH", "App", "create_app"]

log = logging.getLogger("seatguard")

SDK_PATH = Path(str(resources.files("seatguard") / "static" / "seatguard.js"))
"""The built browser SDK (`npm run build` writes it)."""

SDK_LANGUAGES = ("fr", "es", "de")
"""Languages of the SDK's overlay texts besides English, which is built in; each has a pack
`static/lang/{lang}.json` (`npm run build` writes them). Mirrors `LANGUAGES` in
js-sdk/src/texts.js."""

# The SDK file and its language packs: cached a little, readable from any site's pages.
SDK_HEADERS = {"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}
NOT_BUILT = "The browser SDK is not built: run `npm run build`."


async def _tick_forever(node: Node, collector: Collector) -> None:
    while True:
        await asyncio.sleep(node.settings.sweep_interval)
        try:
            await node.tick()
        except Exception:
            log.exception("presence tick failed; retrying on the next one")
        collector.step()


_COUNT = re.compile(r"[0-9]{1,5}")  # ASCII digits only: `str.isdigit` also takes "²"
_FORWARDED = ("forwarded", "x-real-ip")  # a proxy's word that the client is someone else


async def health(request: Request) -> Response:
    """`ok`, or `degraded` while the shared presence store cannot be reached.

    The details (node, tabs, handshakes, admission times, collector, webhooks) go to whom
    `health_details` allows; the status alone is for anyone, load balancers included.
    `handshakes` counts the connections not past their handshake, against their cap.
    `webhooks` counts the outbox's pending and dead messages and gives the age in seconds
    of the longest-waiting pending one (made or redelivered), as read at most 5 s ago;
    it is null while the database cannot be read.
    `admission` gives percentiles of the node's recent admissions (hello frame in to
    welcome out); `?admissions=N` limits them to the last N, 1 to the number kept (2,000).
    """
    node: Node = request.app.state.node
    raw = request.query_params.get("admissions")
    last = None
    if raw is not None:
        kept = node.admissions.size
        if not (_COUNT.fullmatch(raw) and 1 <= int(raw) <= kept):
            detail = f"admissions must be a whole number from 1 to {kept}"
            return problem(422, "Invalid request", detail)
        last = int(raw)
    store = node.store
    status = "ok" if store.healthy else "degraded"
    if not _shows_details(request, node.settings.health_details):
        return JSONResponse({"status": status})
    return JSONResponse(
        {
            "status": status,
            "version": __version__,
            "node": store.node_id or None,
            "store": {
                "kind": "redis" if store.node_id else "memory",
                "reachable": store.healthy,
            },
            "tabs": node.tab_count(),
            "handshakes": request.app.state.handshakes.stats(),
            "admission": node.admissions.summary(last),
            "collector": dataclasses.asdict(request.app.state.collector.stats()),
            "webhooks": await _webhooks(request.app.state.webhooks),
        }
    )


async def _webhooks(worker: DeliveryWorker) -> dict[str, Any] | None:
    """The outbox's backlog as `/healthz` shows it."""
    backlog = await worker.backlog()
    if backlog is None:
        return None
    since = backlog.waiting_since
    age = None if since is None else round(max(0.0, time.time() - since), 3)
    return {"pending": backlog.pending, "dead": backlog.dead, "oldest_pending_age": age}


def _shows_details(request: Request, who: str) -> bool:
    """Whether `health_details` (`public`, `local`, `off`) lets this client see them.

    `local` is a client on the loopback interface. `ProxyHeaders` has already put the client
    named by `X-Forwarded-For` in the place of a trusted proxy (127.0.0.1 and ::1 by
    default, `SEATGUARD_TRUSTED_PROXIES`); a request that names its client otherwise (`Forwarded`,
    `X-Real-IP`) came through a proxy too, so is not taken for local.
    """
    if who == "public":
        return True
    if who == "off" or request.client is None:
        return False
    try:
        loopback = ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False
    return loopback and not any(name in request.headers for name in _FORWARDED)


async def _built(request: Request, path: Path, media_type: str) -> Response:
    """A file `npm run build` writes, or 503 while it is not built."""
    assets: Assets = request.app.state.assets
    asset = await assets.get(path)
    if asset is None:
        return PlainTextResponse(NOT_BUILT, status_code=503)
    return assets.response(request, asset, media_type, SDK_HEADERS)


async def sdk(request: Request) -> Response:
    return await _built(request, SDK_PATH, "text/javascript; charset=utf-8")


async def sdk_device(request: Request) -> Response:
    """The device module (fingerprint, device key and proof) the SDK imports beside it."""
    return await _built(request, SDK_PATH.parent / "device.js", "text/javascript; charset=utf-8")


async def sdk_language(request: Request) -> Response:
    """The overlay texts of one language, fetched by the SDK; 404 for any other name."""
    lang = request.path_params["lang"]
    if lang not in SDK_LANGUAGES:
        known = ", ".join(SDK_LANGUAGES)
        detail = f"no SDK language pack {lang!r}; there are {known} (English is built in)"
        return problem(404, "Not found", detail, SDK_HEADERS)
    return await _built(request, SDK_PATH.parent / "lang" / f"{lang}.json", "application/json")


class App(Starlette):
    """Starlette with `SecurityHeaders` outside all its middleware, the one that answers
    500 included, so that every answer has them; inside that, `ProxyHeaders`, so that
    every route sees the client the trusted proxies name."""

    def __init__(self, proxies: TrustedProxies, **kwargs: Any) -> None:
        self.proxies = proxies
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(ProxyHeaders(super().build_middleware_stack(), self.proxies))


def create_app(settings: Settings, *, demo_secret: str | None = None) -> Starlette:
    """Build the server for `settings`; with `settings.demo`, `demo_secret` is the demo
    site's secret key, which its content route checks seats with.

    The Starlette app serves HTTP: the SDK file and its language packs, health, REST API
    (its event stream included),
    back-channel logout, the seat tokens' keys (`/.well-known/jwks.json`) and the demo.
    The WebSocket endpoint `/ws/v1` is `sockets.HttpProtocol`, which uvicorn runs as its
    protocol class (`seatguard serve`); the lifespan hands it the node and the caps on
    unfinished handshakes.
    """
    proxies = settings.proxies

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        key = audit_key(settings, create=True)
        geoip = open_geoip(settings)  # a missing or unreadable file stops the start here
        box = SecretBox(secrets_key(settings, create=True))
        seat_keys = load_seat_keys(settings, create=True, now=time.time())
        seat_tokens = SeatTokens(seat_keys, settings.issuer, clock=time.time)
        app.state.seat_tokens = seat_tokens
        app.state.verified_seats = VerifiedSeats()
        db = await open_database(settings.database, box)
        store: PresenceStore = (
            RedisStore(
                settings.redis_url,
                timing=settings.timing,
                lease=settings.node_lease,
                timeout=settings.redis_timeout,
            )
            if settings.redis_url
            else MemoryStore(time.time)
        )
        private = settings.allow_private_urls
        jwks = JwksCache(min_interval=settings.jwks_refetch_interval, allow_private=private)
        await jwks.start()
        sites = SiteCache(db, store.now, settings.site_cache_ttl)
        webhooks = DeliveryWorker.from_settings(settings, db.outbox, sites.get, box)
        await webhooks.start()
        app.state.webhooks = webhooks
        events = EventFeed.from_settings(settings, db.audit)
        events.start()
        app.state.events = events
        recorder = Recorder(
            db.audit,
            key,
            sites.get,
            webhooks,
            box=box,
            checkpoint=checkpoint_path(settings),
            checkpoint_lag=settings.audit_checkpoint_lag,
            appended=events.appended,
        )
        await recorder.start()
        history = HistoryWriter(db, settings.thresholds, store.now, geoip)
        evaluations = EvaluationWriter(
            db,
            retention=settings.evaluation_retention,
            truncate_ips=settings.evaluation_ips == "truncated",
            clock=store.now,
            on_flagged=recorder.flagged,
        )
        evaluations.start()
        app.state.evaluations = evaluations
        node = Node(
            settings,
            store,
            db,
            box=box,
            recorder=recorder,
            sites=sites,
            overrides=OverrideCache(db, store.now, settings.site_cache_ttl),
            revocations=RevocationChecks(db),
            jwks=jwks,
            seat_tokens=seat_tokens,
            history=history,
            judgements=evaluations,
        )
        app.state.node = node
        await store.start(node)
        # Everything built so far lives as long as the process, and so do most objects of
        # the tabs to come: keep the garbage collector from walking them again and again.
        collector = Collector(settings.gc_freeze_interval, settings.gc_full_interval)
        app.state.collector = collector
        collector.start()
        ticker = asyncio.create_task(_tick_forever(node, collector))
        # Read here, after `seatguard serve` raised the soft limit as far as it goes.
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        handshakes = Handshakes.from_settings(settings, open_files, proxies)
        app.state.handshakes = handshakes
        try:
            yield {
                "node": node,
                "handshakes": handshakes,
                "proxies": proxies,
                "seat_tokens": seat_tokens,
                "evaluations": evaluations,
            }
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await node.close()
            collector.stop()
            await recorder.flush()
            await history.close()
            await evaluations.close()
            await events.aclose()
            await webhooks.aclose()
            await jwks.aclose()
            await store.close()
            await db.close()
            if geoip is not None:
                geoip.close()
            if playback is not None:
                await playback.aclose()

    routes: list[BaseRoute] = [
        Route("/healthz", health),
        Route("/sdk/v1/seatguard.js", sdk),
        Route("/sdk/v1/device.js", sdk_device),
        Route("/sdk/v1/lang/{lang}.json", sdk_language),
        Route("/api/v1/openapi.json", openapi_doc.endpoint),
        *apidocs.routes(),
        *api.routes(),
        *oidc_routes.routes(),
        *seat_routes.routes(),
    ]
    playback = None
    if settings.demo:
        import demo_site

        playback = demo_site.Playback(settings, demo_site.DEMO_SITE_KEY, demo_secret)
        routes += demo_site.routes(playback)
    app = App(
        proxies,
        routes=routes,
        lifespan=lifespan,
        exception_handlers=api.exception_handlers(),
    )
    app.state.assets = Assets()
    return app
