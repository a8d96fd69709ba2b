"""The JWKS cache over a fake fetch and a fake clock: ages, rotation, failures, limits."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from seatguard.errors import ConfigError, IdentityError, KeysUnavailable, close_code
from seatguard.identity.jwks import Fetched, JwksCache, check_jwks_uri, httpx_fetch, max_age
from seatguard.identity.jws import token_kid
from seatguard.protocol import CloseCode
from tests.unit.fakes import Clock

pytestmark = pytest.mark.anyio

URL = "https://op.example/jwks"
RS256 = ("RS256",)
_RSA = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
_EC = ec.generate_private_key(ec.SECP256R1())


def jwk(kid: str, index: int = 0) -> dict[str, Any]:
    public = _RSA[index].public_key()
    return {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": kid, "alg": "RS256"}


def jwks(*kids: str) -> dict[str, Any]:
    return {"keys": [jwk(kid, i % 2) for i, kid in enumerate(kids)]}


def ok(document: Any, cache_control: str | None = None) -> Fetched:
    return Fetched(200, json.dumps(document).encode(), cache_control)


Answer = Fetched | BaseException | Callable[[], Awaitable[Fetched]]


class Provider:
    """A fake fetch: answers from a script, repeating the last answer; records each call."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, url: str, limit: int) -> Fetched:
        self.calls.append((url, limit))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return await answer()
        return answer


def cache(provider: Provider, clock: Clock, **options: Any) -> JwksCache:
    return JwksCache(provider, clock=clock, **options)


def kids(keys: Any) -> set[str | None]:
    return {k.kid for k in keys.keys}


# Ages: Cache-Control max-age, bounded to [5 min, 24 h], 1 h by default.


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, 3600),
        ("", 3600),
        ("public, max-age=7200", 7200),
        ('max-age="900"', 900),
        ("max-age=60", 300),  # too short: 5 min
        ("max-age=0, must-revalidate", 300),
        ("no-store", 300),
        ("no-cache", 300),
        ("max-age=999999", 86400),  # too long: 24 h
        ("max-age=abc", 3600),  # unreadable: the default
        ("max-age=-5", 3600),
        ("MAX-AGE=1800", 1800),
    ],
)
def test_max_age_is_bounded(cache_control: str | None, seconds: float) -> None:
    assert max_age(cache_control, default=3600, low=300, high=86400) == seconds


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [(None, 3600), ("max-age=10", 300), ("max-age=7200", 7200), ("max-age=10000000", 86400)],
)
async def test_a_set_is_kept_for_its_bounded_max_age(cache_control: str | None, ttl: int) -> None:
    clock = Clock()
    provider = Provider(ok(jwks("k1"), cache_control), ok(jwks("k1", "k2")))
    keys = cache(provider, clock)
    assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1"}
    clock.now += ttl - 1
    assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1"}
    await keys.idle()
    assert len(provider.calls) == 1  # still fresh
    # Past its age the held set still answers at once while the refresh runs behind it.
    clock.now += 1
    assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1"}
    await keys.idle()
    assert len(provider.calls) == 2
    assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1", "k2"}


async def test_the_first_use_waits_for_the_fetch_and_asks_within_the_size_cap() -> None:
    provider = Provider(ok(jwks("k1")))
    keys = cache(provider, Clock(), max_bytes=4096)
    found = await keys.keys(URL, RS256)
    assert kids(found) == {"k1"} and found.by_kid
    assert provider.calls == [(URL, 4096)]


# Rotation: an unknown kid refetches, at most once per 30 s per URL.


