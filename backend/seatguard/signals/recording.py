"""Writing what the node sees into the users' device and network history, off the hot path.

The node hands `HistoryWriter.seen` the user's current sessions whenever a session is
created, admitted or ended (and the ended ones); `seen` only queues them and returns. One
task writes the queue: the sightings of one user that arrived meanwhile are folded into
that user's stored history together (`signals.history.fold`, one compare-and-set), placed
with the GeoIP database when there is one. A write that fails is logged (one line at most
every few seconds) and dropped: the history is a record for the checks and the operator,
and admission never waits for it nor fails because of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import msgspec

from ..db import Database
from ..ratelog import RateLog
from ..types import UserKey
from .checks import SessionView, Thresholds
from .geo import GeoIP
from .history import Ended, fold

__all__ = ["MAX_PENDING_USERS", "MAX_SIGHTINGS", "HistoryWriter"]

log = logging.getLogger("seatguard")

MAX_PENDING_USERS = 10_000
"""Users whose sightings wait to be written, at most; the sightings of more are dropped."""
MAX_SIGHTINGS = 256
"""Sightings of one user waiting to be written, at most (the most recent are kept)."""

_Pending = tuple[list[SessionView], list[Ended]]


class HistoryWriter:
    """Queues sightings and writes them to `db` with one task; `await flush()` waits until
    everything queued so far is written (or dropped), `await close()` at shutdown."""

    def __init__(
        self,
        db: Database,
        thresholds: Thresholds,
        clock: Callable[[], float],
        geoip: GeoIP | None = None,
    ) -> None:
        self.db = db
        self.thresholds = thresholds
        self.clock = clock
        self.geoip = geoip
        self._pending: dict[UserKey, _Pending] = {}
        self._writer: asyncio.Task[None] | None = None
        self._failed = RateLog(log)
        self._full = RateLog(log)

    def seen(
        self,
        key: UserKey,
        sessions: Sequence[SessionView],
        ended: Sequence[tuple[str, str]] = (),
        at: float | None = None,
    ) -> None:
        """Queue the user's current `sessions` and the (device, ip) of sessions that ended at
        `at`; returns at once."""
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= MAX_PENDING_USERS:
                self._full("device history of %s/%s not recorded: too many users queued", *key)
                return
            pending = self._pending[key] = ([], [])
        views, endings = pending
        views.extend(sessions)
        when = self.clock() if at is None else at
        endings.extend(Ended(device=d, ip=ip, place=None, at=when) for d, ip in ended)
        del views[:-MAX_SIGHTINGS]
        del endings[:-MAX_SIGHTINGS]
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def flush(self) -> None:
        """Wait until what is queued now is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        await self.flush()

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, {}
                for key, (views, endings) in batch.items():
                    await self._store(key, views, endings)
        finally:
            self._writer = None

    async def _store(self, key: UserKey, views: list[SessionView], endings: list[Ended]) -> None:
        geoip = self.geoip
        if geoip is not None:
            views = [msgspec.structs.replace(v, place=geoip.place(v.ip)) for v in views]
            endings = [msgspec.structs.replace(e, place=geoip.place(e.ip)) for e in endings]
        now = self.clock()
        try:
            await self.db.update_history(
                key[0], key[1], lambda h: fold(h, views, endings, self.thresholds, now)
            )
        except Exception as exc:  # the history is a record: admission goes on without it
            self._failed("device history of %s/%s not stored: %r", key[0], key[1], exc)
