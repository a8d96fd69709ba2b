"""The event stream: `GET /api/v1/events`, a site's session events as Server-Sent Events.

The events are the site's audit rows (`seatguard.audit`), so they are as durable, as
ordered and as shared between nodes as the audit log itself: an event's id is its row's
`seq`, and a client that reconnects with `Last-Event-ID` is sent the rows after it, from
any node, across restarts. `session_event` says which rows are events and what they say.

A stream reads the log a page at a time, sends the page, and reads the next; at the end
of the log it waits on the `EventFeed`, which wakes the streams of a site when this
node's recorder appends rows for it, and every stream when the log's head moved (rows
written by other nodes: the feed looks every `event_poll_interval` seconds while any
stream is open). Nothing queues per stream: a slow reader holds one page at most, and one
that stops reading for `SEND_TIMEOUT` is dropped. Heartbeat comments keep idle streams
open through proxies; each node serves at most `event_streams_per_site` streams of a site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal, get_args

import msgspec
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .audit import AuditKind, AuditRecord
from .db import AuditLog
from .inputs import read_params
from .isotime import IsoTime, iso
from .node import Node
from .problems import ApiError, problem
from .settings import Settings
from .sites import Site

__all__ = [
    "EVENT_TYPES",
    "LAST_ID_PATTERN",
    "PAGE",
    "RETRY_AFTER",
    "SEND_TIMEOUT",
    "EventFeed",
    "EventType",
    "EventsQuery",
    "SessionEvent",
    "last_event_id",
    "session_event",
    "stream",
]

log = logging.getLogger("seatguard")

PAGE = 200
"""Audit rows a stream reads (and holds) at once."""
SEND_TIMEOUT = 30.0
"""Seconds a client may leave a write to its stream unread before it is dropped."""
RETRY_AFTER = 10
"""Seconds a client over the cap of streams is told to wait (`Retry-After`)."""

EventType = Literal[
    "admitted", "blocked", "unblocked", "ended", "revoked", "suspended", "unsuspended"
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

_TYPES: dict[str, EventType] = {
    AuditKind.admitted: "admitted",
    AuditKind.blocked: "blocked",
    AuditKind.taken_over: "blocked",
    AuditKind.evicted: "blocked",
    AuditKind.unblocked: "unblocked",
    AuditKind.ended: "ended",
    AuditKind.idle_expired: "ended",
    AuditKind.absolute_expired: "ended",
    AuditKind.revoked: "revoked",
    AuditKind.suspended: "suspended",  # a session ended by it, or (no session) the user's
    AuditKind.unsuspended: "unsuspended",  # the user's suspension lifted (no session)
}
"""The audit kinds that are events, and the event type of each. `created` (always followed
by `admitted` or `blocked`), `refused` (a hello turned away: no session changed) and the
changes to a site's settings (`site_changed`, `override_set`...) are not."""


LAST_ID_PATTERN = "^[0-9]{1,19}$"
"""What a `Last-Event-ID` may be (ASCII digits: `str.isdigit` also takes "²")."""
_LAST_ID = re.compile(LAST_ID_PATTERN)


class SessionEvent(msgspec.Struct):
    """One event's data, as JSON: what happened to which browser session, when and why."""

    type: EventType
    user: str
    session: str | None
    device: str | None
    time: IsoTime  # UTC, ms
    at: float  # the same, in seconds since the epoch
    reason: str | None  # blocked: limit, evicted, taken_over, challenge; ended: why; ...
    decision: int | None  # the store's sequence number of the decision, rising per user


def session_event(record: AuditRecord) -> SessionEvent | None:
    """The event of an audit row, or None for rows that are not events.

    Only what the site itself gave or decided goes out: never the IP address, nor who
    revoked (an operator's name), nor the row's hashes.
    """
    e = record.event
    kind = _TYPES.get(e.kind)
    if kind is None:
        return None
    decision = e.detail.get("decision")
    return SessionEvent(
        type=kind,
        user=e.user,
        session=e.session,
        device=e.device,
        time=iso(e.at),
        at=e.at,
        reason=e.reason,
        decision=decision if type(decision) is int else None,
    )


def last_event_id(raw: str | None) -> int:
    """The seq after which a stream starts: `Last-Event-ID` (absent: 0, the start);
    ApiError 400 unless it is a whole number of at most 19 digits, as event ids are."""
    if raw is None:
        return 0
    if not _LAST_ID.fullmatch(raw):
        raise ApiError(400, "Invalid Last-Event-ID", "Last-Event-ID must be an event id: digits")
    return int(raw)


