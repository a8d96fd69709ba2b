"""The OpenAPI 3.1 document of REST API v1, built from the API's own structs."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .api import (
    AuditPageOut,
    OverrideIn,
    OverrideOut,
    Problem,
    RevokedCountOut,
    RevokedOut,
    RevokeUserIn,
    RevokeWhereIn,
    SeatOut,
    SecretRotatedOut,
    SecretRotationIn,
    SessionsOut,
    SiteIn,
    SiteOut,
)

__all__ = ["document", "endpoint"]

_REF = "#/components/schemas/{name}"


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _json(kind: type | dict[str, Any]) -> dict[str, Any]:
    schema = kind if isinstance(kind, dict) else _ref(kind)
    return {"content": {"application/json": {"schema": schema}}}


_PROBLEM = {"content": {"application/problem+json": {"schema": _ref(Problem)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_PROBLEM}


_ALWAYS = {
    "401": _error("Missing or unknown secret key"),
    "405": _error("Method not allowed on this path (the Allow header lists those that are)"),
    "503": _error("The shared presence store (Redis) cannot be reached; retry (Retry-After)"),
}
_WITH_BODY = {
    "400": _error("Malformed JSON body"),
    "413": _error("Body over 16 KiB"),
    "422": _error("Invalid request: a field of the wrong type or value, or an unknown field"),
}
_WITH_PARAMS = {"422": _error("Invalid request: a parameter out of range")}


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    }


USER = _param("user", "The site's user id")
SESSION = _param("session", "A browser session id")
SCOPE = {
    "name": "scope",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["org", "role", "user"]},
}
NAME = _param("name", "The org, role or user id the override applies to")


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[Any],
    body: type | None = None,
    missing: str | None = None,
    more: dict[str, str] | None = None,
) -> Any:
    """One operation; `missing` describes its 404, where it has one, and `more` its other
    error statuses."""
    errors = {**_ALWAYS, **(_WITH_PARAMS if params else {}), **(_WITH_BODY if body else {})}
    if missing is not None:
        errors["404"] = _error(missing)
    errors.update({status: _error(what) for status, what in (more or {}).items()})
    responses = {**ok, **dict(sorted(errors.items()))}
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": False, **_json(body)}
    return op


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document."""
    structs = [
        SessionsOut,
        SeatOut,
        RevokeUserIn,
        RevokeWhereIn,
        RevokedOut,
        RevokedCountOut,
        OverrideIn,
        OverrideOut,
        AuditPageOut,
        SiteIn,
        SiteOut,
        SecretRotationIn,
        SecretRotatedOut,
        Problem,
    ]
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    ok = {"description": "OK"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Seatguard REST API",
            "version": __version__,
            "description": "Seats and sessions of a site's users, for the site's backend. "
            "Authenticate with the site's secret key: `Authorization: Bearer sk_...`.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"secretKey": []}],
        "paths": {
            "/users/{user}/sessions": {
                "get": _op(
                    "List a user's browser sessions and devices",
                    {"200": {**ok, **_json(SessionsOut)}},
                    params=[USER],
                )
            },
            "/users/{user}/seat": {
                "get": _op("A user's seat state", {"200": {**ok, **_json(SeatOut)}}, params=[USER])
            },
            "/users/{user}/sessions/{session}": {
                "delete": _op(
                    "Revoke one browser session",
                    {"200": {**ok, **_json(RevokedOut)}},
                    params=[USER, SESSION],
                    missing="No such live session",
                )
            },
            "/users/{user}/revoke": {
                "post": _op(
                    "Revoke all of a user's sessions, optionally all but one",
                    {"200": {**ok, **_json(RevokedOut)}},
                    params=[USER],
                    body=RevokeUserIn,
                    missing="`keep` names no live session of the user; nothing was revoked",
                )
            },
            "/revoke": {
                "post": _op(
                    "Revoke every session of an org, of a role, or of the whole site",
                    {"200": {**ok, **_json(RevokedCountOut)}},
                    params=[],
                    body=RevokeWhereIn,
                )
            },
            "/site": {
                "get": _op("The site's own rules", {"200": {**ok, **_json(SiteOut)}}, params=[]),
                "patch": _op(
                    "Change the site's own rules (live sessions adopt them) or its JWKS URIs",
                    {"200": {**ok, **_json(SiteOut)}},
                    params=[],
                    body=SiteIn,
                ),
            },
            "/site/secret": {
                "post": _op(
                    "Replace the secret key, the identity secret or the webhook secret; the new "
                    "one is answered this once, the replaced one stays valid for `overlap` s",
                    {"200": {**ok, **_json(SecretRotatedOut)}},
                    params=[],
                    body=SecretRotationIn,
                    more={
                        "403": "Authenticated with the replaced secret key, which may not rotate",
                        "409": "Another rotation came first, or the site has no such secret "
                        "(no webhook); nothing changed",
                    },
                )
            },
            "/audit": {
                "get": _op(
                    "The site's audit trail, oldest first, a page at a time",
                    {"200": {**ok, **_json(AuditPageOut)}},
                    params=[
                        {"name": "user", "in": "query", "schema": {"type": "string"}},
                        {"name": "after", "in": "query", "schema": {"type": "integer"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    ],
                )
            },
            "/overrides": {
                "get": _op(
                    "List the site's overrides",
                    {"200": {**ok, **_json({"type": "array", "items": _ref(OverrideOut)})}},
                    params=[],
                )
            },
            "/overrides/{scope}/{name}": {
                "put": _op(
                    "Set the rules of one org, role or user",
                    {"200": {**ok, **_json(OverrideOut)}},
                    params=[SCOPE, NAME],
                    body=OverrideIn,
                    missing="No such scope",
                ),
                "delete": _op(
                    "Remove an override",
                    {"204": {"description": "Removed"}},
                    params=[SCOPE, NAME],
                    missing="No such scope, or no such override",
                ),
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"secretKey": {"type": "http", "scheme": "bearer"}},
        },
    }


async def endpoint(request: Request) -> Response:
    return Response(msgspec.json.encode(document()), media_type="application/json")
