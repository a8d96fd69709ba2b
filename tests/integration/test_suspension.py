"""Suspending a user through the REST API, against a real server with real tabs."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import SEATGUARD, Server, scaled, seatguard, start_server
from tests.integration.api_client import api, identity_token
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio


def user() -> str:
    return "u-" + secrets.token_hex(4)


@pytest.fixture
def fresh_site(server: Server) -> dict[str, Any]:
    return server.create_site("--name", "Suspensions", "--origin", "*")


async def hello_code(server: Server, site: str, browser: Browser, **extra: Any) -> int:
    """0 if a hello is welcomed, else the close code it gets."""
    code, frame = await Tab.try_hello(server.ws, site, browser, **extra)
    if code == 0:
        return 0
    assert frame["t"] == "error" and frame["code"] == code, frame
    return code


async def test_a_suspension_ends_live_tabs_refuses_hellos_and_is_lifted(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    u, key = user(), str(fresh_site["key"])
    first, _ = await Tab.open(server.ws, key, Browser(u))
    second, _ = await Tab.open(server.ws, key, Browser(u))
    bystander, _ = await Tab.open(server.ws, key, Browser(user()))
    async with api(server, fresh_site) as client:
        r = await client.post(f"/users/{u}/suspension", json={"reason": "shared the account"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["user"], made["reason"], made["by"]) == (u, "shared the account", "api")
        assert abs(made["since"] - time.time()) < 60
        for tab in (first, second):
            code, reason, frames = await tab.closed()
            assert (code, reason) == (4015, "user suspended")
            assert frames[0] == {"t": "suspended", "reason": "suspended"}
            assert frames[1]["t"] == "error" and frames[1]["code"] == 4015
        await bystander.expect_nothing()
        # Suspending again answers the suspension in force.
        again = await client.post(f"/users/{u}/suspension", json={"reason": "other"})
        assert (again.status_code, again.json()) == (200, made)
        assert (await client.get(f"/users/{u}/suspension")).json() == made
        listed = (await client.get(f"/users/{u}/sessions")).json()
        assert (listed["sessions"], listed["suspended"]) == ([], made)
        assert await hello_code(server, key, Browser(u), user=u) == 4015
        r = await client.delete(f"/users/{u}/suspension")
        assert (r.status_code, r.content) == (204, b"")
        r = await client.delete(f"/users/{u}/suspension")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert (await client.get(f"/users/{u}/suspension")).status_code == 404
        assert (await client.get(f"/users/{u}/sessions")).json()["suspended"] is None
        assert await hello_code(server, key, Browser(u), user=u) == 0
        rows = (await client.get("/audit", params={"user": u})).json()["records"]
    kinds = [(r["kind"], r["session"], r["reason"]) for r in rows]
    assert ("suspended", None, None) in kinds
    assert ("unsuspended", None, None) in kinds
    ended = {s for kind, s, reason in kinds if kind == "suspended" and reason == "suspended"}
    assert ended == {first.browser.session, second.browser.session}
    assert ("refused", None, "suspended") not in kinds  # refusals name their session
    assert any(k == "refused" and reason == "suspended" for k, _, reason in kinds)


async def test_another_sites_key_cannot_touch_a_users_suspension(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    other = server.create_site("--name", "Other", "--origin", "*")
    u, key = user(), str(fresh_site["key"])
    tab, _ = await Tab.open(server.ws, key, Browser(u))
    async with api(server, other) as theirs, api(server, fresh_site) as ours:
        # The same user id on the other site is another account.
        assert (await theirs.post(f"/users/{u}/suspension", json={})).status_code == 201
        await tab.expect_nothing()
        assert (await ours.get(f"/users/{u}/suspension")).status_code == 404
        assert (await ours.post(f"/users/{u}/suspension", json={})).status_code == 201
        assert (await tab.closed())[0] == 4015
        assert (await theirs.delete(f"/users/{u}/suspension")).status_code == 204
        assert (await ours.get(f"/users/{u}/suspension")).status_code == 200  # still ours
        bad = api(server, {"secret": "sk_" + secrets.token_hex(16)})
        async with bad:
            r = await bad.delete(f"/users/{u}/suspension")
            assert r.status_code == 401
        assert (await ours.get(f"/users/{u}/suspension")).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"reason": "' + b"x" * 141 + b'"}', 422, "length <= 140"),
        (b'{"reason": "a\\u0000b"}', 422, "reason"),
        (b'{"reason": "line\\nbreak"}', 422, "reason"),
        (b'{"reason": 7}', 422, "Expected `str`"),
        (b'{"reason": "x", "by": "me"}', 422, "unknown field `by`"),
        (b'{"reason": ', 400, "truncated"),
        (b"[]", 422, "Expected `object`"),
        (b'{"reason": "' + b"x" * 20000 + b'"}', 413, "16 KiB"),
    ],
)
async def test_a_malformed_suspension_is_refused_and_suspends_nobody(
    server: Server, fresh_site: dict[str, Any], body: bytes, status: int, words: str
) -> None:
    u = user()
    async with api(server, fresh_site) as client:
        r = await client.post(
            f"/users/{u}/suspension", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]
        assert (await client.get(f"/users/{u}/suspension")).status_code == 404
        r = await client.post("/users/%20%20/suspension", json={})
        assert r.status_code == 422


async def test_suspending_twice_at_once_makes_one_suspension(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    u = user()
    async with api(server, fresh_site) as client:
        answers = await asyncio.gather(
            *(client.post(f"/users/{u}/suspension", json={"reason": f"r{n}"}) for n in range(6))
        )
        assert sorted(r.status_code for r in answers) == [200] * 5 + [201]
        assert len({r.text for r in answers}) == 1
        lifts = await asyncio.gather(*(client.delete(f"/users/{u}/suspension") for _ in range(4)))
        assert sorted(r.status_code for r in lifts) == [204, 404, 404, 404]


async def test_only_an_identity_token_issued_after_the_suspension_lifts_it(
    server: Server, fresh_site: dict[str, Any]
) -> None:
    u, key = user(), str(fresh_site["key"])
    old = identity_token(fresh_site, u, iat=int(time.time()) - 60)
    assert await hello_code(server, key, Browser(u), token=old) == 0
    async with api(server, fresh_site) as client:
        since = (await client.post(f"/users/{u}/suspension", json={})).json()["since"]
        assert await hello_code(server, key, Browser(u), token=old) == 4015
        assert await hello_code(server, key, Browser(u), user=u) == 4015
        # Its own second cannot show it came after; the next second (within the leeway
        # for clocks ahead) can.
        same = identity_token(fresh_site, u, iat=int(since))
        assert await hello_code(server, key, Browser(u), token=same) == 4015
        fresh = identity_token(fresh_site, u, iat=int(since) + 1)
        assert await hello_code(server, key, Browser(u), token=fresh) == 0
        assert (await client.get(f"/users/{u}/suspension")).status_code == 404
        rows = (await client.get("/audit", params={"user": u})).json()["records"]
    [lift] = [r for r in rows if r["kind"] == "unsuspended"]
    assert (lift["reason"], lift["detail"]["by"]) == ("reauthenticated", "reauthentication")


@pytest.fixture
def restartable(tmp_path: Path, server_env: dict[str, str]) -> Iterator[list[Server]]:
    servers = [start_server(tmp_path, "serve", server_env)]
    yield servers
    servers[-1].stop()


async def test_a_suspension_outlives_a_restart(
    restartable: list[Server], tmp_path: Path, server_env: dict[str, str]
) -> None:
    server = restartable[-1]
    site = server.create_site("--name", "Restart", "--origin", "*")
    u = user()
    async with api(server, site) as client:
        assert (await client.post(f"/users/{u}/suspension", json={})).status_code == 201
    server.stop()
    restartable.append(start_server(tmp_path, "serve", server_env))
    server = restartable[-1]  # presence is gone, the suspension is not
    assert await hello_code(server, site["key"], Browser(u), user=u) == 4015


# --- the CLI ------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEATGUARD, "user", *args], capture_output=True, text=True, timeout=scaled(30)
    )


async def eventually_code(server: Server, site: str, u: str, code: int) -> None:
    """Hellos get `code` within the site cache's lifetime (the CLI cannot reach this
    server's in-memory presence: its node reads the database again by then)."""
    with anyio.fail_after(scaled(10)):
        while True:
            if await hello_code(server, site, Browser(u), user=u) == code:
                return
            await anyio.sleep(0.2)


