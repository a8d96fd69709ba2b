"""Acme Stream: a small fictional subscription site that shows Seatguard at work.

The demo's own "backend" routes (under /demo) act as a site's server would: they set a
user's idle timeout as a server-side override and revoke sessions, through the same node
operations the REST API uses, and serve the player's content only to a browser that holds
a seat (`/demo/play`, see `playback`). `/demo/checks` lists a user's sessions with their
sharing checks as `GET /api/v1/users/{user}/sessions` does (`api.sessions_of`), and
`/demo/verdicts` the user's newest policy evaluations as
`GET /api/v1/users/{user}/evaluations` does (`evaluation_routes.evaluations_of`), and
`/demo/policy` shows the demo site's policy and sets one of the presets a visitor may try
(`policies`), as `PUT /api/v1/policies` would.

Integrators copy it, so it defends itself as a site should, although anyone may sign in
as anyone here: its pages carry a Content-Security-Policy whose inline scripts run by a
nonce drawn for each answer, and may not be framed; `POST /demo/revoke` and
`POST /demo/policy` are refused unless the browser says they come from the demo's own pages
(`same_origin`); and `GET /watch`, which sets or clears the user's idle override (a deep
link carries the plan), does so for a top-level navigation or the demo's own requests, not
for another site's image, frame or script (`may_change_plan`).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from seatguard.api import sessions_of
from seatguard.devices import browser_of
from seatguard.errors import ConfigError
from seatguard.inputs import read_capped
from seatguard.names import MAX_NAME, is_name
from seatguard.node import Node
from seatguard.rules import Override
from seatguard.signals.evaluation_routes import evaluations_of
from seatguard.signals.policies import Policy as SitePolicy
from seatguard.sites import Site, normalize_origin
from seatguard.types import MODES, POLICIES, Policy

from .playback import Playback
from .policies import PRESETS, preset_of

__all__ = ["DEMO_SITE_KEY", "Playback", "may_change_plan", "routes", "same_origin"]

DEMO_SITE_KEY = "pk_demo_acme_stream"
"""Site key seeded by `seatguard demo`; the demo site allows client-side settings."""
RECENT_VERDICTS = 10
"""The policy evaluations the watch page lists."""

HERE = Path(__file__).parent
_WHAT_HAPPENS: dict[Policy, str] = {
    "block-new": "the newcomer waits",
    "evict-oldest": "the newcomer takes the longest-held seat",
    "evict-idle": "the newcomer takes the least active seat",
    "challenge": "the newcomer may confirm to continue there",
    "monitor": "nobody is blocked, conflicts are recorded",
}
POLICY_CHOICES = {p: f"{p}: {_WHAT_HAPPENS[p]}" for p in POLICIES}
"""The plan form's policies with what each does, in `POLICIES` order (a new policy
without a line here fails at import)."""
templates = Jinja2Templates(directory=HERE / "templates")
# The SDK's overlay adds its own <style> element: styles need 'unsafe-inline', scripts a nonce.
CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' {socket}; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
NO_STORE = {"Cache-Control": "no-store"}
MAX_PRESET_BODY = 256
"""Bytes of the "Try a policy" form's body, at most (413 beyond): it names one preset."""


def _origin(value: str) -> str | None:
    try:
        return normalize_origin(value)
    except ConfigError:
        return None


def same_origin(request: Request) -> bool:
    """Whether a state-changing request comes from the demo's own pages.

    The `Origin` header decides when the browser sent one; else `Sec-Fetch-Site`; else the
    `Referer`. A request none of them places on this origin is refused: a page of another
    site must not sign a user out.
    """
    own = _origin(f"{request.url.scheme}://{request.headers.get('host', '')}")
    origin = request.headers.get("origin")
    if origin is not None:
        return own is not None and _origin(origin) == own
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    referer = urlsplit(request.headers.get("referer", ""))
    return own is not None and _origin(f"{referer.scheme}://{referer.netloc}") == own


