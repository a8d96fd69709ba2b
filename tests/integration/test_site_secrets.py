"""The sites' secrets against a real server: kept neither in the clear nor readable by
others at rest, rotated with an overlap, never shown again after they were made."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from seatguard.db import sqlite as lite
from seatguard.db.rows import SECRETS_SCHEMA
from seatguard.webhooks import WebhookVerificationError, verify
from tests.helpers import SEATGUARD, Server, scaled, seatguard, start_server
from tests.integration.api_client import api, identity_token
from tests.integration.client import Browser, Tab, ident
from tests.integration.test_records import Receiver
from tests.integration.test_revocation_records import hello_code

pytestmark = pytest.mark.anyio

SERVER_ENV = {"SEATGUARD_ALLOW_PRIVATE_URLS": "1"}
"""The module's server may post webhooks to its receivers, on loopback."""

SECRET = re.compile(r"\b(?:sk|ik)_[A-Za-z0-9_-]{40,}|whsec_[A-Za-z0-9+/=]{40,}")
"""A secret of any kind, in the clear."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def rotate(server: Server, with_key: str, **body: Any) -> httpx.Response:
    """POST /site/secret authenticated with `with_key`."""
    async with api(server, {"secret": with_key}) as client:
        return await client.post("/site/secret", json=body)


async def site_status(server: Server, secret: str) -> int:
    async with api(server, {"secret": secret}) as client:
        return (await client.get("/site")).status_code


# Files.


async def test_the_database_and_key_files_are_the_owners_alone(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    home = tmp_path / "var" / "lib" / "seatguard"  # made by the server
    s = start_server(tmp_path, "serve", server_env, db=home / "seatguard.db")
    try:
        site = s.create_site("--name", "Files", "--origin", "*")
        await Tab.open(s.ws, str(site["key"]), Browser("u1"))  # the write-ahead log fills
        files = ["seatguard.db", "seatguard.db-wal", "seatguard.db-shm"]
        files += ["seatguard.db.audit-key", "seatguard.db.secrets-key"]
        assert {name: oct(mode(home / name)) for name in files} == dict.fromkeys(files, "0o600")
        dirs = [home, home.parent, home.parent.parent]
        assert [oct(mode(d)) for d in dirs] == ["0o700"] * 3
    finally:
        s.stop()


async def test_no_secret_is_kept_or_logged_in_the_clear(server: Server, tmp_path: Path) -> None:
    receiver = Receiver()
    async with receiver.running():
        site = server.create_site(
            "--name", "Kept", "--origin", "*", "--limit", "1", "--webhook-url", receiver.url
        )
        shown = [str(site[k]) for k in ("secret", "identity_secret", "webhook_secret")]
        assert [SECRET.fullmatch(s) is not None for s in shown] == [True] * 3
        u = "u-kept"
        await Tab.open(server.ws, str(site["key"]), Browser(u), token=identity_token(site, u))
        await Tab.open(server.ws, str(site["key"]), Browser(u))  # blocked: a webhook
        rotated = (await rotate(server, shown[0], overlap=60)).json()["secret"]
        await receiver.wait(1)
    for path in (server.db, Path(f"{server.db}-wal"), server.log):
        raw = path.read_bytes().decode("latin-1")
        assert not [s for s in [*shown, rotated] if s in raw], path
    rows = sqlite3.connect(server.db).execute("SELECT * FROM sites WHERE key = ?", (site["key"],))
    assert not SECRET.search(json.dumps(rows.fetchall()))


# The secret key.


async def test_the_secret_key_rotates_with_an_overlap_and_the_old_one_then_stops(
    server: Server,
) -> None:
    site = server.create_site("--name", "Rotate", "--origin", "*")
    first = str(site["secret"])
    r = await rotate(server, first, overlap=60)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    second = body["secret"]
    assert (body["kind"], second.startswith("sk_"), second != first) == ("secret_key", True, True)
    assert time.time() + 55 < body["previous_valid_until"] <= time.time() + 60
    assert [await site_status(server, s) for s in (first, second)] == [200, 200]
    # The replaced key may still call the API meanwhile, but not rotate: a thief holding it
    # must not get the new one.
    stolen = await rotate(server, first, overlap=0)
    assert stolen.status_code == 403 and "current secret key" in stolen.json()["detail"]
    # The new key never appears again: not in the site, not in a later answer.
    async with api(server, {"secret": second}) as client:
        assert second not in (await client.get("/site")).text
    # An overlap of 1 s: the replaced key works, then stops.
    third = (await rotate(server, second, overlap=1)).json()["secret"]
    assert await site_status(server, second) == 200
    await anyio.sleep(1.2)
    assert [await site_status(server, s) for s in (first, second, third)] == [401, 401, 200]
    # An overlap of 0 ends it at once.
    fourth = (await rotate(server, third, overlap=0)).json()["secret"]
    assert [await site_status(server, s) for s in (third, fourth)] == [401, 200]
    assert not [s for s in (first, second, third, fourth) if s in server.log.read_text()]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"overlap": -1}, "Expected `int` >= 0 - at `$.overlap`"),
        ({"overlap": 604801}, "Expected `int` <= 604800 - at `$.overlap`"),
        ({"overlap": 1.5}, "at `$.overlap`"),
        ({"kind": "root"}, "at `$.kind`"),
        ({"secret": "sk_mine"}, "unknown field `secret`"),
        ({"kind": "webhook"}, "no webhook secret"),
    ],
    ids=lambda v: str(v)[:20],
)
async def test_bad_rotations_are_refused_and_change_nothing(
    server: Server, body: dict[str, Any], detail: str
) -> None:
    site = server.create_site("--name", "Bad rotation", "--origin", "*")
    r = await rotate(server, str(site["secret"]), **body)
    assert r.status_code in (409, 422) and detail in r.json()["detail"], r.text
    assert await site_status(server, str(site["secret"])) == 200
    token = identity_token(site, "u1")
    assert await hello_code(server, str(site["key"]), Browser("u1"), token=token) == 0


async def test_of_rotations_racing_one_wins(server: Server) -> None:
    site = server.create_site("--name", "Race", "--origin", "*")
    answers = await asyncio.gather(*(rotate(server, str(site["secret"])) for _ in range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) == 1 and set(statuses) <= {200, 403, 409}, statuses
    won = next(r.json()["secret"] for r in answers if r.status_code == 200)
    assert await site_status(server, won) == 200


async def test_another_sites_secret_rotates_only_its_own(server: Server) -> None:
    mine = server.create_site("--name", "Mine", "--origin", "*")
    theirs = server.create_site("--name", "Theirs", "--origin", "*")
    r = await rotate(server, str(theirs["secret"]), overlap=0)
    assert r.status_code == 200
    async with api(server, {"secret": r.json()["secret"]}) as client:
        assert (await client.get("/site")).json()["key"] == theirs["key"]
    assert await site_status(server, str(mine["secret"])) == 200
    assert await site_status(server, str(theirs["secret"])) == 401


# The identity and webhook secrets.


async def test_identity_tokens_signed_with_either_secret_pass_during_the_overlap(
    server: Server,
) -> None:
    site = server.create_site("--name", "Identity", "--origin", "*", "--require-identity")
    key, secret = str(site["key"]), str(site["secret"])
    old = dict(site)
    r = await rotate(server, secret, kind="identity", overlap=60)
    assert r.status_code == 200 and r.json()["secret"].startswith("ik_")
    new = {**site, "identity_secret": r.json()["secret"]}
    for signer in (old, new):
        assert await hello_code(server, key, Browser("u1"), token=identity_token(signer, "u1")) == 0
    assert await site_status(server, secret) == 200  # the secret key did not change
    newest = {
        **site,
        "identity_secret": (await rotate(server, secret, kind="identity", overlap=0)).json()[
            "secret"
        ],
    }
    for signer, code in ((old, 4013), (new, 4013), (newest, 0)):
        assert (
            await hello_code(server, key, Browser("u1"), token=identity_token(signer, "u1")) == code
        )


async def test_webhooks_are_signed_with_both_secrets_during_the_overlap(server: Server) -> None:
    receiver = Receiver()
    async with receiver.running():
        site = server.create_site("--name", "Hooks", "--origin", "*", "--webhook-url", receiver.url)
        key, old = str(site["key"]), str(site["webhook_secret"])
        r = await rotate(server, str(site["secret"]), kind="webhook", overlap=60)
        assert r.status_code == 200
        new = r.json()["secret"]
        await Tab.open(server.ws, key, Browser("u1"))
        await Tab.open(server.ws, key, Browser("u1"))  # blocked: one webhook
        await receiver.wait(1)
    headers, body = receiver.got[0]
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        verify(secret, headers, body, now=time.time())
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "QUJD" * 11, headers, body, now=time.time())


async def test_identity_tokens_live_no_longer_than_the_site_allows(server: Server) -> None:
    site = server.create_site("--name", "Lifetime", "--origin", "*")
    key, now = str(site["key"]), int(time.time())
    long_lived = identity_token(site, "u1", iat=now, exp=now + 7200)
    tab = Tab(await Tab.connect(server.ws), Browser("u1"), ident())
    await tab.send({"t": "hello", "v": 1, "site": key, "session": ident(), "tab": tab.tab,
                    "device": ident(), "token": long_lived})  # fmt: skip
    code, reason, _ = await tab.closed()
    assert code == 4013 and "lives too long: exp is 7200 s after iat, at most 3600 s" in reason
    async with api(server, site) as client:
        r = await client.patch("/site", json={"identity_max_lifetime": 7200})
        assert r.status_code == 200 and r.json()["identity_max_lifetime"] == 7200
    assert await hello_code(server, key, Browser("u1"), token=long_lived) == 0
    far = identity_token(site, "u1", iat=now, exp=now + 10 * 365 * 86400)
    assert await hello_code(server, key, Browser("u1"), token=far) == 4013


# The command line.


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEATGUARD, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=scaled(30),
    )


def test_the_cli_shows_secrets_once_and_rotates_them(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    created = json.loads(seatguard("site", "create", "--name", "X", "--origin", "*", "--db", db))
    key = str(created["key"])
    shown = run("site", "show", key, "--secret", "--db", db)
    assert shown.returncode == 2 and "secrets cannot be shown" in shown.stderr
    assert "rotate-secret" in shown.stderr and created["secret"] not in shown.stdout
    plain = json.loads(seatguard("site", "show", key, "--db", db))
    assert not SECRET.search(json.dumps(plain))
    out = json.loads(
        seatguard("site", "rotate-secret", key, "--identity", "--overlap", "0", "--db", db)
    )
    assert (out["kind"], out["previous_valid_until"]) == ("identity", None)
    assert out["secret"].startswith("ik_") and out["secret"] != created["identity_secret"]
    no_hook = run("site", "rotate-secret", key, "--webhook", "--db", db)
    assert no_hook.returncode == 1 and "no webhook secret" in no_hook.stderr
    too_long = run("site", "rotate-secret", key, "--overlap", "604801", "--db", db)
    assert too_long.returncode == 2 and "--overlap" in too_long.stderr
    hooked = json.loads(
        seatguard("site", "update", key, "--webhook-url", "https://h.example/in", "--db", db)
    )
    assert hooked["webhook_secret"].startswith("whsec_")
    again = json.loads(
        seatguard("site", "update", key, "--webhook-url", "https://h.example/2", "--db", db)
    )
    assert "webhook_secret" not in again  # made once; rotate it to get a new one


NO_DB = {"SEATGUARD_DB": "", "SEATGUARD_DATABASE_URL": ""}
"""The environment of a command run without a database named."""


def test_site_create_says_where_it_wrote_without_db(tmp_path: Path) -> None:
    done = run("site", "create", "--name", "X", "--origin", "*", cwd=tmp_path, env=NO_DB)
    assert done.returncode == 0, done.stderr
    assert f"wrote to the SQLite database {tmp_path / 'seatguard.db'}" in done.stderr
    assert json.loads(done.stdout)["secret"].startswith("sk_")  # the output is the site alone
    # The database and the secrets key beside it, which the secret key's hash needs: the
    # owner's alone, the database's write-ahead files too.
    files = {p.name: oct(mode(p)) for p in tmp_path.iterdir()}
    assert files == {"seatguard.db": "0o600", "seatguard.db.secrets-key": "0o600"}
    named = run("site", "create", "--name", "Y", "--origin", "*", "--db", str(tmp_path / "y.db"))
    assert "wrote to" not in named.stderr


def test_audit_verify_refuses_a_database_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    done = run("audit", "verify", "--db", str(missing))
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr
        == f"Error: no database at {str(missing)!r} (--db names the server's database)\n"
    )
    assert not missing.exists()
    exported = run("audit", "export", "--db", str(missing))
    assert exported.returncode == 2 and not missing.exists()
    # Without --db, in a directory with no database: the default, said in full, not made.
    default = run("audit", "verify", cwd=tmp_path, env=NO_DB)
    assert default.returncode == 2
    where = tmp_path / "seatguard.db"
    assert default.stderr.splitlines() == [
        f"Error: no database at {str(where)!r} (--db names the server's database)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_audit_verify_without_the_audit_key_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    run("site", "create", "--name", "X", "--origin", "*", "--db", str(db))  # no audit key yet
    done = run("audit", "verify", "--db", str(db))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("Error: ") and "audit key" in line and "does not exist" in line


# An earlier version's database, and the demo.


async def test_a_database_of_an_earlier_version_keeps_working_sealed(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    db = tmp_path / "seatguard.db"
    secret = "sk_" + "E" * 43
    with sqlite3.connect(db) as conn:  # the schema and a site as the version before wrote them
        before = lite.MIGRATIONS.index(SECRETS_SCHEMA)
        for statement in (s for step in lite.MIGRATIONS[:before] for s in step):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={before}")
        conn.execute(
            "INSERT INTO sites (key, secret, name, origins, mode, seat_limit, policy, "
            "client_settings, created_at, config) VALUES "
            "('pk_early', ?, 'Early', '[\"*\"]', 'concurrence', 1, 'block-new', 0, 1.0, '{}')",
            (secret,),
        )
    s = start_server(tmp_path, "serve", server_env)
    try:
        site = {"key": "pk_early", "secret": secret, "identity_secret": secret}
        assert await site_status(s, secret) == 200  # the backend's key still opens the API
        token = identity_token(site, "u1")  # and still signs its identity tokens
        assert await hello_code(s, "pk_early", Browser("u1"), token=token) == 0
    finally:
        s.stop()
    assert not holding(tmp_path, "seatguard.db*", secret)


def holding(where: Path, pattern: str, text: str) -> list[Path]:
    """The files matching `pattern` whose bytes contain `text`."""
    return [path for path in where.glob(pattern) if text.encode() in path.read_bytes()]


async def test_the_demo_prints_a_fresh_secret_key_at_each_start(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    said = re.compile(r"Demo secret key \(REST API, new at each start\): (sk_\S+)")
    keys = []
    for _ in range(2):
        demo = start_server(tmp_path, "demo", server_env)
        try:
            found = said.findall(demo.log.read_text())
            assert len(found) == 1, demo.log.read_text()
            keys.append(found[0])
            assert await site_status(demo, found[0]) == 200
            if len(keys) == 2:
                assert await site_status(demo, keys[0]) == 401
        finally:
            demo.stop()
    assert keys[0] != keys[1]
