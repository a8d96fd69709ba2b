"""The WebSocket endpoint, lean: `asyncio.Protocol` callbacks driving the `websockets`
sans-I/O protocol, one small object per socket and no task, timer or ping per connection.

`seatguard serve` runs uvicorn with `HttpProtocol` as its HTTP protocol class. A connection
whose request is for `/ws/v1` becomes a `Socket`; any other request is handed, with the
bytes read so far, to uvicorn's own HTTP protocol (`plainhttp.PlainHttp`), which serves the
Starlette app (SDK file, REST API, demo). Heartbeats are answered inside `data_received`
without an await; other frames run through the channel in a task, one at a time and in
order. Compression is declined: it would triple the memory of every connection.

From accept until its request head is in, or for a socket its hello answered, a
connection is a `handshakes.Handshake`: timed, bounded in size and counted under caps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from .channel import Channel, ChannelState, unexpected
from .devices import hints_from_headers
from .handshakes import Handshake, Handshakes, head_size, plain_response
from .node import Node
from .plainhttp import PlainHttp
from .protocol import WS_PATH, CloseCode
from .proxies import TrustedProxies

__all__ = ["HttpProtocol", "Socket"]

log = logging.getLogger("seatguard")
_quiet = logging.getLogger("seatguard.websockets")  # the sans-I/O protocol's own logger

_MAX_HEAD = 16384  # bytes of request head read for its first line, without handshake caps
_MAX_BUFFERED = 1 << 20  # bytes queued to a peer that does not read; then it is dropped
_LINE_TOO_LONG = plain_response(414, "URI Too Long", "the request line is over the size limit\n")


class _Timeout:
    """In a socket's queue: the hello timeout ran out."""


_HELLO_TIMEOUT = _Timeout()
_Item = str | bytes | None | _Timeout  # a frame's data, None when the socket closed


