"""One load-generating process of `seatguard bench`: many WebSockets, little Python.

Run as `python -m seatguard.bench.client '<job JSON>'`. The process opens its sockets,
prints a `ready` line (JSON) and waits for `go` on standard input, runs the job's phase,
prints a `done` line with its counts and latencies, and exits. Sockets are
`asyncio.Protocol`s driving the `websockets` sans-I/O client on uvloop, so one process
can hold thousands of them; the seat checks go over keep-alive HTTP/1.1 connections of
the same kind (`HttpConn`), one request at a time each.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

__all__ = ["Job", "main"]


@dataclass
class Job:
    """What one client process does (all times in seconds)."""

    kind: str  # hold | flood | storm | reconnect | admit | conflict | check
    url: str
    count: int = 1000  # sockets (or sessions, or trials for `conflict`)
    protocol: str = "seatguard"  # or "echo": the frame comes back as its ack
    site: str = ""
    urls: list[str] = field(default_factory=list)  # conflict: the node of the newcomer
    inflight: int = 1000  # connections being opened at once
    duration: float = 10.0
    interval: float = 25.0  # hold: seconds between heartbeats of each socket
    rate: float = 500.0  # admit: new sessions per second; check: checks per second
    sources: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    prefix: str = ""
    secret: str = ""  # check: the site's secret key
    db: str = ""  # check: the node's database, beside which its seat keys are


_CHALLENGE = b'{"t":"challenge"'
"""The device key's challenge, sent before the hello: the bench's tabs keep no key."""


class Conn(asyncio.Protocol):
    """A client WebSocket: `on_open()` after the handshake, `on_text(str)` per message."""

    __slots__ = ("closed", "on_close", "on_open", "on_text", "opened", "proto", "transport")

    def __init__(
        self,
        url: str,
        on_text: Callable[[Conn, str], None],
        on_open: Callable[[Conn], None],
        on_close: Callable[[Conn], None] | None = None,
    ) -> None:
        self.proto = ClientProtocol(parse_uri(url))
        self.on_text, self.on_open, self.on_close = on_text, on_open, on_close
        self.transport: asyncio.Transport | None = None
        self.opened = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT and bytes(event.data[:16]) != _CHALLENGE:
                    self.on_text(self, bytes(event.data).decode())
            elif isinstance(event, Response) and event.status_code == 101:
                self.opened = True
                self.on_open(self)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.on_close is not None:
            self.on_close(self)

    def send(self, text: str) -> None:
        if self.transport is not None and not self.closed:
            self.proto.send_text(text.encode())
            self._flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        if self.transport is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()


class HttpConn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection, one request at a time; `on_answer(conn,
    status, body)` when an answer has come whole (the server sends `Content-Length`)."""

    __slots__ = ("buffer", "closed", "on_answer", "sent_at", "transport")

    def __init__(self, on_answer: Callable[[HttpConn, int, bytes], None]) -> None:
        self.on_answer = on_answer
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in head
            if line.lower().startswith("content-length:")
        )
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4 : end + 4 + length], b""
        self.on_answer(self, int(head[0].split()[1]), body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def request(self, raw: bytes) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(raw)


class Latencies:
    """Latencies in microseconds; percentiles at the end."""

    def __init__(self) -> None:
        self.values = array("d")

    def add(self, seconds: float) -> None:
        self.values.append(seconds * 1e6)

    def summary(self) -> dict[str, Any]:
        if not self.values:
            return {"n": 0}
        ordered = sorted(self.values)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1000, 3)

        return {
            "n": len(ordered),
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": round(ordered[-1] / 1000, 3),
        }


