"""The WebSocket endpoint: a thin Starlette shell around `Channel`."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket, WebSocketDisconnect

from .channel import Channel, ChannelState
from .node import Node
from .protocol import CloseCode

__all__ = ["websocket_endpoint"]


class _StarletteTransport:
    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


def _own_origin(ws: WebSocket) -> str:
    scheme = "https" if ws.url.scheme == "wss" else "http"
    return f"{scheme}://{ws.url.netloc}".lower()


async def websocket_endpoint(ws: WebSocket) -> None:
    node: Node = ws.app.state.node
    await ws.accept()
    channel = Channel(
        node,
        _StarletteTransport(ws),
        origin=ws.headers.get("origin"),
        own_origin=_own_origin(ws),
        user_agent=ws.headers.get("user-agent", ""),
        ip=ws.client.host if ws.client else "",
    )
    try:
        first = True
        while channel.state is not ChannelState.closed:
            if first:
                try:
                    message = await asyncio.wait_for(
                        ws.receive(), timeout=node.settings.hello_timeout
                    )
                except TimeoutError:
                    await channel.end(CloseCode.protocol_order, "no hello within the timeout")
                    break
                first = False
            else:
                message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            await channel.receive(data if data is not None else message.get("bytes") or b"")
    except WebSocketDisconnect:
        pass
    finally:
        await channel.closed()
