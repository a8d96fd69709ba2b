"""A bounded, seeded fuzz of the network edge against a real server process.

A few hundred connections, a few thousand frames: valid frames with fields mutated, wrong
types, huge numbers, deep nesting, invalid UTF-8, binary frames, fragments, control frames,
oversized frames, frames before and after hello, broken upgrades and bytes that are not
HTTP at all. Every socket must end with a close code from the table in docs/protocol.md
(never 1011), every plain answer must be a 4xx (or 505, 503), the log must hold no traceback, and a
legitimate client must still be admitted afterwards.

The seed is random unless SEATGUARD_FUZZ_SEED gives it; it is printed, and named in every
failure: `SEATGUARD_FUZZ_SEED=<seed> pytest tests/integration/test_fuzz.py` replays a run
(each connection's script depends only on the seed and its number).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from websockets.utils import apply_mask

from seatguard.protocol import CloseCode
from tests.helpers import Server, scaled, start_server
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

SEED = int(os.environ.get("SEATGUARD_FUZZ_SEED") or secrets.randbits(32))
CONNECTIONS = 400  # about eight frames each
AT_ONCE = 24
CODES = {int(c) for c in CloseCode}
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    env = {**server_env, "SEATGUARD_HANDSHAKE_TIMEOUT": str(scaled(1.0))}
    server = start_server(tmp_path_factory.mktemp("fuzz"), "serve", env)
    yield server
    server.stop()


# --- what a script is made of --------------------------------------------------------------


@dataclass
class Script:
    """What one connection sends, and what it said of its own accord."""

    upgrade: bytes  # the request head (or bytes that are not one)
    frames: list[bytes] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)  # codes of well-formed closes sent
    notes: list[str] = field(default_factory=list)  # what each frame was, for failures


def frame(
    rng: random.Random,
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame, as RFC 6455 has it unless told otherwise."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask:
        key = rng.randbytes(4)
        return head + key + apply_mask(payload, key)
    return head + payload


def upgrade_request(rng: random.Random, port: int) -> bytes:
    key = base64.b64encode(rng.randbytes(16)).decode()
    return (
        f"GET /ws/v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def hello(rng: random.Random, site: str) -> dict[str, Any]:
    def ident() -> str:
        return base64.urlsafe_b64encode(rng.randbytes(9)).decode()

    return {
        "t": "hello",
        "v": 1,
        "site": site,
        "user": rng.choice(["ann", "ben", "cat", "dan"]),
        "session": ident(),
        "tab": ident(),
        "device": ident(),
    }


def nested(rng: random.Random) -> str:
    depth = rng.choice([10, 500, 1000, 2500, 5000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + ("1" if opener == "[" else "null") + closer * depth


def odd_value(rng: random.Random) -> Any:
    """A value of the wrong type or an unusual size, as JSON text."""
    return rng.choice(
        [
            "null",
            "true",
            "-1",
            "0",
            str(2**53),
            str(2**64),
            "9" * 400,
            "1e400",
            "-0.0",
            '"' + "x" * rng.choice([0, 1, 300, 9000]) + '"',
            '"\\u0000\\ud800"',
            '"caf\u00e9 \U0001f600"',
            "[]",
            "{}",
            '{"t":"hello"}',
            nested(rng),
        ]
    )


def mutated(rng: random.Random, site: str, ref: int) -> str:
    """A valid frame with one field given an odd value, removed, or added."""
    base = rng.choice(
        [
            hello(rng, site),
            {"t": "hb", "ref": ref, "active": rng.random() < 0.5},
            {"t": "bye", "next": "close"},
            {"t": "logout"},
            {"t": "takeover"},
        ]
    )
    name = rng.choice([*base, "extra", "t"])
    if rng.random() < 0.2 and name in base:
        del base[name]
        return json.dumps(base)
    base[name] = "\x00MARK\x00"
    return json.dumps(base).replace('"\\u0000MARK\\u0000"', odd_value(rng))


def text_frames(rng: random.Random, text: bytes) -> list[bytes]:
    """`text` as one frame, or in fragments (with a ping between, sometimes)."""
    if rng.random() < 0.75 or len(text) < 4:
        return [frame(rng, TEXT, text)]
    cuts = sorted(rng.sample(range(1, len(text)), min(3, len(text) - 1)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    out = []
    for i, part in enumerate(parts):
        out.append(frame(rng, TEXT if i == 0 else CONT, part, fin=i == len(parts) - 1))
        if rng.random() < 0.3:
            out.append(frame(rng, PING, rng.randbytes(rng.randrange(0, 20))))
    return out


def close_frame(rng: random.Random, script: Script) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        script.closes.append(None)
        return frame(rng, CLOSE, b"")
    if choice == 1:  # codes a client may send
        code = rng.choice([1000, 1001, 3000, 4000, 4999])
        script.closes.append(code)
        return frame(rng, CLOSE, code.to_bytes(2, "big") + "bye \u00e9".encode())
    if choice == 2:  # codes no one may send: a protocol error
        code = rng.choice([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
        return frame(rng, CLOSE, code.to_bytes(2, "big"))
    if choice == 3:
        return frame(rng, CLOSE, b"\x03")  # one byte: no room for a code
    if choice == 4:
        return frame(rng, CLOSE, b"\x03\xe8\xff\xfe")  # reason not UTF-8
    return frame(rng, CLOSE, b"\x03\xe8" + b"r" * 130)  # control frame over 125 bytes


def one_step(rng: random.Random, site: str, script: Script, ref: int) -> tuple[str, list[bytes]]:
    """One thing to send, named."""
    kind = rng.choices(
        [
            "valid",
            "mutated",
            "random json",
            "nested",
            "bad utf-8",
            "binary",
            "broken fragments",
            "control",
            "close",
            "oversized",
            "bad header",
            "random bytes",
        ],
        weights=[6, 10, 3, 2, 2, 2, 2, 4, 1, 2, 2, 1],
    )[0]
    if kind == "valid":
        valid = rng.choice(
            [
                {"t": "hb", "ref": ref, "active": rng.random() < 0.5},
                {"t": "takeover"},
                {"t": "logout"},
                hello(rng, site),
            ]
        )
        return kind, text_frames(rng, json.dumps(valid).encode())
    if kind == "mutated":
        return kind, text_frames(rng, mutated(rng, site, ref).encode())
    if kind == "random json":
        value = rng.choice([odd_value(rng), json.dumps(rng.random()), '"hb"', "[1,2,3]"])
        return kind, text_frames(rng, value.encode())
    if kind == "nested":
        prefix = rng.choice(['{"t":', '{"x":', '{"t":"hb","ref":1,"active":', ""])
        suffix = "}" if prefix else ""
        return kind, [frame(rng, TEXT, (prefix + nested(rng) + suffix).encode())]
    if kind == "bad utf-8":
        good = json.dumps({"t": "hb", "ref": ref}).encode()
        cut = rng.randrange(len(good))
        bad = good[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
        return kind, text_frames(rng, bad + good[cut:])
    if kind == "binary":
        return kind, [frame(rng, BINARY, rng.randbytes(rng.randrange(0, 300)))]
    if kind == "broken fragments":
        return kind, rng.choice(
            [
                [frame(rng, CONT, b'{"t":"logout"}')],  # a continuation of nothing
                [frame(rng, TEXT, b'{"t":', fin=False), frame(rng, TEXT, b'"logout"}')],
                [frame(rng, TEXT, b'{"t":', fin=False), frame(rng, BINARY, b"\x00")],
                [frame(rng, TEXT, b'{"t":"hb",', fin=False)],  # never finished
            ]
        )
    if kind == "control":
        return kind, [
            rng.choice(
                [
                    frame(rng, PING, rng.randbytes(rng.randrange(0, 126))),
                    frame(rng, PONG, rng.randbytes(rng.randrange(0, 126))),
                    frame(rng, PING, rng.randbytes(126)),  # control frame too long
                    frame(rng, PING, b"p", fin=False),  # fragmented control frame
                ]
            )
        ]
    if kind == "close":
        return kind, [close_frame(rng, script)]
    if kind == "oversized":
        return kind, [
            rng.choice(
                [
                    frame(rng, TEXT, b'{"t":"hb","ref":1,"x":"' + b"o" * 20_000 + b'"}'),
                    frame(rng, TEXT, b"o" * 70_000),
                    frame(rng, TEXT, b"o" * 10, length=2**40),  # claims a terabyte
                    frame(rng, BINARY, b"o" * 10, length=2**63 - 1),
                ]
            )
        ]
    if kind == "bad header":
        return kind, [
            rng.choice(
                [
                    frame(rng, TEXT, b'{"t":"logout"}', rsv=rng.randrange(1, 8)),
                    frame(rng, rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xF]), b"x"),
                    frame(rng, TEXT, b'{"t":"logout"}', mask=False),
                ]
            )
        ]
    return kind, [rng.randbytes(rng.randrange(1, 64))]


def make_script(number: int, port: int, site: str) -> Script:
    rng = random.Random(f"{SEED}/{number}")
    roll = rng.random()
    if roll < 0.05:  # not HTTP at all
        return Script(rng.randbytes(rng.randrange(1, 200)) + rng.choice([b"", b"\r\n\r\n"]))
    if roll < 0.12:  # an upgrade, broken
        request = upgrade_request(rng, port).decode()
        broken = rng.choice(
            [
                request.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                request.replace("Upgrade: websocket\r\n", ""),
                request.replace("GET", rng.choice(["POST", "BREW", "G\x00T"])),
                request.replace("HTTP/1.1", rng.choice(["HTTP/1.0", "HTTP/9.9", "XTTP/1.1"])),
                request.replace("/ws/v1", rng.choice(["/ws/v1/", "/ws/v1?x=%ff", "/ws/v2"])),
                request.replace("Sec-WebSocket-Key: ", "Sec-WebSocket-Key: !!"),
                request[: rng.randrange(len(request))],  # cut short: timed out
                request.replace("\r\n\r\n", "\r\nX-Big: " + "b" * 40_000 + "\r\n\r\n"),
            ]
        )
        return Script(broken.encode("latin-1"))
    script = Script(upgrade_request(rng, port))
    steps = rng.randrange(3, 14)
    if rng.random() < 0.6:
        script.frames += text_frames(rng, json.dumps(hello(rng, site)).encode())
        script.notes.append("hello")
    for ref in range(1, steps + 1):
        kind, frames = one_step(rng, site, script, ref)
        script.frames += frames
        script.notes.append(kind)
    # End politely, so that a socket still open closes now rather than at a timeout.
    script.frames.append(frame(rng, TEXT, b'{"t":"bye","next":"close"}'))
    return script


# --- running a script ------------------------------------------------------------------------


@dataclass
class Ending:
    status: int | None  # of the HTTP answer (101 when upgraded), None without one
    code: int | None  # of the server's close frame, None without one
    eof: bool  # the server closed the connection


class Received(asyncio.Protocol):
    """Keeps every byte the server sent, whatever happens to the connection after."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.more = asyncio.Event()
        self.lost = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.more.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.more.set()

    async def until(self, done: Callable[[bytes], bool]) -> None:
        """Wait until `done(data)` or the connection is lost."""
        while not done(bytes(self.data)) and not self.lost.is_set():
            self.more.clear()
            await self.more.wait()


