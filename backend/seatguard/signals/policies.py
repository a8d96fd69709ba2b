"""Policies: a site's ordered rules over checks and risk, each with a verdict, and their
evaluation, pure.

A policy is a list of rules for the whole site, lists that replace it for an org or a role
(`orgs`, `roles`: the role's list if it has one, else the org's, else the site's, as role
overrides are stronger than org ones in `seatguard.rules`), and the risk settings. A rule
is `{name, when, verdict, dry_run}`; `when` is a condition in a small JSON language:

    {"check": "concurrent_sessions"}                         the check is true, non-zero
                                                             or known (a country)
    {"check": "device_count", "op": ">=", "value": 3}        a comparison
    {"check": "ip_country", "op": "in", "value": ["FR"]}     membership (`in`, `not in`)
    {"risk": "high"}                                         the risk is at least `high`
    {"all": [...]}, {"any": [...]}, {"not": {...}}           and, or, not

`==` and `!=` take every check (a country may be compared with null, unknown);
`<`, `<=`, `>`, `>=` take counts; `in` and `not in` take a list of counts or of countries
(an unknown country is in no list). A value must have its check's type.

`evaluate` goes down the rules in order. The first rule that matches and is live gives the
verdict; none: `allow`. A dry-run rule that matches before it (one that would have given
the verdict, were it live) is reported in `dry_run_matches` and changes nothing.

Rule names are unique within a list (evaluations, audit rows and holds name the rule that
matched). `parse_policy` turns decoded JSON into a `Policy`, or raises `InvalidPolicy` with the
path of the first thing wrong (`rules[2].when.all[0].check: unknown check 'foo'`). Sizes are
bounded: `MAX_RULES` rules a list, `MAX_OVERRIDES` orgs and roles, conditions `MAX_DEPTH`
deep with `MAX_ITEMS` in an `all` or `any`, `MAX_LIST` values after `in`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ..errors import InvalidPolicy
from ..names import Name, name_problem
from .catalog import CHECKS, CheckKind, Checks, Count, Country, convert_at, join, read
from .risk import Level, Risk, RiskSettings, at_least, parse_risk_settings

__all__ = [
    "KEYS",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_LIST",
    "MAX_OVERRIDES",
    "MAX_RULES",
    "OPS",
    "VERDICTS",
    "AllOf",
    "AnyOf",
    "Check",
    "Condition",
    "Evaluation",
    "Not",
    "Op",
    "Policy",
    "RiskAtLeast",
    "Rule",
    "Verdict",
    "encode_policy",
    "evaluate",
    "parse_policy",
    "rules_for",
]

Verdict = Literal["allow", "monitor", "block", "challenge", "suspend", "revoke"]
VERDICTS: tuple[Verdict, ...] = ("allow", "monitor", "block", "challenge", "suspend", "revoke")
"""`allow`: nothing to do; `monitor`: flag only; `block`: refuse the session; `challenge`:
ask the user to prove who they are; `suspend`: end all of the user's sessions and refuse new
ones until lifted; `revoke`: end the session."""

Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
OPS: Mapping[CheckKind, tuple[Op, ...]] = {
    "bool": ("==", "!="),
    "count": ("==", "!=", "<", "<=", ">", ">=", "in", "not in"),
    "country": ("==", "!=", "in", "not in"),
}
"""The operators each kind of check takes."""

KEYS = ("check", "risk", "all", "any", "not")
"""A condition has exactly one of these keys."""

MAX_DEPTH = 4
"""Levels of conditions in a rule's `when`, itself the first."""
MAX_ITEMS = 16
"""Conditions in one `all` or `any`."""
MAX_LIST = 300
"""Values after `in` or `not in`."""
MAX_RULES = 100
"""Rules in one list (the site's, or one org's or role's)."""
MAX_OVERRIDES = 100
"""Orgs, and roles, with rules of their own."""


