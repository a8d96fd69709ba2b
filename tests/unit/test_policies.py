"""Policies and the account_sharing risk on plain checks: every operator and verdict, the
evaluation's invariants (hypothesis), and hostile policies."""

from __future__ import annotations

from typing import Any

import hypothesis
import msgspec
import pytest
from hypothesis import strategies as st

from seatguard.errors import InvalidPolicy
from seatguard.signals import checks as session_checks
from seatguard.signals.catalog import CHECKS, ChecksIn
from seatguard.signals.policies import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_RULES,
    VERDICTS,
    Policy,
    Rule,
    encode_policy,
    evaluate,
    holds,
    parse_policy,
)
from seatguard.signals.risk import (
    LEVELS,
    Allowances,
    Cutoffs,
    Level,
    Risk,
    RiskSettings,
    Weights,
    account_sharing,
    parse_risk_settings,
)

LOW = Risk(0, "low")


def when(condition: Any, checks: dict[str, Any], risk: Risk = LOW) -> bool:
    """Whether `condition` (as JSON) holds of `checks`."""
    policy = parse_policy({"rules": [{"name": "r", "when": condition, "verdict": "block"}]})
    return holds(policy.rules[0].when, checks, risk)


def rule(name: str, condition: Any, verdict: str, dry_run: bool = False) -> dict[str, Any]:
    return {"name": name, "when": condition, "verdict": verdict, "dry_run": dry_run}


def refused(raw: Any) -> str:
    with pytest.raises(InvalidPolicy) as info:
        parse_policy(raw)
    return str(info.value)


# --- conditions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "truthy"),
    [
        ("concurrent_sessions", True, True),
        ("concurrent_sessions", False, False),
        ("device_count", 2, True),
        ("device_count", 0, False),
        ("ip_country", "FR", True),
        ("ip_country", None, False),
    ],
)
def test_a_check_alone_is_true_non_zero_or_known(name: str, value: Any, truthy: bool) -> None:
    assert when({"check": name}, {name: value}) is truthy


def test_a_check_missing_from_the_checks_is_its_neutral_value() -> None:
    for name in CHECKS:
        assert when({"check": name}, {}) is False
    assert when({"check": "ip_country", "op": "==", "value": None}, {}) is True
    assert when({"check": "device_count", "op": "==", "value": 0}, {}) is True


@pytest.mark.parametrize(
    ("op", "value", "count", "expected"),
    [
        ("==", 3, 3, True),
        ("==", 3, 2, False),
        ("!=", 3, 2, True),
        ("!=", 3, 3, False),
        ("<", 3, 2, True),
        ("<", 3, 3, False),
        ("<=", 3, 3, True),
        ("<=", 3, 4, False),
        (">", 3, 4, True),
        (">", 3, 3, False),
        (">=", 3, 3, True),
        (">=", 3, 2, False),
        ("in", [1, 3], 3, True),
        ("in", [1, 3], 2, False),
        ("not in", [1, 3], 2, True),
        ("not in", [1, 3], 3, False),
    ],
)
def test_count_operators(op: str, value: Any, count: int, expected: bool) -> None:
    condition = {"check": "device_count", "op": op, "value": value}
    assert when(condition, {"device_count": count}) is expected


@pytest.mark.parametrize(
    ("op", "value", "country", "expected"),
    [
        ("==", "FR", "FR", True),
        ("==", "FR", "DE", False),
        ("==", None, None, True),
        ("==", None, "FR", False),
        ("!=", "FR", "DE", True),
        ("!=", "FR", None, True),
        ("!=", None, None, False),
        ("in", ["FR", "DE"], "DE", True),
        ("in", ["FR", "DE"], "US", False),
        ("in", ["FR"], None, False),  # an unknown country is in no list
        ("not in", ["FR", "DE"], "US", True),
        ("not in", ["FR", "DE"], "FR", False),
        ("not in", ["FR"], None, True),
    ],
)
def test_country_operators(op: str, value: Any, country: str | None, expected: bool) -> None:
    condition = {"check": "ip_country", "op": op, "value": value}
    assert when(condition, {"ip_country": country}) is expected


