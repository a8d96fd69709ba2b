"""`GET /api/v1/users/{user}/evaluations`: what the site's policy said of the user's sessions,
newest first, a page at a time.

The records are those the node kept (`signals.evaluations`), a moment after each hello and
each change of a session's checks, for the retention the operator set. A page ends with
`next_before`, the `before` of the next page; records of one instant are never split
between two pages (see `page_of`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from ..inputs import read_params
from ..isotime import IsoTime, iso
from ..names import Name
from ..node import Node
from ..sites import Site
from .evaluations import DryRunOut, EvaluationRecord, RiskOut, Trigger, page_of
from .policies import Verdict

__all__ = [
    "MAX_LIMIT",
    "MAX_TIME",
    "EvaluationsOut",
    "EvaluationsQuery",
    "StoredEvaluationOut",
    "user_evaluations",
]

MAX_LIMIT = 500
"""Records in one page, at most."""
MAX_TIME = 32503680000.0
"""The latest `before` taken: 3000-01-01 in seconds since the epoch."""


class EvaluationsQuery(msgspec.Struct):
    """The query of `GET /users/{user}/evaluations`; an absent `before` is unset, not None,
    so that `?before=null` is refused rather than read as no bound."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 50
    before: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIME)] | UnsetType = UNSET


class StoredEvaluationOut(msgspec.Struct):
    session: str
    at: float  # seconds since the epoch
    trigger: Trigger  # "hello": at the session's hello; "change": its checks changed
    checks: dict[str, Any]  # check name to value, as evaluated (docs/signals.md)
    geo: Literal["on", "off"]  # "off": no GeoIP database, the geo checks were null
    risk: RiskOut
    rule: str | None  # the live rule that gave the verdict; null: none matched (allow)
    verdict: Verdict
    applied: bool  # whether the node acted on the verdict
    dry_run: list[DryRunOut]  # dry-run rules that matched before the verdict's rule
    device: str
    ip: str  # as seen, or its network if the operator keeps addresses truncated
    at_iso: IsoTime


class EvaluationsOut(msgspec.Struct):
    user: str
    evaluations: list[StoredEvaluationOut]
    next_before: float | None  # the `before` of the next page; null: this is the last


class _UserPath(msgspec.Struct):
    user: Name


def _out(r: EvaluationRecord) -> StoredEvaluationOut:
    return StoredEvaluationOut(
        session=r.session,
        at=r.at,
        trigger=r.trigger,
        checks=r.checks,
        geo=r.geo,
        risk=r.risk,
        rule=r.rule,
        verdict=r.verdict,
        applied=r.applied,
        dry_run=r.dry_run,
        device=r.device,
        ip=r.ip,
        at_iso=iso(r.at),
    )


async def user_evaluations(request: Request, node: Node, site: Site) -> Response:
    """The user's evaluations, newest first, before `before` if given."""
    user = read_params(request.path_params, _UserPath).user
    q = read_params(dict(request.query_params), EvaluationsQuery)
    before = None if isinstance(q.before, UnsetType) else q.before
    out = await evaluations_of(node, site, user, q.limit, before)
    return Response(msgspec.json.encode(out), media_type="application/json")


async def evaluations_of(
    node: Node, site: Site, user: str, limit: int, before: float | None = None
) -> EvaluationsOut:
    """A page of the user's evaluations, newest first (what the route answers; the demo's
    checks panel lists them too)."""
    found = await node.db.evaluations(site.key, user, limit=limit + 1, before=before)
    page, next_before = page_of(found, limit)
    return EvaluationsOut(user, [_out(r) for r in page], next_before)