async def test_the_cli_suspends_shows_and_lifts(server: Server, fresh_site: dict[str, Any]) -> None:
    u, key, db = user(), str(fresh_site["key"]), str(server.db)
    made = json.loads(seatguard("user", "suspend", key, u, "--reason", "chargeback", "--db", db))
    assert (made["user"], made["reason"], made["by"], made["created"]) == (
        u,
        "chargeback",
        "cli",
        True,
    )
    again = json.loads(seatguard("user", "suspend", key, u, "--db", db))
    assert (again["since"], again["created"]) == (made["since"], False)
    shown = json.loads(seatguard("user", "show", key, u, "--db", db))
    assert shown["reason"] == "chargeback"
    await eventually_code(server, key, u, 4015)
    async with api(server, fresh_site) as client:  # the API sees what the CLI wrote
        assert (await client.get(f"/users/{u}/suspension")).json()["by"] == "cli"
        rows = (await client.get("/audit", params={"user": u})).json()["records"]
    [row] = [r for r in rows if r["kind"] == "suspended" and r["session"] is None]
    assert row["detail"]["reason_text"] == "chargeback"
    seatguard("user", "unsuspend", key, u, "--by", "ops desk", "--db", db)
    await eventually_code(server, key, u, 0)
    done = cli("unsuspend", key, u, "--db", db)
    assert done.returncode == 1 and "is not suspended" in done.stderr
    done = cli("show", key, u, "--db", db)
    assert done.returncode == 1 and "is not suspended" in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["suspend", "pk_nope", "alice"], "no site with key 'pk_nope'"),
        (["suspend", "{site}", "  "], "a user id is printable text"),
        (["suspend", "{site}", "alice", "--reason", "x" * 141], "at most 140 characters"),
        (["suspend", "{site}", "alice", "--reason", "a\x01b"], "no control characters"),
        (["suspend", "{site}", "alice", "--by", " "], "--by"),
    ],
)
def test_the_cli_refuses_bad_input_and_suspends_nobody(
    server: Server, fresh_site: dict[str, Any], args: list[str], words: str
) -> None:
    key, db = str(fresh_site["key"]), str(server.db)
    done = cli(*(a.replace("{site}", key) for a in args), "--db", db)
    assert done.returncode != 0 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert cli("show", key, "alice", "--db", db).returncode == 1
