"""The scenarios of `seatguard bench`, each run against its targets with load from client
processes, measured as server CPU seconds, resident memory and client-side latencies
(and, for issuing seat tokens, this process's own CPU seconds)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..seat import SeatKeyRing, SeatKeySet, SeatTokens
from ..seat.keyset import new_key
from .client import Job
from .targets import Target, create_site, redis_server, seatguard_node, ws_echo

BENCH_POLICY: dict[str, Any] = {
    "rules": [
        {"name": "travel", "when": {"check": "impossible_travel"}, "verdict": "suspend"},
        {
            "name": "shared",
            "when": {"all": [{"check": "concurrent_sessions"}, {"risk": "medium"}]},
            "verdict": "challenge",
        },
        {"name": "new-ip", "when": {"check": "is_new_ip"}, "verdict": "block", "dry_run": True},
        {"name": "risky", "when": {"risk": "high"}, "verdict": "block"},
    ]
}
"""The policy of the policy storms: docs/policies.md's example. Each login of a storm is a
new user from a new address, so the dry-run rule matches every one: each evaluation is
kept and flagged, the most a judgement costs."""

__all__ = ["Sizes", "run_bench"]

SOURCES = [f"127.0.0.{i}" for i in range(1, 9)]  # source addresses, for enough ports


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    hold: int = 19_000  # sockets held (the open-files limit of one process is 20,000 here)
    flood: int = 10_000  # sockets flooding heartbeats
    flood_seconds: float = 10.0
    hold_seconds: float = 30.0
    storm: int = 10_000  # sessions opened in the login and reconnect storms
    inflight: int = 1_000  # connections opened at once in the storms
    admit: int = 3_000  # new sessions timed at 10,000 held connections
    admit_rate: float = 500.0
    redis_admit_rate: float = 5_000.0
    redis_steady_rate: float = 250.0  # about what one node keeps up with on this kind of machine
    conflict: int = 300  # conflict push trials
    check_rate: float = 1_000.0  # seat checks per second, on one node
    check_seconds: float = 10.0
    check_sessions: int = 300  # seated sessions whose tokens are checked in turn
    token_issues: int = 5_000  # seat tokens signed to time issuing
    token_storms: int = 5  # pairs of login storms with and without seat tokens
    policy_storms: int = 5  # pairs of login storms with and without a policy
    clients: int = 3  # load processes

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            hold=2_000,
            flood=1_000,
            flood_seconds=3,
            hold_seconds=5,
            storm=1_000,
            inflight=200,
            admit=300,
            admit_rate=200,
            redis_admit_rate=1_000,
            redis_steady_rate=100,
            conflict=40,
            check_seconds=3,
            check_sessions=100,
            token_issues=1_000,
            token_storms=1,
            policy_storms=1,
            clients=2,
        )


class Clients:
    """Load processes running one job each, stepped together through `ready`, `go`, `done`."""

    def __init__(self, jobs: list[Job]) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "seatguard.bench.client", json.dumps(asdict(job))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for job in jobs
        ]

    def read(self, event: str) -> list[dict[str, Any]]:
        found = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a load process ended before {event!r} (exit {proc.wait()})")
            message: dict[str, Any] = json.loads(line)
            if message.get("event") != event:
                raise RuntimeError(f"expected {event!r} from a load process, got {message}")
            found.append(message)
        return found

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            if proc.poll() is None:
                proc.stdin.write("go\n")
                proc.stdin.flush()

    def close(self) -> None:
        self.go()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def health(target: Target, admissions: int = 0) -> dict[str, Any]:
    http = target.url.replace("ws://", "http://").replace("/ws/v1", "/healthz")
    if admissions:
        http += f"?admissions={admissions}"
    with urllib.request.urlopen(http, timeout=10) as r:
        found: dict[str, Any] = json.loads(r.read())
        return found


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def jobs(kind: str, target: Target, total: int, parts: int, **options: Any) -> list[Job]:
    return [
        Job(
            kind=kind,
            url=target.url,
            count=n,
            sources=SOURCES[i::parts] or SOURCES,
            prefix=f"{kind[:2]}{i}{os.getpid() % 1000}",
            **options,
        )
        for i, n in enumerate(split(total, parts))
        if n
    ]


def merge_latency(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles of several processes, weighted by their sample counts (approximate)."""
    samples = [p for p in parts if p.get("n")]
    if not samples:
        return {"n": 0}
    n = sum(p["n"] for p in samples)
    out: dict[str, Any] = {"n": n}
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        out[key] = round(sum(p[key] * p["n"] for p in samples) / n, 3)
    out["max_ms"] = max(p["max_ms"] for p in samples)
    return out