async def test_an_unknown_kid_refetches_at_most_once_per_30_seconds() -> None:
    clock = Clock()
    provider = Provider(ok(jwks("k1")), ok(jwks("k1", "k2")), ok(jwks("k2")))
    keys = cache(provider, clock)
    await keys.keys(URL, RS256, kid="k1")  # t=0: the first fetch
    # t=10: the provider rotated to k2, but the last fetch was 10 s ago: the held set
    # answers (and the token will be refused as signed by an unknown key).
    clock.now += 10
    assert kids(await keys.keys(URL, RS256, kid="k2")) == {"k1"}
    assert len(provider.calls) == 1
    # t=30: now it may fetch again, and the token waits for the new set.
    clock.now += 20
    assert kids(await keys.keys(URL, RS256, kid="k2")) == {"k1", "k2"}
    assert len(provider.calls) == 2
    # Tokens with made-up kids, many and at once: no fetch before t=60.
    for step in range(29):
        clock.now += 1
        await asyncio.gather(*(keys.keys(URL, RS256, kid=f"bogus-{step}-{i}") for i in range(5)))
    assert len(provider.calls) == 2
    clock.now += 1  # t=60
    assert kids(await keys.keys(URL, RS256, kid="bogus")) == {"k2"}
    assert len(provider.calls) == 3
    # A known kid, or none, never refetches a fresh set.
    clock.now += 30
    await keys.keys(URL, RS256, kid="k2")
    await keys.keys(URL, RS256)
    await keys.keys(URL, RS256, kid=7)  # not a string: not a key id the set could have
    assert len(provider.calls) == 3


async def test_urls_are_limited_each_on_their_own() -> None:
    clock = Clock()
    provider = Provider(ok(jwks("k1")))
    keys = cache(provider, clock)
    await keys.keys(URL, RS256)
    await keys.keys(URL + "?other", RS256)
    clock.now += 1
    await keys.keys(URL, RS256, kid="new")
    assert [url for url, _ in provider.calls] == [URL, URL + "?other"]


# Single flight.