async def run(port: int, script: Script) -> Ending:
    loop = asyncio.get_running_loop()
    transport, got = await loop.create_connection(Received, "127.0.0.1", port)
    try:
        transport.write(script.upgrade)
        await got.until(lambda data: b"\r\n\r\n" in data)
        head, end, _ = bytes(got.data).partition(b"\r\n\r\n")
        if not end:
            return Ending(None, None, got.lost.is_set())
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            await got.lost.wait()
            return Ending(status, None, True)
        for data in script.frames:  # until the server closes: what follows would be lost
            if got.lost.is_set() or close_code(bytes(got.data).partition(b"\r\n\r\n")[2]):
                break
            transport.write(data)
            await asyncio.sleep(0)
        await got.until(lambda data: close_code(data.partition(b"\r\n\r\n")[2]) is not None)
        return Ending(101, close_code(bytes(got.data).partition(b"\r\n\r\n")[2]), True)
    finally:
        transport.abort()


def close_code(data: bytes) -> int | None:
    """The code of the server's close frame in `data` (1005 when it has none), or None
    while there is none."""
    at = 0
    while at + 2 <= len(data):
        b0, b1 = data[at], data[at + 1]
        n, at = b1 & 0x7F, at + 2
        if n >= 126:
            size = 2 if n == 126 else 8
            if at + size > len(data):
                return None
            n, at = int.from_bytes(data[at : at + size], "big"), at + size
        if at + n > len(data):
            return None
        if b0 & 0x0F == CLOSE:
            return int.from_bytes(data[at : at + 2], "big") if n else 1005
        at += n
    return None