def test_bool_operators() -> None:
    for op, value, actual, expected in [
        ("==", True, True, True),
        ("==", True, False, False),
        ("!=", True, False, True),
        ("!=", False, False, False),
    ]:
        condition = {"check": "is_new_ip", "op": op, "value": value}
        assert when(condition, {"is_new_ip": actual}) is expected


def test_risk_is_at_least_a_level() -> None:
    for i, floor in enumerate(LEVELS):
        for j, level in enumerate(LEVELS):
            assert when({"risk": floor}, {}, Risk(0, level)) is (j >= i)


def test_all_any_not() -> None:
    t, f = {"check": "is_new_ip"}, {"check": "is_new_device"}
    checks = {"is_new_ip": True, "is_new_device": False}
    assert when({"all": [t, t]}, checks) is True
    assert when({"all": [t, f]}, checks) is False
    assert when({"any": [f, t]}, checks) is True
    assert when({"any": [f, f]}, checks) is False
    assert when({"not": f}, checks) is True
    assert when({"not": {"all": [t, {"not": f}]}}, checks) is False


# --- evaluation --------------------------------------------------------------------------

ISSUE_EXAMPLES = parse_policy(
    {
        "rules": [
            rule("travel", {"check": "impossible_travel"}, "suspend"),
            rule(
                "shared",
                {"all": [{"check": "concurrent_sessions"}, {"risk": "medium"}]},
                "challenge",
            ),
            rule("risky", {"risk": "high"}, "block"),
        ]
    }
)


@pytest.mark.parametrize(
    ("checks", "verdict", "rule_name"),
    [
        ({}, "allow", None),
        ({"concurrent_sessions": True}, "challenge", "shared"),
        ({"impossible_travel": True, "concurrent_sessions": True}, "suspend", "travel"),
        ({"computer_device_count": 5}, "block", "risky"),  # 15 * 4 = 60: high
    ],
)
def test_the_first_matching_rule_gives_the_verdict(
    checks: dict[str, Any], verdict: str, rule_name: str | None
) -> None:
    risk = account_sharing(checks, ISSUE_EXAMPLES.risk)
    found = evaluate(ISSUE_EXAMPLES, checks, risk)
    assert found.verdict == verdict
    assert (found.rule.name if found.rule else None) == rule_name
    assert found.dry_run_matches == ()


@pytest.mark.parametrize("verdict", VERDICTS)
def test_every_verdict_is_given_and_reported_dry(verdict: str) -> None:
    live = parse_policy({"rules": [rule("r", {"check": "is_new_ip"}, verdict)]})
    assert evaluate(live, {"is_new_ip": True}, LOW).verdict == verdict
    dry = parse_policy({"rules": [rule("r", {"check": "is_new_ip"}, verdict, dry_run=True)]})
    found = evaluate(dry, {"is_new_ip": True}, LOW)
    assert (found.verdict, found.rule) == ("allow", None)
    assert found.dry_run_matches == ((dry.rules[0], verdict),)


def test_dry_run_rules_after_the_verdict_are_not_reported() -> None:
    policy = parse_policy(
        {
            "rules": [
                rule("dry-before", {"check": "is_new_ip"}, "block", dry_run=True),
                rule("live", {"check": "is_new_ip"}, "monitor"),
                rule("dry-after", {"check": "is_new_ip"}, "revoke", dry_run=True),
            ]
        }
    )
    found = evaluate(policy, {"is_new_ip": True}, LOW)
    assert found.verdict == "monitor"
    assert [r.name for r, _ in found.dry_run_matches] == ["dry-before"]


def test_a_role_list_replaces_the_org_list_which_replaces_the_site_list() -> None:
    policy = parse_policy(
        {
            "rules": [rule("site", {"risk": "low"}, "monitor")],
            "orgs": {"acme": [rule("org", {"risk": "low"}, "block")]},
            "roles": {"admin": [], "support": [rule("role", {"risk": "low"}, "revoke")]},
        }
    )
    verdict = {
        (org, role): evaluate(policy, {}, LOW, org, role).verdict
        for org in (None, "acme", "other")
        for role in (None, "admin", "support", "other")
    }
    assert verdict[None, None] == verdict["other", "other"] == "monitor"
    assert verdict["acme", None] == verdict["acme", "other"] == "block"
    assert verdict["acme", "admin"] == verdict[None, "admin"] == "allow"  # an empty list
    assert verdict["acme", "support"] == "revoke"


