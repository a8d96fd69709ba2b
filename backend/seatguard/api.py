"""REST API v1 for site backends, authenticated with the site's secret key.

Errors are RFC 9457 problem details (`application/problem+json`) with a plain message
(`problems.py`, whose `exception_handlers()` the app installs for unknown routes and wrong
methods). The OpenAPI document (`/api/v1/openapi.json`) is built in `openapi.py` from the
same structs used here: request bodies, path parameters and query parameters are decoded
into structs (`inputs.py`) whose `msgspec.Meta` bounds are both the check and the schema.

A user id (or override name) in a path is any valid name (names.py), `/` included, so
its routes take the rest of the path (`{user:any}`): a client percent-encodes the id, the
server decodes it, and a route with a segment after the user (`/sessions/{session}`)
still splits one way only, since a session id has no `/`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, overload

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import events
from .audit import AuditEvent, AuditKind, Detail, Scalar
from .errors import ConfigError, StoreUnavailable
from .headers import CHALLENGE
from .identity.jwks import JWKS_URI_PATTERN, MAX_URI
from .inputs import author, read_json, read_params
from .isotime import IsoTime, iso
from .names import Name
from .node import Node
from .outbound import check_literal
from .outbox import Delivery, DeliveryState
from .presence import MAX_TIMEOUT, RULE_FIELDS, Rules, Session, UserPresence
from .problems import ApiError, Problem, exception_handlers, problem
from .protocol import Ident, Limit
from .ratelog import RateLog
from .recorder import change_event, site_changes
from .rules import SCOPES, Override, Scope
from .seat import MAX_TTL, MIN_TTL
from .seat.check import check_seat
from .signals.checks import Checks
from .signals.device_routes import set_trust, user_devices
from .signals.evaluation_routes import user_evaluations
from .signals.guard import sightings
from .signals.history import current_checks
from .signals.routes import evaluate_policy, get_policy, put_policy
from .site_secrets import DEFAULT_OVERLAP, MAX_OVERLAP, SecretKind, Stale, authenticate, rotate
from .sites import IDENTITY_LIFETIME, Site, changed_config, check_identity
from .suspension import REASON_MAX, Suspension
from .types import Mode, Policy
from .webhooks import EventType

__all__ = ["Problem", "SessionsOut", "exception_handlers", "problem", "routes", "sessions_of"]

_history_unread = RateLog(logging.getLogger("seatguard"))

MAX_SEQ = 2**63 - 1
"""The largest audit sequence number a database holds (a signed 64-bit integer)."""
Timeout = Annotated[
    float,
    msgspec.Meta(ge=0, le=MAX_TIMEOUT, description="Seconds; 0 is off (no timeout)"),
]
"""An idle or absolute timeout: 0 is off. On the site null is off too (`_off`); in an
override null leaves the site's timeout, 0 turns it off for the override's users."""
JwksUri = Annotated[
    str,
    # Checked by `jwks.check_jwks_uri` (through `SiteConfig`), whose messages say what is
    # wrong; the pattern it ends with is what the schema shows.
    msgspec.Meta(extra_json_schema={"maxLength": MAX_URI, "pattern": JWKS_URI_PATTERN}),
]


class RulesOut(msgspec.Struct):
    mode: str
    limit: int
    policy: str
    idle_timeout: float | None
    absolute_timeout: float | None


class SessionOut(msgspec.Struct):
    id: str
    state: Literal["admitted", "blocked"]
    reason: str | None
    rule: str | None  # the policy rule that holds the session (reason `policy` or `verify`)
    device: str
    device_type: str
    # "verified": the browser proved its device key and `device` is derived from it (or is
    # the device its fingerprint joined); "none": no device key, `device` is the page's id.
    device_proof: Literal["none", "verified"]
    ip: str
    user_agent: str
    org: str | None
    role: str | None
    tabs: int
    started: float
    last_seen: float
    last_active: float
    started_iso: IsoTime
    last_seen_iso: IsoTime
    last_active_iso: IsoTime
    # The sharing checks of the session now, against the user's other sessions and history
    # (docs/signals.md); `geo` "off" without a GeoIP database.
    checks: Checks


class DeviceOut(msgspec.Struct):
    id: str
    type: str
    seated: bool
    sessions: list[str]


class SuspensionOut(msgspec.Struct):
    user: str
    since: float  # seconds since the epoch
    reason: str
    by: str  # `api`, an operator's name (CLI), `policy`
    since_iso: IsoTime


REASON_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""A suspension's reason: any text but control characters (it is shown and logged)."""


class SuspensionIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=REASON_MAX, pattern=REASON_PATTERN)] = ""


class SessionsOut(msgspec.Struct):
    user: str
    rules: RulesOut
    sessions: list[SessionOut]
    devices: list[DeviceOut]
    suspended: SuspensionOut | None = None  # while the user is suspended


class SeatOut(msgspec.Struct):
    user: str
    rules: RulesOut
    seats_used: int
    admitted: list[str]
    blocked: list[str]


class RevokeUserIn(msgspec.Struct, forbid_unknown_fields=True):
    keep: Ident | None = None  # keep this session, revoke the others


class RevokeWhereIn(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of `org`, `role` or `all: true` (`REVOKE_WHERE_CHOICES`)."""

    org: Name | None = None
    role: Name | None = None
    all: bool = False


_NULL: dict[str, Any] = {"type": "null"}
REVOKE_WHERE_CHOICES: list[dict[str, Any]] = [
    {
        "required": ["org"],
        "properties": {"org": {"not": _NULL}, "role": _NULL, "all": {"const": False}},
    },
    {
        "required": ["role"],
        "properties": {"role": {"not": _NULL}, "org": _NULL, "all": {"const": False}},
    },
    {"required": ["all"], "properties": {"all": {"const": True}, "org": _NULL, "role": _NULL}},
]
"""The schema's `oneOf` for `RevokeWhereIn`: what `revoke_where` checks, in JSON Schema."""


class RevokedOut(msgspec.Struct):
    revoked: list[str]


class RevokedCountOut(msgspec.Struct):
    revoked: int


class OverrideIn(msgspec.Struct, forbid_unknown_fields=True):
    """The whole of one override: a `PUT` replaces what was there, and a field absent or
    null is not overridden (the site's applies). One that sets nothing is refused (422):
    `DELETE` removes an override (`OVERRIDE_SETS_ONE`)."""

    mode: Mode | None = None
    limit: Limit | None = None
    policy: Policy | None = None
    idle_timeout: Timeout | None = None
    absolute_timeout: Timeout | None = None


OVERRIDE_SETS_ONE: list[dict[str, Any]] = [
    {"required": [n], "properties": {n: {"not": _NULL}}} for n in RULE_FIELDS
]
"""The schema's `anyOf` for `OverrideIn`: at least one field given, not null."""


class OverrideOut(msgspec.Struct):
    scope: str
    name: str
    mode: str | None
    limit: int | None
    policy: str | None
    idle_timeout: float | None
    absolute_timeout: float | None


class AuditOut(msgspec.Struct):
    seq: int
    at: float
    user: str
    session: str | None
    device: str | None
    ip: str | None
    kind: str
    reason: str | None
    detail: dict[str, Any]
    prev: str
    hash: str
    at_iso: IsoTime


class AuditPageOut(msgspec.Struct):
    records: list[AuditOut]
    next_after: int | None  # pass as `after` for the next page; null at the end


class SiteOut(msgspec.Struct):
    key: str
    name: str
    origins: list[str]
    mode: str
    limit: int
    policy: str
    idle_timeout: float | None
    absolute_timeout: float | None
    client_settings: bool  # whether load() options may set mode, limit and policy
    identity_jwks_uri: str | None  # where the keys of RS256/ES256 identity tokens are fetched
    oidc_jwks_uri: str | None  # where the OpenID provider's keys are fetched
    identity_max_lifetime: int  # longest `exp - iat` of an identity token, seconds
    seat_tokens: bool  # whether seated tabs get seat tokens
    seat_token_ttl: int  # lifetime of a seat token, seconds


Lifetime = Annotated[int, msgspec.Meta(ge=IDENTITY_LIFETIME[0], le=IDENTITY_LIFETIME[1])]
SeatTokenTtl = Annotated[int, msgspec.Meta(ge=MIN_TTL, le=MAX_TTL)]


class SiteIn(msgspec.Struct, forbid_unknown_fields=True):
    """Changes to a site's own rules, key URLs, identity token lifetime and seat tokens;
    absent fields stay, null clears.

    A JWKS URI replaces the stored key or JWKS of the same purpose (set with the CLI).
    """

    mode: Mode | UnsetType = UNSET
    limit: Limit | UnsetType = UNSET
    policy: Policy | UnsetType = UNSET
    idle_timeout: Timeout | UnsetType | None = UNSET
    absolute_timeout: Timeout | UnsetType | None = UNSET
    client_settings: bool | UnsetType = UNSET
    identity_jwks_uri: JwksUri | UnsetType | None = UNSET
    oidc_jwks_uri: JwksUri | UnsetType | None = UNSET
    identity_max_lifetime: Lifetime | UnsetType = UNSET
    seat_tokens: bool | UnsetType = UNSET
    seat_token_ttl: SeatTokenTtl | UnsetType = UNSET


Overlap = Annotated[int, msgspec.Meta(ge=0, le=MAX_OVERLAP)]


class SecretRotationIn(msgspec.Struct, forbid_unknown_fields=True):
    """Which secret to replace, and how long the replaced one stays valid (seconds)."""

    kind: SecretKind = "secret_key"
    overlap: Overlap = DEFAULT_OVERLAP


class SecretRotatedOut(msgspec.Struct):
    kind: str  # secret_key, identity or webhook
    secret: str  # the new secret, shown this once
    previous_valid_until: float | None  # when the replaced one stops working; null: now
    previous_valid_until_iso: IsoTime | None


class UserPath(msgspec.Struct):
    """The path parameters of a user's routes."""

    user: Name


class SessionPath(msgspec.Struct):
    """The path parameters of one browser session of a user."""

    user: Name
    session: Ident


class OverridePath(msgspec.Struct):
    """The path parameters of one override, past its scope (404 when unknown)."""

    name: Name


class AuditQuery(msgspec.Struct):
    """The query of `GET /audit`; an empty `user` is no filter, as if absent."""

    user: Name | None = None
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


MESSAGE_ID = "^msg_[0-9a-f]{32}$"
"""What a webhook id (`webhook-id`) looks like."""


class DeliveryOut(msgspec.Struct):
    id: str  # the webhook-id, the same on every attempt
    event: EventType
    endpoint: str
    state: DeliveryState
    attempts: int
    next_attempt_at: float | None  # when a pending message is tried next; null otherwise
    last_status: int | None  # the endpoint's last HTTP status; null if it never answered
    last_error: str | None  # what went wrong last; null after a delivery
    created_at: float
    updated_at: float
    payload: dict[str, Any]  # the event as posted
    next_attempt_at_iso: IsoTime | None
    created_at_iso: IsoTime
    updated_at_iso: IsoTime


class DeliveriesPageOut(msgspec.Struct):
    deliveries: list[DeliveryOut]
    next_cursor: int | None  # pass as `cursor` for the next (older) page; null at the end


class DeliveriesQuery(msgspec.Struct):
    """The query of `GET /webhooks/deliveries`; absent filters are unset, not None, so that
    `?state=null` is refused rather than read as no filter."""

    state: DeliveryState | UnsetType = UNSET
    event: EventType | UnsetType = UNSET
    cursor: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)] | UnsetType = UNSET
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50