async def test_concurrent_verifications_share_one_fetch() -> None:
    release = asyncio.Event()

    async def slow() -> Fetched:
        await release.wait()
        return ok(jwks("k1"))

    provider = Provider(slow)
    keys = cache(provider, Clock())
    waiting = [asyncio.create_task(keys.keys(URL, RS256, kid="k1")) for _ in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(provider.calls) == 1 and not any(t.done() for t in waiting)
    release.set()
    found = await asyncio.gather(*waiting)
    assert len(provider.calls) == 1
    assert all(f is found[0] for f in found)  # one set, built once per algorithm choice


async def test_a_waiter_that_gives_up_does_not_cancel_the_fetch_for_the_others() -> None:
    release = asyncio.Event()

    async def slow() -> Fetched:
        await release.wait()
        return ok(jwks("k1"))

    provider = Provider(slow)
    keys = cache(provider, Clock())
    first = asyncio.create_task(keys.keys(URL, RS256))
    second = asyncio.create_task(keys.keys(URL, RS256))
    await asyncio.sleep(0)
    first.cancel()  # e.g. its socket closed while it waited
    await asyncio.sleep(0)
    release.set()
    assert kids(await second) == {"k1"}
    assert first.cancelled() and len(provider.calls) == 1


# Failures.


async def test_the_last_good_set_is_kept_when_a_refresh_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    provider = Provider(
        ok(jwks("k1")),
        httpx.ConnectError("connection refused"),
        Fetched(503, b"down"),
        ok("not a key set"),
        ok(jwks("k2")),
    )
    keys = cache(provider, clock)
    await keys.keys(URL, RS256)
    for _ in range(3):  # past its age, each refresh fails: the held set keeps answering
        clock.now += 3600
        assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1"}
        await keys.idle()
        assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(URL in w and "keeping the last good set" in w for w in warnings)
    assert "connection refused" in warnings[0] and "HTTP 503" in warnings[1]
    # An unknown kid whose refetch fails is checked against the held set too.
    clock.now += 30
    assert kids(await keys.keys(URL, RS256, kid="k2")) == {"k2"}  # this one worked


async def test_with_no_good_set_the_keys_are_unavailable_and_retried_after_30_seconds() -> None:
    clock = Clock()
    provider = Provider(httpx.ConnectError("connection refused"), ok(jwks("k1")))
    keys = cache(provider, clock)
    with pytest.raises(KeysUnavailable, match=f"keys at {URL} could not be fetched") as caught:
        await keys.keys(URL, RS256, kid="k1")
    assert "connection refused" in caught.value.reason
    assert caught.value.retry_after == 30
    clock.now += 20  # the provider is not asked again before 30 s
    with pytest.raises(KeysUnavailable) as again:
        await keys.keys(URL, RS256, kid="k1")
    assert again.value.retry_after == 10 and len(provider.calls) == 1
    clock.now += 10
    assert kids(await keys.keys(URL, RS256, kid="k1")) == {"k1"}
    assert len(provider.calls) == 2


def test_unavailable_keys_refuse_an_identity_like_a_bad_token() -> None:
    exc = KeysUnavailable("no keys", reason="down", retry_after=30)
    assert isinstance(exc, IdentityError)
    assert close_code(exc) is CloseCode.identity_invalid


async def test_a_hanging_provider_times_out() -> None:
    async def never() -> Fetched:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    keys = cache(Provider(never), Clock(), timeout=0.01)
    with pytest.raises(KeysUnavailable, match=r"no answer within 0\.01 s"):
        await keys.keys(URL, RS256)


async def test_a_document_over_the_size_cap_is_refused() -> None:
    document = json.dumps(jwks("k1")).encode()
    padded = document[:-1] + b" " * (4096 - len(document)) + b"}"  # exactly the cap
    assert len(padded) == 4096
    assert kids(await cache(Provider(Fetched(200, padded)), Clock(), max_bytes=4096).keys(
        URL, RS256
    )) == {"k1"}  # fmt: skip
    over = Fetched(200, padded + b" ")
    with pytest.raises(KeysUnavailable, match="over 4096 bytes"):
        await cache(Provider(over), Clock(), max_bytes=4096).keys(URL, RS256)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Fetched(200, b"<html>Sign in</html>"), "not JSON"),
        (Fetched(200, b"\xff\xfe\x00"), "not JSON"),
        (Fetched(200, b"[" * 100_000), "not JSON"),
        (ok([jwk("k1")]), "not a JWKS"),
        (ok({"keys": {"k1": jwk("k1")}}), "not a JWKS"),
        (ok({"jwks": [jwk("k1")]}), "not a JWKS"),
        (ok({"keys": []}), "no signing key"),
        (ok({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "no signing key"),
        (ok({"keys": [{**jwk("k1"), "n": "AQAB"}]}), "not a valid RS256 key"),
        (ok({"keys": [jwk("k1"), jwk("k1", 1)]}), "same kid"),
        (Fetched(404, b"{}"), "HTTP 404"),
        (Fetched(302, b""), "HTTP 302 (redirects are not followed)"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_what_is_not_a_good_key_set_is_refused(reply: Fetched, why: str) -> None:
    with pytest.raises(KeysUnavailable, match=why.replace("(", r"\(").replace(")", r"\)")):
        await cache(Provider(reply), Clock()).keys(URL, RS256)


# Keys as for a stored document: pinned algorithms.


async def test_the_algorithms_stay_pinned() -> None:
    document = {
        "keys": [
            jwk("r1"),
            {**ECAlgorithm.to_jwk(_EC.public_key(), as_dict=True), "kid": "e1"},
        ]
    }
    keys = cache(Provider(ok(document)), Clock())
    rsa_only = await keys.keys(URL, RS256)
    assert [(k.kid, k.algorithm) for k in rsa_only.keys] == [("r1", "RS256")]
    both = await keys.keys(URL, ("RS256", "ES256"))
    assert {(k.kid, k.algorithm) for k in both.keys} == {("r1", "RS256"), ("e1", "ES256")}
    with pytest.raises(KeysUnavailable, match="no signing key for PS256"):
        await keys.keys(URL, ("PS256",))  # `alg` RS256 pins the RSA key to RS256


async def test_the_least_recently_used_url_is_forgotten_past_the_cap() -> None:
    provider = Provider(ok(jwks("k1")))
    keys = cache(provider, Clock(), max_urls=2)
    await keys.keys("https://a.example/jwks", RS256)
    await keys.keys("https://b.example/jwks", RS256)
    await keys.keys("https://a.example/jwks", RS256)  # a is used again: b is the oldest
    await keys.keys("https://c.example/jwks", RS256)
    await keys.keys("https://a.example/jwks", RS256)
    assert len(provider.calls) == 3
    await keys.keys("https://b.example/jwks", RS256)
    assert len(provider.calls) == 4


async def test_closing_stops_a_fetch_under_way() -> None:
    started = asyncio.Event()

    async def never() -> Fetched:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    keys = cache(Provider(never), Clock())
    waiting = asyncio.create_task(keys.keys(URL, RS256))
    await started.wait()
    await keys.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_before_start_every_fetch_fails() -> None:
    with pytest.raises(KeysUnavailable, match="not started"):
        await JwksCache().keys(URL, RS256)


def test_bounds_must_make_sense() -> None:
    with pytest.raises(ConfigError):
        JwksCache(min_ttl=600, default_ttl=300)
    with pytest.raises(ConfigError):
        JwksCache(min_interval=0)


# URLs and key ids.


@pytest.mark.parametrize(
    "url",
    [
        "https://login.example.com/.well-known/jwks.json",
        "https://login.example.com:8443/keys?tenant=acme",
        "http://localhost:8080/jwks",
        "http://127.0.0.1/jwks",
        "http://[::1]:9000/jwks",
        "HTTP://LOCALHOST/jwks",
    ],
)
def test_jwks_uris_accepted(url: str) -> None:
    assert check_jwks_uri(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "non-empty"),
        ("http://login.example.com/jwks", "must use https"),
        ("http://127.0.0.2/jwks", "must use https"),
        ("http://localhost.example.com/jwks", "must use https"),
        ("ftp://login.example.com/jwks", "https:// URL"),
        ("login.example.com/jwks", "https:// URL"),
        ("https:///jwks", "https:// URL"),
        ("https://user:secret@login.example.com/jwks", "user name or password"),
        ("https://login.example.com/jwks#keys", "fragment"),
        ("https://login.example.com:99999/jwks", "not a URL"),
        ("https://login.example.com/my keys", "spaces"),
        ("https://login.example.com/\x00", "spaces"),
        ("https://login.exämple.com/jwks", "spaces"),
        ("https://login.example.com/" + "k" * 2048, "at most 2048"),
    ],
)
def test_jwks_uris_refused(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        check_jwks_uri(url)


def test_token_kid_reads_the_header_without_trusting_it() -> None:
    import jwt

    token = jwt.encode({"sub": "u"}, _RSA[0], algorithm="RS256", headers={"kid": "k9"})
    assert token_kid(token) == "k9"
    assert token_kid(jwt.encode({"sub": "u"}, _RSA[0], algorithm="RS256")) is None
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":5}').rstrip(b"=").decode()
    assert token_kid(f"{header}.e30.c2ln") is None  # a kid that is not a string
    assert token_kid("not.a.token") is None
    assert token_kid("x" * 9000) is None
    assert token_kid(None) is None


async def test_the_http_fetch_reads_no_more_than_it_may_and_follows_no_redirect() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"location": "http://127.0.0.1/jwks"})
        body = b"x" * 10_000 if request.url.path == "/big" else b'{"keys": []}'
        return httpx.Response(200, content=body, headers={"cache-control": "max-age=600"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        fetch = httpx_fetch(client)
        small = await fetch("https://op.example/jwks", 4096)
        assert (small.status, small.body, small.cache_control) == (
            200,
            b'{"keys": []}',
            "max-age=600",
        )
        big = await fetch("https://op.example/big", 4096)
        assert len(big.body) == 4097  # one byte over: enough to refuse it
        moved = await fetch("https://op.example/moved", 4096)
        assert moved.status == 302 and len(seen) == 3
    assert "jwk-set+json" in seen[0].headers["accept"]
