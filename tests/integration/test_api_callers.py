"""The REST API as a caller meets it: messages that say what is allowed, the public key
told apart, timeouts off with 0 or null, whole overrides, changes in the audit trail."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Server, seatguard
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio


@pytest.fixture
def fresh_site(server: Server) -> dict[str, Any]:
    """A site of its own per test, so that changing its rules disturbs nobody else."""
    return server.create_site("--name", "Callers", "--origin", "*")


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "allowed"),
    [
        ("PATCH", "/site", {"mode": "seats"}, "mode", "concurrence, device-limit"),
        (
            "PATCH",
            "/site",
            {"policy": 3},
            "policy",
            "block-new, challenge, evict-idle, evict-oldest, monitor",
        ),
        ("PUT", "/overrides/org/acme", {"mode": "x"}, "mode", "concurrence, device-limit"),
        ("POST", "/site/secret", {"kind": "pk"}, "kind", "identity, secret_key, webhook"),
        ("GET", "/webhooks/deliveries?state=lost", None, "state", "pending, delivered, dead"),
        (
            "PUT",
            "/policies",
            {"rules": [{"name": "r", "when": {"risk": "high"}, "verdict": "ban"}]},
            "rules[0].verdict",
            "allow, block, challenge, monitor, revoke, suspend",
        ),
        (
            "PUT",
            "/policies",
            {"rules": [{"name": "r", "when": {"risk": "huge"}, "verdict": "block"}]},
            "rules[0].when.risk",
            "high, low, maximum, medium",
        ),
    ],
    ids=lambda v: str(v)[:20],
)
async def test_a_value_outside_a_fixed_set_is_answered_with_the_allowed_ones(
    server: Server,
    fresh_site: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    field: str,
    allowed: str,
) -> None:
    async with api(server, fresh_site) as client:
        r = await client.request(method, path, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert f"expected one of: {allowed}" in detail, detail
    assert field in detail, detail


async def test_the_public_site_key_as_bearer_is_told_the_secret_key_is_needed(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    hint = "the REST API takes the site's secret key (sk_...)"
    for key in (fresh_site["key"], "pk_" + secrets.token_urlsafe(18)):  # known or not
        async with api(server, {"secret": key}) as client:
            r = await client.get("/site")
        assert r.status_code == 401, r.text
        assert hint in r.json()["detail"]
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="seatguard", error="invalid_token"')
        assert hint in challenge
    async with api(server, {"secret": "sk_" + secrets.token_urlsafe(18)}) as client:
        r = await client.get("/site")
    assert (r.status_code, r.json()["detail"]) == (401, "unknown secret key")


async def test_a_timeout_of_zero_or_null_is_off_on_the_site(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    async with api(server, fresh_site) as client:
        for off in (0, None, 0.0):
            r = await client.patch("/site", json={"idle_timeout": 600, "absolute_timeout": 60})
            assert (r.json()["idle_timeout"], r.json()["absolute_timeout"]) == (600, 60)
            r = await client.patch("/site", json={"idle_timeout": off, "absolute_timeout": off})
            assert r.status_code == 200, r.text
            assert (r.json()["idle_timeout"], r.json()["absolute_timeout"]) == (None, None)
        for bad, words in ((-1, ">= 0"), (10**9, "<= 31622400"), ("0", "Expected `float | null`")):
            r = await client.patch("/site", json={"idle_timeout": bad})
            assert r.status_code == 422, r.text
            assert words in r.json()["detail"] and "idle_timeout" in r.json()["detail"]
    # The CLI says the same: 0 is off; below 0 is refused.
    key = str(fresh_site["key"])
    seatguard("site", "update", key, "--db", str(server.db), "--idle-timeout", "30")
    out = seatguard("site", "update", key, "--db", str(server.db), "--idle-timeout", "0")
    assert json.loads(out)["idle_timeout"] is None
    with pytest.raises(AssertionError, match="--idle-timeout"):
        seatguard("site", "update", key, "--db", str(server.db), "--idle-timeout", "-5")


async def test_an_override_timeout_of_zero_turns_the_sites_off_and_null_leaves_it(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    async with api(server, fresh_site) as client:
        await client.patch("/site", json={"idle_timeout": 600})
        r = await client.put("/overrides/user/ann", json={"idle_timeout": 0})
        assert r.status_code == 200, r.text
        assert r.json()["idle_timeout"] == 0
        r = await client.put("/overrides/user/bob", json={"limit": 2, "idle_timeout": None})
        assert r.json()["idle_timeout"] is None
        listed = {o["name"]: o for o in (await client.get("/overrides")).json()}
    assert (listed["ann"]["idle_timeout"], listed["bob"]["idle_timeout"]) == (0, None)


async def test_a_put_replaces_the_whole_override_and_an_empty_one_is_refused(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    async with api(server, fresh_site) as client:
        r = await client.put("/overrides/role/admin", json={"limit": 3, "policy": "evict-oldest"})
        assert r.status_code == 200, r.text
        r = await client.put("/overrides/role/admin", json={"limit": 4})
        assert (r.json()["limit"], r.json()["policy"]) == (4, None)  # policy no longer set
        for empty in ({}, {"mode": None, "limit": None}, None):
            r = await client.put("/overrides/role/admin", json=empty)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert "the override sets nothing" in r.json()["detail"]
            assert "DELETE" in r.json()["detail"]
        r = await client.put("/overrides/role/admin", json={"limit": 4, "colour": "red"})
        assert r.status_code == 422 and "colour" in r.json()["detail"]
        listed = [o for o in (await client.get("/overrides")).json() if o["name"] == "admin"]
    assert [(o["limit"], o["policy"]) for o in listed] == [(4, None)]  # refusals changed nothing


async def _changes(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    kinds = {"site_changed", "override_set", "override_removed", "policy_set"}
    records = (await client.get("/audit", params={"limit": 1000})).json()["records"]
    return [r for r in records if r["kind"] in kinds]


async def test_changes_to_rules_overrides_and_policies_are_audited_with_who_made_them(
    server: Server, fresh_site: dict[str, Any], tmp_path: Path
) -> None:
    other = server.create_site("--name", "Other", "--origin", "*")
    key, db = str(fresh_site["key"]), str(server.db)
    async with api(server, fresh_site) as client:
        await client.patch("/site", json={"limit": 3, "idle_timeout": 0})  # idle was off
        await client.patch("/site", json={"limit": 3})  # no change, no row
        await client.put("/overrides/user/ann", json={"limit": 2, "idle_timeout": 0})
        await client.put("/overrides/org/acme", json={"mode": "device-limit"})
        await client.delete("/overrides/org/acme")
        await client.put("/overrides/org/ghost", json={})  # refused: no row
        policy = {"rules": [{"name": "r", "when": {"risk": "high"}, "verdict": "block"}]}
        await client.put("/policies", json=policy)
        (tmp_path / "p.json").write_text(json.dumps(policy))
        seatguard("policies", "set", key, "--file", str(tmp_path / "p.json"), "--db", db)
        seatguard("site", "update", key, "--db", db, "--limit", "5", "--by", "ops-alice")
        found = await _changes(client)
        async with api(server, other) as theirs:
            assert await _changes(theirs) == []  # another site's trail has none of them
    api_by = {"by": "api", "key": "current"}
    assert [(r["kind"], r["user"], r["detail"]) for r in found] == [
        ("site_changed", "", {**api_by, "limit": 3}),
        ("override_set", "ann", {**api_by, "scope": "user", "name": "ann", "limit": 2,
                                 "idle_timeout": 0}),
        ("override_set", "", {**api_by, "scope": "org", "name": "acme", "mode": "device-limit"}),
        ("override_removed", "", {**api_by, "scope": "org", "name": "acme"}),
        ("policy_set", "", {**api_by, "rules": 1, "orgs": 0, "roles": 0,
                            "sha256": found[4]["detail"]["sha256"]}),
        ("policy_set", "", {"by": "cli", "rules": 1, "orgs": 0, "roles": 0,
                            "sha256": found[4]["detail"]["sha256"]}),
        ("site_changed", "", {"by": "ops-alice", "limit": 5}),
    ]  # fmt: skip
    assert len(found[4]["detail"]["sha256"]) == 64
    assert "OK" in seatguard("audit", "verify", "--db", db)
    with pytest.raises(AssertionError, match="--by"):
        seatguard("site", "update", key, "--db", db, "--limit", "2", "--by", " ")


async def test_a_change_made_with_the_replaced_secret_key_says_so(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    async with api(server, fresh_site) as client:
        r = await client.post("/site/secret", json={"overlap": 60})
        new = r.json()["secret"]
        await client.patch("/site", json={"limit": 7})  # the replaced key, in its overlap
    async with api(server, {"secret": new}) as client:
        found = await _changes(client)
    assert [r["detail"] for r in found] == [{"by": "api", "key": "replaced", "limit": 7}]


def _iso_of(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


async def test_every_timestamp_has_its_iso_8601_sibling(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    u = "u-" + secrets.token_hex(4)
    await Tab.open(server.ws, str(fresh_site["key"]), Browser(u))
    async with api(server, fresh_site) as client:
        session = (await client.get(f"/users/{u}/sessions")).json()["sessions"][0]
        suspension = (await client.post(f"/users/{u}/suspension", json={})).json()
        records = (await client.get("/audit", params={"user": u})).json()["records"]
        rotated = (await client.post("/site/secret", json={"overlap": 60})).json()
    stamped = [
        *((session, n) for n in ("started", "last_seen", "last_active")),
        (suspension, "since"),
        *((r, "at") for r in records),
        (rotated, "previous_valid_until"),
    ]
    for answer, name in stamped:
        assert answer[f"{name}_iso"] == _iso_of(answer[name]), (name, answer)
        assert answer[f"{name}_iso"].endswith("Z")
    assert records
