"""The delivery worker over an in-memory SQLite outbox, a fake clock and a fake endpoint.

The worker's clock is the test's: claims, leases and retries fall due when the test moves
the clock and wakes the worker (the poll interval is an hour), so nothing waits for real
except attempts held on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import pytest

from seatguard import outbound
from seatguard.db import SqliteDatabase, WebhookOutbox
from seatguard.deliveries import DeliveryWorker
from seatguard.errors import ConfigError
from seatguard.outbox import Backlog, Completion, Delivery, DeliveryState, RetryPolicy
from seatguard.presence import Rules
from seatguard.sealing import SecretBox
from seatguard.site_secrets import Rotating
from seatguard.sites import Site, SiteConfig, new_site
from seatguard.webhooks import EventType, Reply, Sender, WebhookVerificationError, verify
from tests.helpers import scaled
from tests.unit.fakes import Clock

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
NOW = 1_700_000_000.0
URL = "https://site.example/hooks"
SITE = "pk_hooks"
BOX = SecretBox.ephemeral()


def site_with(*secrets: str, previous_until: float | None = None) -> Site:
    """The site `SITE` whose webhook secret is the first of `secrets`, and the second the
    one it replaced, valid until `previous_until`."""
    site, _ = new_site(
        "Hooks",
        ["*"],
        Rules(),
        client_settings=False,
        now=NOW,
        box=BOX,
        key=SITE,
        config=SiteConfig(webhook_url=URL),
    )
    sealed = [BOX.seal(s, site=SITE, purpose="webhook") for s in secrets] + [None, None]
    webhook = Rotating(sealed[0], sealed[1], previous_until)
    return dataclasses.replace(site, secrets=dataclasses.replace(site.secrets, webhook=webhook))


class Endpoint:
    """Answers each POST with the next scripted reply (a status, a Reply or an exception).

    A POST whose number (from 1) is in `held` waits for that event first; while `gate` is an
    unset event, every POST waits for it."""

    def __init__(self, *script: int | Reply | Exception) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.held: dict[int, asyncio.Event] = {}
        self.gate: asyncio.Event | None = None
        self.changed = asyncio.Condition()

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        self.calls.append((url, body, dict(headers)))
        number = len(self.calls)
        reply = self.script.pop(0) if self.script else 204  # in the order the POSTs came
        async with self.changed:
            self.changed.notify_all()
        if number in self.held:
            await self.held[number].wait()
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, Reply) else Reply(reply)

    def hold(self, number: int) -> asyncio.Event:
        """Make POST `number` wait until the returned event is set."""
        return self.held.setdefault(number, asyncio.Event())

    async def posted(self, n: int) -> None:
        """Wait until `n` POSTs have started."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.calls) >= n), scaled(5))

    def ids(self) -> list[str]:
        return [h["webhook-id"] for _, _, h in self.calls]

    def events(self) -> list[int]:
        return sorted(json.loads(body)["data"]["n"] for _, body, _ in self.calls)


class Watched:
    """The SQLite outbox, noting each completion (and whether it counted) for the test; a
    claim raises while `broken` is above zero, which it counts down."""

    def __init__(self, inner: WebhookOutbox) -> None:
        self.inner = inner
        self.completions: list[tuple[str, Completion, bool]] = []
        self.backlogs = 0  # reads of the backlog
        self.broken = 0
        self.changed = asyncio.Condition()

    async def add(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.add(deliveries)

    async def claim(self, node: str, now: float, lease: float, limit: int) -> list[Delivery]:
        if self.broken > 0:
            self.broken -= 1
            raise OSError("disk I/O error")
        return await self.inner.claim(node, now, lease, limit)

    async def complete(self, claimed: Delivery, done: Completion) -> bool:
        counted = await self.inner.complete(claimed, done)
        self.completions.append((claimed.id, done, counted))
        async with self.changed:
            self.changed.notify_all()
        return counted

    async def release(self, node: str) -> None:
        await self.inner.release(node)

    async def redeliver(self, site: str, id: str, now: float) -> Delivery | None:
        return await self.inner.redeliver(site, id, now)

    async def backlog(self) -> Backlog:
        self.backlogs += 1
        return await self.inner.backlog()

    async def deliveries(
        self,
        site: str,
        *,
        state: DeliveryState | None = None,
        event: EventType | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        return await self.inner.deliveries(
            site, state=state, event=event, before=before, limit=limit
        )

    async def completed(self, n: int) -> Completion:
        """Wait for the `n`th completion (from 1); the outcome it wrote."""
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: len(self.completions) >= n), scaled(5)
            )
        return self.completions[n - 1][1]