def may_change_plan(request: Request) -> bool:
    """Whether `GET /watch` may write the plan's override: not for a request another site's
    page made for an image, a frame or a script (Fetch Metadata); a top-level navigation is
    a deep link, whose page the visitor sees. Browsers that send no `Sec-Fetch-*` pass."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site in (None, "same-origin", "none"):
        return True
    h = request.headers
    return h.get("sec-fetch-mode") == "navigate" and h.get("sec-fetch-dest") == "document"


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A page of the demo, with its Content-Security-Policy and the nonce its scripts carry."""
    nonce = secrets.token_urlsafe(16)
    socket = ("wss" if request.url.scheme == "https" else "ws") + "://" + request.url.netloc
    headers = {"Content-Security-Policy": CSP.format(nonce=nonce, socket=socket)}
    return templates.TemplateResponse(
        request, name, {**context, "csp_nonce": nonce}, status_code=status, headers=headers
    )


def _plan(request: Request) -> tuple[dict[str, Any], list[str]]:
    """Read and check the plan from the query string."""
    q = request.query_params
    errors = []
    user = q.get("user", "").strip()  # what a person typed; ids are never trimmed elsewhere
    if not user:
        errors.append("Enter a user id.")
    elif not is_name(user):
        errors.append(
            f"A user id has 1 to {MAX_NAME} characters of printable text, no control characters."
        )
    mode = q.get("mode", "concurrence")
    if mode not in MODES:
        errors.append(f"Mode must be one of {', '.join(MODES)}.")
    policy = q.get("policy", "block-new")
    if policy not in POLICIES:
        errors.append(f"Policy must be one of {', '.join(POLICIES)}.")
    try:
        limit = int(q.get("limit", "1"))
        if not 1 <= limit <= 1000:
            raise ValueError
    except ValueError:
        errors.append("Limit must be a whole number from 1 to 1000.")
        limit = 1
    idle: float | None = None
    if q.get("idle", "").strip():
        try:
            idle = float(q["idle"])
            if not 1 <= idle <= 86400:
                raise ValueError
        except ValueError:
            errors.append("Idle timeout must be a number of seconds from 1 to 86400.")
    plan = {"user": user, "mode": mode, "limit": limit, "policy": policy, "idle": idle}
    return plan, errors


def _form(request: Request, plan: dict[str, Any], errors: list[str], status: int) -> Response:
    context = {"plan": plan, "modes": MODES, "policies": POLICY_CHOICES, "errors": errors}
    return _page(request, "home.html", context, status)


async def home(request: Request) -> Response:
    plan, _ = _plan(request)
    return _form(request, plan, [], 200)


async def watch(request: Request) -> Response:
    if not may_change_plan(request):
        return PlainTextResponse("another site's page may not open a plan", status_code=403)
    plan, errors = _plan(request)
    if errors:
        return _form(request, plan, errors, 400)
    node: Node = request.app.state.node
    # As a site's backend would: the idle timeout is the server's to set, not the page's.
    if plan["idle"] is not None:
        override = Override("user", plan["user"], idle_timeout=plan["idle"])
        await node.db.set_override(DEMO_SITE_KEY, override)
        await node.rules_changed(DEMO_SITE_KEY)
    else:
        await node.db.delete_override(DEMO_SITE_KEY, "user", plan["user"])
        await node.rules_changed(DEMO_SITE_KEY)
    presets = {name: p.label for name, p in PRESETS.items()}
    context = {"plan": plan, "site_key": DEMO_SITE_KEY, "presets": presets}
    return _page(request, "watch.html", context)


def _user(request: Request) -> str | None:
    user = request.query_params.get("user", "")
    return user if is_name(user) else None


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status, NO_STORE)


async def sessions(request: Request) -> Response:
    """The user's browsers, for the watch page's panel: each by its browser and system, in
    words (the page marks its own by the session id the SDK keeps)."""
    user = _user(request)
    if user is None:
        return _error(400, "a valid user id is required")
    node: Node = request.app.state.node
    up = await node.snapshot((DEMO_SITE_KEY, user))
    return JSONResponse(
        [
            {
                "id": s.id,
                "browser": browser_of(s.user_agent),
                "state": up.state(s.id).value,
                "device_type": s.device_type,
                "device": s.device,
                "device_proof": s.device_proof,
                "tabs": len(s.tabs),
                "since": s.created_at,
            }
            for s in up.sessions.values()
        ],
        headers=NO_STORE,
    )


