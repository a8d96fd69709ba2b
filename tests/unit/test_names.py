"""One definition of a user id (and org, role, override name), the same wherever it is read."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from seatguard.api import OverridePath, SessionPath, UserPath
from seatguard.names import MAX_NAME, Name, is_name, name_problem
from seatguard.protocol import Hello

VALID = [
    "a",
    "alice@example.com",
    "a/b",
    "/leading/and/trailing/",
    "50% off",
    "what?",
    "#hash",
    "spaces inside",
    " kept as given ",  # ids are opaque: never trimmed, compared exactly
    "ünïcødé",
    "用户",
    "😀",
    "..",
    "u" * MAX_NAME,
]
INVALID = [
    "",
    " ",
    "\u00a0\u3000",  # blank in any script
    "u" * (MAX_NAME + 1),
    "tab\there",
    "new\nline",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    "c1\x9f",
    "line\u2028separator",
]


@pytest.mark.parametrize("value", VALID, ids=repr)
def test_valid_names(value: str) -> None:
    assert is_name(value)
    assert name_problem(value, "user id") is None
    assert msgspec.convert(value, Name) == value


@pytest.mark.parametrize("value", INVALID, ids=lambda v: repr(v)[:24])
def test_invalid_names(value: str) -> None:
    assert not is_name(value)
    assert name_problem(value, "user id") == (
        "user id must be printable text, not blank, 1 to 256 characters without control characters"
    )
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(value, Name)


@pytest.mark.parametrize("value", [None, 42, b"alice", ["alice"]], ids=repr)
def test_only_strings_are_names(value: Any) -> None:
    assert not is_name(value)


def hello(user: str) -> dict[str, Any]:
    return {"t": "hello", "v": 1, "site": "pk_x", "user": user, "session": "s" * 8,
            "tab": "t" * 8, "device": "d" * 8}  # fmt: skip


@pytest.mark.parametrize("value", VALID + INVALID, ids=lambda v: repr(v)[:24])
def test_the_hello_and_every_path_agree_on_what_a_user_id_is(value: str) -> None:
    def accepts(kind: type, data: dict[str, Any]) -> bool:
        try:
            msgspec.convert(data, kind)
        except msgspec.ValidationError:
            return False
        return True

    verdicts = {
        accepts(Hello, hello(value)),
        accepts(UserPath, {"user": value}),
        accepts(SessionPath, {"user": value, "session": "s" * 8}),
        accepts(OverridePath, {"name": value}),
    }
    assert verdicts == {is_name(value)}


def test_a_lone_surrogate_is_no_name() -> None:
    # JSON Schema's engines cannot name one, so the pattern does not: no JSON text that
    # msgspec decodes carries one, and `is_name` refuses one a Python string holds (an
    # identity token's `sub`, which PyJWT decodes with `json.loads`).
    assert not is_name("lone\ud800surrogate")
    assert name_problem("\udfff", "user id") is not None
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b'{"t": "hello", "user": "\\ud800"}')