# --- risk --------------------------------------------------------------------------------


def test_default_risk_levels() -> None:
    default = RiskSettings()
    cases: list[tuple[dict[str, Any], int, Level]] = [
        ({}, 0, "low"),
        ({"is_new_ip": True}, 5, "low"),
        ({"concurrent_sessions": True}, 40, "medium"),
        ({"concurrent_sessions": True, "is_new_device": True}, 50, "high"),
        ({"impossible_travel": True}, 60, "high"),
        ({"impossible_travel": True, "concurrent_sessions": True}, 100, "maximum"),
        (
            {"computer_device_count": 1, "mobile_device_count": 1, "tablet_device_count": 1},
            0,
            "low",
        ),
        ({"computer_device_count": 3}, 30, "medium"),
        ({"device_count": 50}, 0, "low"),  # weight 0 by default
    ]
    for checks, score, level in cases:
        assert account_sharing(checks, default) == Risk(score, level), checks


def test_weights_and_allowances_name_exactly_the_checks_they_can_weigh() -> None:
    weighed = {n for n, k in CHECKS.items() if k in ("bool", "count")}
    assert set(Weights.__struct_fields__) == weighed
    assert set(Allowances.__struct_fields__) == {n for n, k in CHECKS.items() if k == "count"}
    assert set(ChecksIn.__struct_fields__) == set(CHECKS)


def test_a_site_sets_its_own_weights_allowances_and_cutoffs() -> None:
    settings = parse_risk_settings(
        {
            "weights": {"is_new_ip": 30, "device_count": 7},
            "allowances": {"device_count": 1},
            "cutoffs": {"medium": 10, "high": 30, "maximum": 40},
        }
    )
    assert account_sharing({"is_new_ip": True}, settings) == Risk(30, "high")
    assert account_sharing({"device_count": 3}, settings) == Risk(14, "medium")
    assert account_sharing({"is_new_ip": True, "device_count": 3}, settings).level == "maximum"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"weights": {"foo": 1}}, "risk.weights.foo: unknown check 'foo'"),
        ({"weights": {"ip_country": 1}}, "risk.weights.ip_country: check 'ip_country' has no"),
        ({"allowances": {"is_new_ip": 1}}, "risk.allowances.is_new_ip: check 'is_new_ip' has no"),
        ({"weights": {"is_new_ip": -1}}, "risk.weights.is_new_ip: Expected `int` >= 0"),
        ({"weights": {"is_new_ip": 1.5}}, "risk.weights.is_new_ip: Expected `int`, got `float`"),
        ({"cutoffs": {"high": 10}}, "risk.cutoffs: medium < high < maximum must hold"),
        ({"cutoffs": {"medium": 50}}, "risk.cutoffs: medium < high < maximum must hold"),
        ({"cutoffs": {"maximum": 0}}, "risk.cutoffs.maximum: Expected `int` >= 1"),
        ({"extra": {}}, "risk: Object contains unknown field `extra`"),
    ],
)
def test_bad_risk_settings_are_refused_naming_the_path(raw: Any, message: str) -> None:
    assert refused({"risk": raw}).startswith(message)


def test_unordered_cutoffs_are_refused_however_the_settings_are_made() -> None:
    with pytest.raises(InvalidPolicy, match="medium < high < maximum"):
        RiskSettings(cutoffs=Cutoffs(medium=60, high=50, maximum=80))


# --- hostile and malformed policies ------------------------------------------------------

