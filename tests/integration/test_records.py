"""Audit trail, webhooks and back-channel logout, end to end against server processes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seatguard.audit.checkpoint import Checkpoint, write_checkpoint
from seatguard.keys import load_audit_key
from seatguard.webhooks import verify
from tests.helpers import SEATGUARD, Server, free_port, scaled, start_server
from tests.integration.api_client import api, logout_token
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

SERVER_ENV = {"SEATGUARD_ALLOW_PRIVATE_URLS": "1"}
"""The module's server may post webhooks to its receivers, on loopback."""


def user() -> str:
    return "r-" + secrets.token_hex(4)


def audit(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEATGUARD, "audit", *args, "--db", str(server.db)],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
    )


def rows(server: Server) -> list[dict[str, Any]]:
    out = audit(server, "export")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


async def test_every_lifecycle_event_is_audited_and_the_chain_verifies(
    server: Server, site: str
) -> None:
    u = user()
    first, _ = await Tab.open(server.ws, site, Browser(u))
    second, _ = await Tab.open(server.ws, site, Browser(u))
    await first.bye("close")
    assert await second.recv() == {"t": "unblock"}
    kinds = [(r["kind"], r["reason"]) for r in rows(server) if r["user"] == u]
    assert kinds == [
        ("created", None),
        ("admitted", None),
        ("created", None),
        ("blocked", "limit"),
        ("ended", "closed"),
        ("unblocked", None),
    ]
    mine = [r for r in rows(server) if r["user"] == u]
    assert all(r["ip"] == "127.0.0.1" and r["site"] == site for r in mine)
    checked = audit(server, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_the_api_pages_through_the_audit_trail(server: Server) -> None:
    site = server.create_site("--name", "AuditAPI", "--origin", "*")
    u = user()
    for _ in range(3):
        tab, _ = await Tab.open(server.ws, str(site["key"]), Browser(u))
        await tab.bye("close")
    async with api(server, site) as client:
        first = (await client.get("/audit", params={"user": u, "limit": 4})).json()
        assert [r["kind"] for r in first["records"]] == ["created", "admitted", "ended", "created"]
        rest = (await client.get("/audit", params={"user": u, "after": first["next_after"]})).json()
        assert [r["kind"] for r in rest["records"]] == [
            "admitted",
            "ended",
            "created",
            "admitted",
            "ended",
        ]
        assert rest["next_after"] is None
        assert (await client.get("/audit", params={"limit": 0})).status_code == 422


def some_sessions(server: Server, site: dict[str, object], count: int = 3) -> None:
    """`count` browsers come and go, three audit rows each."""

    async def run() -> None:
        for _ in range(count):
            tab, _ = await Tab.open(server.ws, str(site["key"]), Browser(user()))
            await tab.bye("close")
        await Tab.close_all()

    anyio.run(run)


def test_tampering_is_reported_with_where(tmp_path: Path, server_env: dict[str, str]) -> None:
    s = start_server(tmp_path, "serve", server_env)
    try:
        some_sessions(s, s.create_site("--name", "T", "--origin", "*"))
    finally:
        s.stop()
    assert audit(s, "verify").returncode == 0
    with sqlite3.connect(s.db) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET user_id = 'mallory' WHERE seq = 2")
    report = audit(s, "verify")
    assert report.returncode == 1
    assert "2" in report.stdout and "changed" in report.stdout


def test_a_cut_tail_is_found_by_default_against_the_checkpoint(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    s = start_server(tmp_path, "serve", server_env)
    try:
        site = s.create_site("--name", "Cut", "--origin", "*")
        some_sessions(s, site)
    finally:
        s.stop()  # a clean shutdown writes the checkpoint up to the last record
    last = rows(s)[-1]["seq"]
    intact = audit(s, "verify")
    assert intact.returncode == 0, intact.stdout
    assert f"checkpoint at {s.db}.audit-key.head: seq {last}\n" in intact.stdout
    with sqlite3.connect(s.db) as conn:  # an intruder deletes the last two rows
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit WHERE seq > ?", (last - 2,))
    cut = audit(s, "verify")
    assert cut.returncode == 1, cut.stdout
    assert (
        f"seq {last - 1}: truncated: the log ends at seq {last - 2}, before its checkpoint "
        f"at seq {last}: records {last - 1} to {last} cut off"
    ) in cut.stdout
    skipped = audit(s, "verify", "--no-checkpoint")
    assert skipped.returncode == 0 and "checkpoint skipped" in skipped.stdout
    # The server comes back and appends past the cut; the checkpoint stays as evidence.
    again = start_server(tmp_path, "serve", server_env)
    try:
        some_sessions(again, site)
    finally:
        again.stop()
    later = audit(s, "verify")
    assert later.returncode == 1, later.stdout
    assert f"seq {last}: truncated: record {last} is not the one of the checkpoint" in later.stdout


def test_a_forged_or_missing_checkpoint_fails_verify(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    s = start_server(tmp_path, "serve", server_env)
    try:
        some_sessions(s, s.create_site("--name", "Forged", "--origin", "*"), count=1)
    finally:
        s.stop()
    head = Path(f"{s.db}.audit-key.head")
    forged = json.loads(head.read_text())
    forged["seq"] += 100  # claims a longer log, without the key to sign it
    head.write_text(json.dumps(forged))
    report = audit(s, "verify")
    assert report.returncode == 1
    assert f"checkpoint BROKEN: {head}: its HMAC does not match the audit key" in report.stdout
    assert audit(s, "verify", "--no-checkpoint").returncode == 0
    head.unlink()
    missing = audit(s, "verify")
    assert missing.returncode == 1 and f"checkpoint MISSING: {head}" in missing.stdout
    elsewhere = tmp_path / "anchor.head"
    write_checkpoint(elsewhere, Checkpoint(rows(s)[-1]["seq"], rows(s)[-1]["hash"]), key(s))
    assert audit(s, "verify", "--checkpoint", str(elsewhere)).returncode == 0


def key(server: Server) -> bytes:
    return load_audit_key(Path(f"{server.db}.audit-key").read_text())


def test_an_acknowledged_revocation_survives_kill_9(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    s = start_server(tmp_path, "serve", server_env)
    site = s.create_site("--name", "K", "--origin", "*")
    u = user()
    browser = Browser(u)

    async def revoke() -> None:
        await Tab.open(s.ws, str(site["key"]), browser)
        async with api(s, site) as client:
            r = await client.delete(f"/users/{u}/sessions/{browser.session}")
            assert r.status_code == 200
        await Tab.close_all()

    anyio.run(revoke)
    os.kill(s.process.pid, signal.SIGKILL)
    s.process.wait()
    kinds = [r["kind"] for r in rows(s) if r["user"] == u]
    assert kinds[-1] == "revoked", kinds
    assert audit(s, "verify").returncode == 0


class Receiver:
    """A real HTTP server on a free port that keeps what it is sent."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port()

        async def hook(request: Request) -> Response:
            self.got.append((dict(request.headers), await request.body()))
            return Response(status_code=204)

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        config = uvicorn.Config(app, port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve while the block runs; stop after it."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.server.serve)
            while not self.server.started:  # noqa: ASYNC110 (uvicorn exposes only a flag)
                await anyio.sleep(0.01)
            try:
                yield
            finally:
                self.server.should_exit = True

    async def wait(self, count: int) -> None:
        """Until at least `count` webhooks came."""
        with anyio.fail_after(scaled(5)):
            while len(self.got) < count:  # noqa: ASYNC110
                await anyio.sleep(0.05)


async def test_webhooks_are_signed_and_sent_for_blocks_and_revocations(server: Server) -> None:
    receiver = Receiver()
    async with receiver.running():
        site = server.create_site("--name", "Hooks", "--origin", "*", "--webhook-url", receiver.url)
        u = user()
        await Tab.open(server.ws, str(site["key"]), Browser(u))
        await Tab.open(server.ws, str(site["key"]), Browser(u))
        async with api(server, site) as client:
            await client.post(f"/users/{u}/revoke", json={})
        await receiver.wait(3)
    types = []
    for headers, body in receiver.got:
        verify(str(site["webhook_secret"]), headers, body, now=time.time())
        types.append(json.loads(body)["type"])
    assert types[0] == "seat.blocked"
    assert sorted(types[1:]) == ["session.revoked", "session.revoked"]


async def test_backchannel_logout_revokes_the_named_user(
    server: Server, provider: dict[str, Any]
) -> None:
    site = server.create_site(
        "--name", "OIDC", "--origin", "*", "--limit", "2",
        "--oidc-issuer", provider["issuer"], "--oidc-client-id", provider["client"],
        "--oidc-jwks", str(provider["jwks"]),
    )  # fmt: skip
    u = user()
    a, _ = await Tab.open(server.ws, str(site["key"]), Browser(u))
    b, _ = await Tab.open(server.ws, str(site["key"]), Browser(u))
    url = f"{server.http}/oidc/v1/{site['key']}/backchannel-logout"
    token = logout_token(provider, sub=u)
    async with httpx.AsyncClient() as client:
        r = await client.post(url, data={"logout_token": token})
        assert r.status_code == 200, r.text
        for tab in (a, b):
            assert (await tab.closed())[0] == 4010
        replay = await client.post(url, data={"logout_token": token})
        assert replay.status_code == 400 and "replayed" in replay.json()["error_description"]
        bad = await client.post(url, data={"logout_token": "not.a.token"})
        assert bad.status_code == 400
        nonce = await client.post(
            url, data={"logout_token": logout_token(provider, sub=u, nonce="n")}
        )
        assert nonce.status_code == 400
        missing = await client.post(url, data={})
        assert missing.status_code == 400


def test_cli_refuses_a_bad_site_clearly(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    cases = [
        (["site", "create", "--name", "X", "--origin", "example.com"], "not an origin"),
        (["site", "create", "--name", "X"], "--origin"),
        (["site", "create", "--name", "X", "--origin", "*", "--limit", "0"], "limit"),
        (["site", "show", "pk_nope"], "no site"),
    ]
    for args, message in cases:
        done = subprocess.run(
            [*SEATGUARD, *args, "--db", db], capture_output=True, text=True, check=False
        )
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)


def checkpoint_lag(report: str, head: int) -> int:
    """How many records of the log are past the checkpoint `audit verify` reported."""
    line = next(x for x in report.splitlines() if x.startswith("checkpoint at "))
    return head - int(line.split(": seq ")[1].split()[0])


def kill_9(server: Server) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()


def test_kill_9_at_any_moment_leaves_a_log_that_verifies_with_a_close_checkpoint(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    # Timeline: a server starts on a new database and is killed at once, before any record:
    # its checkpoint (of the empty log) is there already. It starts again, admits 60 users
    # at once (120 records, in the first second of its life) and is killed again the
    # moment the last welcome arrives: the checkpoint is at most the lag (10) behind.
    env = {**server_env, "SEATGUARD_AUDIT_CHECKPOINT_LAG": "10"}
    s = start_server(tmp_path, "serve", env)
    kill_9(s)
    first = audit(s, "verify")
    assert first.returncode == 0, first.stdout
    assert f"checkpoint at {s.db}.audit-key.head: seq 0\n" in first.stdout
    site = s.create_site("--name", "Crash", "--origin", "*")

    async def storm(server: Server) -> None:
        async def one() -> None:
            await Tab.open(server.ws, str(site["key"]), Browser(user()))

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(one)
        kill_9(server)  # the moment the last welcome is in
        await Tab.close_all()

    again = start_server(tmp_path, "serve", env)
    anyio.run(storm, again)
    report = audit(s, "verify")
    assert report.returncode == 0, report.stdout
    head = rows(s)[-1]["seq"]
    assert head >= 120
    assert checkpoint_lag(report.stdout, head) <= 10, report.stdout
