"""The OpenAPI 3.1 document of REST API v1, built from the API's own structs.

Bodies, path parameters and query parameters come from the structs the API decodes them
into, so their bounds (`msgspec.Meta`) are the same here and in the checks. What a struct
cannot say is added here, next to the code that enforces it: "exactly one of" on
`POST /revoke` (`REVOKE_WHERE_CHOICES`), an empty `user` in the audit query, and a policy
(whose schema `signals/schema.py` writes out next to the parser's bounds). The
document describes exactly what the server accepts; `tests/integration/test_schemathesis.py`
holds it to that.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .api import (
    OVERRIDE_SETS_ONE,
    REVOKE_WHERE_CHOICES,
    AuditPageOut,
    AuditQuery,
    DeliveriesPageOut,
    DeliveriesQuery,
    DeliveryOut,
    DeliveryPath,
    OverrideIn,
    OverrideOut,
    OverridePath,
    Problem,
    RevokedCountOut,
    RevokedOut,
    RevokeUserIn,
    RevokeWhereIn,
    SeatOut,
    SecretRotatedOut,
    SecretRotationIn,
    SessionPath,
    SessionsOut,
    SiteIn,
    SiteOut,
    SuspensionIn,
    SuspensionOut,
    UserPath,
)
from .events import EVENT_TYPES, LAST_ID_PATTERN, RETRY_AFTER, EventsQuery, SessionEvent
from .inputs import MAX_BODY
from .rules import SCOPES
from .seat.check import SeatActiveOut, SeatCheckIn, SeatInactiveOut
from .signals.device_routes import DevicePath, DevicesOut, TrustOut
from .signals.evaluation_routes import EvaluationsOut, EvaluationsQuery
from .signals.routes import MAX_POLICY_BODY, EvaluationIn, EvaluationOut
from .signals.schema import components as policy_components

__all__ = ["document", "endpoint"]

_REF = "#/components/schemas/{name}"


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _ref_named(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(kind: type | dict[str, Any]) -> dict[str, Any]:
    schema = kind if isinstance(kind, dict) else _ref(kind)
    return {"content": {"application/json": {"schema": schema}}}


_PROBLEM = {"content": {"application/problem+json": {"schema": _ref(Problem)}}}


def _error(description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A problem-details answer; `headers` describes the headers it always has."""
    answer: dict[str, Any] = {"description": description, **_PROBLEM}
    if headers:
        answer["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


_ALWAYS = {
    "401": _error(
        "Missing or unknown secret key",
        {"WWW-Authenticate": "The Bearer challenge (RFC 6750), error=invalid_token if unknown"},
    ),
    "405": _error("Method not allowed on this path", {"Allow": "The methods this path takes"}),
    "503": _error(
        "The shared presence store (Redis) cannot be reached; retry",
        {"Retry-After": "Seconds to wait"},
    ),
}
_WITH_BODY = {
    "400": _error("Malformed JSON body"),
    "413": _error(f"Body over {MAX_BODY // 1024} KiB"),
    "422": _error("Invalid request: a field of the wrong type or value, or an unknown field"),
}
_WITH_PARAMS = {"422": _error("Invalid request: a parameter out of range")}

_POLICY_ERRORS = {
    "400": "Malformed JSON body",
    "413": f"Body over {MAX_POLICY_BODY // 1024} KiB",
    "422": "Invalid policy or request: the message names the path of the first bad part "
    "(`rules[2].when.all[0].check: unknown check 'foo'`)",
}
_POLICY_BODY = {"requestBody": {"required": True, **_json(_ref_named("Policy"))}}

_DESCRIPTIONS = {
    "user": "The site's user id: 1 to 256 characters of printable text, not blank. "
    "Percent-encode it in the path: any valid id, `/` included, reaches its user.",
    "session": "A browser session id",
    "name": "The org, role or user id the override applies to (a user id's rules)",
    "id": "A webhook message's id, the `webhook-id` header it is posted with",
    "state": "Only messages in this state",
    "event": "Only messages of this event type",
    "cursor": "The `next_cursor` of the page before; absent: the newest messages",
    "before": "Only records from before this time (seconds since the epoch, exclusive): "
    "the `next_before` of the page before; absent: the newest",
    "follow": "false: send the events there are now and end the stream; true (the "
    "default): keep it open and send each event as it happens",
}


def _params(kind: type, where: str = "path") -> list[dict[str, Any]]:
    """The parameters of one struct (`UserPath`, `AuditQuery`...), with its schemas."""
    (schema,), components = msgspec.json.schema_components([kind], ref_template=_REF)
    struct = components[schema["$ref"].rsplit("/", 1)[1]]
    params = []
    for name, prop in struct["properties"].items():
        if "anyOf" in prop:  # `X | None`: absent from a query, never null in it
            default = prop.get("default")
            (prop,) = [p for p in prop["anyOf"] if p != {"type": "null"}]
            if default is not None:
                prop = {**prop, "default": default}
        param = {"name": name, "in": where, "required": name in struct["required"]}
        if name in _DESCRIPTIONS:
            param["description"] = _DESCRIPTIONS[name]
        params.append({**param, "schema": prop})
    return params


USER = _params(UserPath)
USER_SESSION = _params(SessionPath)
USER_DEVICE = _params(DevicePath)
_TRUST_CONFLICT = {"409": "The user's device history kept changing: send the request again"}
SCOPE = {
    "name": "scope",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": list(SCOPES)},
}
OVERRIDE = [SCOPE, *_params(OverridePath)]
DELIVERY = _params(DeliveryPath)


def _audit_params() -> list[dict[str, Any]]:
    params = _params(AuditQuery, "query")
    for p in params:
        if p["name"] == "user":
            p["description"] = "Only this user's records; empty or absent: every user's"
            p["schema"] = {"anyOf": [p["schema"], {"const": ""}]}
    return params


def _evaluations_params() -> list[dict[str, Any]]:
    params = _params(EvaluationsQuery, "query")
    for p in params:
        if p["name"] == "limit":
            p["description"] = "Records in the page, at most"
    return params


def _events_params() -> list[dict[str, Any]]:
    last_id = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "The id of the last event received: the stream starts after it. "
        "Absent: with the oldest event the audit trail holds.",
        "schema": {"type": "string", "pattern": LAST_ID_PATTERN},
    }
    return [*_params(EventsQuery, "query"), last_id]


