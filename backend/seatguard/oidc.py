"""OpenID Connect Back-Channel Logout 1.0: the provider revokes sessions server to server.

`POST /oidc/v1/{site}/backchannel-logout` with a form field `logout_token`, from the issuer
configured for the site. `sub` names the user; `sid` names the provider's session, which
Seatguard learns from the `sid` claim of identity tokens.

Each token is accepted once: its (site, issuer, jti) is remembered in the database, so a
replay is refused after a restart and by every other server process too. The id is marked
before the sessions are revoked and forgotten again if revoking fails, so that the
provider's retry of the same token is not taken for a replay.

The provider's keys are a stored JWKS document or its `jwks_uri` (`oidc_jwks_uri`), fetched
and cached by the node (`identity/jwks.py`). While no good key set can be had the answer is 503
(`temporarily_unavailable`, with `Retry-After`) and the token's id is not remembered, so
the provider's retry passes once the keys can be fetched.

The body is read with a 16 KiB cap enforced as it streams in (a logout token is a few
hundred bytes; nobody needs to be authenticated to send one), and parsed strictly as form
encoding in UTF-8. Every error, 413 and routing errors (`problems.py`) included, is an
OAuth error body: `{"error": ..., "error_description": ...}`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .errors import ConfigError, InvalidLogoutToken, KeysUnavailable
from .identity.backchannel import LOGOUT_ALGORITHMS, BackchannelConfig, verify_logout_token
from .identity.jws import token_kid
from .inputs import read_capped
from .node import Node
from .presence import Session
from .problems import NO_STORE
from .problems import oauth_error as _error

__all__ = ["MAX_FORM", "routes"]

log = logging.getLogger("seatguard")

MAX_FORM = 16384
"""Bytes of a logout request's body, at most (413 beyond)."""


async def _logout_token(request: Request) -> str | Response:
    """The form field `logout_token`, or the error answer saying why there is none."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return _error(400, "invalid_request", "send logout_token as a form field")
    raw = await read_capped(request, MAX_FORM)
    if raw is None:
        return _error(413, "invalid_request", f"the body is over {MAX_FORM // 1024} KiB")
    try:
        text = raw.decode()
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except ValueError as exc:  # UnicodeDecodeError included
        return _error(400, "invalid_request", f"the body is not form encoding in UTF-8: {exc}")
    tokens = [value for name, value in fields if name == "logout_token"]
    if len(tokens) > 1:
        return _error(400, "invalid_request", "logout_token is given more than once")
    if not tokens or not tokens[0]:
        return _error(400, "invalid_request", "logout_token is missing")
    return tokens[0]


async def backchannel_logout(request: Request) -> Response:
    node: Node = request.app.state.node
    site = await node.site(str(request.path_params["site"]))
    if site is None:
        return _error(404, "invalid_request", "unknown site")
    c = site.config
    if not (c.oidc_issuer and c.oidc_client_id and (c.oidc_jwks or c.oidc_jwks_uri)):
        return _error(404, "invalid_request", "back-channel logout is not set up for this site")
    token = await _logout_token(request)
    if isinstance(token, Response):
        return token
    fetched = None
    if c.oidc_jwks_uri is not None:
        try:
            fetched = await node.jwks.keys(c.oidc_jwks_uri, LOGOUT_ALGORITHMS, kid=token_kid(token))
        except KeysUnavailable as exc:
            response = _error(
                503,
                "temporarily_unavailable",
                "the signing keys could not be fetched; try again later",  # why: in the log
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return response
    now = node.clock()
    try:
        config = BackchannelConfig(
            issuer=c.oidc_issuer,
            audience=c.oidc_client_id,
            jwks=c.oidc_jwks,  # None when the keys come from the jwks_uri (one source)
            key_set=fetched,
        )
    except ConfigError as exc:
        return _error(500, "server_error", f"back-channel logout is misconfigured: {exc}")
    try:
        logout = verify_logout_token(token, config, now=now)
    except InvalidLogoutToken as exc:
        return _error(400, "invalid_request", str(exc))
    seen = (site.key, config.issuer, logout.jti)
    try:
        fresh = await node.db.remember_token(*seen, logout.until, now=now)
    except ValueError as exc:  # PostgreSQL stores no NUL character
        return _error(400, "invalid_request", f"logout token claim 'jti' refused: {exc}")
    if not fresh:
        return _error(400, "invalid_request", "logout token replayed")
    sid = logout.sid

    def match(s: Session) -> bool:
        return sid is None or s.sid == sid

    try:
        await node.revoke_where(
            site.key, match, user=logout.sub, by="oidc", scope="user" if logout.sub else "sid"
        )
    except Exception:
        await node.db.forget_token(*seen)
        log.exception("back-channel logout failed; the provider may retry the same token")
        return _error(500, "server_error", "the logout failed; retry later")
    except BaseException:  # cancelled: the retry must pass all the same
        await asyncio.shield(node.db.forget_token(*seen))
        raise
    return Response(status_code=200, headers=NO_STORE)


def routes() -> list[BaseRoute]:
    return [Route("/oidc/v1/{site}/backchannel-logout", backchannel_logout, methods=["POST"])]
