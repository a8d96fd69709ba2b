"""Several `seatguard serve` processes sharing one Redis and one PostgreSQL database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import signal
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers import (
    RedisServer,
    Server,
    create_postgres_database,
    drop_postgres_database,
    scaled,
    seat_keys,
    seatguard,
    start_server,
)

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end in a thread of its own (the caller may be in a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class Cluster:
    """N nodes on one Redis and one database; node i serves `nodes[i]`."""

    tmp: Path
    redis: RedisServer
    database_url: str
    env: dict[str, str]
    command: str = "serve"  # or "demo", to serve the demo site on every node
    nodes: list[Server] = field(default_factory=list)

    def _start(self, index: int) -> Server:
        home = self.tmp / f"node{index}"
        home.mkdir(exist_ok=True)
        return start_server(home, self.command, self.env, db=self.tmp / "unused.db")

    def start_node(self) -> Server:
        node = self._start(len(self.nodes))
        self.nodes.append(node)
        return node

    def restart_node(self, index: int) -> Server:
        self.nodes[index].stop()
        self.nodes[index] = self._start(index)
        return self.nodes[index]

    def kill_node(self, index: int) -> None:
        """`kill -9`: the node says nothing to anyone."""
        process = self.nodes[index].process
        process.send_signal(signal.SIGKILL)
        process.wait()

    def create_site(self, *args: str) -> dict[str, Any]:
        """A site in the cluster's database."""
        created: dict[str, Any] = json.loads(
            seatguard("site", "create", "--db", self.database_url, *args, env=self.env)
        )
        return created

    def health(self, index: int) -> dict[str, Any]:
        with urllib.request.urlopen(self.nodes[index].http + "/healthz", timeout=5) as r:
            found: dict[str, Any] = json.loads(r.read())
            return found

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(
    tmp: Path,
    redis: RedisServer,
    postgres_url: str,
    server_env: dict[str, str],
    size: int,
    command: str = "serve",
    **env: str,
) -> Iterator[Cluster]:
    """Start `size` nodes on a fresh database of the PostgreSQL server; stop them after."""
    url = _run(create_postgres_database(postgres_url))
    cluster = Cluster(
        tmp,
        redis,
        url,
        {
            **server_env,
            "SEATGUARD_DATABASE_URL": url,
            "SEATGUARD_REDIS_URL": redis.url,
            "SEATGUARD_AUDIT_KEY": secrets.token_hex(32),
            "SEATGUARD_SECRETS_KEY": secrets.token_hex(32),
            "SEATGUARD_SEAT_KEYS": seat_keys(),
            "SEATGUARD_NODE_LEASE": str(scaled(1.5)),
            "SEATGUARD_REDIS_TIMEOUT": str(scaled(1.0)),
            **env,
        },
        command,
    )
    try:
        for _ in range(size):
            cluster.start_node()
        yield cluster
    finally:
        cluster.stop()
        _run(drop_postgres_database(url))