_EVENT_STREAM = {
    "description": "A Server-Sent Events stream. Each event has an `id` (send the last one "
    "received as `Last-Event-ID` to resume after it), an `event` naming its type and one "
    "`data` line, a `SessionEvent` as JSON; comment lines (`: heartbeat`) keep an idle "
    "stream open.",
    # The schema of each event, as OpenAPI 3.2 describes an event stream (`itemSchema`).
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["id", "event", "data"],
                "properties": {
                    "id": {"type": "string", "pattern": LAST_ID_PATTERN},
                    "event": {"type": "string", "enum": list(EVENT_TYPES)},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": _ref(SessionEvent),
                    },
                },
            }
        }
    },
}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[Any],
    body: type | None = None,
    body_required: bool = False,
    missing: str | None = None,
    more: dict[str, str] | None = None,
    limited: str | None = None,
) -> Any:
    """One operation; `missing` describes its 404, where it has one, `limited` its 429
    (with `Retry-After`), and `more` its other error statuses."""
    errors = {**_ALWAYS, **(_WITH_PARAMS if params else {}), **(_WITH_BODY if body else {})}
    if missing is not None:
        errors["404"] = _error(missing)
    errors.update({status: _error(what) for status, what in (more or {}).items()})
    if limited is not None:
        errors["429"] = _error(limited, {"Retry-After": "Seconds to wait"})
    responses = {**ok, **dict(sorted(errors.items()))}
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": body_required, **_json(body)}
    return op


