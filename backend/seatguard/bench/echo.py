"""Baseline for `seatguard bench`: a bare echo server on the `websockets` library's asyncio
server, with its defaults (ping every 20 s per connection), on uvloop, compression off.

Usage: python -m seatguard.bench.echo PORT  (prints "listening" once it accepts)
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, compression=None, backlog=4096):
        print("listening", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