GOOD = {"check": "is_new_ip"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "(policy): Expected `object`, got `array`"),
        ({"rules": {}}, "rules: Expected `array`, got `object`"),
        ({"extra": 1}, "(policy): Object contains unknown field `extra`"),
        ({"rules": [1]}, "rules[0]: Expected `object`, got `int`"),
        ({"rules": [{"when": GOOD, "verdict": "block"}]}, "rules[0]: Object missing required"),
        ({"rules": [rule("", GOOD, "block")]}, "rules[0].name: Expected `str` of length >= 1"),
        ({"rules": [rule("r", GOOD, "ban")]}, "rules[0].verdict: Invalid enum value 'ban'"),
        ({"rules": [{**rule("r", GOOD, "block"), "dry_run": "yes"}]}, "rules[0].dry_run: Exp"),
        ({"rules": [{**rule("r", GOOD, "block"), "x": 1}]}, "rules[0]: Object contains unknown"),
        (
            {"rules": [rule("r", None, "block")]},
            "rules[0].when: a condition is an object, not null",
        ),
        ({"rules": [rule("r", [], "block")]}, "rules[0].when: a condition is an object, not an"),
        ({"rules": [rule("r", {}, "block")]}, "rules[0].when: a condition has exactly one of"),
        (
            {"rules": [rule("r", {"check": "is_new_ip", "risk": "high"}, "block")]},
            "rules[0].when: a condition has exactly one of",
        ),
        ({"rules": [rule("r", {"check": 3}, "block")]}, "rules[0].when.check: Expected `str`"),
        (
            {
                "rules": [
                    rule("r", GOOD, "block"),
                    rule("s", {"all": [GOOD, {"check": "foo"}]}, "block"),
                ]
            },
            "rules[1].when.all[1].check: unknown check 'foo'",
        ),
        ({"rules": [rule("r", {"all": []}, "block")]}, "rules[0].when.all: Expected `array` of"),
        (
            {"rules": [rule("r", GOOD, "block"), rule("r", GOOD, "monitor")]},
            "rules[1].name: rule name 'r' is used twice in this list",
        ),
        (
            {"roles": {"admin": [rule("x", GOOD, "block"), rule("x", GOOD, "allow")]}},
            "roles[\"admin\"][1].name: rule name 'x' is used twice in this list",
        ),
        (
            {"rules": [rule("r", {"any": [GOOD] * (MAX_ITEMS + 1)}, "block")]},
            "rules[0].when.any: Expected `array` of length <= 16",
        ),
        ({"rules": [rule("r", {"not": GOOD, "x": 1}, "block")]}, "rules[0].when: Object contains"),
        (
            {"rules": [rule("r", {"not": 5}, "block")]},
            "rules[0].when.not: a condition is an object",
        ),
        ({"rules": [rule("r", {"risk": "huge"}, "block")]}, "rules[0].when.risk: Invalid enum"),
        (
            {"rules": [rule("r", {"check": "is_new_ip", "op": "=="}, "block")]},
            "rules[0].when: give both op and value",
        ),
        (
            {"rules": [rule("r", {"check": "is_new_ip", "value": True}, "block")]},
            "rules[0].when: give both op and value",
        ),
        (
            {"rules": [rule("r", {"check": "is_new_ip", "op": "~", "value": 1}, "block")]},
            "rules[0].when.op: Invalid enum value '~'",
        ),
        (
            {"rules": [rule("r", {"check": "is_new_ip", "op": ">", "value": True}, "block")]},
            "rules[0].when.op: check 'is_new_ip' takes ==, !=, not '>'",
        ),
        (
            {"rules": [rule("r", {"check": "ip_country", "op": "<", "value": "FR"}, "block")]},
            "rules[0].when.op: check 'ip_country' takes ==, !=, in, not in, not '<'",
        ),
        (
            {"rules": [rule("r", {"check": "device_count", "op": ">=", "value": "3"}, "block")]},
            "rules[0].when.value: Expected `int`, got `str`",
        ),
        (
            {"rules": [rule("r", {"check": "device_count", "op": ">=", "value": True}, "block")]},
            "rules[0].when.value: Expected `int`, got `bool`",
        ),
        (
            {"rules": [rule("r", {"check": "device_count", "op": ">=", "value": -1}, "block")]},
            "rules[0].when.value: Expected `int` >= 0",
        ),
        (
            {"rules": [rule("r", {"check": "is_new_ip", "op": "==", "value": 1}, "block")]},
            "rules[0].when.value: Expected `bool`, got `int`",
        ),
        (
            {"rules": [rule("r", {"check": "ip_country", "op": "==", "value": "fr"}, "block")]},
            "rules[0].when.value: Expected `str` matching regex '^[A-Z]{2}$'",
        ),
        (
            {"rules": [rule("r", {"check": "ip_country", "op": "in", "value": "FR"}, "block")]},
            "rules[0].when.value: Expected `array`, got `str`",
        ),
        (
            {"rules": [rule("r", {"check": "ip_country", "op": "in", "value": []}, "block")]},
            "rules[0].when.value: Expected `array` of length >= 1",
        ),
        (
            {
                "rules": [
                    rule("r", {"check": "ip_country", "op": "in", "value": ["FR", 1]}, "block")
                ]
            },
            "rules[0].when.value[1]: Expected `str`, got `int`",
        ),
        ({"orgs": {"acme": {}}}, 'orgs["acme"]: Expected `array`, got `object`'),
        ({"roles": {" ": []}}, 'roles[" "]: role must be printable text'),
        (
            {"roles": {"admin": [rule("r", {"check": "nope"}, "block")]}},
            "roles[\"admin\"][0].when.check: unknown check 'nope'",
        ),
    ],
)
def test_malformed_policies_are_refused_naming_the_path(raw: Any, message: str) -> None:
    assert refused(raw).startswith(message)


