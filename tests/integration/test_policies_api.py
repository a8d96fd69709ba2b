"""Policies through the REST API of a real server: round trip, another site's key, malformed
and oversized bodies, unknown checks, and the dry evaluation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import Server
from tests.integration.api_client import api

pytestmark = pytest.mark.anyio

POLICY = {
    "rules": [
        {
            "name": "shared",
            "when": {"all": [{"check": "concurrent_sessions"}, {"risk": "medium"}]},
            "verdict": "challenge",
        },
        {"name": "travel", "when": {"check": "impossible_travel"}, "verdict": "suspend"},
        {"name": "try", "when": {"check": "is_new_ip"}, "verdict": "block", "dry_run": True},
        {"name": "risky", "when": {"risk": "high"}, "verdict": "block"},
    ],
    "roles": {"support": []},
}


@pytest.fixture
def fresh_site(server: Server) -> dict[str, Any]:
    return server.create_site("--name", "Policies", "--origin", "*")


async def test_a_policy_round_trips_and_stays_with_its_site(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    other = server.create_site("--name", "Other", "--origin", "*")
    async with api(server, fresh_site) as client, api(server, other) as other_client:
        empty = (await client.get("/policies")).json()
        assert (empty["rules"], empty["orgs"], empty["roles"]) == ([], {}, {})
        assert empty["risk"]["cutoffs"] == {"medium": 20, "high": 50, "maximum": 80}
        r = await client.put("/policies", json=POLICY)
        assert r.status_code == 200, r.text
        stored = r.json()
        assert stored["rules"][0]["dry_run"] is False  # every setting written out
        assert stored["risk"] == empty["risk"]
        assert (await client.get("/policies")).json() == stored
        assert (await client.put("/policies", json=stored)).json() == stored
        # Another site's key reads and writes its own policy, never this one.
        assert (await other_client.get("/policies")).json() == empty
        assert (await other_client.put("/policies", json={})).status_code == 200
        assert (await client.get("/policies")).json() == stored
        found = await other_client.post("/policies/evaluate", json={"checks": {"is_new_ip": True}})
        assert found.json()["verdict"] == "allow"  # the other site's (empty) policy


async def test_policies_need_a_valid_secret_key(server: Server, fresh_site: dict[str, Any]) -> None:
    async with api(server, {"secret": "sk_not_a_key"}) as client:
        for method, path in (
            ("GET", "/policies"),
            ("PUT", "/policies"),
            ("POST", "/policies/evaluate"),
        ):
            r = await client.request(method, path, json={})
            assert r.status_code == 401, (method, path)
            assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{", 400, "Input data was truncated"),
        (b"[]", 422, "(policy): Expected `object`, got `array`"),
        (
            json.dumps(
                {"rules": [{"name": "x", "when": {"all": [{"check": "foo"}]}, "verdict": "block"}]}
            ).encode(),
            422,
            "rules[0].when.all[0].check: unknown check 'foo'",
        ),
        (
            json.dumps(
                {
                    "rules": [
                        {
                            "name": "x",
                            "when": {"check": "device_count", "op": ">=", "value": "3"},
                            "verdict": "block",
                        }
                    ]
                }
            ).encode(),
            422,
            "rules[0].when.value: Expected `int`, got `str`",
        ),
        (
            json.dumps({"risk": {"cutoffs": {"medium": 90}}}).encode(),
            422,
            "risk.cutoffs: medium < high < maximum must hold, not 90, 50, 80",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 413, "request bodies are limited to 64 KiB"),
        (b"[" * 20_000 + b"]" * 20_000, 400, "JSON nested too deeply"),
    ],
)
async def test_bad_policies_are_refused_with_a_clear_error_and_nothing_changes(
    server: Server, fresh_site: dict[str, Any], body: bytes, status: int, detail: str
) -> None:
    async with api(server, fresh_site) as client:
        await client.put("/policies", json=POLICY)
        before = (await client.get("/policies")).json()
        r = await client.put(
            "/policies", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert detail in r.json()["detail"]
        assert (await client.get("/policies")).json() == before


async def test_ten_thousand_rules_are_too_large(server: Server, fresh_site: dict[str, Any]) -> None:
    rule = {"name": "r", "when": {"check": "is_new_ip"}, "verdict": "monitor"}
    async with api(server, fresh_site) as client:
        r = await client.put("/policies", json={"rules": [rule] * 10_000})
        assert r.status_code == 413
        r = await client.put("/policies", json={"rules": [rule] * 101})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("rules: Expected `array` of length <= 100")


async def test_evaluation_is_dry_and_reports_rule_risk_and_dry_runs(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    async with api(server, fresh_site) as client:
        await client.put("/policies", json=POLICY)
        checks = {"concurrent_sessions": True, "is_new_ip": True}
        r = await client.post("/policies/evaluate", json={"checks": checks})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "verdict": "challenge",
            "rule": "shared",
            "dry_run": [],
            "risk": {"score": 45, "level": "medium"},
        }
        r = await client.post(
            "/policies/evaluate",
            json={"checks": {"is_new_ip": True, "impossible_travel": True, "ip_country": "FR"}},
        )
        assert r.json() == {
            "verdict": "suspend",
            "rule": "travel",
            "dry_run": [],
            "risk": {"score": 65, "level": "high"},
        }
        r = await client.post(
            "/policies/evaluate", json={"checks": {"is_new_ip": True, "computer_device_count": 5}}
        )
        assert (r.json()["verdict"], r.json()["rule"]) == ("block", "risky")
        assert r.json()["dry_run"] == [{"rule": "try", "verdict": "block"}]
        # The support role's list is empty: allowed, whatever the checks.
        r = await client.post("/policies/evaluate", json={"checks": checks, "role": "support"})
        assert (r.json()["verdict"], r.json()["rule"]) == ("allow", None)
        # A policy given in the body is evaluated instead of the site's, and not stored.
        trial = {"rules": [{"name": "all", "when": {"risk": "low"}, "verdict": "revoke"}]}
        r = await client.post("/policies/evaluate", json={"checks": {}, "policy": trial})
        assert (r.json()["verdict"], r.json()["rule"]) == ("revoke", "all")
        assert (await client.get("/policies")).json()["rules"][0]["name"] == "shared"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "Object missing required field `checks`"),
        ({"checks": {"foo": True}}, "Object contains unknown field `foo` - at `$.checks`"),
        ({"checks": {"device_count": -1}}, "Expected `int` >= 0 - at `$.checks.device_count`"),
        ({"checks": {"ip_country": "France"}}, "at `$.checks.ip_country`"),
        ({"checks": {}, "role": ""}, "at `$.role`"),
        (
            {
                "checks": {},
                "policy": {"rules": [{"name": "x", "when": {"check": "bar"}, "verdict": "block"}]},
            },
            "policy.rules[0].when.check: unknown check 'bar'",
        ),
        ({"checks": {}, "policy": None}, "policy: Expected `object`, got `null`"),
    ],
)
async def test_bad_evaluation_requests_are_refused(
    server: Server, fresh_site: dict[str, Any], body: dict[str, Any], detail: str
) -> None:
    async with api(server, fresh_site) as client:
        r = await client.post("/policies/evaluate", json=body)
        assert r.status_code == 422, r.text
        assert detail in r.json()["detail"]
