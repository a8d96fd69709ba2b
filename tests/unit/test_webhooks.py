"""Webhook signing, verification, the retry schedule, and the dispatcher over a fake sender."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from seatguard.errors import ConfigError
from seatguard.webhooks import (
    EventType,
    Reply,
    WebhookDispatcher,
    WebhookVerificationError,
    encode_event,
    new_webhook_secret,
    retry_after,
    retry_delay,
    retryable,
    sign,
    signed_headers,
    verify,
)
from tests.helpers import scaled

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
NOW = 1_700_000_000
BODY = b'{"type":"seat.blocked","timestamp":"2023-11-14T22:13:20.000Z","data":{"user":"alice"}}'


def headers_for(secret: str = SECRET, *, at: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return signed_headers([secret], MSG_ID, at, body)


# Signing and verifying.


def test_signature_matches_an_independent_hmac() -> None:
    mac = hmac.new(KEY, f"{MSG_ID}.{NOW}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(SECRET, MSG_ID, NOW, BODY) == "v1," + base64.b64encode(mac).decode()
    assert sign(SECRET, MSG_ID, NOW, BODY.decode()) == sign(SECRET, MSG_ID, NOW, BODY)


def test_signature_matches_the_standard_webhooks_published_example() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = new_webhook_secret(lambda n: b"\x07" * n)
    assert secret == "whsec_" + base64.b64encode(b"\x07" * 32).decode()
    assert new_webhook_secret() != new_webhook_secret()
    verify(secret, headers_for(secret), BODY, now=NOW)


def test_signed_headers_carry_id_timestamp_and_one_signature_per_secret() -> None:
    headers = signed_headers([SECRET, OTHER], MSG_ID, NOW, BODY)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == str(NOW)
    assert headers["webhook-signature"].split(" ") == [
        sign(SECRET, MSG_ID, NOW, BODY),
        sign(OTHER, MSG_ID, NOW, BODY),
    ]


def test_verify_accepts_a_valid_message_with_headers_in_any_case() -> None:
    verify(SECRET, headers_for(), BODY, now=NOW)
    titled = {k.title(): v for k, v in headers_for().items()}
    verify(SECRET, titled, BODY.decode(), now=NOW + 10)
    verify(SECRET, httpx.Headers(headers_for()), BODY, now=NOW)


def test_verify_accepts_either_secret_of_a_rotation_and_skips_unknown_versions() -> None:
    headers = signed_headers([OTHER, SECRET], MSG_ID, NOW, BODY)
    headers["webhook-signature"] = (
        "v2,c29tZXRoaW5n v1,not-base64! v1 " + (headers["webhook-signature"])
    )
    verify(SECRET, headers, BODY, now=NOW)
    verify(OTHER, headers, BODY, now=NOW)


def test_secret_without_prefix_or_padding_is_the_same_key() -> None:
    bare = base64.b64encode(KEY).decode().rstrip("=")
    verify(bare, headers_for(), BODY, now=NOW)


@pytest.mark.parametrize(
    ("secret", "body", "headers"),
    [
        pytest.param(SECRET, BODY.replace(b"alice", b"mallory"), headers_for(), id="tampered"),
        pytest.param(OTHER, BODY, headers_for(), id="wrong-secret"),
        pytest.param(SECRET, BODY, {**headers_for(), "webhook-id": "msg_other"}, id="other-id"),
        pytest.param(
            SECRET, BODY, {**headers_for(), "webhook-signature": "v2,abc"}, id="no-v1-signature"
        ),
    ],
)
def test_verify_refuses_a_signature_that_does_not_match(
    secret: str, body: bytes, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret, headers, body, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_refuses_a_missing_or_empty_header(missing: str) -> None:
    headers = headers_for()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing header {missing}"):
        verify(SECRET, headers, BODY, now=NOW)
    with pytest.raises(WebhookVerificationError, match=f"missing header {missing}"):
        verify(SECRET, {**headers, missing: ""}, BODY, now=NOW)


@pytest.mark.parametrize("stamp", ["1.7e9", "-5", "soon", " 1700000000"])
def test_verify_refuses_a_timestamp_that_is_not_integer_seconds(stamp: str) -> None:
    with pytest.raises(WebhookVerificationError, match="integer seconds"):
        verify(SECRET, {**headers_for(), "webhook-timestamp": stamp}, BODY, now=NOW)


def test_verify_refuses_stale_and_future_timestamps_outside_the_tolerance() -> None:
    # Signed at NOW: fine up to 300 s either way on the receiver's clock, not beyond.
    verify(SECRET, headers_for(), BODY, now=NOW + 300)
    verify(SECRET, headers_for(), BODY, now=NOW - 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SECRET, headers_for(), BODY, now=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(SECRET, headers_for(), BODY, now=NOW - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SECRET, headers_for(), BODY, now=NOW + 11, tolerance=10)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_a_malformed_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError, match="webhook secret"):
        sign(secret, MSG_ID, NOW, BODY)


def test_event_body_is_type_iso_timestamp_and_data() -> None:
    body = encode_event(EventType.seat_taken_over, {"user": "zoë", "n": 1}, now=NOW + 0.25)
    assert json.loads(body) == {
        "type": "seat.taken_over",
        "timestamp": "2023-11-14T22:13:20.250Z",
        "data": {"user": "zoë", "n": 1},
    }
    assert [e.value for e in EventType] == [
        "seat.blocked",
        "seat.unblocked",
        "seat.taken_over",
        "seat.evicted",
        "session.expired",
        "session.revoked",
    ]


# The retry schedule.


@pytest.mark.parametrize("attempt", range(1, 14))
def test_retry_delay_is_full_jitter_under_a_doubling_window_capped(attempt: int) -> None:
    window = min(300.0, 2.0 ** (attempt - 1))
    assert retry_delay(attempt, base=1.0, cap=300.0, random=lambda: 0.0) == 0.0
    assert retry_delay(attempt, base=1.0, cap=300.0, random=lambda: 0.5) == window / 2
    assert 0 <= retry_delay(attempt, base=1.0, cap=300.0, random=lambda: 0.999) < window


def test_retry_delay_does_not_overflow_and_counts_attempts_from_one() -> None:
    assert retry_delay(100_000, base=1.0, cap=300.0, random=lambda: 0.5) == 150.0
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(0, base=1.0, cap=300.0, random=lambda: 0.5)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408, 409, 425, 429])
def test_5xx_and_try_later_4xx_are_retried(status: int) -> None:
    assert retryable(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301, 302])
def test_other_answers_are_final(status: int) -> None:
    assert not retryable(status)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_delay_seconds_only(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after(headers) == seconds


# The dispatcher, with a fake sender, clock and sleep: no real waiting.

URL = "https://site.example/hooks"


class FakeEndpoint:
    """Answers each POST with the next scripted reply (a status, a Reply or an exception)."""

    def __init__(self, *script: int | Reply | Exception) -> None:
        self.script: deque[int | Reply | Exception] = deque(script)
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.gate: asyncio.Event | None = None  # while set to an unset event, POSTs hang
        self.entered = asyncio.Event()

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        self.calls.append((url, body, dict(headers)))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        reply = self.script.popleft() if self.script else 204
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, Reply) else Reply(reply)

    def ids(self) -> list[str]:
        return [h["webhook-id"] for _, _, h in self.calls]

    def events(self) -> list[object]:
        return [json.loads(body)["data"]["n"] for _, body, _ in self.calls]


class World:
    """A dispatcher over a fake endpoint, a frozen clock and a sleep that only records."""

    def __init__(self, endpoint: FakeEndpoint, **options: Any) -> None:
        self.endpoint = endpoint
        self.sleeps: list[float] = []
        self.dispatcher = WebhookDispatcher(
            sender=endpoint,
            clock=lambda: NOW,
            sleep=self.sleep,
            random=lambda: 0.5,
            **options,
        )

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def send(self, n: int = 0, url: str = URL) -> str:
        return self.dispatcher.enqueue(url, SECRET, EventType.seat_blocked, {"n": n})

    async def run(self) -> dict[str, int]:
        await self.dispatcher.start()
        return self.dispatcher.stats

    async def done(self) -> dict[str, int]:
        await asyncio.wait_for(self.dispatcher.flush(), scaled(5))
        return self.dispatcher.stats


def stats(
    delivered: int = 0, failed: int = 0, dropped: int = 0, retried: int = 0
) -> dict[str, int]:
    return {"delivered": delivered, "failed": failed, "dropped": dropped, "retried": retried}


@pytest.mark.anyio
async def test_retries_a_500_then_delivers_with_the_same_message_id() -> None:
    w = World(FakeEndpoint(500, 500, 204))
    await w.run()
    msg_id = w.send()
    assert await w.done() == stats(delivered=1, retried=2)
    assert w.endpoint.ids() == [msg_id] * 3 and msg_id.startswith("msg_")
    # Backoff windows 1 s then 2 s, jitter 0.5: waits of 0.5 s and 1 s.
    assert w.sleeps == [0.5, 1.0]
    for url, body, headers in w.endpoint.calls:
        assert url == URL
        verify(SECRET, headers, body, now=NOW)
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_network_errors_and_timeouts_are_retried() -> None:
    w = World(FakeEndpoint(httpx.ConnectError("refused"), TimeoutError(), 200))
    await w.run()
    w.send()
    assert await w.done() == stats(delivered=1, retried=2)
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_a_hanging_endpoint_times_out_and_is_retried() -> None:
    endpoint = FakeEndpoint(204)
    w = World(endpoint, timeout=0.01, max_attempts=2)
    await w.run()
    endpoint.gate = asyncio.Event()  # never set: every POST hangs past the timeout
    w.send()
    assert await w.done() == stats(failed=1, retried=1)
    assert len(endpoint.calls) == 2
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_gives_up_after_max_attempts_and_counts_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = World(FakeEndpoint(*[503] * 10), max_attempts=3)
    await w.run()
    msg_id = w.send()
    assert await w.done() == stats(failed=1, retried=2)
    assert w.endpoint.ids() == [msg_id] * 3
    assert len(w.sleeps) == 2
    assert f"webhook {msg_id} seat.blocked to {URL} failed after 3 attempt(s): HTTP 503" in (
        caplog.text
    )
    await w.dispatcher.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
async def test_no_retry_on_a_final_answer(status: int) -> None:
    w = World(FakeEndpoint(status, 204))
    await w.run()
    w.send()
    assert await w.done() == stats(failed=1)
    assert len(w.endpoint.calls) == 1 and w.sleeps == []
    await w.dispatcher.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [408, 409, 425, 429, 502])
async def test_retry_on_try_again_later_statuses(status: int) -> None:
    w = World(FakeEndpoint(status, 204))
    await w.run()
    w.send()
    assert await w.done() == stats(delivered=1, retried=1)
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_honours_retry_after_up_to_the_cap() -> None:
    w = World(
        FakeEndpoint(
            Reply(429, {"Retry-After": "7"}),
            Reply(503, {"Retry-After": "86400"}),
            Reply(503, {"Retry-After": "a date"}),
            204,
        ),
        cap=60.0,
    )
    await w.run()
    w.send()
    assert await w.done() == stats(delivered=1, retried=3)
    # 7 s as asked; a day is capped at 60 s; an unreadable value falls back to backoff.
    assert w.sleeps == [7.0, 60.0, 2.0]
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_queue_overflow_drops_the_oldest_waiting_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = FakeEndpoint()
    endpoint.gate = asyncio.Event()
    w = World(endpoint, max_queue=2)
    await w.run()
    w.send(1)
    await endpoint.entered.wait()  # message 1 is in flight, not queued
    w.send(2)
    w.send(3)
    dropped = w.send(4)  # the queue holds 2 and 3: 2 goes
    assert dropped.startswith("msg_")
    assert w.dispatcher.stats == stats(dropped=1)
    assert "webhook queue for https://site.example/hooks full (2): dropped msg_" in caplog.text
    endpoint.gate.set()
    assert await w.done() == stats(delivered=3, dropped=1)
    assert endpoint.events() == [1, 3, 4]
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_one_slow_endpoint_does_not_hold_up_another_and_order_holds() -> None:
    slow, fast = FakeEndpoint(), FakeEndpoint()
    slow.gate = asyncio.Event()

    fast_done = asyncio.Event()

    async def route(url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        if "slow" in url:
            return await slow(url, body, headers)
        reply = await fast(url, body, headers)
        if len(fast.calls) == 3:
            fast_done.set()
        return reply

    dispatcher = WebhookDispatcher(sender=route)
    async with dispatcher:
        for n in range(3):
            dispatcher.enqueue("https://slow.example/", SECRET, EventType.seat_evicted, {"n": n})
            dispatcher.enqueue("https://fast.example/", SECRET, EventType.seat_evicted, {"n": n})
        await asyncio.wait_for(fast_done.wait(), scaled(5))
        assert fast.events() == [0, 1, 2]
        assert slow.events() == [0]  # the first is still hanging
        slow.gate.set()
        await asyncio.wait_for(dispatcher.flush(), scaled(5))
    assert slow.events() == [0, 1, 2]
    assert dispatcher.stats == stats(delivered=6)


@pytest.mark.anyio
async def test_several_secrets_each_sign_and_the_body_is_the_event() -> None:
    w = World(FakeEndpoint())
    await w.run()
    data = {"site": "pk_1", "user": "alice", "session": "s1", "device": "d1", "reason": "limit"}
    w.dispatcher.enqueue(URL, [SECRET, OTHER], EventType.seat_blocked, data)
    await w.done()
    (_, body, headers), *_ = w.endpoint.calls
    verify(SECRET, headers, body, now=NOW)
    verify(OTHER, headers, body, now=NOW)
    assert json.loads(body) == {
        "type": "seat.blocked",
        "timestamp": "2023-11-14T22:13:20.000Z",
        "data": data,
    }
    await w.dispatcher.aclose()


@pytest.mark.anyio
async def test_aclose_delivers_what_is_queued() -> None:
    w = World(FakeEndpoint(500, 204))
    await w.run()
    w.send(1)
    w.send(2)
    await w.dispatcher.aclose()
    assert w.dispatcher.stats == stats(delivered=2, retried=1)
    assert w.endpoint.events() == [1, 1, 2]


@pytest.mark.anyio
async def test_aclose_drops_what_it_cannot_deliver_within_the_drain_timeout() -> None:
    endpoint = FakeEndpoint()
    endpoint.gate = asyncio.Event()  # never set
    w = World(endpoint, drain_timeout=0.01)
    await w.run()
    w.send(1)
    w.send(2)
    w.send(3, url="https://other.example/")
    await w.dispatcher.aclose()
    assert w.dispatcher.stats == stats(dropped=3)
    w.send(4)  # after closing: dropped at once, never sent
    assert w.dispatcher.stats == stats(dropped=4)
    assert len(endpoint.calls) == 2
    await w.dispatcher.flush()  # nothing left to wait for
    await w.dispatcher.aclose()  # idempotent


@pytest.mark.anyio
async def test_enqueue_refuses_before_start_and_bad_input_at_once() -> None:
    w = World(FakeEndpoint())
    with pytest.raises(RuntimeError, match="start"):
        w.send()
    await w.run()
    with pytest.raises(RuntimeError, match="cannot start a running"):
        await w.dispatcher.start()
    with pytest.raises(ConfigError, match="webhook secret"):
        w.dispatcher.enqueue(URL, "whsec_!!", EventType.seat_blocked, {})
    with pytest.raises(ConfigError, match="at least one secret"):
        w.dispatcher.enqueue(URL, [], EventType.seat_blocked, {})
    with pytest.raises(ValueError, match=r"seat\.stolen"):
        w.dispatcher.enqueue(URL, SECRET, "seat.stolen", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        w.dispatcher.enqueue(URL, SECRET, EventType.seat_blocked, {"when": object()})
    assert w.dispatcher.stats == stats()
    await w.dispatcher.aclose()


@pytest.mark.parametrize(
    "options",
    [{"max_attempts": 0}, {"max_queue": 0}, {"base": 0}, {"cap": 0.5}, {"timeout": 0}],
)
def test_bad_dispatcher_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        WebhookDispatcher(**options)


@pytest.mark.anyio
async def test_unexpected_errors_fail_one_message_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def broken_sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    dispatcher = WebhookDispatcher(sender=FakeEndpoint(500, 204), sleep=broken_sleep)
    async with dispatcher:
        dispatcher.enqueue(URL, SECRET, EventType.session_expired, {})
        dispatcher.enqueue(URL, SECRET, EventType.session_revoked, {})
        await asyncio.wait_for(dispatcher.flush(), scaled(5))
    assert dispatcher.stats == stats(delivered=1, failed=1, retried=1)
    assert "unexpected error" in caplog.text and calls == 1
