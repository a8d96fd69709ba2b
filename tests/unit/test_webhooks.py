"""Webhook signing, verification and the retry schedule (the delivery worker: test_deliveries)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest

from seatguard.errors import ConfigError
from seatguard.webhooks import (
    EventType,
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
        "user.suspended",
        "user.unsuspended",
        "evaluation.flagged",
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