class DeliveryPath(msgspec.Struct):
    """The path parameters of one webhook message (404 when unknown)."""

    id: Annotated[str, msgspec.Meta(pattern=MESSAGE_ID)]


def _json(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


Handler = Callable[[Request, Node, Site], Awaitable[Response]]


def _authenticated(
    handler: Handler, *, cached: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: check the bearer secret key, map errors to problem details.

    `cached`: the key's site may come from the node's site cache (`SiteCache.by_secret`),
    up to `site_cache_ttl` seconds old, instead of a database read per request. Only for a
    handler that reads nothing of the site but its key (the seat check, which gateways
    call with every request): the others change the site, or show it, from what they read.
    """

    async def endpoint(request: Request) -> Response:
        node: Node = request.app.state.node
        auth = request.headers.get("authorization", "")
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer":
            return _unauthorized("send the site's secret key as a Bearer token", None)
        if not secret.strip():
            return _unauthorized("the Bearer token is empty", "invalid_request")
        digest = node.box.digest(secret.strip())  # secret keys are stored as keyed hashes
        if cached:
            site = await node.sites.by_secret(digest)
        else:
            site = await node.db.site_by_secret_hash(digest)
        current = None if site is None else authenticate(site, digest, node.clock())
        if site is None or current is None:
            return _unauthorized(_unknown(secret.strip()), "invalid_token")
        request.state.current_secret = current  # False: the replaced one, in its overlap
        try:
            return await handler(request, node, site)
        except ApiError as exc:
            return problem(exc.status, exc.title, exc.detail)
        except StoreUnavailable as exc:
            response = problem(503, "Service unavailable", str(exc))
            response.headers["Retry-After"] = "1"
            return response

    return endpoint


def _unknown(token: str) -> str:
    """Why a bearer token is refused: a site key (`pk_...`) is public, as pages show it."""
    if token.startswith("pk_"):
        return (
            "this is a site's public key (pk_...), which pages use; the REST API takes the "
            "site's secret key (sk_...)"
        )
    return "unknown secret key"


def _unauthorized(detail: str, error: str | None) -> Response:
    """401 with the RFC 6750 challenge: an `error` only when a token came (section 3.1)."""
    challenge = CHALLENGE
    if error is not None:
        challenge += f', error="{error}", error_description="{detail}"'
    return problem(401, "Unauthorized", detail, {"WWW-Authenticate": challenge})


def _rule_fields(source: Rules | Override | OverrideIn | SiteIn) -> dict[str, Any]:
    """The rule fields of `source`, by name (`UNSET` where a body leaves one out)."""
    return {n: getattr(source, n) for n in RULE_FIELDS}


def _rules_out(rules: Rules) -> RulesOut:
    return RulesOut(**_rule_fields(rules))


def _session_out(up: UserPresence, s: Session, checks: Checks) -> SessionOut:
    state = up.state(s.id)
    return SessionOut(
        id=s.id,
        state=state.value,
        reason=(s.held or s.reason).value if state.value == "blocked" else None,
        rule=s.held_rule if state.value == "blocked" else None,
        device=s.device,
        device_type=s.device_type,
        device_proof=s.device_proof,
        ip=s.ip,
        user_agent=s.user_agent,
        org=s.org,
        role=s.role,
        tabs=len(s.tabs),
        started=s.created_at,
        last_seen=s.last_seen,
        last_active=s.last_active,
        checks=checks,
        started_iso=iso(s.created_at),
        last_seen_iso=iso(s.last_seen),
        last_active_iso=iso(s.last_active),
    )


async def sessions_of(node: Node, site: Site, user: str) -> SessionsOut:
    """The user's sessions with their checks now, devices and suspension: what
    `GET /users/{user}/sessions` answers, and the demo's checks panel shows."""
    up = await node.snapshot((site.key, user))
    geoip = node.history.geoip if node.history is not None else None
    try:
        stored = await node.db.history(site.key, user)
    except Exception as exc:  # the sessions are still listed; their checks lack the history
        _history_unread("could not read a user's history for the checks: %s", type(exc).__name__)
        stored = None
    checks = current_checks(
        sightings(up),
        stored,
        geoip.place if geoip is not None else None,
        node.settings.thresholds,
        node.clock(),
    )
    devices: dict[str, DeviceOut] = {}
    for s in up.sessions.values():
        d = devices.setdefault(s.device, DeviceOut(s.device, s.device_type, False, []))
        d.sessions.append(s.id)
        d.seated = d.seated or up.state(s.id).value == "admitted"
    return SessionsOut(
        user=user,
        rules=_rules_out(up.rules if up.sessions else site.rules),
        sessions=[_session_out(up, s, checks[s.id]) for s in up.sessions.values()],
        devices=list(devices.values()),
        suspended=_suspension_out(await node.suspension((site.key, user))),
    )


async def user_sessions(request: Request, node: Node, site: Site) -> Response:
    user = read_params(request.path_params, UserPath).user
    return _json(await sessions_of(node, site, user))


@overload
def _suspension_out(s: Suspension) -> SuspensionOut: ...
@overload
def _suspension_out(s: None) -> None: ...
def _suspension_out(s: Suspension | None) -> SuspensionOut | None:
    return None if s is None else SuspensionOut(s.user, s.since, s.reason, s.by, iso(s.since))


async def suspend_user(request: Request, node: Node, site: Site) -> Response:
    """Suspend a user (201), or answer the suspension in force (200: only the first counts,
    but whatever joined meanwhile is ended again)."""
    user = read_params(request.path_params, UserPath).user
    body = await read_json(request, SuspensionIn)
    try:
        suspension, created = await node.suspend_user((site.key, user), body.reason, "api")
    except StoreUnavailable:
        response = problem(
            503,
            "Service unavailable",
            "the suspension is recorded and new sessions are refused, but live sessions on "
            "other nodes could not all be ended: the presence store is unavailable; they "
            "end when it is back, or send this request again",
        )
        response.headers["Retry-After"] = "1"
        return response
    return _json(_suspension_out(suspension), 201 if created else 200)


async def get_suspension(request: Request, node: Node, site: Site) -> Response:
    user = read_params(request.path_params, UserPath).user
    suspension = await node.suspension((site.key, user))
    if suspension is None:
        raise ApiError(404, "Not found", f"user {user!r} is not suspended")
    return _json(_suspension_out(suspension))


async def lift_suspension(request: Request, node: Node, site: Site) -> Response:
    user = read_params(request.path_params, UserPath).user
    if await node.lift_suspension((site.key, user), "api") is None:
        raise ApiError(404, "Not found", f"user {user!r} is not suspended")
    return Response(status_code=204)


async def user_seat(request: Request, node: Node, site: Site) -> Response:
    user = read_params(request.path_params, UserPath).user
    up = await node.snapshot((site.key, user))
    states = up.states()
    return _json(
        SeatOut(
            user=user,
            rules=_rules_out(up.rules if up.sessions else site.rules),
            seats_used=len(up.seats),
            admitted=[s for s, st in states.items() if st.value == "admitted"],
            blocked=[s for s, st in states.items() if st.value == "blocked"],
        )
    )


async def revoke_session(request: Request, node: Node, site: Site) -> Response:
    path = read_params(request.path_params, SessionPath)
    user, session = path.user, path.session
    revoked = await node.revoke((site.key, user), sessions=[session])
    if not revoked:
        raise ApiError(404, "Not found", f"user {user!r} has no live session {session!r}")
    return _json(RevokedOut(revoked))


async def revoke_user(request: Request, node: Node, site: Site) -> Response:
    user = read_params(request.path_params, UserPath).user
    body = await read_json(request, RevokeUserIn)
    if body.keep is not None and body.keep not in (await node.snapshot((site.key, user))).sessions:
        # A typo in `keep` must not sign the user out everywhere.
        raise ApiError(404, "Not found", f"user {user!r} has no live session {body.keep!r} to keep")
    return _json(RevokedOut(await node.revoke((site.key, user), keep=body.keep)))


async def revoke_where(request: Request, node: Node, site: Site) -> Response:
    body = await read_json(request, RevokeWhereIn)
    chosen = sum(1 for x in (body.org, body.role) if x is not None) + int(body.all)
    if chosen != 1:
        raise ApiError(422, "Invalid request", 'give exactly one of "org", "role" or "all": true')
    org, role = body.org, body.role
    scope = "org" if org is not None else "role" if role is not None else "site"
    count = await node.revoke_where(
        site.key,
        lambda s: (org is None or s.org == org) and (role is None or s.role == role),
        scope=scope,
    )
    return _json(RevokedCountOut(count))


def _override_out(o: Override) -> OverrideOut:
    return OverrideOut(o.scope, o.name, **_rule_fields(o))


def _scope(request: Request) -> Scope:
    scope = str(request.path_params["scope"])
    if scope not in SCOPES:
        raise ApiError(404, "Not found", f"scope must be one of {', '.join(SCOPES)}")
    return scope


def _override_name(request: Request) -> str:
    return read_params({"name": request.path_params["name"]}, OverridePath).name


def override_set(o: Override) -> dict[str, Scalar]:
    """What an override sets, for the audit trail (a timeout of 0: off)."""
    return {n: getattr(o, n) for n in RULE_FIELDS if getattr(o, n) is not None}


def _override_event(site: Site, kind: AuditKind, now: float, detail: Detail) -> AuditEvent:
    """The audit row of an override set or removed; a user's names the user."""
    user = str(detail["name"]) if detail["scope"] == "user" else ""
    return change_event(site.key, kind, now, detail, user)


async def _record(node: Node, event: AuditEvent) -> None:
    """Write a change to the site's settings to the audit trail."""
    if node.recorder is not None:
        await node.recorder.changed(event)


async def list_overrides(request: Request, node: Node, site: Site) -> Response:
    found = await node.db.overrides(site.key)
    return _json([_override_out(o) for o in found.values()])


async def put_override(request: Request, node: Node, site: Site) -> Response:
    scope, name = _scope(request), _override_name(request)
    body = await read_json(request, OverrideIn)
    override = Override(scope, name, **_rule_fields(body))
    if not override.fields():
        raise ApiError(
            422,
            "Invalid request",
            f"the override sets nothing: give at least one of {', '.join(RULE_FIELDS)} "
            "(a PUT replaces the whole override); to remove it, DELETE it",
        )
    try:
        Rules(**{**_defaults(site), **override.fields()})
    except ValueError as exc:
        raise ApiError(422, "Invalid request", str(exc)) from None
    await node.db.set_override(site.key, override)
    await node.rules_changed(site.key)
    detail = {**author(request), "scope": scope, "name": name, **override_set(override)}
    await _record(node, _override_event(site, AuditKind.override_set, node.clock(), detail))
    return _json(_override_out(override))


async def delete_override(request: Request, node: Node, site: Site) -> Response:
    scope, name = _scope(request), _override_name(request)
    if not await node.db.delete_override(site.key, scope, name):
        raise ApiError(404, "Not found", f"no override for {scope} {name!r}")
    await node.rules_changed(site.key)
    detail = {**author(request), "scope": scope, "name": name}
    await _record(node, _override_event(site, AuditKind.override_removed, node.clock(), detail))
    return Response(status_code=204)


async def audit_records(request: Request, node: Node, site: Site) -> Response:
    given = {k: v for k, v in request.query_params.items() if k != "user" or v}
    q = read_params(given, AuditQuery)
    after, limit = q.after, q.limit
    found = await node.db.audit.records(site=site.key, user=q.user, after_seq=after, limit=limit)
    records = [
        AuditOut(
            seq=r.seq,
            at=r.event.at,
            user=r.event.user,
            session=r.event.session,
            device=r.event.device,
            ip=r.event.ip,
            kind=r.event.kind.value,
            reason=r.event.reason,
            detail=dict(r.event.detail),
            prev=r.prev,
            hash=r.hash,
            at_iso=iso(r.event.at),
        )
        for r in found
    ]
    next_after = records[-1].seq if len(records) == limit else None
    return _json(AuditPageOut(records, next_after))


def _delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event=d.event,
        endpoint=d.endpoint,
        state=d.state,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        updated_at=d.updated_at,
        payload=msgspec.json.decode(d.payload),
        next_attempt_at_iso=iso(d.next_attempt_at),
        created_at_iso=iso(d.created_at),
        updated_at_iso=iso(d.updated_at),
    )


async def webhook_deliveries(request: Request, node: Node, site: Site) -> Response:
    """The site's webhook messages, newest first, a page at a time."""
    q = read_params(dict(request.query_params), DeliveriesQuery)
    found = await node.db.outbox.deliveries(
        site.key,
        state=None if q.state is UNSET else q.state,
        event=None if q.event is UNSET else q.event,
        before=None if q.cursor is UNSET else q.cursor,
        limit=q.limit,
    )
    next_cursor = found[-1].seq if len(found) == q.limit else None
    return _json(DeliveriesPageOut([_delivery_out(d) for d in found], next_cursor))


async def redeliver(request: Request, node: Node, site: Site) -> Response:
    """Send a message again, with the same id: pending, due now, with a new retry window."""
    msg_id = read_params(request.path_params, DeliveryPath).id
    found = await node.db.outbox.redeliver(site.key, msg_id, node.clock())
    if found is None:
        raise ApiError(404, "Not found", f"the site has no webhook message {msg_id!r}")
    request.app.state.webhooks.wake()
    return _json(_delivery_out(found), 202)


def _off(name: str, value: Any) -> Any:
    """A site's rule field as `Rules` keeps it: a timeout of 0 is off, None."""
    return None if name.endswith("_timeout") and value == 0 else value


def _site_out(site: Site) -> SiteOut:
    return SiteOut(
        key=site.key,
        name=site.name,
        origins=list(site.origins),
        client_settings=site.client_settings,
        identity_jwks_uri=site.config.identity_jwks_uri,
        oidc_jwks_uri=site.config.oidc_jwks_uri,
        identity_max_lifetime=site.config.identity_max_lifetime,
        seat_tokens=site.config.seat_tokens,
        seat_token_ttl=site.config.seat_token_ttl,
        **msgspec.structs.asdict(_rules_out(site.rules)),
    )


async def get_site(request: Request, node: Node, site: Site) -> Response:
    return _json(_site_out(site))


async def patch_site(request: Request, node: Node, site: Site) -> Response:
    body = await read_json(request, SiteIn)
    changes = {n: _off(n, v) for n, v in _rule_fields(body).items() if v is not UNSET}
    try:
        rules = dataclasses.replace(site.rules, **changes)
    except ValueError as exc:
        raise ApiError(422, "Invalid request", str(exc)) from None
    client = site.client_settings if body.client_settings is UNSET else body.client_settings
    uris = ("identity_jwks_uri", "oidc_jwks_uri")
    keys = {n: getattr(body, n) for n in uris if getattr(body, n) is not UNSET}
    others = {
        n: getattr(body, n)
        for n in ("identity_max_lifetime", "seat_tokens", "seat_token_ttl")
        if getattr(body, n) is not UNSET
    }
    if not node.settings.allow_private_urls:
        for name, uri in keys.items():
            try:
                if isinstance(uri, str):
                    check_literal(uri, name)
            except ConfigError as exc:  # well-formed, but the operator keeps such places off
                raise ApiError(403, "Forbidden", str(exc)) from None
    try:
        changes = {**keys, **others}
        config = changed_config(site.config, changes) if changes else site.config
    except ConfigError as exc:
        raise ApiError(422, "Invalid request", str(exc)) from None
    updated = dataclasses.replace(site, rules=rules, client_settings=client, config=config)
    try:
        if keys:
            check_identity(updated)
    except ConfigError as exc:
        # A well-formed change that this site's other settings rule out (an identity JWKS
        # URI on a site that signs with HS256): a conflict with its state, not a bad body.
        raise ApiError(409, "Conflict", str(exc)) from None
    if updated != site:
        await node.db.update_site(updated)
        await node.rules_changed(site.key)
        detail = {**author(request), **site_changes(site, updated)}
        await _record(node, change_event(site.key, AuditKind.site_changed, node.clock(), detail))
    return _json(_site_out(updated))


async def rotate_secret(request: Request, node: Node, site: Site) -> Response:
    """A new secret of the site, answered once; the replaced one stays valid for `overlap`."""
    if not request.state.current_secret:
        raise ApiError(
            403, "Forbidden", "rotate with the current secret key, not the one it replaced"
        )
    body = await read_json(request, SecretRotationIn)
    held = site.secrets.of(body.kind)
    if held.current is None:
        raise ApiError(409, "Conflict", f"the site has no {body.kind} secret (it has no webhook)")
    now = node.clock()
    try:
        secret = await rotate(node.db, node.box, site, body.kind, overlap=body.overlap, now=now)
    except Stale:
        raise ApiError(
            409, "Conflict", "another rotation of this secret came first; nothing was changed"
        ) from None
    await node.secrets_changed(site.key)
    until = now + body.overlap if body.overlap else None
    response = _json(SecretRotatedOut(body.kind, secret, until, iso(until)))
    response.headers["Cache-Control"] = "no-store"
    return response


def _defaults(site: Site) -> dict[str, Any]:
    r = site.rules
    return {"mode": r.mode, "limit": r.limit, "policy": r.policy}


def _route(path: str, handlers: Mapping[str, Handler], *, cached: bool = False) -> Route:
    """One route per path, so that a wrong method is answered 405 naming every allowed one
    (`cached`: see `_authenticated`)."""

    async def dispatch(request: Request, node: Node, site: Site) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request, node, site)

    return Route("/api/v1" + path, _authenticated(dispatch, cached=cached), methods=list(handlers))


