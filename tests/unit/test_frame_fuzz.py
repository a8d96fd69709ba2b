"""Property tests of what any client may send: the frame decoder raises nothing but msgspec's
errors, and a channel fed any frames ends, if it ends, with a close code of the table (never
1011), one `error` frame at most, and no error in the log.

The channel runs on a real node (memory store, SQLite file) with a fake transport; examples
are derandomized, so `make test` runs the same ones every time. The same holds against a
real server process in tests/integration/test_fuzz.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from seatguard import inputs
from seatguard.channel import Channel, ChannelState
from seatguard.db import open_database
from seatguard.node import Node
from seatguard.notices import Notice, decode_notice, encode_notice
from seatguard.presence import Outcome, Rules
from seatguard.problems import ApiError
from seatguard.protocol import CloseCode, decode_client_frame
from seatguard.sealing import SecretBox
from seatguard.settings import Settings
from seatguard.sites import new_site
from seatguard.store import MemoryStore

CODES = {int(c) for c in CloseCode}
EXAMPLES = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # caplog, cleared for each example
    ],
)

# --- frames ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
ident = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    min_size=8,
    max_size=12,
)


def nested(depth: int, opener: str) -> str:
    closer = "]" if opener == "[" else "}"
    inner = '{"a":' if opener == "{" else "["
    return inner * depth + "1" * (opener == "[") + "null" * (opener == "{") + closer * depth


@st.composite
def hello(draw: st.DrawFn, site: str) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "t": "hello",
        "v": 1,
        "site": site,
        "user": draw(st.sampled_from(["alice", "bob", "carol"])),
        "session": draw(ident),
        "tab": draw(ident),
        "device": draw(ident),
    }
    return frame


@st.composite
def mutated(draw: st.DrawFn, site: str) -> str:
    """A valid frame with one field changed, added or removed."""
    frame = draw(
        st.one_of(
            hello(site),
            st.builds(lambda ref: {"t": "hb", "ref": ref, "active": False}, st.integers(0, 99)),
            st.just({"t": "bye", "next": "close"}),
            st.just({"t": "logout"}),
            st.just({"t": "takeover"}),
        )
    )
    field = draw(st.sampled_from([*frame, "extra"]))
    how = draw(st.sampled_from(["value", "delete", "deep"]))
    if how == "delete" and field in frame:
        del frame[field]
    elif how == "deep":
        depth = draw(st.sampled_from([5, 999, 1500, 4000]))
        return json.dumps({**frame, field: None}).replace("null", nested(depth, "["), 1)
    else:
        frame[field] = draw(json_values)
    return json.dumps(frame)


def frames(site: str) -> st.SearchStrategy[str | bytes]:
    valid_hello = hello(site).map(json.dumps)
    return st.one_of(
        valid_hello,
        mutated(site),
        json_values.map(json.dumps),
        st.text(max_size=60),
        st.sampled_from([nested(3000, "["), nested(2000, "{"), '{"t":' + nested(1200, "[") + "}"]),
        st.binary(max_size=40),
        st.sampled_from(["", "{", '{"t":"hb","ref":1e400}', '{"t":"hb","ref":' + "9" * 400 + "}"]),
    )


# --- the decoder -------------------------------------------------------------------------


@EXAMPLES
@given(st.one_of(frames("pk_site"), st.binary(max_size=200)))
def test_the_decoder_raises_only_msgspec_errors(data: str | bytes) -> None:
    with contextlib.suppress(msgspec.MsgspecError):
        decode_client_frame(data)


@pytest.mark.parametrize("depth", [1000, 3000, 100_000])
def test_nesting_past_the_recursion_limit_is_a_decode_error(depth: int) -> None:
    for frame in ('{"t":' + "[" * depth + "]" * depth + "}", '{"x":' + nested(depth, "{") + "}"):
        with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
            decode_client_frame(frame)


def test_a_notice_nested_past_the_recursion_limit_is_a_decode_error() -> None:
    # Five good fields, then a sixth of 5,000 nested arrays.
    good = encode_notice(Notice(site="s", user="u", seq=1, takeover=False, outcome=Outcome()))
    payload = bytes([good[0] + 1]) + good[1:] + b"\x91" * 5000 + b"\xc0"
    with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
        decode_notice(payload)


class Loose(msgspec.Struct):
    """A request body with free-form JSON in it, as a future API field might have."""

    extra: dict[str, Any] = {}


def test_an_api_body_nested_past_the_recursion_limit_is_a_400() -> None:
    body = b'{"extra":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}"

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request({"type": "http", "method": "PATCH", "headers": []}, receive)
    with pytest.raises(ApiError) as refused:
        asyncio.run(inputs.read_json(request, Loose))
    assert (refused.value.status, refused.value.detail) == (400, "JSON nested too deeply")


# --- a channel -----------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def send(self, text: bytes) -> None:
        assert self.closed is None, "sent after close"
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        assert self.closed is None, "closed twice"
        assert len(reason.encode()) <= 123
        self.closed = code


class World:
    """A node on a memory store and a SQLite file, with one site, on its own event loop."""

    def __init__(self, tmp: Path) -> None:
        self.runner = asyncio.Runner()
        self.node, self.site = self.runner.run(self._open(tmp))

    async def _open(self, tmp: Path) -> tuple[Node, str]:
        db = await open_database(str(tmp / "fuzz.db"))
        box = SecretBox.ephemeral()
        site, _ = new_site("Fuzz", ["*"], Rules(), client_settings=True, now=0.0, box=box)
        await db.add_site(site)
        return Node(Settings(), MemoryStore(lambda: 1000.0), db, box=box), site.key

    def close(self) -> None:
        self.runner.run(self.node.db.close())
        self.runner.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.close()


SITE = "pk_fuzz_site"  # replaced by the world's site key when fed


@st.composite
def scripts(draw: st.DrawFn) -> list[str | bytes]:
    """A few frames, most often after a valid hello."""
    script = draw(st.lists(frames(SITE), min_size=1, max_size=6))
    if draw(st.booleans()):
        script.insert(0, json.dumps(draw(hello(SITE))))
    return script


@EXAMPLES
@given(script=scripts())
def test_a_channel_fed_anything_ends_with_a_code_of_the_table(
    world: World, script: list[str | bytes], caplog: pytest.LogCaptureFixture
) -> None:
    transport = FakeTransport()
    channel = Channel(
        world.node, transport, origin=None, own_origin="http://h", user_agent="UA", ip="192.0.2.1"
    )

    async def feed() -> None:
        for data in script:
            if isinstance(data, str):
                data = data.replace(SITE, world.site)
            if channel.state is ChannelState.closed:
                break
            raw = data.encode() if isinstance(data, str) else data
            ack = channel.heartbeat_now(raw)  # as the socket does, before `receive`
            if ack is None:
                await channel.receive(data)
        await channel.closed()

    caplog.clear()
    with caplog.at_level(logging.INFO, "seatguard"):
        world.runner.run(feed())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    errors = [f for f in transport.sent if f["t"] == "error"]
    if transport.closed is not None:
        assert transport.closed in CODES and transport.closed != CloseCode.internal_error
        assert len(errors) <= 1
        if errors:
            assert errors[0]["code"] == transport.closed
    else:
        assert errors == []