class Runner:
    """Runs one job; every socket is one browser session of its own user."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.loop = asyncio.get_running_loop()
        uri = parse_uri(job.url)
        self.host, self.port = uri.host, uri.port
        self.sources = itertools.cycle(job.sources)
        self.prefix = job.prefix or secrets.token_hex(3)
        self.failed = 0
        self.sent = 0
        self.acks = 0
        self.checks = 0
        self.latency = Latencies()

    def hello(self, n: int, session: str | None = None) -> str:
        p = self.prefix
        return json.dumps(
            {
                "t": "hello",
                "v": 1,
                "site": self.job.site,
                "user": f"u{p}{n}",
                "session": session or f"s{p}x{n:08d}",
                "tab": f"t{p}x{n:08d}",
                "device": f"d{p}x{n:08d}",
            }
        )

    async def open(
        self,
        on_text: Callable[[Conn, str], None],
        on_open: Callable[[Conn], None],
        url: str | None = None,
        on_close: Callable[[Conn], None] | None = None,
    ) -> Conn | None:
        uri = parse_uri(url) if url else None
        try:
            _, conn = await self.loop.create_connection(
                lambda: Conn(url or self.job.url, on_text, on_open, on_close),
                uri.host if uri else self.host,
                uri.port if uri else self.port,
                local_addr=(next(self.sources), 0),
            )
        except OSError:
            self.failed += 1
            return None
        return conn

    async def many(self, count: int, make: Callable[[int], Any]) -> list[Any]:
        """Run `make(i)` for every i with at most `inflight` at once."""
        gate = asyncio.Semaphore(self.job.inflight)

        async def one(i: int) -> Any:
            async with gate:
                return await make(i)

        return await asyncio.gather(*(one(i) for i in range(count)))

    # --- holding sockets open ------------------------------------------------------------

    async def connect_all(self) -> list[Conn]:
        """Open `count` sockets and say hello on each (the echo servers get no hello)."""
        waiters: dict[Conn, asyncio.Future[None]] = {}

        def opened(conn: Conn) -> None:
            if self.job.protocol == "echo":
                waiters[conn].set_result(None)
            else:
                conn.send(self.hello(id(conn)))

        def text(conn: Conn, message: str) -> None:
            future = waiters.get(conn)
            if future is not None and not future.done():
                future.set_result(None)
            elif message.startswith('{"t":"ack"') or self.job.protocol == "echo":
                self._acked(conn)

        async def make(i: int) -> Conn | None:
            future: asyncio.Future[None] = self.loop.create_future()

            def on_open(conn: Conn) -> None:
                waiters[conn] = future
                opened(conn)

            conn = await self.open(text, on_open)
            if conn is None:
                return None
            try:
                await asyncio.wait_for(future, 30)
            except TimeoutError:
                self.failed += 1
                return None
            waiters.pop(conn, None)
            return conn

        self._pending: dict[Conn, float] = {}
        found = await self.many(self.job.count, make)
        return [c for c in found if c is not None]

    def _acked(self, conn: Conn) -> None:
        started = self._pending.pop(conn, None)
        if started is not None:
            self.acks += 1
            self.latency.add(time.perf_counter() - started)
            if self._flooding:
                self._beat(conn)

    def _beat(self, conn: Conn) -> None:
        self.sent += 1
        self._pending[conn] = time.perf_counter()
        conn.send(f'{{"t":"hb","ref":{self.sent}}}')

    _flooding = False

    async def hold(self, conns: list[Conn]) -> None:
        """Each socket beats every `interval` seconds, spread evenly."""
        job, end = self.job, self.loop.time() + self.job.duration
        step = job.interval / max(1, len(conns))
        for i in itertools.count():
            conn = conns[i % len(conns)]
            if conn not in self._pending and not conn.closed:
                self._beat(conn)
            wait = (i + 1) * step - (self.loop.time() - (end - job.duration))
            if self.loop.time() >= end:
                return
            if wait > 0:
                await asyncio.sleep(wait)

    async def flood(self, conns: list[Conn]) -> None:
        """Every socket beats again as soon as its last beat is acknowledged."""
        self._flooding = True
        for conn in conns:
            self._beat(conn)
        await asyncio.sleep(self.job.duration)
        self._flooding = False

    # --- opening sessions ---------------------------------------------------------------

    async def storm(self, sessions: list[str] | None = None) -> list[Conn]:
        """Open sessions as fast as `inflight` allows; time each from connect to welcome."""
        conns: list[Conn] = []
        welcomed = 0

        async def make(i: int) -> None:
            nonlocal welcomed
            started = time.perf_counter()
            done: asyncio.Future[str] = self.loop.create_future()

            def text(conn: Conn, message: str) -> None:
                if not done.done():
                    done.set_result(message)

            session = sessions[i] if sessions else None
            conn = await self.open(text, lambda c: c.send(self.hello(i, session)))
            if conn is None:
                return
            try:
                message = await asyncio.wait_for(done, 30)
            except TimeoutError:
                self.failed += 1
                conn.abort()
                return
            admitted = '"t":"welcome"' in message and '"state":"admitted"' in message
            if self.job.protocol == "seatguard" and not admitted:  # an echo sends the hello
                self.failed += 1
                conn.abort()
                return
            welcomed += 1
            self.latency.add(time.perf_counter() - started)
            conns.append(conn)

        await self.many(self.job.count, make)
        self.welcomed = welcomed
        return conns

    async def admit(self) -> None:
        """New sessions at a steady `rate`, one socket each; time hello to welcome."""
        job = self.job
        tasks = []
        start = self.loop.time()
        for i in range(job.count):
            delay = start + i / job.rate - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(self.loop.create_task(self._admit_one(i)))
        await asyncio.gather(*tasks)

    async def _admit_one(self, i: int) -> None:
        done: asyncio.Future[float] = self.loop.create_future()
        sent = [0.0]

        def opened(conn: Conn) -> None:
            sent[0] = time.perf_counter()
            conn.send(self.hello(i))

        def text(conn: Conn, message: str) -> None:
            if not done.done():
                done.set_result(time.perf_counter())

        conn = await self.open(text, opened)
        if conn is None:
            return
        try:
            at = await asyncio.wait_for(done, 30)
            self.latency.add(at - sent[0])
        except TimeoutError:
            self.failed += 1
        conn.abort()

    # --- seat checks ----------------------------------------------------------------------

    def seat_tokens(self) -> list[str]:
        """A token for each session `storm` seats, signed with the node's own key file."""
        from ..seat import SeatTokens, load_seat_keys  # only this job signs
        from ..settings import Settings

        settings = Settings(db=self.job.db, port=self.port)
        ring = load_seat_keys(settings, create=False, now=time.time())
        tokens = SeatTokens(ring, settings.issuer)
        found = []
        for i in range(self.job.count):
            hello = json.loads(self.hello(i))
            seat = tokens.issue(
                site=self.job.site,
                user=hello["user"],
                session=hello["session"],
                device=hello["device"],
                ttl=900,  # longer than any run
            )
            found.append(seat.token)
        return found

    async def check(self, tokens: list[str]) -> None:
        """`POST /api/v1/seats/check` at a steady `rate` for `duration`, round the tokens,
        each on an idle keep-alive connection (a new one when none is idle); time request
        out to answer in. An answer other than `active: true` counts as failed."""
        job = self.job
        heads = (
            f"POST /api/v1/seats/check HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {job.secret}\r\nContent-Type: application/json\r\n"
        )
        requests = []
        for token in tokens:
            body = json.dumps({"token": token}).encode()
            requests.append(f"{heads}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        idle: list[HttpConn] = []
        outstanding = 0
        finished = asyncio.Event()

        def answered(conn: HttpConn, status: int, body: bytes) -> None:
            nonlocal outstanding
            self.latency.add(time.perf_counter() - conn.sent_at)
            self.checks += 1
            if status != 200 or b'"active":true' not in body:
                self.failed += 1
            outstanding -= 1
            idle.append(conn)
            if outstanding == 0:
                finished.set()

        start = self.loop.time()
        for i in range(int(job.rate * job.duration)):
            delay = start + i / job.rate - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while idle and idle[-1].closed:
                idle.pop()
            if idle:
                conn = idle.pop()
            else:
                try:
                    _, conn = await self.loop.create_connection(
                        lambda: HttpConn(answered), self.host, self.port
                    )
                except OSError:
                    self.failed += 1
                    continue
            outstanding += 1
            finished.clear()
            conn.request(requests[i % len(requests)])
        if outstanding:
            try:
                await asyncio.wait_for(finished.wait(), 30)
            except TimeoutError:
                self.failed += outstanding

    async def conflict(self) -> None:
        """Trials: A holds the seat (first URL); B says hello (other URL) and evicts it;
        time from B's hello to A's block."""
        for i in range(self.job.count):
            await self._conflict_once(i)

    async def _conflict_once(self, i: int) -> None:
        other = self.job.urls[0] if self.job.urls else self.job.url
        blocked: asyncio.Future[float] = self.loop.create_future()
        seated: asyncio.Future[None] = self.loop.create_future()
        a_hello = self.hello(i)

        def a_text(conn: Conn, message: str) -> None:
            if '"t":"welcome"' in message and not seated.done():
                seated.set_result(None)
            elif '"t":"block"' in message and not blocked.done():
                blocked.set_result(time.perf_counter())

        a = await self.open(a_text, lambda c: c.send(a_hello))
        if a is None:
            return
        await asyncio.wait_for(seated, 10)
        b_hello = json.loads(a_hello)
        b_hello.update(
            session="b" + b_hello["session"],
            tab="b" + b_hello["tab"],
            device="b" + b_hello["device"],
            policy="evict-oldest",
        )
        sent = [0.0]

        def b_open(conn: Conn) -> None:
            sent[0] = time.perf_counter()
            conn.send(json.dumps(b_hello))

        b = await self.open(lambda c, m: None, b_open, url=other)
        try:
            self.latency.add(await asyncio.wait_for(blocked, 10) - sent[0])
        except TimeoutError:
            self.failed += 1
        a.abort()
        if b is not None:
            b.abort()


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _go() -> None:
    """Wait for the conductor's `go` line on standard input."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run(job: Job) -> None:
    r = Runner(job)
    if job.kind in ("hold", "flood"):
        conns = await r.connect_all()
        _say(event="ready", connected=len(conns), failed=r.failed)
        await _go()
        await (r.hold(conns) if job.kind == "hold" else r.flood(conns))
        _say(
            event="done",
            connected=len(conns),
            failed=r.failed,
            sent=r.sent,
            acks=r.acks,
            latency=r.latency.summary(),
        )
        await _go()  # hold the sockets until the conductor has read the server's memory
    elif job.kind in ("storm", "reconnect"):
        _say(event="ready", connected=0, failed=0)
        await _go()
        began = time.perf_counter()
        conns = await r.storm()
        took = time.perf_counter() - began
        if job.kind == "reconnect":
            sessions = [json.loads(r.hello(i))["session"] for i in range(job.count)]
            _say(event="held", connected=len(conns), failed=r.failed)
            await _go()
            for conn in conns:  # every socket drops at once, as when a node dies
                conn.abort()
            r.failed, r.latency = 0, Latencies()
            began = time.perf_counter()
            await r.storm(sessions)
            took = time.perf_counter() - began
        _say(
            event="done",
            welcomed=r.welcomed,
            failed=r.failed,
            seconds=round(took, 3),
            latency=r.latency.summary(),
        )
    elif job.kind == "admit":
        _say(event="ready", connected=0, failed=0)
        await _go()
        began = time.perf_counter()
        await r.admit()
        _say(
            event="done",
            failed=r.failed,
            seconds=round(time.perf_counter() - began, 3),
            latency=r.latency.summary(),
        )
    elif job.kind == "check":
        await r.storm()  # the sessions whose tokens are checked, seated, sockets kept open
        tokens = r.seat_tokens()
        _say(event="ready", connected=r.welcomed, failed=r.failed)
        await _go()
        r.failed, r.latency = 0, Latencies()
        began = time.perf_counter()
        await r.check(tokens)
        _say(
            event="done",
            checks=r.checks,
            failed=r.failed,
            seconds=round(time.perf_counter() - began, 3),
            latency=r.latency.summary(),
        )
    elif job.kind == "conflict":
        _say(event="ready", connected=0, failed=0)
        await _go()
        await r.conflict()
        _say(event="done", failed=r.failed, latency=r.latency.summary())
    else:
        raise SystemExit(f"unknown job kind {job.kind!r}")


def main() -> None:
    import uvloop

    job = Job(**json.loads(sys.argv[1]))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    uvloop.run(run(job))


if __name__ == "__main__":
    main()
