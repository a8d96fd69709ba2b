"""`GET` and `PUT /api/v1/policies` (a site's policy) and `POST /api/v1/policies/evaluate`
(what a policy says of given checks, with no effect on anything).

A policy is checked whole by `parse_policy`, whose errors name the path of the bad part
(422). Bodies here may carry a policy, so their cap is `MAX_POLICY_BODY` (413 beyond), not
the API's usual one. A site that never set a policy has the default one: no rules (every
session allowed) and the default risk settings.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from ..audit import AuditKind
from ..errors import InvalidPolicy
from ..inputs import author, read_json_value
from ..names import Name
from ..node import Node
from ..problems import ApiError
from ..protocol import explain
from ..recorder import change_event, policy_summary
from ..sites import Site
from .catalog import ChecksIn
from .evaluations import DryRunOut, RiskOut
from .policies import Policy, Verdict, encode_policy, evaluate, parse_policy
from .risk import account_sharing

__all__ = [
    "MAX_POLICY_BODY",
    "DryRunOut",
    "EvaluationIn",
    "EvaluationOut",
    "RiskOut",
    "evaluate_policy",
    "get_policy",
    "put_policy",
]

MAX_POLICY_BODY = 65536
"""Bytes of a request body carrying a policy, at most (413 beyond)."""


class EvaluationIn(msgspec.Struct, forbid_unknown_fields=True):
    """Checks to evaluate a policy on: the given one, else the site's; `org` and `role`
    choose the rules that apply."""

    checks: ChecksIn
    policy: Any = UNSET  # a Policy; its schema is given in the OpenAPI document
    org: Name | None = None
    role: Name | None = None


class EvaluationOut(msgspec.Struct):
    verdict: Verdict
    rule: str | None  # the name of the rule that gave the verdict; null: none matched
    dry_run: list[DryRunOut]
    risk: RiskOut


def _policy_json(policy: Policy) -> Response:
    return Response(encode_policy(policy), media_type="application/json")


def _parsed(raw: Any, path: str = "") -> Policy:
    try:
        return parse_policy(raw, path)
    except InvalidPolicy as exc:
        raise ApiError(422, "Invalid policy", str(exc)) from None


async def get_policy(request: Request, node: Node, site: Site) -> Response:
    """The site's policy, every setting written out."""
    return _policy_json(await node.db.policy(site.key) or Policy())


async def put_policy(request: Request, node: Node, site: Site) -> Response:
    """Replace the site's policy; answered as stored."""
    policy = _parsed(await read_json_value(request, MAX_POLICY_BODY, required=True))
    await node.db.set_policy(site.key, policy)
    node.policies.forget(site.key)
    if node.recorder is not None:
        detail = {**author(request), **policy_summary(policy)}
        await node.recorder.changed(
            change_event(site.key, AuditKind.policy_set, node.clock(), detail)
        )
    return _policy_json(policy)


async def evaluate_policy(request: Request, node: Node, site: Site) -> Response:
    """What a policy (the given one, else the site's) says of the given checks."""
    raw = await read_json_value(request, MAX_POLICY_BODY, required=True)
    try:
        body = msgspec.convert(raw, EvaluationIn)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "Invalid request", explain(exc, EvaluationIn)) from None
    if isinstance(body.policy, UnsetType):
        policy = await node.db.policy(site.key) or Policy()
    else:
        policy = _parsed(body.policy, "policy")
    checks = body.checks.mapping()
    risk = account_sharing(checks, policy.risk)
    found = evaluate(policy, checks, risk, body.org, body.role)
    out = EvaluationOut(
        verdict=found.verdict,
        rule=None if found.rule is None else found.rule.name,
        dry_run=[DryRunOut(rule.name, verdict) for rule, verdict in found.dry_run_matches],
        risk=RiskOut(risk.score, risk.level),
    )
    return Response(msgspec.json.encode(out), media_type="application/json")
