"""Acme Stream: a small fictional subscription site that shows Seatguard at work.

The demo's own "backend" routes (under /demo) act as a site's server would: they set a
user's idle timeout as a server-side override and revoke sessions, through the same node
operations the REST API uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from seatguard.node import Node
from seatguard.rules import Override

__all__ = ["DEMO_SITE_KEY", "routes"]

DEMO_SITE_KEY = "pk_demo_acme_stream"
"""Site key seeded by `seatguard demo`; the demo site allows client-side settings."""

HERE = Path(__file__).parent
MODES = ("concurrence", "device-limit")
POLICIES = {
    "block-new": "block-new: the newcomer waits",
    "evict-oldest": "evict-oldest: the newcomer takes the longest-held seat",
    "evict-idle": "evict-idle: the newcomer takes the least active seat",
    "challenge": "challenge: the newcomer may confirm to continue there",
    "monitor": "monitor: nobody is blocked, conflicts are recorded",
}
templates = Jinja2Templates(directory=HERE / "templates")


def _plan(request: Request) -> tuple[dict[str, Any], list[str]]:
    """Read and check the plan from the query string."""
    q = request.query_params
    errors = []
    user = q.get("user", "").strip()
    if not user:
        errors.append("Enter a user id.")
    elif len(user) > 256:
        errors.append("A user id has at most 256 characters.")
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
    context = {"plan": plan, "modes": MODES, "policies": POLICIES, "errors": errors}
    return templates.TemplateResponse(request, "home.html", context, status_code=status)


async def home(request: Request) -> Response:
    plan, _ = _plan(request)
    return _form(request, plan, [], 200)


async def watch(request: Request) -> Response:
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
    return templates.TemplateResponse(
        request, "watch.html", {"plan": plan, "site_key": DEMO_SITE_KEY}
    )


def _user(request: Request) -> str | None:
    user = request.query_params.get("user", "")
    return user if 1 <= len(user) <= 256 else None


async def sessions(request: Request) -> Response:
    """The user's browsers, for the watch page's panel."""
    user = _user(request)
    if user is None:
        return JSONResponse({"error": "user is required"}, status_code=400)
    node: Node = request.app.state.node
    up = await node.snapshot((DEMO_SITE_KEY, user))
    return JSONResponse(
        [
            {
                "id": s.id,
                "state": up.state(s.id).value,
                "device_type": s.device_type,
                "tabs": len(s.tabs),
                "since": s.created_at,
            }
            for s in up.sessions.values()
        ]
    )


async def revoke(request: Request) -> Response:
    """Revoke one browser of the user, or all of them."""
    user = _user(request)
    if user is None:
        return JSONResponse({"error": "user is required"}, status_code=400)
    node: Node = request.app.state.node
    session = request.query_params.get("session")
    revoked = await node.revoke(
        (DEMO_SITE_KEY, user), sessions=[session] if session else None, by="demo"
    )
    return JSONResponse({"revoked": revoked})


def routes() -> list[BaseRoute]:
    """The demo's pages, mounted next to the presence server by `seatguard demo`."""
    return [
        Route("/", home),
        Route("/watch", watch),
        Route("/demo/sessions", sessions),
        Route("/demo/revoke", revoke, methods=["POST"]),
        Mount("/demo-static", StaticFiles(directory=HERE / "static"), name="demo-static"),
    ]
