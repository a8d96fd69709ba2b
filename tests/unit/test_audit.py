"""The audit chain: signing, verification of every kind of tampering, keys and JSON lines."""

from __future__ import annotations

import base64
import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from seatguard.audit import (
    GENESIS,
    AuditEvent,
    AuditKind,
    AuditRecord,
    ProblemKind,
    canonical,
    chain,
    from_json,
    to_json,
    verify,
)
from seatguard.errors import ConfigError
from seatguard.keys import load_audit_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
C, D, I, R, T = (  # noqa: E741
    ProblemKind.changed,
    ProblemKind.deleted,
    ProblemKind.inserted,
    ProblemKind.reordered,
    ProblemKind.truncated,
)


def event(i: int, **changes: Any) -> AuditEvent:
    e = AuditEvent(
        at=1_700_000_000.25 + i,
        site="site-a",
        user="alice",
        session=f"s{i}",
        device="dev-1",
        ip="203.0.113.7",
        kind=AuditKind.admitted,
        reason=None,
        detail={"n": i, "limit": 1},
    )
    return dataclasses.replace(e, **changes)


def extend(log: list[AuditRecord], n: int, key: bytes = KEY, start: int = 0) -> list[AuditRecord]:
    """The log with `n` more records chained on, as the server would append them."""
    log = list(log)
    for i in range(n):
        prev = log[-1].hash if log else GENESIS
        log.append(chain(prev, len(log) + 1, event(start + i), key))
    return log


LOG = extend([], 6)  # seq 1..6; the tampering tests edit copies of it


def found(records: list[AuditRecord], **kw: Any) -> list[tuple[int, ProblemKind]]:
    report = verify(records, KEY, **kw)
    assert report.ok == (not report.problems)
    return [(p.seq, p.kind) for p in report.problems]


def edit(record: AuditRecord, **changes: Any) -> AuditRecord:
    """The same row with some stored columns changed (event fields or seq, prev, hash)."""
    own = {k: changes.pop(k) for k in ("seq", "prev", "hash") if k in changes}
    return dataclasses.replace(record, event=dataclasses.replace(record.event, **changes), **own)


# Chaining


def test_records_chain_from_genesis_and_verify() -> None:
    assert [r.seq for r in LOG] == [1, 2, 3, 4, 5, 6]
    assert LOG[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(LOG))
    assert len({r.hash for r in LOG}) == 6
    report = verify(LOG, KEY)
    assert (report.ok, report.count, report.head, report.problems) == (
        True,
        6,
        (6, LOG[-1].hash),
        [],
    )
    assert report.format() == f"audit log OK: 6 records, head seq 6 hash {LOG[-1].hash}"


def test_an_empty_log_verifies() -> None:
    report = verify([], KEY, expected_head=None)
    assert (report.ok, report.count, report.head) == (True, 0, None)


def test_the_hash_depends_on_the_key_and_nothing_but_the_content() -> None:
    a = chain(GENESIS, 1, event(0), KEY)
    assert chain(GENESIS, 1, event(0), KEY) == a
    assert chain(GENESIS, 1, event(0), OTHER_KEY).hash != a.hash
    # An integer time is the same instant as its float; -0.0 is stored as 0.0.
    assert (
        chain(GENESIS, 1, event(0, at=1_700_000_000), KEY).hash
        == chain(GENESIS, 1, event(0, at=1_700_000_000.0), KEY).hash
    )
    assert chain(GENESIS, 1, event(0, at=-0.0), KEY).event.at.hex() == (0.0).hex()
    # The kind may be given as its text; the record holds the enum.
    assert chain(GENESIS, 1, event(0, kind="blocked"), KEY).event.kind is AuditKind.blocked


def test_chain_copies_the_detail() -> None:
    detail: dict[str, Any] = {"n": 1}
    record = chain(GENESIS, 1, event(0, detail=detail), KEY)
    detail["n"] = 2
    assert verify([record], KEY).ok


