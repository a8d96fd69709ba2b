"""Fixtures for every tier: the event loop, the servers' timings, throwaway PostgreSQL and
Redis servers. The helpers that tests import are in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RedisServer, free_port, postgres_bindir, scaled


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def server_env() -> Iterator[dict[str, str]]:
    yield {
        "SEATGUARD_HEARTBEAT_INTERVAL": str(scaled(0.5)),
        "SEATGUARD_SESSION_TIMEOUT": str(scaled(1.5)),
        "SEATGUARD_RELOAD_GRACE": str(scaled(1.0)),
        # Longer than the reload grace, as by default, so tests tell a drop from a reload.
        "SEATGUARD_DROP_GRACE": str(scaled(2.0)),
        "SEATGUARD_HELLO_TIMEOUT": str(scaled(1.0)),
        "SEATGUARD_SWEEP_INTERVAL": "0.1",
        "SEATGUARD_LOG_LEVEL": "warning",
    }


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port, never the machine's own; the URL of
    its database `seatguard` (superuser `postgres`, no password).

    initdb and postgres refuse to run as root: as root they run as the `postgres` system
    user, in a directory under /tmp that user owns.
    """
    bindir = postgres_bindir()
    prefix: list[str] = []
    as_root = os.geteuid() == 0
    if as_root:
        prefix = (
            ["runuser", "-u", "postgres", "--"]
            if shutil.which("runuser")
            else ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        )
    tmp = Path(tempfile.mkdtemp(prefix="seatguard-pg-", dir="/tmp" if as_root else None))
    data, log = tmp / "data", tmp / "server.log"
    if as_root:
        shutil.chown(tmp, "postgres", "postgres")

    def run(program: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*prefix, str(bindir / program), *args],
            capture_output=True,
            text=True,
            cwd=tmp,  # somewhere the postgres user may be
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            timeout=scaled(timeout),
        )
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise AssertionError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}{server_log}"
            )

    started = False
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync")  # fmt: skip
        for attempt in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                run("pg_ctl", "start", "-D", str(data), "-l", str(log), "-o", options,
                    "-w", "-t", str(int(scaled(60))), timeout=90)  # fmt: skip
            except AssertionError:
                if attempt == 2:
                    raise
            else:
                started = True
                break
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "seatguard")
        yield f"postgresql://postgres@127.0.0.1:{port}/seatguard"
    finally:
        try:
            if started:
                run("pg_ctl", "stop", "-D", str(data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One throwaway Redis for the whole run (tests use fresh prefixes or flush it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
