"""The frame codec, and the close-code table shared with the SDK."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from seatguard.errors import (
    BadMessage,
    OriginNotAllowed,
    SeatguardError,
    TooBig,
    UnknownSite,
    close_code,
)
from seatguard.protocol import (
    PROTOCOL_VERSION,
    RETRY,
    RETRY_LATER,
    Block,
    BlockReason,
    Bye,
    CloseCode,
    Heartbeat,
    Hello,
    Logout,
    Welcome,
    decode_client_frame,
    encode,
)
from tests.helpers import ROOT

HELLO = {
    "t": "hello",
    "v": 1,
    "site": "pk_x",
    "user": "alice",
    "session": "abcdefgh",
    "tab": "tab_1234",
    "device": "dev-1234",
}


def js_constants() -> dict[str, object]:
    """Read the object and array literals of js-sdk/src/constants.js."""
    text = (ROOT / "js-sdk/src/constants.js").read_text()
    out: dict[str, object] = {}
    for name, body in re.findall(r"export const (\w+) = (\{.*?\}|\[.*?\]|\d+);", text, re.S):
        body = re.sub(r"//[^\n]*", "", body)
        body = re.sub(r"(\w+):", r'"\1":', body).replace("'", '"')
        body = re.sub(r",(\s*[}\]])", r"\1", body)
        out[name] = json.loads(body)
    return out


def test_close_codes_match_the_sdk() -> None:
    js = js_constants()
    assert js["CLOSE"] == {c.name: c.value for c in CloseCode}
    retry, retry_later = js["RETRY"], js["RETRY_LATER"]
    assert isinstance(retry, list) and set(retry) == RETRY
    assert isinstance(retry_later, list) and set(retry_later) == RETRY_LATER
    assert js["PROTOCOL_VERSION"] == PROTOCOL_VERSION
    for name in ("LOGGED_OUT", "REVOKED", "EXPIRED", "SUSPENDED"):  # single codes in the bundle
        assert js[name] == CloseCode[name.lower()].value


def test_block_reasons_match_the_sdk() -> None:
    assert js_constants()["BLOCK_REASONS"] == [r.value for r in BlockReason]


def test_hello_decodes_with_optional_fields() -> None:
    frame = decode_client_frame(json.dumps({**HELLO, "mode": "device-limit", "limit": 3}))
    assert isinstance(frame, Hello)
    assert (frame.mode, frame.limit, frame.policy, frame.fp) == ("device-limit", 3, None, None)
    assert frame.touch is None
    for touch in (0, 5, 256):
        frame = decode_client_frame(json.dumps({**HELLO, "touch": touch}))
        assert isinstance(frame, Hello) and frame.touch == touch


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ('{"t":"hb","ref":3,"active":true}', Heartbeat),
        ('{"t":"hb","ref":0}', Heartbeat),
        ('{"t":"bye","next":"reload"}', Bye),
        ('{"t":"bye"}', Bye),
        ('{"t":"logout"}', Logout),
    ],
)
def test_client_frames_decode(raw: str, kind: type) -> None:
    assert isinstance(decode_client_frame(raw), kind)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        "null",
        "[]",
        '{"t":"nope"}',
        '{"t":"hb"}',
        '{"t":"hb","ref":-1}',
        '{"t":"hb","ref":"1"}',
        '{"t":"bye","next":"away"}',
        json.dumps({**HELLO, "session": "short"}),
        json.dumps({**HELLO, "session": "has space in it"}),
        json.dumps({**HELLO, "user": ""}),
        json.dumps({**HELLO, "user": "x" * 257}),
        json.dumps({**HELLO, "limit": 0}),
        json.dumps({**HELLO, "mode": "seats"}),
        json.dumps({**HELLO, "extra": 1}),
        json.dumps({**HELLO, "touch": -1}),
        json.dumps({**HELLO, "touch": 257}),
        json.dumps({**HELLO, "touch": 2**64}),
        json.dumps({**HELLO, "touch": 1.5}),
        json.dumps({**HELLO, "touch": "5"}),
        json.dumps({**HELLO, "touch": True}),
        json.dumps({**HELLO, "touch": [5]}),
    ],
)
def test_invalid_frames_are_refused(raw: str) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_client_frame(raw)


def test_server_frames_encode_compactly() -> None:
    # Frames are encoded straight to the UTF-8 bytes of a text frame.
    assert encode(Block(reason="limit", takeover=False)) == (
        b'{"t":"block","reason":"limit","takeover":false}'
    )
    welcome = Welcome(
        v=1,
        session="s",
        state="admitted",
        reason=None,
        hb=25000,
        mode="concurrence",
        limit=1,
        policy="block-new",
        takeover=False,
    )
    assert json.loads(encode(welcome))["t"] == "welcome"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (BadMessage("x"), 4000),
        (TooBig("x"), 1009),
        (UnknownSite("x"), 4003),
        (OriginNotAllowed("x"), 4004),
        (SeatguardError("x"), 1011),
        (RuntimeError("x"), 1011),
    ],
)
def test_errors_map_to_close_codes(exc: Exception, code: int) -> None:
    assert close_code(exc) == code
