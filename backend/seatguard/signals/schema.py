"""The JSON Schema of a policy, for the OpenAPI document: exactly what `parse_policy` takes.

A condition's language has no tag a generated schema could dispatch on, and its depth is
bounded, so the schema is written out here, next to the parser's bounds: `Condition1` (a
rule's `when`) to `Condition{MAX_DEPTH}`, each level's `all`, `any` and `not` holding the
next, the last level only checks and risk. A check condition is one of its typed forms:
the truthy one (`check` alone) or, for each kind of check, its operators with a value of
its type. The one rule JSON Schema cannot state is that the risk cutoffs rise strictly
(`medium < high < maximum`); its description says so.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..names import Name
from .catalog import CHECKS, COUNTRY_PATTERN, MAX_COUNT, CheckKind
from .policies import MAX_DEPTH, MAX_ITEMS, MAX_LIST, MAX_OVERRIDES, MAX_RULES, OPS, VERDICTS
from .risk import LEVELS, RiskSettings

__all__ = ["components"]

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _object(required: list[str], properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
        **more,
    }


_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_COUNTRY = {"type": "string", "pattern": COUNTRY_PATTERN}
_ONE: dict[CheckKind, dict[str, Any]] = {
    "bool": {"type": "boolean"},
    "count": _COUNT,
    "country": {"oneOf": [_COUNTRY, {"type": "null"}]},
}
_MEMBERSHIP = ("in", "not in")


def _check_forms() -> list[dict[str, Any]]:
    forms = [
        _object(
            ["check"],
            {"check": {"type": "string", "enum": list(CHECKS)}},
            description="The check is true, non-zero, or known (a country)",
        )
    ]
    for kind in ("bool", "count", "country"):
        names = [n for n, k in CHECKS.items() if k == kind]
        compare = [op for op in OPS[kind] if op not in _MEMBERSHIP]
        member = [op for op in OPS[kind] if op in _MEMBERSHIP]
        item = _COUNT if kind == "count" else _COUNTRY
        values = [(compare, _ONE[kind])]
        if member:
            values.append(
                (member, {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_LIST})
            )
        for ops, value in values:
            forms.append(
                _object(
                    ["check", "op", "value"],
                    {
                        "check": {"type": "string", "enum": names},
                        "op": {"type": "string", "enum": ops},
                        "value": value,
                    },
                )
            )
    return forms


def _condition(depth: int) -> dict[str, Any]:
    leaves = [_ref("CheckCondition"), _ref("RiskCondition")]
    if depth == MAX_DEPTH:
        return {"oneOf": leaves}
    inner = _ref(f"Condition{depth + 1}")
    items = {"type": "array", "items": inner, "minItems": 1, "maxItems": MAX_ITEMS}
    return {
        "oneOf": [
            *leaves,
            _object(["all"], {"all": items}, description="Every condition holds"),
            _object(["any"], {"any": items}, description="At least one condition holds"),
            _object(["not"], {"not": inner}, description="The condition does not hold"),
        ]
    }


def components() -> dict[str, Any]:
    """The schemas `Policy` refers to, by name, `Policy` among them."""
    (name_schema,), _ = msgspec.json.schema_components([Name], ref_template=_REF)
    _, risk = msgspec.json.schema_components([RiskSettings], ref_template=_REF)
    risk["Cutoffs"]["description"] = (
        "The lowest score of each level above `low`; they must rise strictly "
        "(medium < high < maximum), else the policy is refused (422)"
    )
    rules = {"type": "array", "items": _ref("Rule"), "maxItems": MAX_RULES}
    overrides = {
        "type": "object",
        "propertyNames": name_schema,
        "additionalProperties": rules,
        "maxProperties": MAX_OVERRIDES,
    }
    schemas: dict[str, Any] = {
        **risk,
        "Policy": _object(
            [],
            {
                "rules": {
                    **rules,
                    "description": "The site's rules, in order; names are unique within a list",
                },
                "orgs": {**overrides, "description": "Rules replacing the site's for an org"},
                "roles": {
                    **overrides,
                    "description": "Rules replacing the site's (and the org's) for a role",
                },
                "risk": _ref("RiskSettings"),
            },
            description="A site's policy. The first live rule whose `when` holds gives the "
            "verdict (none: allow); dry-run rules that hold before it are only reported.",
        ),
        "Rule": _object(
            ["name", "when", "verdict"],
            {
                "name": name_schema,
                "when": _ref("Condition1"),
                "verdict": {"type": "string", "enum": list(VERDICTS)},
                "dry_run": {"type": "boolean", "default": False},
            },
        ),
        "CheckCondition": {"oneOf": _check_forms()},
        "RiskCondition": _object(
            ["risk"],
            {"risk": {"type": "string", "enum": list(LEVELS)}},
            description="The account_sharing risk is at least this level",
        ),
    }
    for depth in range(1, MAX_DEPTH + 1):
        schemas[f"Condition{depth}"] = _condition(depth)
    return schemas