async def _users_site(request: Request) -> tuple[Node, Site, str] | Response:
    """The node, the demo site and the `user` the query names, or the error answer."""
    user = _user(request)
    if user is None:
        return _error(400, "a valid user id is required")
    node: Node = request.app.state.node
    site = await node.site(DEMO_SITE_KEY)
    if site is None:
        return _error(503, "the demo site is missing from the database")
    return node, site, user


async def checks(request: Request) -> Response:
    """The user's sessions with their sharing checks, for the watch page's checks panel:
    what the REST API answers for them (`GET /api/v1/users/{user}/sessions`)."""
    found = await _users_site(request)
    if isinstance(found, Response):
        return found
    out = msgspec.json.encode(await sessions_of(*found))
    return Response(out, media_type="application/json", headers=NO_STORE)


async def verdicts(request: Request) -> Response:
    """The user's newest policy evaluations, for the watch page's "Recent verdicts": what
    the REST API answers for them (`GET /api/v1/users/{user}/evaluations?limit=10`)."""
    found = await _users_site(request)
    if isinstance(found, Response):
        return found
    out = msgspec.json.encode(await evaluations_of(*found, RECENT_VERDICTS))
    return Response(out, media_type="application/json", headers=NO_STORE)


def _policy_out(policy: SitePolicy) -> Response:
    """The policy in force, and which preset it is (null: none of them)."""
    out = msgspec.json.encode({"preset": preset_of(policy), "policy": policy})
    return Response(out, media_type="application/json", headers=NO_STORE)


async def site_policy(request: Request) -> Response:
    """The demo site's policy in force (`GET /demo/policy`), or set one of the presets
    (`POST`, the "Try a policy" form: `preset=<name>`, from the demo's own pages only)."""
    node: Node = request.app.state.node
    if request.method == "GET":
        return _policy_out(await node.db.policy(DEMO_SITE_KEY) or SitePolicy())
    if not same_origin(request):
        return _error(403, "cross-site requests are refused")
    body = await read_capped(request, MAX_PRESET_BODY)
    if body is None:
        return _error(413, f"the form's body is limited to {MAX_PRESET_BODY} bytes")
    names = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("preset", [])
    if len(names) != 1 or names[0] not in PRESETS:
        return _error(422, f"choose one preset: {', '.join(PRESETS)}")
    chosen = PRESETS[names[0]].policy
    await node.db.set_policy(DEMO_SITE_KEY, chosen)
    node.policies.forget(DEMO_SITE_KEY)
    return _policy_out(chosen)


async def revoke(request: Request) -> Response:
    """Revoke one browser of the user, or all of them, when the demo's own page asks."""
    if not same_origin(request):
        return _error(403, "cross-site requests are refused")
    user = _user(request)
    if user is None:
        return _error(400, "a valid user id is required")
    node: Node = request.app.state.node
    session = request.query_params.get("session")
    revoked = await node.revoke(
        (DEMO_SITE_KEY, user), sessions=[session] if session else None, by="demo"
    )
    return JSONResponse({"revoked": revoked}, headers=NO_STORE)


async def favicon(request: Request) -> Response:
    """The demo's icon where browsers look for one unasked (a JSON answer opened in a tab);
    its pages link to it (`base.html`)."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


def routes(playback: Playback) -> list[BaseRoute]:
    """The demo's pages, mounted next to the presence server by `seatguard demo`; the
    player's content comes from `playback`."""
    return [
        Route("/", home),
        Route("/watch", watch),
        Route("/demo/sessions", sessions),
        Route("/demo/revoke", revoke, methods=["POST"]),
        Route("/demo/checks", checks),
        Route("/demo/verdicts", verdicts),
        Route("/demo/policy", site_policy, methods=["GET", "POST"]),
        Route("/demo/play", playback.play),
        Route("/favicon.ico", favicon),
        Mount("/demo-static", StaticFiles(directory=HERE / "static"), name="demo-static"),
    ]
