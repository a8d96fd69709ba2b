"""Plain HTTP requests: uvicorn's httptools protocol, with the bounds it lacks.

uvicorn times out only idle kept-alive connections: a request head that never ends (a
slow client, or one that sends a header line a minute forever) holds its connection, and
llhttp buffers headers without a size limit. This subclass bounds every request head of a
connection in time (`handshake_timeout`: for the first, from accept; for later ones, from
their first byte) and in size (`max_head_bytes`, then 431), and logs unparseable requests
through `RateLog` instead of one warning each.

A WebSocket upgrade comes here only for another path than `/ws/v1` (`sockets.HttpProtocol`
sends that one to a `Socket`): it is answered 404 with a line that names the right path,
and logged (rate-limited), where uvicorn, run without a WebSocket protocol, would hand it to
the app as a plain request, or warn that no WebSocket library is installed. A client whose
endpoint is wrong (`ws://host/` instead of `ws://host/ws/v1`) learns why from either side.

It overrides uvicorn internals (`data_received`, the parser callbacks), hence the upper
bound on uvicorn's version in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .handshakes import Handshake, head_size, plain_response
from .protocol import WS_PATH
from .ratelog import RateLog

__all__ = ["PlainHttp"]

log = logging.getLogger("seatguard")
_invalid = RateLog(log, logging.INFO)
_wrong_path = RateLog(log)

_TOO_LARGE = plain_response(
    431, "Request Header Fields Too Large", "the request head is over the size limit\n"
)
_NO_SOCKET_HERE = plain_response(
    404,
    "Not Found",
    f"no WebSocket endpoint at this path; the socket is at {WS_PATH}\n",
    "X-Content-Type-Options: nosniff",
)


class _Refused(Exception):
    """Raised in a parser callback to stop the parser; `data_received` answers."""


class PlainHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with bounded request heads (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        handshake: Handshake | None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._handshake = handshake  # the first request's, until its head is in
        self._timeout = handshake.timeout if handshake is not None else 0.0
        self._max_head = handshake.max_head if handshake is not None else 0
        # Bytes the current request head may still take; None between heads (or unbounded).
        self._head_left: int | None = self._max_head or None
        self._head_timer: asyncio.TimerHandle | None = None  # later requests' heads
        self._refusal: bytes | None = None  # the answer of a request the parser was stopped for

    def data_received(self, data: bytes) -> None:
        # uvicorn's, but for the head bounds and the rate-limited log line.
        if self._head_left is not None:
            self._head_left -= len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:  # raised by `on_headers_complete`
                self._refuse(self._refusal)
                return
            client = self.client[0] if self.client else "?"
            _invalid("refused an invalid HTTP request from %s", client)
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            # An upgrade to another protocol than WebSocket (`h2c`, say): the request was
            # already handed to the app as plain HTTP; what follows its head is not read.
            return
        if self._head_left is not None and self._head_left < 0:
            self._refuse(_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_left is None and self._max_head:  # a later request on this connection
            self._head_left = self._max_head
            self._head_timer = self.loop.call_later(self._timeout, self._head_expired)

    def on_headers_complete(self) -> None:
        if self._max_head and head_size(self.url, self.headers) > self._max_head:
            self._refusal = _TOO_LARGE  # a head that came in whole
            raise _Refused
        if self.parser.should_upgrade() and _asks_for_websocket(self.headers):
            path = self.url.split(b"?", 1)[0].decode("latin-1")[:200]
            client = self.client[0] if self.client else "?"
            _wrong_path(
                "answered 404 to a WebSocket upgrade to %r from %s: the socket is at %s "
                "(check the SDK's endpoint)",
                path,
                client,
                WS_PATH,
            )
            self._refusal = _NO_SOCKET_HERE
            raise _Refused
        self._head_done()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _head_done(self) -> None:
        self._head_left = None
        if self._handshake is not None:
            self._handshake.done()
            self._handshake = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        self.transport.abort()

    def _refuse(self, answer: bytes) -> None:
        """Answer the request with `answer` instead of the app, and close."""
        self._head_left = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.abort()  # mid-response: no room for another
            return
        self.transport.write(answer)
        self.transport.close()


def _asks_for_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether an upgrade request's `Upgrade` header names WebSocket."""
    return any(
        name == b"upgrade" and b"websocket" in value.lower().replace(b" ", b"").split(b",")
        for name, value in headers
    )