class Check(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A check: true, non-zero or known without `op`; else compared with `value`."""

    check: str
    op: Op | UnsetType = UNSET
    value: Any = UNSET  # of the check's type; a list of them after `in` / `not in`


class RiskAtLeast(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The `account_sharing` risk is at least this level."""

    risk: Level


class AllOf(msgspec.Struct, frozen=True):
    all: tuple[Condition, ...]


class AnyOf(msgspec.Struct, frozen=True):
    any: tuple[Condition, ...]


class Not(msgspec.Struct, frozen=True):
    not_: Condition = msgspec.field(name="not")


Condition = Check | RiskAtLeast | AllOf | AnyOf | Not


class Rule(msgspec.Struct, frozen=True):
    """One rule: when `when` holds, `verdict` (only reported if `dry_run`)."""

    name: str
    when: Condition
    verdict: Verdict
    dry_run: bool = False


class Policy(msgspec.Struct, frozen=True):
    """A site's rules, the lists that replace them for an org or a role, and its risk
    settings. The empty policy allows everything."""

    rules: tuple[Rule, ...] = ()
    orgs: Mapping[str, tuple[Rule, ...]] = msgspec.field(default_factory=dict)
    roles: Mapping[str, tuple[Rule, ...]] = msgspec.field(default_factory=dict)
    risk: RiskSettings = msgspec.field(default_factory=RiskSettings)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a policy says of one session: the rule that gave the verdict (None: no live
    rule matched, `allow`), and the dry-run rules that matched before it."""

    rule: Rule | None
    verdict: Verdict
    dry_run_matches: tuple[tuple[Rule, Verdict], ...]


# --- evaluation ------------------------------------------------------------------------


def rules_for(policy: Policy, org: str | None, role: str | None) -> tuple[Rule, ...]:
    """The rules in force for a user of this org and role."""
    if role is not None and role in policy.roles:
        return policy.roles[role]
    if org is not None and org in policy.orgs:
        return policy.orgs[org]
    return policy.rules


def evaluate(
    policy: Policy,
    checks: Checks,
    risk: Risk,
    org: str | None = None,
    role: str | None = None,
) -> Evaluation:
    """The verdict of `policy` for a session with these checks and risk (see the module)."""
    dry: list[tuple[Rule, Verdict]] = []
    for rule in rules_for(policy, org, role):
        if holds(rule.when, checks, risk):
            if not rule.dry_run:
                return Evaluation(rule, rule.verdict, tuple(dry))
            dry.append((rule, rule.verdict))
    return Evaluation(None, "allow", tuple(dry))


def holds(condition: Condition, checks: Checks, risk: Risk) -> bool:
    """Whether `condition` holds of these checks and risk."""
    match condition:
        case Check():
            return _compare(condition, read(checks, condition.check))
        case RiskAtLeast():
            return at_least(risk.level, condition.risk)
        case AllOf():
            return all(holds(c, checks, risk) for c in condition.all)
        case AnyOf():
            return any(holds(c, checks, risk) for c in condition.any)
        case Not():
            return not holds(condition.not_, checks, risk)


def _compare(c: Check, value: object) -> bool:
    if c.op is UNSET:
        return value is not None and value is not False and value != 0
    want = c.value
    match c.op:
        case "==":
            return bool(value == want) and type(value) is type(want)
        case "!=":
            return not (bool(value == want) and type(value) is type(want))
        case "in":
            return value is not None and bool(value in want)
        case "not in":
            return value is None or bool(value not in want)
    if not isinstance(value, int) or isinstance(value, bool) or not isinstance(want, int):
        return False
    match c.op:
        case "<":
            return value < want
        case "<=":
            return value <= want
        case ">":
            return value > want
        case _:
            return value >= want


# --- parsing ---------------------------------------------------------------------------

RuleName = Name


class _RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    name: RuleName
    when: Any
    verdict: Verdict
    dry_run: bool = False


_Rules = Annotated[list[Any], msgspec.Meta(max_length=MAX_RULES)]


class _PolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    rules: _Rules = msgspec.field(default_factory=list)
    orgs: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_OVERRIDES)] = msgspec.field(
        default_factory=dict
    )
    roles: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_OVERRIDES)] = msgspec.field(
        default_factory=dict
    )
    risk: Any = msgspec.field(default_factory=dict)


_Items = Annotated[list[Any], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class _AllIn(msgspec.Struct, forbid_unknown_fields=True):
    all: _Items


class _AnyIn(msgspec.Struct, forbid_unknown_fields=True):
    any: _Items


class _NotIn(msgspec.Struct, forbid_unknown_fields=True):
    not_: Any = msgspec.field(name="not")


class _CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    check: str
    op: Op | UnsetType = UNSET
    value: Any = UNSET


_ListBounds = msgspec.Meta(min_length=1, max_length=MAX_LIST)
_VALUE_TYPES: Mapping[tuple[CheckKind, bool], Any] = {
    ("bool", False): bool,
    ("count", False): Count,
    ("count", True): Annotated[list[Count], _ListBounds],
    ("country", False): Country | None,
    ("country", True): Annotated[list[Country], _ListBounds],
}
"""What `value` must be, by the check's kind and whether the op is `in` or `not in`."""


def parse_policy(raw: Any, path: str = "") -> Policy:
    """A policy from decoded JSON (an object); InvalidPolicy naming the first bad path
    (under `path`, where the policy sits in a larger document)."""
    shape = convert_at(raw, _PolicyIn, path)
    overrides: dict[str, dict[str, tuple[Rule, ...]]] = {"orgs": {}, "roles": {}}
    for part, given in (("orgs", shape.orgs), ("roles", shape.roles)):
        for name, rules in given.items():
            where = join(path, f".{part}[{_quote(name)}]")
            problem = name_problem(name, part[:-1])
            if problem is not None:
                raise InvalidPolicy(f"{where}: {problem}")
            overrides[part][name] = _rules(convert_at(rules, _Rules, where), where)
    return Policy(
        rules=_rules(shape.rules, join(path, ".rules")),
        orgs=overrides["orgs"],
        roles=overrides["roles"],
        risk=parse_risk_settings(shape.risk, join(path, ".risk")),
    )


def _quote(name: str) -> str:
    return msgspec.json.encode(name).decode()


def _rules(raw: list[Any], path: str) -> tuple[Rule, ...]:
    found = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        r = convert_at(item, _RuleIn, where)
        if r.name in names:  # evaluations, audit rows and holds name the rule that matched
            raise InvalidPolicy(f"{where}.name: rule name {r.name!r} is used twice in this list")
        names.add(r.name)
        when = condition(r.when, f"{where}.when")
        found.append(Rule(r.name, when, r.verdict, r.dry_run))
    return tuple(found)


def condition(raw: Any, path: str = "when", depth: int = 1) -> Condition:
    """A condition from decoded JSON; InvalidPolicy naming the first bad path."""
    if not isinstance(raw, dict):
        raise InvalidPolicy(f"{path}: a condition is an object, not {_json_type(raw)}")
    keys = [k for k in KEYS if k in raw]
    if len(keys) != 1:
        given = ", ".join(repr(k) for k in raw) or "none"
        raise InvalidPolicy(
            f"{path}: a condition has exactly one of {', '.join(KEYS)} (keys given: {given})"
        )
    key = keys[0]
    if key == "check":
        return _check(raw, path)
    if key == "risk":
        return convert_at(raw, RiskAtLeast, path)
    if depth >= MAX_DEPTH:
        raise InvalidPolicy(f"{path}: conditions nest at most {MAX_DEPTH} deep")
    if key == "not":
        inner = convert_at(raw, _NotIn, path).not_
        return Not(condition(inner, f"{path}.not", depth + 1))
    if key == "all":
        items = convert_at(raw, _AllIn, path).all
        return AllOf(_conditions(items, f"{path}.all", depth))
    items = convert_at(raw, _AnyIn, path).any
    return AnyOf(_conditions(items, f"{path}.any", depth))


def _conditions(items: list[Any], path: str, depth: int) -> tuple[Condition, ...]:
    return tuple(condition(c, f"{path}[{i}]", depth + 1) for i, c in enumerate(items))


def _check(raw: dict[str, Any], path: str) -> Check:
    c = convert_at(raw, _CheckIn, path)
    kind = CHECKS.get(c.check)
    if kind is None:
        raise InvalidPolicy(f"{path}.check: unknown check {c.check!r}")
    if c.op is UNSET and c.value is UNSET:
        return Check(c.check)
    if c.op is UNSET or c.value is UNSET:
        raise InvalidPolicy(f"{path}: give both op and value, or neither (true, non-zero)")
    if c.op not in OPS[kind]:
        ops = ", ".join(OPS[kind])
        raise InvalidPolicy(f"{path}.op: check {c.check!r} takes {ops}, not {c.op!r}")
    value = convert_at(c.value, _VALUE_TYPES[kind, c.op in ("in", "not in")], f"{path}.value")
    if isinstance(value, list):
        value = tuple(value)
    return Check(c.check, c.op, value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (str, "a string"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return "a number"


def encode_policy(policy: Policy) -> bytes:
    """A policy as JSON, every setting given: what `parse_policy` reads back unchanged."""
    return msgspec.json.encode(policy)