class Bench:
    """One run: a scratch directory, the sizes, and everything measured."""

    def __init__(self, sizes: Sizes, say: Callable[[str], None]) -> None:
        self.sizes = sizes
        self.say = say
        self.tmp = Path(tempfile.mkdtemp(prefix="seatguard-bench-"))
        self.results: dict[str, Any] = {}
        self.sites: dict[str, tuple[str, Path]] = {}  # site key -> its secret key, database
        self._env: dict[Path, dict[str, str]] = {}  # database -> its nodes' keys

    @contextmanager
    def seatguard(
        self, *, redis: bool = False, nodes: int = 1
    ) -> Iterator[tuple[list[Target], str]]:
        """Seatguard node(s) on a fresh database (and Redis); yields them and a site key."""
        run = self.tmp / f"run{len(list(self.tmp.iterdir()))}"
        run.mkdir()
        db = run / "bench.db"
        env = {
            "SEATGUARD_AUDIT_KEY": os.urandom(32).hex(),
            "SEATGUARD_SECRETS_KEY": os.urandom(32).hex(),
        }
        self._env[db] = env
        key = self.add_site(db)
        started: list[Target] = []
        try:
            redis_url = ""
            if redis:
                r = redis_server(run)
                started.append(r)
                redis_url = f"redis://127.0.0.1:{r.port}/0"
            for i in range(nodes):
                started.append(seatguard_node(run, db, f"seatguard{i}", redis_url, **env))
            yield [t for t in started if t.name.startswith("seatguard")], key
        finally:
            for target in reversed(started):
                target.stop()

    def add_site(self, db: Path, *options: str) -> str:
        """A new site in `db` (`seatguard site create` with `options`); its key."""
        site = create_site(db, self._env[db], *options)
        key: str = site["key"]
        self.sites[key] = (site["secret"], db)
        return key

    @contextmanager
    def echo(self, kind: str) -> Iterator[Target]:
        target = ws_echo(self.tmp, kind)
        try:
            yield target
        finally:
            target.stop()

    # --- scenarios ----------------------------------------------------------------------

    def hold(self, target: Target, protocol: str, site: str = "") -> dict[str, Any]:
        s = self.sizes
        before = target.rss()
        clients = Clients(
            jobs(
                "hold",
                target,
                s.hold,
                s.clients,
                protocol=protocol,
                site=site,
                interval=25.0,
                duration=s.hold_seconds,
                inflight=s.inflight,
            )
        )
        try:
            ready = clients.read("ready")
            connected = sum(r["connected"] for r in ready)
            time.sleep(1.0)
            held = target.rss()
            cpu = target.cpu()
            clients.go()
            done = clients.read("done")
            used = target.cpu() - cpu
        finally:
            clients.close()
        beats = sum(d["acks"] for d in done)
        return {
            "connections": connected,
            "failed": sum(r["failed"] for r in ready),
            "rss_mib": round(held / 2**20, 1),
            "kib_per_connection": round((held - before) / max(1, connected) / 1024, 2),
            "heartbeats": beats,
            "cpu_seconds": round(used, 3),
            "cpu_us_per_heartbeat": round(used / max(1, beats) * 1e6, 1),
            "ack": merge_latency([d["latency"] for d in done]),
        }

    def flood(self, target: Target, protocol: str, site: str = "") -> dict[str, Any]:
        s = self.sizes
        clients = Clients(
            jobs(
                "flood",
                target,
                s.flood,
                s.clients,
                protocol=protocol,
                site=site,
                duration=s.flood_seconds,
                inflight=s.inflight,
            )
        )
        try:
            ready = clients.read("ready")
            cpu, began = target.cpu(), time.monotonic()
            clients.go()
            done = clients.read("done")
            used, wall = target.cpu() - cpu, time.monotonic() - began
        finally:
            clients.close()
        acks = sum(d["acks"] for d in done)
        return {
            "sockets": sum(r["connected"] for r in ready),
            "messages": acks,
            "cpu_seconds": round(used, 3),
            "messages_per_cpu_second": round(acks / max(used, 1e-9)),
            "messages_per_second": round(acks / wall),
            "ack": merge_latency([d["latency"] for d in done]),
        }

    def storm(
        self, target: Target, site: str, kind: str = "storm", protocol: str = "seatguard"
    ) -> dict[str, Any]:
        """Open sessions as fast as the inflight limit allows; an echo server's `welcome`
        is the hello coming back (a bare handshake and one message)."""
        s = self.sizes
        clients = Clients(
            jobs(
                kind,
                target,
                s.storm,
                s.clients,
                site=site,
                protocol=protocol,
                inflight=max(1, s.inflight // s.clients),
            )
        )
        try:
            clients.read("ready")
            cpu = target.cpu()
            clients.go()
            if kind == "reconnect":
                held = clients.read("held")
                time.sleep(1.0)
                cpu = target.cpu()
                clients.go()
            done = clients.read("done")
            used = target.cpu() - cpu
        finally:
            clients.close()
        welcomed = sum(d["welcomed"] for d in done)
        out = {
            "sessions": s.storm,
            "admitted": welcomed,
            "failed": sum(d["failed"] for d in done),
            "seconds": max(d["seconds"] for d in done),
            "cpu_seconds": round(used, 3),
            "handshakes_per_cpu_second": round(welcomed / max(used, 1e-9)),
            "connect_to_welcome": merge_latency([d["latency"] for d in done]),
        }
        if kind == "reconnect":
            out["held_before"] = sum(h["connected"] for h in held)
        return out

    def admission(
        self, target: Target, site: str, count: int, rate: float, held: int
    ) -> dict[str, Any]:
        """Time hello to welcome for new sessions at `rate`, with `held` sockets open."""
        s = self.sizes
        holding = (
            Clients(
                jobs(
                    "hold",
                    target,
                    held,
                    s.clients,
                    site=site,
                    interval=25.0,
                    duration=3600,
                    inflight=s.inflight,
                )
            )
            if held
            else None
        )
        try:
            if holding is not None:
                holding.read("ready")
                holding.go()
            admit = Clients(
                jobs("admit", target, count, s.clients, site=site, rate=rate / s.clients)
            )
            try:
                admit.read("ready")
                cpu = target.cpu()
                admit.go()
                done = admit.read("done")
                used = target.cpu() - cpu
            finally:
                admit.close()
        finally:
            if holding is not None:
                for proc in holding.procs:
                    proc.kill()
        seconds = max(d["seconds"] for d in done)
        seen = health(target, min(count, 2_000))
        return {
            "held_connections": held,
            "sessions": count,
            "decisions_per_second": round(count / max(seconds, 1e-9)),
            "failed": sum(d["failed"] for d in done),
            "cpu_seconds": round(used, 3),
            "hello_to_welcome": merge_latency([d["latency"] for d in done]),
            # the server's own clock: hello frame in to welcome out, last 2,000 admissions
            "frame_in_to_verdict_out": seen["admission"],
            # collections since the node started, while it took on the held sockets too
            "collector": seen["collector"],
        }

    def seat_check(self, target: Target, site: str) -> dict[str, Any]:
        """`POST /api/v1/seats/check` at `check_rate`, for tokens of seated sessions, from
        one load process (it keeps up with 1,000 a second, and takes less of the machine's
        CPU from the node than several would)."""
        s = self.sizes
        secret, db = self.sites[site]
        clients = Clients(
            jobs(
                "check",
                target,
                s.check_sessions,
                1,
                site=site,
                secret=secret,
                db=str(db),
                rate=s.check_rate,
                duration=s.check_seconds,
                inflight=s.inflight,
            )
        )
        try:
            ready = clients.read("ready")
            cpu = target.cpu()
            clients.go()
            done = clients.read("done")
            used = target.cpu() - cpu
        finally:
            clients.close()
        checks = sum(d["checks"] for d in done)
        return {
            "seated_sessions": sum(r["connected"] for r in ready),
            "checks": checks,
            "checks_per_second": round(checks / max(max(d["seconds"] for d in done), 1e-9)),
            "failed": sum(d["failed"] for d in done),
            "cpu_seconds": round(used, 3),
            "cpu_us_per_check": round(used / max(1, checks) * 1e6, 1),
            "request_to_answer": merge_latency([d["latency"] for d in done]),
        }

    def paired_storms(
        self, pairs: int, without: Callable[[Path, str], str], with_: Callable[[Path, str], str]
    ) -> dict[str, Any]:
        """What one feature adds to a login's CPU: login storms, each on a fresh node, in
        turn on a site without the feature and on one with it (`without(db, key)` and
        `with_(db, key)` give the site, from the node's database and its first site), in
        the order ABBA ABBA... so that drift of the machine weighs on both alike. (On one
        node, the storms before would weigh on the next: their sessions end in its time.)
        The share is that of the medians, which one storm disturbed by the machine moves
        less than it moves a sum."""
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for i in range(2 * pairs):
            kind = "without" if i % 4 in (0, 3) else "with"
            with self.seatguard() as (nodes, key):
                db = self.sites[key][1]
                site = without(db, key) if kind == "without" else with_(db, key)
                runs[kind].append(self.storm(nodes[0], site))
        per = {
            kind: [round(s["cpu_seconds"] / max(s["admitted"], 1) * 1e6, 1) for s in storms]
            for kind, storms in runs.items()
        }
        base, more = statistics.median(per["without"]), statistics.median(per["with"])
        return {
            "pairs": pairs,
            "cpu_us_per_login_without": per["without"],
            "cpu_us_per_login_with": per["with"],
            "share_percent": round((more - base) / base * 100, 1),
        }

    def token_storms(self) -> dict[str, Any]:
        """What seat tokens add to a login's CPU: storms on a site whose tabs get tokens
        (the default) and on one whose tabs get none."""
        return self.paired_storms(
            self.sizes.token_storms,
            lambda db, key: self.add_site(db, "--no-seat-tokens"),
            lambda db, key: key,
        )

    def policy_storms(self) -> dict[str, Any]:
        """What the sharing checks and a policy add to a login's CPU: storms on a site with
        the policy of docs/policies.md's example (four rules over checks and risk: every
        hello is judged, its evaluation kept) and on one with no policy (the default)."""
        return self.paired_storms(
            self.sizes.policy_storms,
            lambda db, key: key,
            lambda db, key: self.set_policy(db, key, BENCH_POLICY),
        )

    def set_policy(self, db: Path, key: str, policy: dict[str, Any]) -> str:
        """Give a site of `db` a policy (`seatguard policies set`); its key."""
        path = self.tmp / f"policy-{key}.json"
        path.write_text(json.dumps(policy))
        subprocess.run(
            [sys.executable, "-m", "seatguard", "policies", "set", key, "--db", str(db),
             "--file", str(path)],
            capture_output=True, check=True, env={**os.environ, **self._env[db]},
        )  # fmt: skip
        return key

    def issuing(self) -> dict[str, Any]:
        """The CPU of signing one seat token (`SeatTokens.issue`), timed in this process."""
        tokens = SeatTokens(SeatKeyRing(SeatKeySet((new_key(time.time()),))), "https://bench")
        count = self.sizes.token_issues
        began = time.process_time()
        for i in range(count):
            tokens.issue(
                site="pk_bench",
                user=f"user-{i}",
                session=f"session-{i:08d}",
                device=f"device-{i:08d}",
                org="acme",
                role="viewer",
            )
        used = time.process_time() - began
        return {
            "tokens": count,
            "cpu_seconds": round(used, 3),
            "cpu_us_per_token": round(used / count * 1e6, 1),
        }

    def conflict(self, a: Target, b: Target, site: str) -> dict[str, Any]:
        clients = Clients(
            [
                Job(
                    kind="conflict",
                    url=a.url,
                    urls=[b.url],
                    site=site,
                    count=self.sizes.conflict,
                    sources=SOURCES[:2],
                )
            ]
        )
        try:
            clients.read("ready")
            clients.go()
            [done] = clients.read("done")
        finally:
            clients.close()
        return {
            "trials": self.sizes.conflict,
            "failed": done["failed"],
            "hello_to_block": done["latency"],
        }


def run_bench(sizes: Sizes, scenarios: list[str], say: Callable[[str], None]) -> dict[str, Any]:
    """Run the chosen scenarios; return every figure measured."""
    bench = Bench(sizes, say)
    r: dict[str, Any] = {
        "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "sizes": asdict(sizes),
        },
    }
    if "hold" in scenarios or "flood" in scenarios:
        for name in ("seatguard", "websockets", "node"):
            say(f"hold and flood: {name}")
            if name == "seatguard":
                with bench.seatguard() as (nodes, key):
                    r.setdefault("hold", {})[name] = _maybe(
                        scenarios, "hold", lambda: bench.hold(nodes[0], "seatguard", key)
                    )
                with bench.seatguard() as (nodes, key):
                    r.setdefault("flood", {})[name] = _maybe(
                        scenarios, "flood", lambda: bench.flood(nodes[0], "seatguard", key)
                    )
            else:
                with bench.echo(name) as target:
                    r.setdefault("hold", {})[name] = _maybe(
                        scenarios, "hold", lambda: bench.hold(target, "echo")
                    )
                with bench.echo(name) as target:
                    r.setdefault("flood", {})[name] = _maybe(
                        scenarios, "flood", lambda: bench.flood(target, "echo")
                    )
    if "storm" in scenarios:
        for name in ("websockets", "node"):
            say(f"login storm: {name} echo")
            with bench.echo(name) as target:
                r.setdefault("login_storm", {})[name] = bench.storm(target, "", protocol="echo")
    for store in ("memory", "redis"):
        redis = store == "redis"
        if "storm" in scenarios:
            say(f"login and reconnect storms: {store}")
            with bench.seatguard(redis=redis) as (nodes, key):
                r.setdefault("login_storm", {})[store] = bench.storm(nodes[0], key)
            with bench.seatguard(redis=redis) as (nodes, key):
                r.setdefault("reconnect_storm", {})[store] = bench.storm(nodes[0], key, "reconnect")
        if "admission" in scenarios:
            say(f"admission latency: {store}")
            with bench.seatguard(redis=redis) as (nodes, key):
                rate = sizes.redis_admit_rate if redis else sizes.admit_rate
                held = 0 if redis else min(10_000, sizes.hold)
                r.setdefault("admission", {})[store] = bench.admission(
                    nodes[0], key, sizes.admit if not redis else int(rate * 2), rate, held
                )
            if redis:
                # The asked rate saturates the node: its latencies are a queue's. At a rate
                # it sustains, they are the store's.
                with bench.seatguard(redis=True) as (nodes, key):
                    rate = sizes.redis_steady_rate
                    r["admission"]["redis_steady"] = bench.admission(
                        nodes[0], key, int(rate * 6), rate, 0
                    )
        if "seats" in scenarios:
            say(f"seat checks at {sizes.check_rate:g}/s: {store}")
            with bench.seatguard(redis=redis) as (nodes, key):
                r.setdefault("seat_check", {})[store] = bench.seat_check(nodes[0], key)
    if "seats" in scenarios:
        if "memory" not in r.get("login_storm", {}):
            say("login storm: memory (the login CPU that issuing a token is set against)")
            with bench.seatguard() as (nodes, key):
                r.setdefault("login_storm", {})["memory"] = bench.storm(nodes[0], key)
        say(f"login storms with and without seat tokens: {sizes.token_storms} pairs")
        r["seat_token_storms"] = bench.token_storms()
        say("issuing seat tokens")
        r["seat_tokens"] = bench.issuing()
    if "policies" in scenarios:
        say(f"login storms with and without a policy: {sizes.policy_storms} pairs")
        r["policy_storms"] = bench.policy_storms()
    if "conflict" in scenarios:
        say("conflict push: one node")
        with bench.seatguard() as (nodes, key):
            r.setdefault("conflict", {})["one_node"] = bench.conflict(nodes[0], nodes[0], key)
        say("conflict push: two nodes through Redis")
        with bench.seatguard(redis=True, nodes=2) as (nodes, key):
            r["conflict"]["two_nodes"] = bench.conflict(nodes[0], nodes[1], key)
    return r


def _maybe(
    scenarios: list[str], name: str, run: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    return run() if name in scenarios else None