def judge(script: Script, ending: Ending) -> str | None:
    """What is wrong with how the connection ended, or None."""
    if ending.status is None or ending.status == 503:
        return None if script.frames == [] or ending.status == 503 else "no answer to an upgrade"
    if ending.status != 101:  # refused: a client error, or an HTTP version not spoken
        return None if 400 <= ending.status < 500 or ending.status == 505 else "answered 5xx"
    if ending.code is None:
        return "ended without a close frame"
    if ending.code == CloseCode.internal_error:
        return "closed with 1011"
    if ending.code in CODES or ending.code in script.closes:  # ours, echoed
        return None
    if ending.code == 1005 and None in script.closes:
        return None
    return f"closed with {ending.code}, not in the table"


async def test_hostile_frames_end_with_codes_of_the_table(
    fuzzed: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\nfuzz seed: SEATGUARD_FUZZ_SEED={SEED}")
    print(f"SEATGUARD_FUZZ_SEED={SEED}")  # shown again with a failure
    site = str(fuzzed.create_site("--name", "Fuzz", "--origin", "*", "--client-settings")["key"])
    scripts = [make_script(i, fuzzed.port, site) for i in range(CONNECTIONS)]
    sent = sum(len(s.frames) for s in scripts)
    assert sent >= 2000, sent
    wrong: list[str] = []
    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def one(i: int) -> None:
        async with limiter:
            try:
                with anyio.fail_after(scaled(10)):
                    ending = await run(fuzzed.port, scripts[i])
            except TimeoutError:
                wrong.append(f"#{i}: still open after {scaled(10)} s; {scripts[i].notes}")
                return
            problem = judge(scripts[i], ending)
            if problem:
                wrong.append(f"#{i}: {problem}; {scripts[i].notes} {ending}")

    async with anyio.create_task_group() as tg:
        for i in range(CONNECTIONS):
            tg.start_soon(one, i)

    replay = f"(replay with SEATGUARD_FUZZ_SEED={SEED})"
    assert not wrong, f"{len(wrong)} connections ended wrong {replay}:\n" + "\n".join(wrong[:20])
    log = fuzzed.log.read_text(errors="replace")
    for bad in ("Traceback", "unexpected error", "Exception in ASGI"):
        assert bad not in log, f"{bad!r} in the server log {replay}:\n{log[-4000:]}"
    _, welcome = await Tab.open(fuzzed.ws, site, Browser("after-the-fuzz"))
    assert welcome["state"] == "admitted", replay


def test_scripts_depend_only_on_the_seed_and_their_number() -> None:
    def sent(number: int) -> bytes:
        script = make_script(number, 8000, "pk_site")
        return b"".join([script.upgrade, *script.frames])

    assert [sent(i) for i in range(40)] == [sent(i) for i in range(40)]
