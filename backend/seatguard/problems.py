"""RFC 9457 problem details: how the REST API answers every error, routing ones included.

`problem()` builds one answer; `ApiError` carries one out of a handler; `exception_handlers()`
is what the app installs so that Starlette's own 404 (no such route) and 405 (method not
allowed) under `/api/` answer problem JSON too, and under `/oidc/` the OAuth error body
(`oauth_error()`, RFC 6749 section 5.2) that back-channel logout answers with, while other
paths keep Starlette's plain text (a 404's saying where the socket and the API are).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .protocol import WS_PATH

__all__ = [
    "API_PREFIX",
    "NO_STORE",
    "OIDC_PREFIX",
    "ApiError",
    "Problem",
    "exception_handlers",
    "oauth_error",
    "problem",
]

API_PREFIX = "/api/"
"""Paths whose routing errors are answered as problem details."""
OIDC_PREFIX = "/oidc/"
"""Paths whose routing errors are answered as OAuth errors."""
NO_STORE = {"Cache-Control": "no-store"}

MEDIA_TYPE = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"


class ApiError(Exception):
    """An error a handler answers with: status, short title, plain detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def problem(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A problem-details answer."""
    body = msgspec.json.encode(Problem(title=title, status=status, detail=detail))
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def oauth_error(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    """An OAuth error answer, `{"error": ..., "error_description": ...}`, never cached."""
    body = msgspec.json.encode({"error": error, "error_description": description})
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), **NO_STORE},
    )


NOT_FOUND = f"Not Found. The WebSocket endpoint is {WS_PATH}; the REST API is {API_PREFIX}v1/\n"
"""The body of a 404 outside the API: a wrong path is most often a misconfigured endpoint."""


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors: problem details under /api/, OAuth errors under /oidc/,
    plain text elsewhere."""
    assert isinstance(exc, HTTPException)
    status, headers = exc.status_code, exc.headers
    if request.url.path.startswith(OIDC_PREFIX) and status in (404, 405):
        where = f"{request.method} {request.url.path}"
        if status == 404:
            return oauth_error(404, "invalid_request", f"no route {where}")
        allowed = _allowed(headers)
        detail = f"{where} is not allowed; this path takes {allowed or 'no method'}"
        return oauth_error(405, "invalid_request", detail, {**(headers or {}), "Allow": allowed})
    if not request.url.path.startswith(API_PREFIX):
        if status in (204, 304):
            return Response(status_code=status, headers=headers)
        if status == 404:  # someone looking for the server: say where its parts are
            return PlainTextResponse(NOT_FOUND, status_code=404, headers=headers)
        return PlainTextResponse(exc.detail, status_code=status, headers=headers)
    where = f"{request.method} {request.url.path}"
    if status == 404:
        title, detail = "Not found", f"no API route {where}; see /api/v1/openapi.json"
    elif status == 405:
        allowed = _allowed(headers)
        headers = {**(headers or {}), "Allow": allowed}
        title = "Method not allowed"
        detail = f"{where} is not allowed; this path takes {allowed or 'no method'}"
    else:
        title, detail = _phrase(status), exc.detail
    return problem(status, title, detail, headers)


def _allowed(headers: Mapping[str, str] | None) -> str:
    """Starlette lists a route's methods from a set: sorted, so the answer is stable."""
    return ", ".join(sorted(filter(None, (headers or {}).get("Allow", "").split(", "))))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """The handlers to pass to `Starlette(exception_handlers=...)`."""
    return {HTTPException: _http_exception}
