"""Auto-pipelining for Redis: commands issued while a round trip is under way go out
together in the next one.

One round trip per command caps a node near a few thousand commands a second; sent as one
pipeline, the commands of many users share the network and the event loop's turns.
Scripts are called by SHA1 and loaded again if Redis lost them (after a restart).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

__all__ = ["AutoPipeline"]

_MAX_BATCH = 512  # commands per round trip at most


class AutoPipeline:
    """`await call(...)` / `await script(...)`: one Redis command, batched with others."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any], str | None]] = []
        self._sources: dict[str, str] = {}  # sha -> script
        self._sending: asyncio.Task[None] | None = None  # the round trips under way

    def register(self, source: str) -> str:
        """Know a Lua script; returns the SHA1 to pass to `script`."""
        sha = hashlib.sha1(source.encode()).hexdigest()
        self._sources[sha] = source
        return sha

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; its future gets the reply (or the error)."""
        return self._add(args, None)

    def script(self, sha: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue an EVALSHA of a registered script."""
        return self._add(("EVALSHA", sha, len(keys), *keys, *args), sha)

    def _add(self, args: tuple[Any, ...], sha: str | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future, sha))
        if self._sending is None:
            self._sending = loop.create_task(self._send())
        return future

    async def _send(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
                await self._round_trip(batch)
        finally:
            self._sending = None

    async def _round_trip(
        self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any], str | None]]
    ) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for args, _, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the link: every command of the batch failed
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        again: list[tuple[tuple[Any, ...], asyncio.Future[Any], str | None]] = []
        for (args, future, sha), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError) and sha is not None:
                again.append((args, future, sha))
            elif future.done():
                continue
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        if again:
            try:
                for sha in {sha for _, _, sha in again if sha}:
                    await self._redis.script_load(self._sources[sha])
            except Exception as exc:
                for _, future, _ in again:
                    if not future.done():
                        future.set_exception(exc)
                return
            await self._round_trip(again)