class HttpProtocol(asyncio.Protocol):
    """uvicorn's protocol class: sends `/ws/v1` to a `Socket`, all else to uvicorn."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or asyncio.get_running_loop()
        self._head = bytearray()
        self._handshake: Handshake | None = None  # handed on with the connection
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        gate: Handshakes | None = self._app_state.get("handshakes")
        if gate is not None:
            self._handshake = gate.start(self.transport)
            if self._handshake is None:
                return  # turned away: answered 503, closing
        self._server_state.connections.add(self)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_state.connections.discard(self)
        if self._handshake is not None:
            self._handshake.done()
            self._handshake = None

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        transport, head, handshake = self.transport, self._head, self._handshake
        assert transport is not None
        if transport.is_closing():
            return
        start = max(len(head) - 1, 0)  # where a CRLF may begin that was not looked at yet
        head += data
        line_end = head.find(b"\r\n", start)
        if line_end < 0:
            if len(head) > (handshake.max_head if handshake is not None else _MAX_HEAD):
                transport.write(_LINE_TOO_LONG)
                transport.close()
            return
        parts = bytes(head[:line_end]).split(b" ")
        target = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
        self._server_state.connections.discard(self)
        self._head, self._handshake = bytearray(), None
        node: Node | None = self._app_state.get("node")
        nxt: asyncio.Protocol
        if target == WS_PATH.encode() and node is not None:
            nxt = Socket(node, self._server_state, handshake, self._app_state.get("proxies"))
        else:
            nxt = PlainHttp(
                config=self._config,
                server_state=self._server_state,
                app_state=self._app_state,
                handshake=handshake,
                _loop=self._loop,
            )
        transport.set_protocol(nxt)
        nxt.connection_made(transport)
        nxt.data_received(bytes(head))


class Socket(asyncio.Protocol):
    """One tab's WebSocket: frames in, the channel decides, frames out."""

    __slots__ = (
        "_busy",
        "_channel",
        "_close_timer",
        "_corked",
        "_fragments",
        "_handshake",
        "_head_left",
        "_hello_at",
        "_node",
        "_proto",
        "_proxies",
        "_queue",
        "_server_state",
        "_task",
        "_timer",
        "transport",
    )

    def __init__(
        self,
        node: Node,
        server_state: ServerState,
        handshake: Handshake | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self._node = node
        # whose X-Forwarded-* headers count; the app parses them once (default: the node's)
        self._proxies = proxies if proxies is not None else node.settings.proxies
        self._server_state = server_state
        limit = node.settings.max_message_bytes
        # Frames between the limit and this get the channel's error frame and 1009; larger
        # ones are cut off by the protocol itself (1009, no error frame).
        self._proto = ServerProtocol(max_size=max(65536, 4 * limit), logger=_quiet)
        self._channel: Channel | None = None
        self._queue: deque[_Item] | None = None  # frames waiting for the channel
        self._busy = False  # a task is feeding the channel
        # While the hello is answered, frames are written together when it is done (the
        # welcome and the seat token in one write, one system call).
        self._corked = False
        self._task: asyncio.Task[None] | None = None  # that task, held so that it is not collected
        self._fragments: list[Any] | None = None  # opcode, then the parts of a message
        self._timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None  # for the peer's closing frame
        self._hello_at = 0.0  # when the hello frame came in, to time the admission
        # Until the hello is answered: the connection's timer and place under the caps.
        self._handshake = handshake
        # Bytes the request head may still take; None once it is in (or when unbounded).
        self._head_left = handshake.max_head if handshake is not None else None
        self.transport: asyncio.Transport | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server_state.connections.add(self)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        proto = self._proto
        try:
            proto.receive_data(data)
            for event in proto.events_received():
                if isinstance(event, Frame):
                    self._frame(event)
                elif isinstance(event, Request):
                    self._upgrade(event)
            if self._head_left is not None:
                self._head_left -= len(data)
                if self._head_left < 0:
                    self._head_too_large()
        except Exception:  # a bug: this socket ends, the event loop does not log it each time
            unexpected("unexpected error reading a socket", exc_info=True)
            if proto.state is not State.OPEN and self.transport is not None:
                self.transport.abort()
                return
            proto.fail(int(CloseCode.internal_error), "internal error")
        self._flush()

    def eof_received(self) -> bool | None:
        self._proto.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_state.connections.discard(self)
        if self._handshake is not None:
            self._handshake.done()
            self._handshake = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        # What this socket holds is freed by reference counting, not left to the garbage
        # collector (see `seatguard.collector`): the protocol's parser, suspended or ended,
        # holds the protocol in its frame, and so does the traceback of how it ended.
        proto = self._proto
        proto.parser.close()
        if proto.parser_exc is not None:
            proto.parser_exc.__traceback__ = None
        channel = self._channel
        if channel is not None and channel.state is not ChannelState.closed:
            self._enqueue(None)  # `_drain` lets go of the channel once it has left
        else:
            self._channel = None  # the channel holds this socket as its transport

    def shutdown(self) -> None:
        """The server is stopping: ask the tab to come back later (to another node)."""
        if self._proto.state is State.OPEN:
            self._proto.send_close(int(CloseCode.service_restart), "server restarting")
            self._flushed_close()
        elif self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        """The peer reads slower than we write; `_flush` drops it past `_MAX_BUFFERED`."""

    def resume_writing(self) -> None:
        pass

    # --- the channel's transport --------------------------------------------------------

    async def send(self, text: bytes) -> None:
        self.send_now(text)

    async def close(self, code: int, reason: str) -> None:
        if self._proto.state is State.OPEN:
            self._proto.send_close(code, reason)
        self._flushed_close()

    def send_now(self, text: bytes) -> None:
        if self._proto.state is State.OPEN:
            self._proto.send_text(text)
            if not self._corked:
                self._flush()

    # --- inside -------------------------------------------------------------------------

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        data = self._proto.data_to_send()
        end = b"" in data  # end of the connection: the closing handshake is done, or failed
        if end:
            data = data[: data.index(b"")]
        if data:
            transport.write(data[0] if len(data) == 1 else b"".join(data))
        if end:
            self._linger(transport)
            return
        if self._proto.close_expected() and self._proto.state is State.CLOSED:
            transport.close()
        elif transport.get_write_buffer_size() > _MAX_BUFFERED:
            log.info("dropping a socket whose peer does not read")
            transport.abort()

    def _flushed_close(self) -> None:
        """Send the close frame; a peer that does not answer it within the handshake
        timeout is cut off (without this, it would hold its file forever)."""
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self._close_deadline(self.transport)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Half-close, and close once the peer does (or at the handshake timeout). Closing
        at once with bytes of the peer unread would reset the connection, and the peer
        could lose the close frame or the HTTP answer just sent to it."""
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._close_deadline(transport)

    def _close_deadline(self, transport: asyncio.Transport) -> None:
        if self._close_timer is None:
            timeout = self._node.settings.handshake_timeout
            self._close_timer = asyncio.get_running_loop().call_later(timeout, transport.abort)

    def _upgrade(self, request: Request) -> None:
        proto, transport = self._proto, self.transport
        assert transport is not None
        self._head_left = None
        handshake = self._handshake
        if handshake is not None and (
            head_size(request.path, request.headers.raw_items()) > handshake.max_head
        ):
            self._head_too_large()  # it came in whole, in one read
            return
        if len(request.headers.get_all("Host")) > 1:  # RFC 9112: answered with a 400
            response = proto.reject(400, "Failed to open a WebSocket connection: two Hosts.\n")
        else:
            response = proto.accept(request)
        if response.status_code != 101:  # a plain-text refusal, like every HTTP answer's
            response.headers["X-Content-Type-Options"] = "nosniff"
        proto.send_response(response)
        if response.status_code != 101:
            return
        if handshake is not None:
            handshake.upgraded()  # the hello timeout takes over
        if not proto.reader.buffer:
            # The handshake's parser keeps the request (headers and all) alive for as long
            # as the connection lives; a fresh frame parser lets it go. Nothing of the next
            # frame has been read yet (the buffer is empty), so no byte is lost.
            old, proto.parser = proto.parser, Protocol.parse(proto)
            next(proto.parser)
            old.close()
            proto.reader.buffer = bytearray()  # and the room the request took
        headers = request.headers
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else ""
        scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        proxies = self._proxies
        if ip in proxies:
            forwarded_proto = _single(headers.get_all("X-Forwarded-Proto"))
            scheme = proxies.scheme(ip, forwarded_proto, scheme)
            ip = proxies.client(ip, headers.get_all("X-Forwarded-For"))
        self._channel = Channel(
            self._node,
            self,
            origin=headers.get("Origin"),
            own_origin=f"{scheme}://{headers.get('Host', '')}".lower(),
            user_agent=_single(headers.get_all("User-Agent")) or "",
            ip=ip,
            hints=hints_from_headers(
                _single(headers.get_all("Sec-CH-UA-Mobile")),
                _single(headers.get_all("Sec-CH-UA-Platform")),
                _single(headers.get_all("Sec-CH-UA-Form-Factors")),
            ),
        )
        # The device key's challenge goes out with the upgrade; it is good until the hello
        # timeout, on this socket only (channel.py).
        self.send_now(self._channel.challenge())
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._node.settings.hello_timeout, self._hello_timeout)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [opcode, frame.data]
                return
            data = bytes(frame.data)
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(frame.data)
            if not frame.fin:
                return
            opcode, *parts = self._fragments
            data = b"".join(parts)
            self._fragments = None
        else:
            return  # ping, pong and close are the protocol's business
        if opcode is Opcode.BINARY:
            self._enqueue(data)
            return
        channel = self._channel
        if channel is not None and not self._busy:
            ack = channel.heartbeat_now(data)
            if ack is not None:
                self.send_now(ack)
                return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self._proto.fail(int(CloseCode.invalid_data), "invalid UTF-8")
            return
        if not self._hello_at and channel is not None:
            self._hello_at = time.perf_counter()
        self._enqueue(text)

    def _enqueue(self, item: _Item) -> None:
        """Feed the channel in order, in a task; None means the socket closed."""
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        if not self._busy:
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        channel, queue = self._channel, self._queue
        try:
            while queue:
                item = queue.popleft()
                if channel is None:
                    continue
                if item is None:
                    await channel.closed()
                    self._channel = None
                elif isinstance(item, _Timeout):
                    if channel.state is ChannelState.awaiting_hello:
                        await channel.end(CloseCode.protocol_order, "no hello within the timeout")
                elif channel.state is ChannelState.awaiting_hello:
                    self._corked = True
                    try:
                        await channel.receive(item)
                    finally:
                        self._corked = False
                        self._flush()
                else:
                    await channel.receive(item)
                if self._timer is not None and channel.state is not ChannelState.awaiting_hello:
                    self._timer.cancel()
                    self._timer = None
                    if channel.state is ChannelState.joined:
                        self._node.admissions.add(time.perf_counter() - self._hello_at)
                if self._handshake is not None and channel.state is not ChannelState.awaiting_hello:
                    self._handshake.done()
                    self._handshake = None
        except Exception:
            unexpected("unexpected error on a socket", exc_info=True)
        finally:
            self._busy = False
            self._queue = None
            self._task = None

    def _head_too_large(self) -> None:
        """The request head is over `max_head_bytes`: 431, and close."""
        self._head_left = None
        proto = self._proto
        if proto.state is State.CONNECTING and proto.handshake_exc is None:  # none answered
            proto.send_response(
                proto.reject(431, "Failed to open a WebSocket connection: head too large.\n")
            )

    def _hello_timeout(self) -> None:
        # In the channel's queue, so that a hello that came in just before is handled first
        # and one that comes in just after finds the channel closed.
        self._timer = None
        if self._channel is not None and self._channel.state is ChannelState.awaiting_hello:
            self._enqueue(_HELLO_TIMEOUT)


def _single(values: list[str]) -> str | None:
    """A header's value when it came exactly once (twice is as good as not at all)."""
    return values[0] if len(values) == 1 else None