def _evaluated_checks(components: dict[str, Any]) -> dict[str, Any]:
    """The checks of a stored evaluation: those of a session (`Checks`) without `geo`,
    which the evaluation has beside them; none required, as records made before a check
    was added have no value for it."""
    checks = components["Checks"]
    return {
        "type": "object",
        "description": "Check name to value, as evaluated (docs/signals.md)",
        "properties": {n: p for n, p in checks["properties"].items() if n != "geo"},
    }


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
        SuspensionIn,
        SuspensionOut,
        OverrideIn,
        OverrideOut,
        AuditPageOut,
        DeliveriesPageOut,
        DeliveryOut,
        SiteIn,
        SiteOut,
        SecretRotationIn,
        SecretRotatedOut,
        SessionEvent,
        SeatCheckIn,
        SeatActiveOut,
        SeatInactiveOut,
        EvaluationIn,
        EvaluationOut,
        DevicesOut,
        TrustOut,
        EvaluationsOut,
        Problem,
    ]
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    components["RevokeWhereIn"]["oneOf"] = REVOKE_WHERE_CHOICES
    components["OverrideIn"]["anyOf"] = OVERRIDE_SETS_ONE
    components.update(policy_components())
    components["StoredEvaluationOut"]["properties"]["checks"] = _evaluated_checks(components)
    components["EvaluationIn"]["properties"]["policy"] = {
        **_ref_named("Policy"),
        "description": "The policy to evaluate; absent: the site's",
    }
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
                    params=USER,
                )
            },
            "/users/{user}/devices": {
                "get": _op(
                    "A user's devices: first and last seen, type, country, trust, and whether "
                    "a session of it is connected now",
                    {"200": {**ok, **_json(DevicesOut)}},
                    params=USER,
                )
            },
            "/users/{user}/devices/{device}/trust": {
                "put": _op(
                    "Trust a device of the user: it is exempt from the device checks",
                    {"200": {**ok, **_json(TrustOut)}},
                    params=USER_DEVICE,
                    missing="The user's device history has no such device",
                    more=_TRUST_CONFLICT,
                ),
                "delete": _op(
                    "Stop trusting a device of the user",
                    {"200": {**ok, **_json(TrustOut)}},
                    params=USER_DEVICE,
                    missing="The user's device history has no such device",
                    more=_TRUST_CONFLICT,
                ),
            },
            "/users/{user}/evaluations": {
                "get": _op(
                    "What the site's policy said of the user's sessions (at each hello and "
                    "each change of their checks), newest first, a page at a time",
                    {"200": {**ok, **_json(EvaluationsOut)}},
                    params=[*USER, *_evaluations_params()],
                )
            },
            "/users/{user}/seat": {
                "get": _op("A user's seat state", {"200": {**ok, **_json(SeatOut)}}, params=USER)
            },
            "/users/{user}/sessions/{session}": {
                "delete": _op(
                    "Revoke one browser session",
                    {"200": {**ok, **_json(RevokedOut)}},
                    params=USER_SESSION,
                    missing="No such live session",
                )
            },
            "/users/{user}/revoke": {
                "post": _op(
                    "Revoke all of a user's sessions, optionally all but one",
                    {"200": {**ok, **_json(RevokedOut)}},
                    params=USER,
                    body=RevokeUserIn,
                    missing="`keep` names no live session of the user; nothing was revoked",
                )
            },
            "/users/{user}/suspension": {
                "get": _op(
                    "A user's suspension",
                    {"200": {**ok, **_json(SuspensionOut)}},
                    params=USER,
                    missing="The user is not suspended",
                ),
                "post": _op(
                    "Suspend a user: every live session ends, every new one is refused until "
                    "the suspension is lifted or the user signs in again with an identity "
                    "token issued after it",
                    {
                        "200": {
                            "description": "The user was suspended already: the suspension "
                            "in force (live sessions are ended again)",
                            **_json(SuspensionOut),
                        },
                        "201": {"description": "Suspended", **_json(SuspensionOut)},
                    },
                    params=USER,
                    body=SuspensionIn,
                    more={
                        "503": "The suspension is recorded, but the presence store is "
                        "unavailable: sessions on other nodes end when it is back (or send "
                        "the request again)"
                    },
                ),
                "delete": _op(
                    "Lift a user's suspension",
                    {"204": {"description": "Lifted"}},
                    params=USER,
                    missing="The user is not suspended",
                ),
            },
            "/revoke": {
                "post": _op(
                    "Revoke every session of an org, of a role, or of the whole site",
                    {"200": {**ok, **_json(RevokedCountOut)}},
                    params=[],
                    body=RevokeWhereIn,
                    body_required=True,
                )
            },
            "/seats/check": {
                "post": _op(
                    "Whether the session behind a seat token holds a seat now (RFC 7662 "
                    "style: `active`, with the token's claims, or a `reason` it is not)",
                    {
                        "200": {
                            **ok,
                            **_json({"oneOf": [_ref(SeatActiveOut), _ref(SeatInactiveOut)]}),
                        }
                    },
                    params=[],
                    body=SeatCheckIn,
                    body_required=True,
                )
            },
            "/site": {
                "get": _op("The site's own rules", {"200": {**ok, **_json(SiteOut)}}, params=[]),
                "patch": _op(
                    "Change the site's own rules (live sessions adopt them) or its JWKS URIs",
                    {
                        "200": {**ok, **_json(SiteOut)},
                        "403": _error(
                            "A JWKS URI naming a loopback, private or other non-public "
                            "address, which this server does not reach"
                        ),
                        "409": _error(
                            "A well-formed change that the site's other settings rule out, "
                            "such as an identity JWKS URI on a site signing with HS256"
                        ),
                    },
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
                    params=_audit_params(),
                )
            },
            "/events": {
                "get": _op(
                    "The site's session events as Server-Sent Events, from the oldest kept "
                    "or after `Last-Event-ID`, then as they happen",
                    {"200": _EVENT_STREAM},
                    params=_events_params(),
                    more={
                        "400": "`Last-Event-ID` is not an event id",
                        "409": "`Last-Event-ID` is after the newest event: the events it came "
                        "from are not this server's (a database restored or replaced); "
                        "reconnect without it",
                    },
                    limited=f"The site has its most event streams open on this node; "
                    f"retry after `Retry-After` seconds ({RETRY_AFTER})",
                )
            },
            "/webhooks/deliveries": {
                "get": _op(
                    "The site's webhook messages, newest first, a page at a time",
                    {"200": {**ok, **_json(DeliveriesPageOut)}},
                    params=_params(DeliveriesQuery, "query"),
                )
            },
            "/webhooks/deliveries/{id}/redeliver": {
                "post": _op(
                    "Send a webhook message again, with the same id, now; it is retried "
                    "as a new message would be if this attempt fails",
                    {"202": {"description": "Pending again", **_json(DeliveryOut)}},
                    params=DELIVERY,
                    missing="The site has no such message",
                )
            },
            "/overrides": {
                "get": _op(
                    "List the site's overrides",
                    {"200": {**ok, **_json({"type": "array", "items": _ref(OverrideOut)})}},
                    params=[],
                )
            },
            "/policies": {
                "get": _op(
                    "The site's policy: its rules, the org and role rules that replace them, "
                    "and its risk settings, every setting written out",
                    {"200": {**ok, **_json(_ref_named("Policy"))}},
                    params=[],
                ),
                "put": _op(
                    "Replace the site's policy; answered as stored, every setting written out",
                    {"200": {**ok, **_json(_ref_named("Policy"))}},
                    params=[],
                    body=None,
                    more=_POLICY_ERRORS,
                )
                | _POLICY_BODY,
            },
            "/policies/evaluate": {
                "post": _op(
                    "What a policy (the given one, else the site's) says of the given checks: "
                    "the verdict, the rule that gave it, the dry-run rules that matched before "
                    "it, and the account_sharing risk; nothing is stored or applied",
                    {"200": {**ok, **_json(EvaluationOut)}},
                    params=[],
                    body=None,
                    more=_POLICY_ERRORS,
                )
                | {"requestBody": {"required": True, **_json(EvaluationIn)}},
            },
            "/overrides/{scope}/{name}": {
                "put": _op(
                    "Set the rules of one org, role or user: the body replaces the whole "
                    "override (a field it leaves out or null is not overridden any more). "
                    "An override that sets nothing is refused (422); DELETE removes one",
                    {"200": {**ok, **_json(OverrideOut)}},
                    params=OVERRIDE,
                    body=OverrideIn,
                    body_required=True,
                    missing="No such scope",
                ),
                "delete": _op(
                    "Remove an override",
                    {"204": {"description": "Removed"}},
                    params=OVERRIDE,
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