def nested(depth: int) -> Any:
    condition: Any = GOOD
    for _ in range(depth - 1):
        condition = {"not": condition}
    return condition


def test_conditions_nest_to_a_bounded_depth() -> None:
    parse_policy({"rules": [rule("r", nested(MAX_DEPTH), "block")]})
    message = refused({"rules": [rule("r", nested(MAX_DEPTH + 1), "block")]})
    assert (
        message
        == "rules[0].when"
        + ".not" * (MAX_DEPTH - 1)
        + f": conditions nest at most {MAX_DEPTH} deep"
    )
    # Far deeper: refused at the bound, without walking the rest.
    assert "nest at most" in refused({"rules": [rule("r", nested(50_000), "block")]})


def test_ten_thousand_rules_are_refused_and_the_bound_is_accepted() -> None:
    many = [rule(f"r{i}", GOOD, "monitor") for i in range(10_000)]
    assert refused({"rules": many}).startswith(f"rules: Expected `array` of length <= {MAX_RULES}")
    assert len(parse_policy({"rules": many[:MAX_RULES]}).rules) == MAX_RULES
    message = refused({"orgs": {f"o{i}": [] for i in range(10_000)}})
    assert message.startswith("orgs: Expected `object` of length <= 100")


def test_a_policy_round_trips_through_its_json() -> None:
    again = parse_policy(msgspec.json.decode(encode_policy(ISSUE_EXAMPLES)))
    assert again == ISSUE_EXAMPLES
    assert parse_policy({}) == Policy()


# --- properties --------------------------------------------------------------------------

check_values = st.fixed_dictionaries(
    {},
    optional={
        "concurrent_sessions": st.booleans(),
        "device_count": st.integers(0, 8),
        "computer_device_count": st.integers(0, 4),
        "tablet_device_count": st.integers(0, 4),
        "mobile_device_count": st.integers(0, 4),
        "is_new_device": st.booleans(),
        "is_new_ip": st.booleans(),
        "ip_country": st.sampled_from([None, "FR", "DE", "US"]),
        "impossible_travel": st.booleans(),
    },
)

leaves = st.one_of(
    st.sampled_from(list(CHECKS)).map(lambda n: {"check": n}),
    st.sampled_from(LEVELS).map(lambda level: {"risk": level}),
    st.builds(
        lambda op, v: {"check": "device_count", "op": op, "value": v},
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.integers(0, 8),
    ),
    st.builds(
        lambda op, v: {"check": "ip_country", "op": op, "value": v},
        st.sampled_from(["in", "not in"]),
        st.lists(st.sampled_from(["FR", "DE", "US"]), min_size=1, max_size=3),
    ),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
).filter(lambda c: _depth(c) <= MAX_DEPTH)