class EventsQuery(msgspec.Struct):
    """The query parameters of `GET /events`."""

    follow: bool = True  # false: send the events there are now, then end the stream


class EventFeed:
    """Wakes a node's event streams when there may be new rows; counts them against the cap.

    `appended(records)` (the recorder's hook) wakes the streams of those rows' sites at
    once; a poll of the log's head every `poll_interval` seconds, while any stream is
    open, wakes every stream when the head moved (rows of other nodes). A stream takes
    `wakeup(site)` before it reads, and waits on it after: a row appended in between has
    already set it.
    """

    def __init__(self, audit: AuditLog, *, per_site: int, poll_interval: float) -> None:
        self.audit = audit
        self.per_site = per_site
        self.poll_interval = poll_interval
        self._open: Counter[str] = Counter()  # streams by site
        self._wakeups: dict[str, asyncio.Event] = {}
        self._head: int | None = None  # the head at the last poll
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, audit: AuditLog) -> EventFeed:
        return cls(
            audit,
            per_site=settings.event_streams_per_site,
            poll_interval=settings.event_poll_interval,
        )

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll_forever(), name="event stream poll")

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    def open(self, site: str) -> bool:
        """Count a new stream of `site`; False, counting nothing, if it has its cap."""
        if self._open[site] >= self.per_site:
            return False
        self._open[site] += 1
        return True

    def close(self, site: str) -> None:
        self._open[site] -= 1
        if self._open[site] <= 0:
            del self._open[site]
            self._wakeups.pop(site, None)

    def wakeup(self, site: str) -> asyncio.Event:
        """What the next wake of `site`'s streams sets."""
        return self._wakeups.setdefault(site, asyncio.Event())

    def wake(self, site: str) -> None:
        found = self._wakeups.pop(site, None)
        if found is not None:
            found.set()

    def appended(self, records: Sequence[AuditRecord]) -> None:
        """Rows this node appended: wake their sites' streams."""
        for site in {r.event.site for r in records}:
            self.wake(site)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if not self._open:
                self._head = None  # a stream opened later needs a first look
                continue
            try:
                found = await self.audit.head()
            except Exception:
                log.exception("event streams: the audit log's head could not be read")
                continue
            head = found[0] if found else 0
            if head != self._head:
                self._head = head
                for site in list(self._wakeups):
                    self.wake(site)


class _EventStream(EventSourceResponse):
    """An SSE response that frees its place under the cap when it ends, however it ends."""

    def __init__(
        self, content: AsyncIterator[ServerSentEvent], release: Callable[[], None], heartbeat: float
    ) -> None:
        super().__init__(
            content,
            ping=heartbeat,
            ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
            send_timeout=SEND_TIMEOUT,
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _events(
    feed: EventFeed, site: str, after: int, follow: bool
) -> AsyncIterator[ServerSentEvent]:
    """The site's events after seq `after`, as they are appended (until the end of the log
    only, unless `follow`)."""
    while True:
        wakeup = feed.wakeup(site)
        try:
            rows = await feed.audit.records(site=site, after_seq=after, limit=PAGE)
        except Exception:
            # The client reconnects with the last id it got, and loses nothing.
            log.exception("event stream of %s ended: the audit log could not be read", site)
            return
        for record in rows:
            after = record.seq
            event = session_event(record)
            if event is not None:
                data = msgspec.json.encode(event).decode()
                yield ServerSentEvent(data, event=event.type, id=str(record.seq))
        if len(rows) == PAGE:
            continue
        if not follow:
            return
        await wakeup.wait()


async def stream(request: Request, node: Node, site: Site) -> Response:
    """`GET /events`: the site's session events after `Last-Event-ID`, then as they come."""
    query = read_params(dict(request.query_params), EventsQuery)
    after = last_event_id(request.headers.get("last-event-id"))
    feed: EventFeed = request.app.state.events
    if after:
        head = await feed.audit.head()
        if after > (head[0] if head else 0):
            raise ApiError(
                409,
                "Conflict",
                "Last-Event-ID is after the newest event: this server's events were not "
                "the ones this id came from (a database restored or replaced?); reconnect "
                "without Last-Event-ID",
            )
    if not feed.open(site.key):
        detail = (
            f"the site has {feed.per_site} event streams open on this node, its most; "
            f"close one, or retry in {RETRY_AFTER} s"
        )
        return problem(429, "Too many requests", detail, {"Retry-After": str(RETRY_AFTER)})
    return _EventStream(
        _events(feed, site.key, after, query.follow),
        lambda: feed.close(site.key),
        node.settings.event_heartbeat,
    )
