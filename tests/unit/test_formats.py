"""Format numbers of what nodes share: snapshots in Redis and notices between nodes.

Nodes of adjacent releases share one Redis during a rolling upgrade: each reads what the
other writes in the format both know, and one that meets a format it does not know leaves
it alone rather than misreading it.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import msgspec
import pytest

from seatguard.db import Database
from seatguard.errors import StoreUnavailable, UnreadableSnapshot
from seatguard.node import Node
from seatguard.notices import (
    NOTICE_FORMAT,
    Notice,
    UnknownFormat,
    decode_notice,
    encode_notice,
)
from seatguard.presence import (
    Arrival,
    Ending,
    EndReason,
    Outcome,
    Rules,
    SeatState,
    Timing,
    Transition,
    UserPresence,
    join,
    revoke,
)
from seatguard.protocol import BlockReason
from seatguard.sealing import SecretBox
from seatguard.settings import Settings
from seatguard.store import MemoryStore
from seatguard.store.snapshots import SNAPSHOT_FORMAT, decode_snapshot, encode_snapshot
from tests.unit.fakes import Clock


def snapshot() -> UserPresence:
    """A user with a seated browser, a waiting one, a tombstone and a restore window."""
    up = UserPresence(Rules(mode="device-limit", limit=1, policy="evict-idle", idle_timeout=60))
    join(up, Arrival("session-1", "tab-1", "dev-1", "mobile", org="acme"), rules=up.rules, now=1)
    join(up, Arrival("session-2", "tab-2", "dev-2"), rules=up.rules, now=2)
    join(up, Arrival("session-3", "tab-3", "dev-3"), rules=up.rules, now=3)
    revoke(up, sessions=["session-3"], timing=Timing(), now=4)
    up.seq, up.restoring_until = 4_000_000, 9.5
    return up


def unnumbered(up: UserPresence) -> bytes:
    """A snapshot as nodes wrote it before snapshots had a format number."""
    return msgspec.msgpack.encode(up)


def test_a_snapshot_reads_back_equal_and_says_its_format() -> None:
    up = snapshot()
    blob = encode_snapshot(up)
    assert decode_snapshot(blob) == up
    assert msgspec.msgpack.decode(blob)["v"] == SNAPSHOT_FORMAT == 1
    assert decode_snapshot(b"") == UserPresence()


def test_a_snapshot_without_a_number_is_read_as_format_1() -> None:
    up = snapshot()
    assert "v" not in msgspec.msgpack.decode(unnumbered(up))
    assert decode_snapshot(unnumbered(up)) == up


def test_a_node_from_before_format_numbers_reads_what_this_one_writes() -> None:
    older = msgspec.msgpack.Decoder(UserPresence)  # how such a node reads a snapshot
    assert older.decode(encode_snapshot(snapshot())) == snapshot()


@pytest.mark.parametrize(
    "fields",
    [
        {"v": 2},  # a newer format this node cannot know the fields of
        {"v": 2, "sessions": "elsewhere"},  # ... whose fields a format 1 reader would refuse
        {"v": 0, "rules": {"limit": 1}},
    ],
)
def test_a_snapshot_of_another_format_is_refused_not_misread(fields: dict[str, Any]) -> None:
    blob = msgspec.msgpack.encode({**msgspec.to_builtins(snapshot()), **fields})
    with pytest.raises(UnreadableSnapshot, match=f"format {fields['v']}, this node reads format 1"):
        decode_snapshot(blob)


@pytest.mark.parametrize(
    "blob",
    [b"\xc1", msgspec.msgpack.encode([1, 2]), msgspec.msgpack.encode({"sessions": 5})],
)
def test_bytes_that_are_no_snapshot_are_refused_as_unreadable(blob: bytes) -> None:
    with pytest.raises(UnreadableSnapshot, match="not a snapshot of format 1") as raised:
        decode_snapshot(blob)
    assert isinstance(raised.value, StoreUnavailable)  # so the user is unavailable, no more


def notice() -> Notice:
    outcome = Outcome(
        transitions=(Transition("session-2", SeatState.blocked, BlockReason.evicted, "dev-2"),),
        ended=(Ending("session-1", EndReason.logout, "dev-1"),),
    )
    return Notice("pk_site", "alice", 7, True, outcome)


def test_a_notice_reads_back_equal_and_says_its_format_sixth() -> None:
    payload = encode_notice(notice())
    assert decode_notice(payload) == notice()
    assert msgspec.msgpack.decode(payload)[5] == NOTICE_FORMAT == 1


def test_a_notice_without_a_number_is_read_as_format_1() -> None:
    legacy = msgspec.msgpack.encode(msgspec.msgpack.decode(encode_notice(notice()))[:5])
    assert decode_notice(legacy) == notice()


def test_a_node_from_before_format_numbers_reads_the_notices_this_one_sends() -> None:
    class OlderNotice(msgspec.Struct, array_like=True):  # such a node's Notice
        site: str
        user: str
        seq: int
        takeover: bool
        outcome: Outcome

    older = msgspec.msgpack.decode(encode_notice(notice()), type=OlderNotice)
    assert older == OlderNotice("pk_site", "alice", 7, True, notice().outcome)


def test_a_handed_over_deadline_reads_back_and_a_node_of_six_items_ignores_it() -> None:
    handed = msgspec.structs.replace(notice(), deadline=1234.5)
    payload = encode_notice(handed)
    assert decode_notice(payload) == handed
    six = msgspec.msgpack.encode(msgspec.msgpack.decode(payload)[:6])
    assert decode_notice(six) == notice()


@pytest.mark.parametrize(
    ("items", "key"),
    [
        (["pk_site", "alice", 7, True, {}, 2], ("pk_site", "alice")),  # reads as format 1
        (["pk_site", "alice", "7", None, [], 2, "more"], ("pk_site", "alice")),  # does not
        ([["pk_site", "alice"], 7, True, {}, None, 3], None),  # who it is for moved
    ],
)
def test_a_notice_of_another_format_is_told_apart_not_misread(
    items: list[Any], key: tuple[str, str] | None
) -> None:
    got = decode_notice(msgspec.msgpack.encode(items))
    assert got == UnknownFormat(items[5], key)


@pytest.mark.parametrize(
    "items",
    [
        ["pk_site", "alice", "7", True, {}],  # format 1, with a bad seq
        ["pk_site", "alice", "7", True, {}, 1],
        ["pk_site", "alice", 7],  # too short for any format
        ["pk_site", "alice", 7, True, {}, "2"],  # a format number that is no number
    ],
)
def test_a_malformed_notice_is_still_an_error(items: list[Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_notice(msgspec.msgpack.encode(items))


@pytest.mark.anyio
async def test_a_node_drops_a_notice_of_another_format_and_syncs_that_user_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A newer node's notice could say anything about alice: this node tells her tabs nothing
    # from it, and reads the truth from the store at its next tick instead of in a while.
    clock = Clock()
    db = cast(Database, None)  # notices never reach the database
    node = Node(Settings(), MemoryStore(clock), db, box=SecretBox.ephemeral())
    alice, bob = ("pk_site", "alice"), ("pk_site", "bob")
    node._tabs[alice] = {}  # this node holds a socket of alice's, none of bob's
    newer = [msgspec.msgpack.encode([*key, 7, True, {}, 2]) for key in (alice, bob)]
    with caplog.at_level(logging.WARNING, logger="seatguard"):
        for payload in newer * 3:
            await node.notice(payload)
    assert node._flush.pop_due(clock.now) == [alice]
    [line] = [r.getMessage() for r in caplog.records]  # one line for the burst
    assert "notice of format 2" in line and "reads format 1" in line
