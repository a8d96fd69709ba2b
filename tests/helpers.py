"""Test helpers: one timeout scale, free ports, the CLI, real server processes (Seatguard,
Redis, PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

SCALE = float(os.environ.get("SEATGUARD_TEST_SCALE", "1"))
"""Multiplies every timeout in the tests (slow machines: SEATGUARD_TEST_SCALE=3)."""

ROOT = Path(__file__).resolve().parent.parent
SEATGUARD = [sys.executable, "-m", "seatguard"]


def scaled(seconds: float) -> float:
    return seconds * SCALE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def seatguard(*args: str, env: Mapping[str, str] | None = None) -> str:
    """Run the CLI and return its standard output."""
    done = subprocess.run(
        [*SEATGUARD, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=scaled(30),
    )
    if done.returncode != 0:
        raise AssertionError(f"seatguard {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def seat_keys() -> str:
    """A seat key set (SEATGUARD_SEAT_KEYS) for servers sharing a PostgreSQL database."""
    from seatguard.seat.keyset import SeatKeySet, new_key

    return SeatKeySet((new_key(time.time()),)).dumps()


@dataclass
class Server:
    """A real server process on a free port."""

    port: int
    db: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    def create_site(self, *args: str) -> dict[str, Any]:
        """`seatguard site create` on this server's database; the site as JSON."""
        out = seatguard("site", "create", "--db", str(self.db), *args)
        site: dict[str, Any] = json.loads(out)
        return site

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp: Path,
    command: str = "serve",
    env: Mapping[str, str] | None = None,
    *args: str,
    db: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> Server:
    """Start `seatguard <command>` on a free port and wait until it answers; `preexec` runs
    in the child before it starts (e.g. to lower its limits)."""
    port = free_port()
    db = db or tmp / "seatguard.db"
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*SEATGUARD, command, "--port", str(port), "--db", str(db), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            preexec_fn=preexec,
        )
    server = Server(port, db, process, log)
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(server.http + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError(f"server did not start:\n{log.read_text()}")


_PG_PROGRAMS = ("initdb", "pg_ctl", "postgres", "createdb")


def postgres_bindir() -> Path:
    """The directory of the installed PostgreSQL server programs; the test fails without."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")  # Debian keeps them off the PATH
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in _PG_PROGRAMS):
            return bindir
    searched = ", ".join(map(str, candidates)) or "pg_config --bindir, /usr/lib/postgresql/*/bin"
    pytest.fail(
        f"the PostgreSQL tests need the server programs {', '.join(_PG_PROGRAMS)}; none of "
        f"{searched} has them. Install them (Debian: apt-get install postgresql).",
        pytrace=False,
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


class RedisServer:
    """A throwaway `redis-server` on a free port, never the machine's own; it can be
    stopped and started again on the same port (it keeps nothing on disk)."""

    def __init__(self, tmp: Path) -> None:
        program = shutil.which("redis-server")
        if program is None:
            pytest.fail(
                "the Redis tests need redis-server (Debian: apt-get install redis-server)",
                pytrace=False,
            )
        self.program = program
        self.tmp = tmp
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def options(self) -> list[str]:
        """Loopback only, nothing written to disk."""
        return ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.tmp), "--loglevel", "warning"]  # fmt: skip

    def start(self) -> None:
        for attempt in range(3):  # the free port may be taken before the server binds it
            log = (self.tmp / f"redis-{self.port}.log").open("ab")
            self.process = subprocess.Popen(
                [self.program, *self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            deadline = time.monotonic() + scaled(10)
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            return
                except OSError:
                    time.sleep(0.02)
            self.stop()
            if attempt < 2:
                self.port = free_port()
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def create_postgres_database(server_url: str) -> str:
    """A new, empty database on the server of `server_url`; its URL."""
    name = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


async def drop_postgres_database(url: str) -> None:
    server_url, _, name = url.rpartition("/")
    admin = await asyncpg.connect(server_url + "/postgres")
    try:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of `server_url` (its URL), dropped afterwards."""
    url = await create_postgres_database(server_url)
    try:
        yield url
    finally:
        await drop_postgres_database(url)
