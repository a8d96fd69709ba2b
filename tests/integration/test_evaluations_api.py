"""`GET /api/v1/users/{user}/evaluations` against a real server: records written to its
database (as the node's writer would) come back newest first, a page at a time, to their
own site only; bad queries and keys get clear errors."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest

from seatguard.db import SqliteDatabase
from seatguard.isotime import iso
from seatguard.signals.evaluations import DryRunOut, EvaluationRecord, RiskOut
from tests.helpers import Server
from tests.integration.api_client import api

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0


def record(site: str, user: str, at: float, n: int = 0) -> EvaluationRecord:
    return EvaluationRecord(
        site=site, user=user, session=f"s{n}", device="dk_" + "a" * 43, ip="203.0.113.0",
        at=at, trigger="change" if n % 2 else "hello",
        checks={"concurrent_sessions": True, "device_count": 2, "ip_country": "FR",
                "impossible_travel": None},
        geo="on", risk=RiskOut(45, "medium"), rule="two-at-once" if n % 3 else None,
        verdict="block" if n % 3 else "allow", applied=n % 2 == 0,
        dry_run=[DryRunOut("shadow", "suspend")] if n % 3 == 2 else [],
    )  # fmt: skip


async def seed(server: Server, records: list[EvaluationRecord]) -> None:
    db = await SqliteDatabase.open(str(server.db))
    try:
        await db.add_evaluations(records)
    finally:
        await db.close()


def out(r: EvaluationRecord) -> dict[str, Any]:
    """A record as the API answers it: without its site and user, with `at_iso`."""
    body: dict[str, Any] = msgspec.to_builtins(r)
    del body["site"], body["user"]
    return {**body, "at_iso": iso(r.at)}


def path(user: str) -> str:
    return f"/users/{quote(user, safe='')}/evaluations"


async def test_a_users_evaluations_come_newest_first_a_page_at_a_time(server: Server) -> None:
    site = server.create_site("--name", "Evaluated", "--origin", "*")
    other = server.create_site("--name", "Elsewhere", "--origin", "*")
    key, u = str(site["key"]), "u-" + secrets.token_hex(4)
    # Five records, two of them at one instant; another user's, and another site's.
    ats = [NOW, NOW + 1, NOW + 2, NOW + 2, NOW + 3]
    mine = [record(key, u, at, n) for n, at in enumerate(ats)]
    await seed(server, [*mine, record(key, "someone", NOW + 5), record(other["key"], u, NOW + 4)])
    newest = mine[::-1]
    async with api(server, site) as client:
        r = await client.get(path(u))
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"user": u, "evaluations": [out(x) for x in newest], "next_before": None}
        # Pages of two: the two records at NOW + 2 are not split.
        r = await client.get(path(u), params={"limit": 2})
        first = r.json()
        assert [e["at"] for e in first["evaluations"]] == [NOW + 3]
        assert first["next_before"] == NOW + 3
        r = await client.get(path(u), params={"limit": 2, "before": first["next_before"]})
        second = r.json()
        assert second["evaluations"] == [out(x) for x in newest[1:3]]
        r = await client.get(path(u), params={"limit": 2, "before": second["next_before"]})
        assert r.json() == {
            "user": u,
            "evaluations": [out(x) for x in newest[3:]],
            "next_before": None,
        }
        assert (await client.get(path(u), params={"before": NOW})).json()["evaluations"] == []
        # An unknown user has none.
        assert (await client.get(path("nobody"))).json() == {
            "user": "nobody", "evaluations": [], "next_before": None,
        }  # fmt: skip
    # Another site's key sees only its own site's record of a user of the same id.
    async with api(server, other) as theirs:
        listed = (await theirs.get(path(u))).json()["evaluations"]
        assert [e["at"] for e in listed] == [NOW + 4]


async def test_user_ids_with_slashes_and_unicode_reach_their_records(server: Server) -> None:
    site = server.create_site("--name", "Odd ids", "--origin", "*")
    users = ["a/b", "zoë/ü 🙂", "../x", "x" * 256]
    await seed(server, [record(str(site["key"]), u, NOW + n, n) for n, u in enumerate(users)])
    async with api(server, site) as client:
        for n, u in enumerate(users):
            r = await client.get(path(u))
            assert r.status_code == 200, (u, r.text)
            assert r.json()["user"] == u
            assert [e["at"] for e in r.json()["evaluations"]] == [NOW + n]
        assert (await client.get(path("a"))).json()["evaluations"] == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "Expected `int` >= 1 - at `$.limit`"),
        ({"limit": "501"}, "Expected `int` <= 500 - at `$.limit`"),
        ({"limit": "ten"}, "at `$.limit`"),
        ({"limit": "2.5"}, "at `$.limit`"),
        ({"before": "yesterday"}, "at `$.before`"),
        ({"before": "0"}, "Expected `float` > 0.0 - at `$.before`"),
        ({"before": "-5"}, "at `$.before`"),
        ({"before": "nan"}, "at `$.before`"),
        ({"before": "inf"}, "at `$.before`"),
        ({"before": "1e400"}, "at `$.before`"),
        ({"before": "null"}, "at `$.before`"),
        ({"before": ""}, "at `$.before`"),
    ],
)
async def test_a_bad_query_is_422_naming_the_parameter(
    server: Server, query: dict[str, str], message: str
) -> None:
    site = server.create_site("--name", "Queried", "--origin", "*")
    async with api(server, site) as client:
        r = await client.get(path("alice"), params=query)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert message in r.json()["detail"]


async def test_bad_user_ids_keys_and_methods_get_clear_errors(server: Server) -> None:
    site = server.create_site("--name", "Guarded", "--origin", "*")
    async with api(server, site) as client:
        for bad in ("%20", "x" * 257, "a%00b", "a%0Ab"):
            r = await client.get(f"/users/{bad}/evaluations")
            assert r.status_code == 422, (bad, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        assert (await client.delete(path("alice"))).status_code == 405
    url = f"{server.http}/api/v1{path('alice')}"
    async with httpx.AsyncClient() as plain:
        r = await plain.get(url)
        assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
        r = await plain.get(url, headers={"Authorization": "Bearer sk_" + "x" * 43})
        assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]
