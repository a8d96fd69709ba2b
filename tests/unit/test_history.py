"""The stored device and network history: folding sightings in, trust, the REST view, the
stored form (Hypothesis round trip, bounded size), and the writer that records off the hot
path (a failing database is logged, not raised)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seatguard.db import Database
from seatguard.db.sqlite import SqliteDatabase
from seatguard.signals.checks import DAY, DeviceSeen, History, SessionView, Thresholds
from seatguard.signals.history import (
    Ended,
    Stored,
    current_checks,
    decode_stored,
    devices_out,
    encode_stored,
    fold,
    trust,
)
from seatguard.signals.places import Place
from seatguard.signals.recording import MAX_SIGHTINGS, HistoryWriter

NOW = 1_000_000.0
T = Thresholds()
PARIS = Place("FR", 48.8566, 2.3522, 20.0)
BERLIN = Place("DE", 52.52, 13.405, 20.0)


def view(session: str, device: str, *, ip: str = "81.0.0.1", at: float = NOW) -> SessionView:
    return SessionView(
        session=session, device=device, device_type="mobile", ip=ip, place=PARIS,
        started=at - 60, last_seen=at, active=True,
    )  # fmt: skip


def test_fold_remembers_devices_networks_and_the_previous_session() -> None:
    stored = fold(None, [view("s1", "phone")], [], T, NOW)
    assert set(stored.history.devices) == {"phone"} and set(stored.history.networks) == {"81.0.0.1"}
    assert stored.previous is None
    ended = Ended(device="phone", ip="81.0.0.2", place=BERLIN, at=NOW + 10)
    later = fold(stored, [], [ended], T, NOW + 10)
    phone = later.history.devices["phone"]
    assert (phone.first, phone.last, phone.device_type, phone.country) == (
        NOW - 60,
        NOW + 10,
        "mobile",  # an ended session keeps the device's known type
        "DE",
    )
    assert set(later.history.networks) == {"81.0.0.1", "81.0.0.2"}
    assert later.previous is not None and later.previous.place == BERLIN
    # An earlier end does not replace a later previous session; one with no place neither.
    earlier = Ended(device="phone", ip="81.0.0.1", place=PARIS, at=NOW)
    nowhere = Ended(device="phone", ip="81.0.0.1", place=None, at=NOW + 20)
    assert fold(later, [], [earlier, nowhere], T, NOW + 20).previous == later.previous


def test_an_unknown_device_ending_is_a_computer_seen_once() -> None:
    stored = fold(None, [], [Ended(device="d", ip="81.0.0.1", place=None, at=NOW)], T, NOW)
    d = stored.history.devices["d"]
    assert (d.first, d.last, d.device_type, d.country) == (NOW, NOW, "computer", None)


def test_trust_marks_a_known_device_and_refuses_an_unknown_one() -> None:
    stored = fold(None, [view("s1", "phone"), view("s2", "laptop")], [], T, NOW)
    assert trust(None, "phone", True) is None
    assert trust(stored, "tablet", True) is None
    trusted = trust(stored, "phone", True)
    assert trusted is not None
    assert trusted.history.devices["phone"].trusted
    assert not trusted.history.devices["laptop"].trusted
    assert trusted.history.networks == stored.history.networks
    untrusted = trust(trusted, "phone", False)
    assert untrusted == stored
    # Folding more sightings keeps the mark.
    again = fold(trusted, [view("s3", "phone", at=NOW + 5)], [], T, NOW + 5)
    assert again.history.devices["phone"].trusted


def test_devices_out_lists_most_recent_first_with_activity() -> None:
    stored = fold(None, [view("s1", "old", at=NOW - DAY), view("s2", "new")], [], T, NOW)
    out = devices_out("alice", stored, [("s2", "new", True), ("s9", "old", False)])
    assert [d.device for d in out.devices] == ["new", "old"]
    assert [(d.active, d.sessions) for d in out.devices] == [(True, ["s2"]), (False, ["s9"])]
    assert devices_out("alice", None, [("s1", "x", True)]).devices == []


def test_a_stored_document_of_another_format_or_shape_is_refused() -> None:
    assert decode_stored(encode_stored(Stored())) == Stored()
    for bad in ('{"format": 2}', "[]", "not json", '{"format": 1, "extra": 1}', ""):
        with pytest.raises(ValueError, match="stored history"):
            decode_stored(bad)


DEVICE = st.text("abcdefgh", min_size=1, max_size=3)
SIGHTING = st.builds(
    view,
    session=st.just("s"),
    device=DEVICE,
    ip=st.sampled_from(["81.0.0.1", "81.0.0.2", "2a00:1450::1", "2a00:1450::ffff"]),
    at=st.floats(NOW - 60 * DAY, NOW),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(SIGHTING, max_size=6), max_size=5), st.sets(DEVICE, max_size=3))
def test_stored_histories_round_trip_and_stay_bounded(
    batches: list[list[SessionView]], trusted: set[str]
) -> None:
    small = Thresholds(max_history=4)
    stored: Stored | None = None
    for batch in batches:
        stored = fold(stored, batch, [], small, NOW)
        for device in trusted:
            stored = trust(stored, device, True) or stored
        assert len(stored.history.devices) <= 4 and len(stored.history.networks) <= 4
        assert decode_stored(encode_stored(stored)) == stored
        # Nothing is remembered that was not seen, and trust is never lost by folding.
        seen = {v.device for batch_ in batches for v in batch_}
        assert set(stored.history.devices) <= seen
        assert all(d.trusted for name, d in stored.history.devices.items() if name in trusted)


def test_a_full_history_stays_small_when_stored() -> None:
    sessions = [
        view(f"s{i}", f"device-{i:05d}", ip=f"10.{i // 256 % 256}.{i % 256}.1") for i in range(3000)
    ]
    stored = fold(None, sessions, [], T, NOW)
    assert len(stored.history.devices) == T.max_history
    assert len(encode_stored(stored)) < 400_000


# --- the writer ------------------------------------------------------------------------------


class FailingDatabase:
    """A database whose every history write fails (a disk full, a server gone)."""

    def __init__(self) -> None:
        self.calls = 0

    async def update_history(
        self, site: str, user: str, change: Callable[[Stored | None], Stored | None]
    ) -> Stored | None:
        self.calls += 1
        raise OSError("disk I/O error")


async def writer_on(db: Database) -> HistoryWriter:
    return HistoryWriter(db, T, lambda: NOW)


@pytest.mark.anyio
async def test_the_writer_folds_what_was_seen_per_user() -> None:
    db = await SqliteDatabase.open(":memory:")
    try:
        writer = await writer_on(db)
        writer.seen(("pk_a", "alice"), [view("s1", "phone")])
        writer.seen(("pk_a", "alice"), [view("s2", "laptop")], [("tablet", "81.0.0.9")], NOW)
        writer.seen(("pk_b", "alice"), [view("s3", "other")])
        await writer.flush()
        alice = await db.history("pk_a", "alice")
        assert alice is not None
        assert set(alice.history.devices) == {"phone", "laptop", "tablet"}
        other = await db.history("pk_b", "alice")
        assert other is not None and set(other.history.devices) == {"other"}
        await writer.close()
    finally:
        await db.close()


@pytest.mark.anyio
async def test_a_failing_database_is_logged_once_and_the_caller_never_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FailingDatabase()
    writer = HistoryWriter(db, T, lambda: NOW)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "seatguard"):
        for n in range(50):
            writer.seen(("pk_a", f"user{n}"), [view("s", "d")])  # returns at once
        await writer.flush()
    assert db.calls == 50
    lines = [r for r in caplog.records if "device history" in r.getMessage()]
    assert len(lines) == 1 and "disk I/O error" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.anyio
async def test_the_queue_of_one_user_is_bounded() -> None:
    seen: list[int] = []

    class Counting:
        async def update_history(
            self, site: str, user: str, change: Callable[[Stored | None], Stored | None]
        ) -> Stored | None:
            stored = change(None)
            seen.append(0 if stored is None else len(stored.history.devices))
            return stored

    writer = HistoryWriter(Counting(), T, lambda: NOW)  # type: ignore[arg-type]
    for n in range(MAX_SIGHTINGS * 3):
        writer.seen(("pk_a", "alice"), [view("s", f"dev{n}")])
    await writer.flush()
    assert seen == [MAX_SIGHTINGS]


@pytest.mark.anyio
async def test_sightings_during_a_write_are_written_next() -> None:
    db = await SqliteDatabase.open(":memory:")
    try:
        writer = await writer_on(db)
        writer.seen(("pk_a", "alice"), [view("s1", "one")])
        await asyncio.sleep(0)
        writer.seen(("pk_a", "alice"), [view("s2", "two")])
        await writer.flush()
        stored = await db.history("pk_a", "alice")
        assert stored is not None and set(stored.history.devices) == {"one", "two"}
        assert msgspec.json.decode(encode_stored(stored))["format"] == 1
    finally:
        await db.close()


def test_the_checks_of_the_sessions_now_locate_them_and_read_the_history() -> None:
    now = 1_700_000_000.0
    views = [
        SessionView(
            session=f"s{i}",
            device=f"d{i}",
            device_type="computer",
            ip=ip,
            place=None,
            started=now - 60,
            last_seen=now,
            active=True,
        )
        for i, ip in enumerate(("203.0.113.1", "198.51.100.1"))
    ]
    off = current_checks(views, None, None, Thresholds(), now)
    assert off["s0"].geo == "off" and off["s0"].ip_country is None
    assert off["s0"].concurrent_sessions and off["s0"].is_new_device
    places = {"203.0.113.1": Place("FR", 48.86, 2.35), "198.51.100.1": Place("DE", 52.52, 13.40)}
    known = Stored(history=History(devices={"d0": DeviceSeen(now - 86400, now - 3600)}))
    on = current_checks(views, known, places.get, Thresholds(), now)
    assert (on["s0"].ip_country, on["s1"].ip_country) == ("FR", "DE")
    assert on["s0"].impossible_travel and on["s0"].geo == "on"
    assert not on["s0"].is_new_device and on["s1"].is_new_device