def test_the_canonical_bytes_are_sorted_compact_ascii_json() -> None:
    e = event(0, user="Zoë", detail={"b": 0.1, "a": True})
    assert canonical(1, GENESIS, chain(GENESIS, 1, e, KEY).event) == (
        b'{"at":1700000000.25,"detail":{"a":true,"b":0.1},"device":"dev-1",'
        b'"ip":"203.0.113.7","kind":"admitted","prev":"' + GENESIS.encode() + b'",'
        b'"reason":null,"seq":1,"session":"s0","site":"site-a","user":"Zo\\u00eb"}'
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: chain(GENESIS, 1, event(0), b"short"), "32 bytes"),
        (lambda: chain(GENESIS, 0, event(0), KEY), "positive"),
        (lambda: chain(GENESIS, 2, event(0), KEY), "cannot follow"),
        (lambda: chain("ab" * 32, 1, event(0), KEY), "cannot follow"),
        (lambda: chain(GENESIS, 1, event(0, at=float("nan")), KEY), "finite"),
        (lambda: chain(GENESIS, 1, event(0, kind="teleported"), KEY), "unknown audit kind"),
        (lambda: chain(GENESIS, 1, event(0, user=None), KEY), "user must be text"),
        (lambda: chain(GENESIS, 1, event(0, ip="\ud800"), KEY), "not valid Unicode"),
        (lambda: chain(GENESIS, 1, event(0, detail={"a": {"b": 1}}), KEY), "scalars"),
        (lambda: chain(GENESIS, 1, event(0, detail={"a": [1]}), KEY), "scalars"),
        (lambda: chain(GENESIS, 1, event(0, detail={"a": float("inf")}), KEY), "finite"),
        (lambda: chain(GENESIS, 1, event(0, detail={"a": "x" * 3000}), KEY), "more than"),
    ],
)
def test_chain_refuses_what_cannot_be_signed_and_stored(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# Tampering: each kind is reported at the right row, and nothing else is.

CHANGES: list[tuple[str, dict[str, Any], int]] = [
    ("at", {"at": 1_700_000_002.26}, 3),
    ("site", {"site": "site-b"}, 3),
    ("user", {"user": "mallory"}, 3),
    ("session", {"session": None}, 3),
    ("device", {"device": "dev-2"}, 3),
    ("ip", {"ip": "198.51.100.1"}, 3),
    ("kind", {"kind": AuditKind.revoked}, 3),
    ("kind as unknown text", {"kind": "teleported"}, 3),
    ("reason", {"reason": "forged"}, 3),
    ("detail value", {"detail": {"n": 99, "limit": 1}}, 3),
    ("detail type", {"detail": {"n": 2.0, "limit": 1}}, 3),
    ("detail key removed", {"detail": {"n": 2}}, 3),
    ("prev", {"prev": "f" * 64}, 3),
    ("hash", {"hash": "0" * 64}, 3),
    ("seq", {"seq": 99}, 99),
]


@pytest.mark.parametrize(("changes", "seq"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_changed_field_is_reported_on_its_row_only(changes: dict[str, Any], seq: int) -> None:
    log = list(LOG)
    log[2] = edit(log[2], **changes)
    assert found(log) == [(seq, C)]


def test_a_seq_edited_so_that_the_row_sorts_last_is_one_change() -> None:
    # In a table ordered by seq, `UPDATE audit SET seq = 99 WHERE seq = 3` moves the row.
    log = [*LOG[:2], *LOG[3:], edit(LOG[2], seq=99)]
    assert found(log) == [(99, C)]
    assert "record 3" in verify(log, KEY).problems[0].message


def test_deleted_rows() -> None:
    assert found([*LOG[:2], *LOG[3:]]) == [(3, D)]
    assert found(LOG[1:]) == [(1, D)]
    only_ends = [LOG[0], LOG[5]]
    assert found(only_ends) == [(2, D)]
    assert verify(only_ends, KEY).problems[0].message == "records 2 to 5 are missing"


def test_inserted_rows() -> None:
    # A duplicate right after its original, and one much later.
    assert found([*LOG[:3], LOG[2], *LOG[3:]]) == [(3, I)]
    assert found([*LOG, LOG[1]]) == [(2, I)]
    # A copy given a new seq (SQL: INSERT ... SELECT max(seq) + 1, ...).
    copied = [*LOG, edit(LOG[2], seq=7)]
    assert found(copied) == [(7, I)]
    assert "copy of record 3" in verify(copied, KEY).problems[0].message
    # A valid record of another log, signed with the same key, put in place of record 3.
    stranger = extend([], 3, start=50)[2]
    assert found([*LOG[:2], stranger, *LOG[3:]]) == [(3, I)]


def test_reordered_rows() -> None:
    # Rows moved in storage order (a list, a JSON export edited by hand).
    assert found([*LOG[:2], LOG[3], LOG[2], *LOG[4:]]) == [(3, R)]
    # One row moved far is one problem, not one per row it jumped over.
    first = [LOG[5], *LOG[:5]]
    assert found(first) == [(1, R)]
    assert verify(first, KEY).problems[0].message == "records 1 to 5 are stored after record 6"
    assert found([*LOG[:2], *LOG[3:5], LOG[2], LOG[5]]) == [(3, R)]


@pytest.mark.parametrize(("a", "b"), [(3, 4), (2, 5)])
def test_two_rows_that_swapped_content_are_both_reported(a: int, b: int) -> None:
    # In SQL: every column but seq exchanged between rows a and b.
    log = list(LOG)
    log[a - 1], log[b - 1] = edit(LOG[b - 1], seq=a), edit(LOG[a - 1], seq=b)
    report = verify(log, KEY)
    assert [(p.seq, p.kind) for p in report.problems] == [(a, R), (b, R)]
    assert all(f"rows {a} and {b}" in p.message for p in report.problems)


def test_truncation_against_an_anchor() -> None:
    anchor = (6, LOG[-1].hash)
    assert found(LOG, expected_head=anchor) == []
    assert found(extend(LOG, 3), expected_head=anchor) == []  # it grew since: fine
    assert found(LOG[:4], expected_head=anchor) == [(5, T)]
    assert found([], expected_head=anchor) == [(1, T)]
    # Cut after record 4, and the server went on appending: the chain itself is sound.
    rewritten = extend(LOG[:4], 3, start=100)
    assert found(rewritten) == []
    assert found(rewritten, expected_head=anchor) == [(6, T)]


def test_a_wrong_key_is_reported_once_with_a_hint() -> None:
    report = verify(LOG, OTHER_KEY)
    assert [(p.seq, p.kind) for p in report.problems] == [(1, C)]
    assert "key is probably wrong" in report.problems[0].message


def test_every_tampering_is_reported_in_one_pass() -> None:
    log = extend(LOG, 4)  # seq 1..10
    tampered = [
        log[0],
        edit(log[1], user="mallory"),  # 2 changed
        log[2],
        # 4 deleted
        log[4],
        log[4],  # 5 inserted
        log[6],  # 7 before 6: reordered
        log[5],
        edit(log[7], hash="1" * 64),  # 8 changed (and 9's link to it proves nothing)
        log[8],
        # 10 cut off
    ]
    report = verify(tampered, KEY, expected_head=(10, log[-1].hash))
    assert [(p.seq, p.kind) for p in report.problems] == [
        (2, C),
        (4, D),
        (5, I),
        (6, R),
        (8, C),
        (10, T),
    ]
    text = report.format()
    assert text.startswith("audit log BROKEN: 6 problem(s) in 9 records")
    assert "  seq 4: deleted: record 4 is missing" in text


# Keys


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex(),
        KEY.hex().upper() + "\n",
        "hex:" + KEY.hex(),
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(KEY).decode().rstrip("="),
        "base64:" + base64.b64encode(KEY).decode(),
    ],
)
def test_load_audit_key_reads_hex_and_base64(text: str) -> None:
    assert load_audit_key(text) == KEY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (" \n", "empty"),
        ("00" * 31, "31 bytes, it needs at least 32"),
        ("abc", "not valid hex"),
        ("not base64 at all!", "not valid base64"),
        ("hex:" + "zz" * 32, "not valid hex"),
    ],
)
def test_load_audit_key_refuses_bad_or_short_keys(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_audit_key(text)


# JSON lines


def test_json_lines_round_trip_exactly() -> None:
    awkward = event(
        0,
        at=0.1 + 0.2,
        site="ßite 🚀",
        user='al"ice\\\n\u2028',
        session=None,
        device="",
        ip="2001:db8::1",
        kind=AuditKind.taken_over,
        reason="über",
        detail={"f": 0.1 + 0.2, "tiny": 1e-7, "huge": 1e300, "neg": -0.0, "big": 2**70},
    )
    more = {"t": True, "none": None, "one": 1, "one.0": 1.0, "e": "", "ü": "ü"}
    log = [chain(GENESIS, 1, awkward, KEY)]
    log.append(chain(log[0].hash, 2, dataclasses.replace(awkward, detail=more), KEY))
    lines = [to_json(r) for r in log]
    back = [from_json(line) for line in lines]
    assert back == log
    assert [to_json(r) for r in back] == lines
    for a, b in zip(back, log, strict=True):
        assert canonical(a.seq, a.prev, a.event) == canonical(b.seq, b.prev, b.event)
        assert [type(v) for v in a.event.detail.values()] == [
            type(v) for v in b.event.detail.values()
        ]
    assert verify(back, KEY).ok
    assert "\n" not in lines[0] and "🚀" in lines[0]


def test_from_json_keeps_odd_values_for_verify_to_judge() -> None:
    line = to_json(LOG[0]).replace('"kind":"admitted"', '"kind":"teleported"')
    record = from_json(line)
    assert record.event.kind == "teleported"
    assert to_json(record) == line
    assert found([record, *LOG[1:]]) == [(1, C)]
    line = to_json(LOG[0]).replace('"detail":{"n":0,"limit":1}', '"detail":[["n",0],["limit",1]]')
    assert line != to_json(LOG[0])
    assert found([from_json(line), *LOG[1:]]) == [(1, C)]


@pytest.mark.parametrize(
    "line",
    [
        "[]",
        to_json(LOG[0]).replace('"seq":1', '"seq":"1"'),
        to_json(LOG[0]).replace('"seq":1', '"seq":true'),
        to_json(LOG[0]).replace('"reason":null,', ""),
        to_json(LOG[0]).replace('"reason":null', '"reason":null,"extra":1'),
    ],
)
def test_from_json_refuses_lines_that_are_not_records(line: str) -> None:
    with pytest.raises(ValueError, match="not an audit record"):
        from_json(line)