def _depth(c: Any) -> int:
    if "not" in c:
        return 1 + _depth(c["not"])
    inner = c.get("all") or c.get("any")
    return 1 + max(map(_depth, inner)) if inner else 1


raw_rules = st.lists(
    st.builds(rule, st.just("r"), conditions, st.sampled_from(VERDICTS), st.booleans()),
    max_size=8,
).map(lambda rs: [{**r, "name": f"r{i}"} for i, r in enumerate(rs)])


@hypothesis.given(raw_rules, check_values)
def test_evaluation_is_deterministic_and_gives_the_first_live_match(
    rules: list[dict[str, Any]], checks: dict[str, Any]
) -> None:
    policy = parse_policy({"rules": rules})
    risk = account_sharing(checks, policy.risk)
    found = evaluate(policy, checks, risk)
    assert evaluate(policy, dict(reversed(list(checks.items()))), risk) == found
    live = [r for r in policy.rules if not r.dry_run and holds(r.when, checks, risk)]
    first: Rule | None = live[0] if live else None
    assert found.rule == first
    assert found.verdict == (first.verdict if first else "allow")
    stop = policy.rules.index(first) if first else len(policy.rules)
    assert found.dry_run_matches == tuple(
        (r, r.verdict) for r in policy.rules[:stop] if r.dry_run and holds(r.when, checks, risk)
    )


@hypothesis.given(raw_rules, check_values, st.data())
def test_dry_run_rules_never_change_the_verdict(
    rules: list[dict[str, Any]], checks: dict[str, Any], data: st.DataObject
) -> None:
    policy = parse_policy({"rules": rules})
    risk = account_sharing(checks, policy.risk)
    found = evaluate(policy, checks, risk)
    without_dry = Policy(rules=tuple(r for r in policy.rules if not r.dry_run))
    assert evaluate(without_dry, checks, risk).verdict == found.verdict
    assert evaluate(without_dry, checks, risk).rule == found.rule
    # Adding dry-run rules anywhere changes nothing but the report.
    extra = data.draw(
        st.lists(
            st.builds(rule, st.just("d"), conditions, st.sampled_from(VERDICTS), st.just(True)),
            max_size=3,
        ).map(lambda rs: [{**r, "name": f"d{i}"} for i, r in enumerate(rs)])  # names unique
    )
    at = data.draw(st.integers(0, len(rules)))
    more = parse_policy({"rules": rules[:at] + extra + rules[at:]})
    again = evaluate(more, checks, risk)
    assert (again.rule, again.verdict) == (found.rule, found.verdict)


@hypothesis.given(check_values)
def test_the_risk_level_rises_with_the_score(checks: dict[str, Any]) -> None:
    risk = account_sharing(checks, RiskSettings())
    more = account_sharing({**checks, "impossible_travel": True}, RiskSettings())
    assert more.score >= risk.score
    assert LEVELS.index(more.level) >= LEVELS.index(risk.level)


@hypothesis.given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "rules",
                        "when",
                        "check",
                        "all",
                        "not",
                        "op",
                        "value",
                        "name",
                        "verdict",
                        "risk",
                        "x",
                    ]
                ),
                inner,
                max_size=3,
            )
        ),
        max_leaves=20,
    )
)
def test_anything_is_a_policy_or_an_invalid_policy(raw: Any) -> None:
    try:
        parse_policy(raw)
    except InvalidPolicy as exc:
        assert str(exc)


def test_a_policy_names_exactly_the_checks_computed_for_a_session() -> None:
    assert tuple(CHECKS) == session_checks.CHECKS
    assert set(ChecksIn.__struct_fields__) == set(session_checks.CHECKS)
    rule = {"name": "many", "when": {"check": "device_count_window", "op": ">=", "value": 6},
            "verdict": "challenge"}  # fmt: skip
    policy = parse_policy({"rules": [rule]})
    assert policy.rules[0].name == "many"
