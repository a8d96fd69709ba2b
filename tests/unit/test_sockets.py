"""The socket layer in process: a `Socket` fed the bytes a browser sends, writing to a
transport that records each write (each a system call on a real socket)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import msgspec
import pytest
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.uri import parse_uri

from seatguard.protocol import PROTOCOL_VERSION
from seatguard.sockets import Socket
from tests.helpers import scaled

from .inprocess import open_world

pytestmark = pytest.mark.anyio


class RecordingTransport(asyncio.Transport):
    """What a socket wrote, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.wrote.set()

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False


class Browser:
    """The client half of the WebSocket protocol, turning what the socket wrote into
    messages."""

    def __init__(self) -> None:
        self.proto = ClientProtocol(parse_uri("ws://127.0.0.1/ws/v1"))

    def handshake(self) -> bytes:
        self.proto.send_request(self.proto.connect())
        return b"".join(self.proto.data_to_send())

    def text(self, message: dict[str, Any]) -> bytes:
        self.proto.send_text(msgspec.json.encode(message))
        return b"".join(self.proto.data_to_send())

    def read(self, data: bytes) -> list[dict[str, Any]]:
        self.proto.receive_data(data)
        events = self.proto.events_received()
        return [msgspec.json.decode(e.data) for e in events if isinstance(e, Frame)]


async def written(transport: RecordingTransport, count: int) -> list[bytes]:
    """The transport's writes, once there are `count` (the database answers in a thread)."""
    with anyio.fail_after(scaled(5)):
        while len(transport.writes) < count:
            transport.wrote.clear()
            await transport.wrote.wait()
    return transport.writes


async def test_the_welcome_and_the_seat_token_leave_in_one_write() -> None:
    async with open_world() as world:
        node = await world.node(tokens=True)
        transport, browser = RecordingTransport(), Browser()
        sock = Socket(node, ServerState())
        sock.connection_made(transport)
        sock.data_received(browser.handshake())
        upgrade = transport.writes.pop()
        assert upgrade.startswith(b"HTTP/1.1 101 ")
        browser.read(upgrade)
        hello = {
            "t": "hello",
            "v": PROTOCOL_VERSION,
            "site": world.site.key,
            "session": "session-one",
            "tab": "tab-0001",
            "device": "device-one",
            "user": "alice",
        }
        sock.data_received(browser.text(hello))
        # One write holds both: a browser learns its seat and its token together.
        got = browser.read((await written(transport, 1))[0])
        while len(got) < 2:  # (what code writing them apart would have sent next)
            got += browser.read((await written(transport, 2))[1])
        welcome, seat = got
        assert (welcome["t"], welcome["state"], seat["t"]) == ("welcome", "admitted", "seat")
        assert len(transport.writes) == 1
        # After the hello, a frame leaves at once (here a heartbeat's answer).
        sock.data_received(browser.text({"t": "hb", "ref": 1}))
        (ack,) = browser.read((await written(transport, 2))[1])
        assert ack["t"] == "ack"
        sock.connection_lost(None)


@pytest.mark.parametrize(
    ("header", "status"), [("Host", b"400"), ("Origin", b"400"), ("User-Agent", b"101")]
)
async def test_a_header_sent_twice_is_refused_or_ignored_never_an_error(
    header: str, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Two Hosts or two Origins are a bad request; two User-Agents count as none.
    async with open_world() as world:
        node = await world.node()
        transport = RecordingTransport()
        sock = Socket(node, ServerState())
        sock.connection_made(transport)
        head = (
            "GET /ws/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nUser-Agent: a\r\nOrigin: https://a.example\r\n"
            f"{header}: second\r\n\r\n"
        )
        sock.data_received(head.encode())
        answer = transport.writes[0]
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80]
        assert "unexpected" not in caplog.text and "Traceback" not in caplog.text
        sock.connection_lost(None)