def routes() -> list[BaseRoute]:
    """The API's routes, under /api/v1."""
    return [
        _route("/users/{user:any}/sessions", {"GET": user_sessions}),
        _route("/users/{user:any}/seat", {"GET": user_seat}),
        _route("/users/{user:any}/devices", {"GET": user_devices}),
        _route("/users/{user:any}/evaluations", {"GET": user_evaluations}),
        _route("/users/{user:any}/devices/{device}/trust", {"PUT": set_trust, "DELETE": set_trust}),
        _route("/users/{user:any}/sessions/{session}", {"DELETE": revoke_session}),
        _route("/users/{user:any}/revoke", {"POST": revoke_user}),
        _route(
            "/users/{user:any}/suspension",
            {"GET": get_suspension, "POST": suspend_user, "DELETE": lift_suspension},
        ),
        _route("/revoke", {"POST": revoke_where}),
        _route("/seats/check", {"POST": check_seat}, cached=True),
        _route("/site", {"GET": get_site, "PATCH": patch_site}),
        _route("/site/secret", {"POST": rotate_secret}),
        _route("/overrides", {"GET": list_overrides}),
        _route("/policies", {"GET": get_policy, "PUT": put_policy}),
        _route("/policies/evaluate", {"POST": evaluate_policy}),
        _route("/audit", {"GET": audit_records}),
        _route("/events", {"GET": events.stream}),
        _route("/webhooks/deliveries", {"GET": webhook_deliveries}),
        _route("/webhooks/deliveries/{id}/redeliver", {"POST": redeliver}),
        _route("/overrides/{scope}/{name:any}", {"PUT": put_override, "DELETE": delete_override}),
    ]