class World:
    """Workers on one in-memory outbox, with the fake clock, the site `SITE` and jitter 0.5.

    Site lookups raise while `broken_lookups` is above zero, which they count down, and wait
    while `lookup_gate` is an unset event, having set `looking`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.outbox = Watched(db.outbox)
        self.clock = Clock(NOW)
        self.sites: dict[str, Site] = {SITE: site_with(SECRET)}
        self.workers: list[DeliveryWorker] = []
        self.broken_lookups = 0
        self.lookup_gate: asyncio.Event | None = None
        self.looking = asyncio.Event()

    async def site(self, key: str) -> Site | None:
        self.looking.set()
        if self.lookup_gate is not None:
            await self.lookup_gate.wait()
        if self.broken_lookups > 0:
            self.broken_lookups -= 1
            raise RuntimeError("bug")
        return self.sites.get(key)

    def worker(self, sender: Sender, **options: Any) -> DeliveryWorker:
        settings: dict[str, Any] = {
            "timeout": scaled(5),
            "lease": 60.0,
            "poll_interval": 3600.0,
            "clock": self.clock,
            "random": lambda: 0.5,
            **options,
        }
        worker = DeliveryWorker(self.outbox, self.site, BOX, sender=sender, **settings)
        self.workers.append(worker)
        return worker

    async def send(self, worker: DeliveryWorker, *ns: int, url: str = URL) -> list[str]:
        """Enqueue one `seat.blocked` message per number `n`, made now."""
        events = [(EventType.seat_blocked, {"n": n}) for n in ns or (0,)]
        return await worker.enqueue(SITE, url, events, self.clock())

    async def settle(self, worker: DeliveryWorker, first: int = 1) -> list[Completion]:
        """Follow one message from completion `first` on: at each retry, move the clock to
        when it is due and wake `worker`; its completions up to delivered or dead."""
        outcomes: list[Completion] = []
        while True:
            done = await self.outbox.completed(first + len(outcomes))
            outcomes.append(done)
            if done.next_attempt_at is None:
                return outcomes
            self.clock.now = done.next_attempt_at
            worker.wake()

    async def row(self, msg_id: str) -> Delivery:
        [row] = [d for d in await self.db.outbox.deliveries(SITE) if d.id == msg_id]
        return row


@contextlib.asynccontextmanager
async def world() -> AsyncIterator[World]:
    db = await SqliteDatabase.open(":memory:")
    w = World(db)
    try:
        yield w
    finally:
        for worker in w.workers:
            await worker.aclose()
        await db.close()


def stats(delivered: int = 0, retried: int = 0, dead: int = 0) -> dict[str, int]:
    return {"delivered": delivered, "retried": retried, "dead": dead}


async def test_retries_a_500_then_delivers_with_the_same_id_each_attempt_signed_at_its_time() -> (
    None
):
    async with world() as w:
        endpoint = Endpoint(500, 500, 204)
        worker = w.worker(endpoint)
        await worker.start()
        [msg_id] = await w.send(worker)
        outcomes = await w.settle(worker)
        # Backoff windows of 1 s then 2 s, jitter 0.5: due again 0.5 s, then 1 s later.
        assert [o.next_attempt_at for o in outcomes] == [NOW + 0.5, NOW + 1.5, None]
        assert [o.state for o in outcomes] == [
            DeliveryState.pending,
            DeliveryState.pending,
            DeliveryState.delivered,
        ]
        assert worker.stats == stats(delivered=1, retried=2)
        assert endpoint.ids() == [msg_id] * 3 and msg_id.startswith("msg_")
        stamps = [h["webhook-timestamp"] for _, _, h in endpoint.calls]
        assert stamps == [str(int(NOW)), str(int(NOW)), str(int(NOW + 1.5))]
        for url, body, headers in endpoint.calls:
            assert url == URL
            verify(SECRET, headers, body, now=NOW)
        row = await w.row(msg_id)
        assert (row.state, row.attempts, row.last_status, row.last_error) == (
            DeliveryState.delivered,
            3,
            204,
            None,
        )
        assert row.claimed_by is None and row.updated_at == NOW + 1.5


async def test_network_errors_and_timeouts_are_retried() -> None:
    async with world() as w:
        worker = w.worker(Endpoint(httpx.ConnectError("refused"), TimeoutError(), 200))
        await worker.start()
        await w.send(worker)
        outcomes = await w.settle(worker)
        assert [o.last_error for o in outcomes] == [
            "ConnectError: refused",
            "TimeoutError: ",
            None,
        ]
        assert worker.stats == stats(delivered=1, retried=2)


async def test_a_hanging_endpoint_times_out_and_is_retried_until_the_window_ends() -> None:
    async with world() as w:
        endpoint = Endpoint()
        endpoint.gate = asyncio.Event()  # never set: every POST hangs past the timeout
        # A window of 0.5 s: the first retry (0.5 s later) fits, the second would not.
        worker = w.worker(endpoint, timeout=0.01, policy=RetryPolicy(1.0, 1.0, 0.5))
        await worker.start()
        [msg_id] = await w.send(worker)
        outcomes = await w.settle(worker)
        assert [(o.state, o.last_error) for o in outcomes] == [
            (DeliveryState.pending, "TimeoutError: "),
            (DeliveryState.dead, "TimeoutError: "),
        ]
        assert endpoint.ids() == [msg_id] * 2
        assert worker.stats == stats(retried=1, dead=1)


async def test_gives_up_at_the_end_of_the_retry_window(caplog: pytest.LogCaptureFixture) -> None:
    async with world() as w:
        endpoint = Endpoint(*[503] * 10)
        # Waits of 0.5 s, 1 s, then 2 s: past a window of 1.5 s, so the third is the last.
        worker = w.worker(endpoint, policy=RetryPolicy(1.0, 60.0, 1.5))
        await worker.start()
        [msg_id] = await w.send(worker)
        outcomes = await w.settle(worker)
        assert [o.state for o in outcomes][-1] is DeliveryState.dead
        assert endpoint.ids() == [msg_id] * 3
        assert worker.stats == stats(retried=2, dead=1)
        assert f"webhook {msg_id} seat.blocked to {URL} failed after 3 attempt(s): HTTP 503" in (
            caplog.text
        )
        row = await w.row(msg_id)
        assert (row.state, row.attempts, row.last_status, row.next_attempt_at) == (
            DeliveryState.dead,
            3,
            503,
            None,
        )


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
async def test_a_final_answer_is_dead_at_once(status: int) -> None:
    async with world() as w:
        endpoint = Endpoint(status, 204)
        worker = w.worker(endpoint)
        await worker.start()
        [msg_id] = await w.send(worker)
        [done] = await w.settle(worker)
        assert (done.state, done.last_status, done.last_error) == (
            DeliveryState.dead,
            status,
            f"HTTP {status}",
        )
        assert len(endpoint.calls) == 1 and worker.stats == stats(dead=1)
        assert (await w.row(msg_id)).state is DeliveryState.dead


@pytest.mark.parametrize("status", [408, 409, 425, 429, 502])
async def test_try_again_later_statuses_are_retried(status: int) -> None:
    async with world() as w:
        worker = w.worker(Endpoint(status, 204))
        await worker.start()
        await w.send(worker)
        outcomes = await w.settle(worker)
        assert [o.last_status for o in outcomes] == [status, 204]
        assert worker.stats == stats(delivered=1, retried=1)


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    async with world() as w:
        endpoint = Endpoint(
            Reply(429, {"Retry-After": "7"}),
            Reply(503, {"Retry-After": "86400"}),
            Reply(503, {"Retry-After": "a date"}),
            204,
        )
        worker = w.worker(endpoint, policy=RetryPolicy(1.0, 60.0, 3600.0))
        await worker.start()
        await w.send(worker)
        outcomes = await w.settle(worker)
        waits = [
            done.next_attempt_at - done.at for done in outcomes if done.next_attempt_at is not None
        ]
        # 7 s as asked; a day is capped at 60 s; an unreadable value falls back to backoff.
        assert waits == [7.0, 60.0, 2.0]
        assert worker.stats == stats(delivered=1, retried=3)


async def test_an_address_refused_as_not_public_is_dead_at_once() -> None:
    async with world() as w:
        refused = httpx.ConnectError("resolves to no public address")
        refused.__cause__ = outbound.PrivateAddress("resolves to no public address")
        endpoint = Endpoint(refused, 204)
        worker = w.worker(endpoint)
        await worker.start()
        await w.send(worker)
        [done] = await w.settle(worker)
        assert done.state is DeliveryState.dead and done.last_status is None
        assert done.last_error == "ConnectError: resolves to no public address"
        assert len(endpoint.calls) == 1


async def test_a_slow_endpoint_does_not_hold_up_another() -> None:
    async with world() as w:
        slow, fast = Endpoint(), Endpoint()
        slow.gate = asyncio.Event()

        async def route(url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
            return await (slow if "slow" in url else fast)(url, body, headers)

        worker = w.worker(route)
        await worker.start()
        await w.send(worker, 0, 1, 2, url="https://slow.example/")
        await w.send(worker, 0, 1, 2, url="https://fast.example/")
        for n in range(1, 4):
            await w.outbox.completed(n)
        assert fast.events() == [0, 1, 2]
        assert slow.events() == [0, 1, 2]  # all three in flight, none answered
        assert worker.stats == stats(delivered=3)
        slow.gate.set()
        await w.outbox.completed(6)
        assert worker.stats == stats(delivered=6)


async def test_no_more_than_concurrency_attempts_are_in_flight() -> None:
    async with world() as w:
        endpoint = Endpoint()
        endpoint.gate = asyncio.Event()
        worker = w.worker(endpoint, concurrency=2)
        await worker.start()
        await w.send(worker, *range(5))
        await endpoint.posted(2)
        # Two claimed and posting; the worker claims no more until one of them is done.
        rows = await w.db.outbox.deliveries(SITE)
        assert sorted(d.claimed_by or "" for d in rows) == [""] * 3 + [worker.node] * 2
        assert len(endpoint.calls) == 2
        endpoint.gate.set()
        for n in range(1, 6):
            await w.outbox.completed(n)
        assert endpoint.events() == [0, 1, 2, 3, 4]
        assert worker.stats == stats(delivered=5)


async def test_every_secret_valid_at_the_attempt_signs_and_the_body_is_the_event() -> None:
    async with world() as w:
        # Rotated: OTHER is current, SECRET was replaced and stays valid until NOW + 100.
        w.sites[SITE] = site_with(OTHER, SECRET, previous_until=NOW + 100)
        endpoint = Endpoint(500, 204)
        worker = w.worker(endpoint)
        await worker.start()
        data = {"site": SITE, "user": "alice", "session": "s1", "device": "d1", "reason": "limit"}
        await worker.enqueue(SITE, URL, [(EventType.seat_blocked, data)], NOW)
        await w.outbox.completed(1)
        w.clock.now = NOW + 101  # the retry comes after the overlap ended
        worker.wake()
        await w.outbox.completed(2)
        (_, body, during), (_, again, after) = endpoint.calls
        verify(SECRET, during, body, now=NOW)
        verify(OTHER, during, body, now=NOW)
        assert len(during["webhook-signature"].split()) == 2
        verify(OTHER, after, again, now=NOW + 101)
        with pytest.raises(WebhookVerificationError, match="no matching signature"):
            verify(SECRET, after, again, now=NOW + 101)
        assert again == body
        assert json.loads(body) == {
            "type": "seat.blocked",
            "timestamp": "2023-11-14T22:13:20.000Z",
            "data": data,
        }


@pytest.mark.parametrize(
    ("site", "error"),
    [
        pytest.param(None, "the site has no webhook secret", id="site-gone"),
        pytest.param(site_with(), "the site has no webhook secret", id="no-secret"),
        pytest.param(
            site_with("whsec_!!"),
            "webhook secret: a webhook secret is `whsec_` and base64",
            id="malformed",
        ),
        pytest.param(
            dataclasses.replace(
                site_with(),
                secrets=dataclasses.replace(
                    site_with().secrets,
                    webhook=Rotating(SecretBox.ephemeral().seal(SECRET, site=SITE, purpose="x")),
                ),
            ),
            "webhook secret: the webhook secret of pk_hooks does not open",
            id="other-key",
        ),
    ],
)
async def test_a_message_without_a_usable_secret_is_dead_without_a_post(
    site: Site | None, error: str
) -> None:
    async with world() as w:
        if site is None:
            del w.sites[SITE]
        else:
            w.sites[SITE] = site
        endpoint = Endpoint()
        worker = w.worker(endpoint)
        await worker.start()
        await w.send(worker)
        [done] = await w.settle(worker)
        assert done.state is DeliveryState.dead and done.last_error is not None
        assert done.last_error.startswith(error), done.last_error
        assert endpoint.calls == [] and worker.stats == stats(dead=1)


async def test_enqueue_stores_all_or_none_and_works_before_start() -> None:
    async with world() as w:
        endpoint = Endpoint()
        worker = w.worker(endpoint)
        with pytest.raises(TypeError):
            await worker.enqueue(
                SITE,
                URL,
                [(EventType.seat_blocked, {"n": 1}), (EventType.seat_evicted, {"x": object()})],
                NOW,
            )
        with pytest.raises(ValueError, match=r"seat\.stolen"):
            await worker.enqueue(SITE, URL, [("seat.stolen", {})], NOW)  # type: ignore[list-item]
        assert await w.db.outbox.deliveries(SITE) == []
        # Stored before the worker runs: delivered once it starts.
        ids = await w.send(worker, 1, 2)
        rows = await w.db.outbox.deliveries(SITE)
        assert {(d.id, d.state, d.next_attempt_at, d.retrying_since) for d in rows} == {
            (i, DeliveryState.pending, NOW, NOW) for i in ids
        }
        await worker.start()
        with pytest.raises(RuntimeError, match="started already"):
            await worker.start()
        await w.outbox.completed(2)
        assert sorted(endpoint.ids()) == sorted(ids) and worker.stats == stats(delivered=2)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": 60.0, "lease": 60.0},
        {"poll_interval": 0},
        {"concurrency": 0},
    ],
)
async def test_bad_worker_options_are_refused(options: dict[str, Any]) -> None:
    async with world() as w:
        with pytest.raises(ConfigError, match="webhook timeout, lease and poll interval"):
            DeliveryWorker(w.outbox, w.site, BOX, **options)


async def test_an_unexpected_error_keeps_the_claim_until_the_lease_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with world() as w:
        endpoint = Endpoint()
        worker = w.worker(endpoint, concurrency=1)
        w.broken_lookups = 1
        await worker.start()
        [first] = await w.send(worker, 1)
        [second] = await w.send(worker, 2)
        # The first message's attempt raised; the worker goes on with the second.
        await w.outbox.completed(1)
        assert endpoint.ids() == [second]
        assert f"webhook {first} to {URL}: unexpected error; retried after the lease" in (
            caplog.text
        )
        held = await w.row(first)
        assert (held.state, held.attempts, held.claimed_until) == (
            DeliveryState.pending,
            0,
            NOW + 60,
        )
        # Timeline: at NOW + 60 the claim runs out, and the message is tried again.
        w.clock.now = NOW + 60
        worker.wake()
        await w.outbox.completed(2)
        assert endpoint.ids() == [second, first]
        assert worker.stats == stats(delivered=2)


async def test_the_worker_goes_on_when_a_claim_fails(caplog: pytest.LogCaptureFixture) -> None:
    async with world() as w:
        w.outbox.broken = 1
        endpoint = Endpoint()
        worker = w.worker(endpoint)
        await worker.start()
        await w.send(worker)  # wakes the worker, whose claim fails
        w.clock.now = NOW + 1
        worker.wake()
        await w.outbox.completed(1)
        assert "webhooks: cannot claim due messages; trying again" in caplog.text
        assert worker.stats == stats(delivered=1)


async def test_a_claim_that_runs_out_goes_to_another_worker_and_the_late_outcome_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "seatguard")
    async with world() as w:
        stuck, healthy = Endpoint(), Endpoint()
        late = stuck.hold(1)
        a, b = w.worker(stuck, node="node-a"), w.worker(healthy, node="node-b")
        await a.start()
        [msg_id] = await w.send(a)
        await stuck.posted(1)  # A holds the message until NOW + 60
        await b.start()
        assert (await w.row(msg_id)).claimed_by == "node-a"
        # Timeline: A's POST still hangs at NOW + 60; its claim has run out and B takes it.
        w.clock.now = NOW + 60
        b.wake()
        delivered = await w.outbox.completed(1)
        assert delivered.state is DeliveryState.delivered and w.outbox.completions[0][2]
        assert healthy.ids() == [msg_id] and b.stats == stats(delivered=1)
        # A's answer comes in after all: it is not written, and A counts nothing.
        late.set()
        failed = await w.outbox.completed(2)
        assert failed.state is DeliveryState.delivered and not w.outbox.completions[1][2]
        assert f"webhook {msg_id}: claim replaced during the attempt; outcome dropped" in (
            caplog.text
        )
        assert a.stats == stats()
        row = await w.row(msg_id)
        assert (row.state, row.attempts, row.claimed_by) == (DeliveryState.delivered, 1, None)


async def test_a_redelivery_while_an_attempt_is_in_flight_posts_again_and_counts_the_new_one() -> (
    None
):
    async with world() as w:
        endpoint = Endpoint(500, 204)
        first = endpoint.hold(1)
        worker = w.worker(endpoint)
        await worker.start()
        [msg_id] = await w.send(worker)
        await endpoint.posted(1)
        # Redelivered (the REST API) while the first POST hangs: due now, claim ended.
        w.clock.now = NOW + 1
        again = await w.outbox.redeliver(SITE, msg_id, NOW + 1)
        assert again is not None and again.claimed_by is None
        worker.wake()
        delivered = await w.outbox.completed(1)  # the second POST: 204
        assert delivered.state is DeliveryState.delivered and w.outbox.completions[0][2]
        first.set()  # the first POST's 500 comes in, under a claim that is no longer its own
        dropped = await w.outbox.completed(2)
        assert dropped.state is DeliveryState.pending and not w.outbox.completions[1][2]
        assert endpoint.ids() == [msg_id, msg_id]
        assert worker.stats == stats(delivered=1)
        row = await w.row(msg_id)
        assert (row.state, row.attempts, row.retrying_since) == (
            DeliveryState.delivered,
            1,
            NOW + 1,
        )


async def test_shutdown_lets_attempts_in_flight_finish_and_leaves_the_rest_due() -> None:
    async with world() as w:
        endpoint = Endpoint()
        answer = endpoint.hold(1)
        worker = w.worker(endpoint, concurrency=1)
        await worker.start()
        first, second = await w.send(worker, 1, 2)
        await endpoint.posted(1)
        closing = asyncio.create_task(worker.aclose())
        await asyncio.sleep(0)
        answer.set()  # within the timeout: its outcome is written
        await asyncio.wait_for(closing, scaled(5))
        assert worker.stats == stats(delivered=1)
        assert [d.state for d in await w.db.outbox.deliveries(SITE)] == [
            DeliveryState.pending,
            DeliveryState.delivered,
        ]  # newest first
        untouched = await w.row(second)
        assert (untouched.attempts, untouched.claimed_by) == (0, None)
        [third] = await w.send(worker, 3)  # a closed worker still stores what it is given
        assert (await w.row(third)).state is DeliveryState.pending
        # The next worker (another node, or this one restarted) delivers the rest.
        successor = w.worker(endpoint)
        await successor.start()
        await w.outbox.completed(3)
        assert endpoint.ids()[0] == first and sorted(endpoint.ids()[1:]) == sorted([second, third])


async def test_shutdown_gives_up_on_attempts_past_the_timeout_and_ends_their_claims() -> None:
    async with world() as w:
        endpoint = Endpoint()
        # The site lookup hangs, so the attempt never reaches its own time limit.
        w.lookup_gate = asyncio.Event()
        worker = w.worker(endpoint, timeout=0.05)
        await worker.start()
        [msg_id] = await w.send(worker)
        await asyncio.wait_for(w.looking.wait(), scaled(5))
        assert (await w.row(msg_id)).claimed_by == worker.node
        w.lookup_gate = None
        await asyncio.wait_for(worker.aclose(), scaled(5))
        row = await w.row(msg_id)
        assert (row.state, row.attempts, row.claimed_by, row.claimed_until) == (
            DeliveryState.pending,
            0,
            None,
            None,
        )
        assert worker.stats == stats() and w.outbox.completions == []
        # Due at once for the next worker, without waiting for the lease.
        successor = w.worker(endpoint)
        await successor.start()
        await w.outbox.completed(1)
        assert endpoint.ids() == [msg_id]


async def test_the_backlog_counts_pending_and_dead_messages_read_at_most_every_5_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with world() as w:
        endpoint = Endpoint(410)
        worker = w.worker(endpoint)
        assert await worker.backlog() == Backlog(0, 0, None)
        await worker.start()
        [gone] = await w.send(worker, 1)
        await w.outbox.completed(1)  # answered 410: dead
        w.clock.now = NOW + 5
        endpoint.gate = asyncio.Event()
        [waiting] = await w.send(worker, 2)
        await endpoint.posted(2)
        w.clock.now = NOW + 7
        await w.send(worker, 3)  # claimed as well, and posting
        # Timeline: read at NOW, then at NOW + 7, and not again before NOW + 12.
        assert await worker.backlog() == Backlog(pending=2, dead=1, waiting_since=NOW + 5)
        w.clock.now = NOW + 11.9
        await w.outbox.redeliver(SITE, gone, NOW + 11.9)
        assert await worker.backlog() == Backlog(pending=2, dead=1, waiting_since=NOW + 5)
        assert w.outbox.backlogs == 2
        w.clock.now = NOW + 12
        assert await worker.backlog() == Backlog(pending=3, dead=0, waiting_since=NOW + 5)
        assert w.outbox.backlogs == 3
        # A database that cannot be read: None, logged, and not asked again for 5 s.
        inner = w.outbox.inner

        class Unreadable:
            async def backlog(self) -> Backlog:
                raise OSError("disk I/O error")

        w.outbox.inner = Unreadable()  # type: ignore[assignment]
        w.clock.now = NOW + 17
        assert await worker.backlog() is None
        assert "webhooks: cannot count the outbox's messages" in caplog.text
        w.outbox.inner = inner
        w.clock.now = NOW + 21.9
        assert await worker.backlog() is None
        w.clock.now = NOW + 22
        assert await worker.backlog() == Backlog(pending=3, dead=0, waiting_since=NOW + 5)
        assert waiting != gone
        endpoint.gate.set()
