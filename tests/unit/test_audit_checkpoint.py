"""The head checkpoint: its signed file, where it lives, verify against it, and its writer."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from seatguard.audit import (
    GENESIS,
    AuditEvent,
    AuditKind,
    AuditRecord,
    ProblemKind,
    chain,
    verify,
)
from seatguard.audit import checkpoint as audit_checkpoint
from seatguard.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointWriter,
    decode,
    encode,
    read_checkpoint,
    write_checkpoint,
)
from seatguard.keys import checkpoint_path
from seatguard.settings import Settings
from tests.unit.fakes import Clock

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
H = [f"{n:064x}" for n in range(10)]  # stand-in record hashes


def log(n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        event = AuditEvent(1000.0 + seq, "pk", "alice", "s1", "d1", None, AuditKind.blocked, None)
        records.append(chain(prev, seq, event, KEY))
        prev = records[-1].hash
    return records


# -- the file -----------------------------------------------------------------------------


def test_a_checkpoint_reads_back_only_with_its_key() -> None:
    content = encode(Checkpoint(42, H[1]), KEY)
    assert decode(content, KEY) == Checkpoint(42, H[1])
    assert json.loads(content)["seq"] == 42
    with pytest.raises(CheckpointError, match="HMAC does not match the audit key"):
        decode(content, OTHER_KEY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seq": 43}, "HMAC does not match"),  # a later seq: the MAC covers it
        ({"hash": H[2]}, "HMAC does not match"),
        ({"mac": H[3]}, "HMAC does not match"),
        ({"seq": "42"}, "positive integer"),
        ({"seq": 0}, "positive integer"),
        ({"extra": 1}, "expected seq, hash and mac"),
    ],
)
def test_an_edited_checkpoint_is_refused(change: dict[str, object], message: str) -> None:
    doc = json.loads(encode(Checkpoint(42, H[1]), KEY))
    doc.update(change)
    with pytest.raises(CheckpointError, match=message):
        decode(json.dumps(doc).encode(), KEY)


def test_garbage_is_not_a_checkpoint() -> None:
    for content in (b"", b"{", b"[1]", b"\xff"):
        with pytest.raises(CheckpointError, match="not a checkpoint"):
            decode(content, KEY)


def test_only_a_record_head_can_be_written() -> None:
    for bad in (Checkpoint(0, H[1]), Checkpoint(1, "abc")):
        with pytest.raises(ValueError, match="not a record head"):
            encode(bad, KEY)


def test_the_file_is_replaced_whole_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-key.head"
    assert read_checkpoint(path, KEY) is None  # no file yet
    write_checkpoint(path, Checkpoint(1, H[1]), KEY)
    write_checkpoint(path, Checkpoint(2, H[2]), KEY)
    assert read_checkpoint(path, KEY) == Checkpoint(2, H[2])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    path.write_bytes(b"x" * 5000)
    with pytest.raises(CheckpointError, match="too long"):
        read_checkpoint(path, KEY)


# -- where it lives -----------------------------------------------------------------------


def test_the_checkpoint_sits_beside_the_audit_key() -> None:
    sqlite = Settings(db="/var/lib/seatguard/sg.db")
    assert checkpoint_path(sqlite, {}) == Path("/var/lib/seatguard/sg.db.audit-key.head")
    keyed = Settings(db="sg.db", audit_key_file="/etc/seatguard/audit.key")
    assert checkpoint_path(keyed, {}) == Path("/etc/seatguard/audit.key.head")
    named = {"SEATGUARD_AUDIT_CHECKPOINT": "/srv/anchor/head"}
    assert checkpoint_path(keyed, named) == Path("/srv/anchor/head")
    postgres = Settings(database_url="postgresql://db/sg", audit_key="k" * 64)
    assert checkpoint_path(postgres, {}) is None  # the key is in the environment: no file
    assert checkpoint_path(postgres, named) == Path("/srv/anchor/head")
    assert checkpoint_path(Settings(db=":memory:"), {}) is None


# -- verify against it --------------------------------------------------------------------


def test_verify_finds_a_cut_tail_against_the_checkpoint() -> None:
    records = log(6)
    head = (6, records[-1].hash)
    assert verify(records, KEY, checkpoint=head).ok
    assert verify(records + log(8)[6:], KEY, checkpoint=head).ok  # it grew since: fine
    [problem] = verify(records[:4], KEY, checkpoint=head).problems
    assert (problem.seq, problem.kind) == (5, ProblemKind.truncated)
    assert problem.message == (
        "the log ends at seq 4, before its checkpoint at seq 6: records 5 to 6 cut off"
    )


def test_verify_finds_a_rewritten_tail_against_the_checkpoint() -> None:
    records = log(6)
    rewritten = [*records[:5], chain(records[4].hash, 6, records[0].event, KEY)]
    [problem] = verify(rewritten, KEY, checkpoint=(6, records[-1].hash)).problems
    assert (problem.seq, problem.kind) == (6, ProblemKind.truncated)
    assert "not the one of the checkpoint" in problem.message


def test_verify_checks_the_hand_kept_anchor_and_the_checkpoint_apart() -> None:
    records = log(6)
    report = verify(
        records[:3], KEY, expected_head=(4, records[3].hash), checkpoint=(6, records[5].hash)
    )
    assert [p.message.split(":")[0] for p in report.problems] == [
        "the log ends at seq 3, before its anchor at seq 4",
        "the log ends at seq 3, before its checkpoint at seq 6",
    ]
    same = verify(records[:3], KEY, expected_head=(6, records[5].hash), checkpoint=None)
    assert len(same.problems) == 1


# -- the writer ---------------------------------------------------------------------------


class Sleeps:
    """A sleep that waits until the test lets it go, and says how long it was asked for."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.gate = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.gate.wait()


def writer(
    path: Path, stored: dict[int, str] | None = None
) -> tuple[CheckpointWriter, Clock, Sleeps]:
    """A writer whose log holds `stored` (seq -> hash), with a hand-driven clock and sleep."""
    log_hashes = stored or {}

    async def lookup(seq: int) -> str | None:
        return log_hashes.get(seq)

    clock, sleeps = Clock(100.0), Sleeps()
    return (
        CheckpointWriter(path, KEY, lookup, interval=1.0, clock=clock, sleep=sleeps),
        clock,
        sleeps,
    )


async def test_writes_are_throttled_to_the_newest_head(tmp_path: Path) -> None:
    path = tmp_path / "head"
    w, clock, sleeps = writer(path)
    w.note(1, H[1])  # the first write is not held back
    await w.flush()
    assert read_checkpoint(path, KEY) == Checkpoint(1, H[1])
    # 0.2 s later two more appends: one write, 0.8 s on, with the newer head.
    clock.now += 0.2
    w.note(2, H[2])
    w.note(3, H[3])
    w.note(2, H[2])  # an older head never replaces a newer one
    await asyncio.sleep(0)
    assert sleeps.asked == [pytest.approx(0.8)]
    assert read_checkpoint(path, KEY) == Checkpoint(1, H[1])
    clock.now += 0.8
    sleeps.gate.set()
    await w.flush()
    assert read_checkpoint(path, KEY) == Checkpoint(3, H[3])


async def test_flush_writes_at_once_without_waiting_for_the_timer(tmp_path: Path) -> None:
    path = tmp_path / "head"
    w, clock, sleeps = writer(path)
    w.note(1, H[1])
    await w.flush()
    clock.now += 0.1
    w.note(2, H[2])
    await asyncio.sleep(0)
    assert sleeps.asked == [pytest.approx(0.9)] and not sleeps.gate.is_set()
    await w.flush()  # shutdown: the timer is cancelled, the head written now
    assert read_checkpoint(path, KEY) == Checkpoint(2, H[2])
    await w.flush()  # nothing waiting: nothing to do


async def test_a_later_head_written_by_another_process_stays(tmp_path: Path) -> None:
    path = tmp_path / "head"
    write_checkpoint(path, Checkpoint(7, H[7]), KEY)
    w, _, _ = writer(path, {7: H[7]})
    w.note(5, H[5])  # appended before the other process's 7, written after it
    await w.flush()
    assert read_checkpoint(path, KEY) == Checkpoint(7, H[7])
    w.note(8, H[8])
    await w.flush()
    assert read_checkpoint(path, KEY) == Checkpoint(8, H[8])


@pytest.mark.parametrize("stored", [{}, {7: H[9]}], ids=["record-gone", "record-differs"])
async def test_a_checkpoint_the_log_no_longer_holds_is_kept_as_evidence(
    tmp_path: Path, stored: dict[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    # The log was cut below 7 (or cut and rewritten); the server appends on from there.
    path = tmp_path / "head"
    write_checkpoint(path, Checkpoint(7, H[7]), KEY)
    w, clock, _ = writer(path, stored)
    for seq in (5, 8, 9):
        w.note(seq, H[seq])
        await w.flush()
        clock.now += 5
    assert read_checkpoint(path, KEY) == Checkpoint(7, H[7])
    assert "cut or rewritten" in caplog.text


async def test_a_forged_checkpoint_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "head"
    write_checkpoint(path, Checkpoint(7, H[7]), OTHER_KEY)
    forged = path.read_bytes()
    w, _, _ = writer(path, {7: H[7]})
    w.note(8, H[8])
    await w.flush()
    assert path.read_bytes() == forged
    assert "not valid" in caplog.text


async def test_a_failed_write_is_logged_and_harms_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit_checkpoint, "write_checkpoint", disk_full)
    w, clock, _ = writer(tmp_path / "head")
    w.note(1, H[1])
    await w.flush()
    assert "could not write the audit checkpoint" in caplog.text
    monkeypatch.undo()
    clock.now += 5
    w.note(2, H[2])  # the next write goes through
    await w.flush()
    assert read_checkpoint(tmp_path / "head", KEY) == Checkpoint(2, H[2])


# -- start-up, the lag bound --------------------------------------------------------------


def test_the_empty_log_has_a_checkpoint_of_its_own() -> None:
    content = encode(Checkpoint(0, GENESIS), KEY)
    assert decode(content, KEY) == Checkpoint(0, GENESIS)
    with pytest.raises(ValueError, match="not a record head"):
        encode(Checkpoint(1, GENESIS), KEY)  # only the empty log ends in the genesis hash
    forged = json.loads(content) | {"seq": 1}
    with pytest.raises(CheckpointError, match="genesis"):
        decode(json.dumps(forged).encode(), KEY)
    # Any log holds the empty log: verify passes and still finds a cut tail elsewhere.
    assert verify(log(3), KEY, checkpoint=(0, GENESIS)).ok
    assert verify([], KEY, checkpoint=(0, GENESIS)).ok


async def test_start_writes_the_head_of_a_new_log_at_once(tmp_path: Path) -> None:
    path = tmp_path / "head"
    w, _, sleeps = writer(path)
    await w.start(None)  # a new database: the file exists before any record
    assert read_checkpoint(path, KEY) == Checkpoint(0, GENESIS)
    w.note(1, H[1])
    await w.flush()
    assert read_checkpoint(path, KEY) == Checkpoint(1, H[1])
    assert sleeps.asked == []


async def test_start_catches_up_with_records_a_crash_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The last run wrote seq 2, then appended up to 5 and was killed.
    path = tmp_path / "head"
    write_checkpoint(path, Checkpoint(2, H[2]), KEY)
    w, _, _ = writer(path, {2: H[2], 5: H[5]})
    await w.start((5, H[5]))
    assert read_checkpoint(path, KEY) == Checkpoint(5, H[5])
    assert "no audit checkpoint" not in caplog.text
    # A log with records but no file: written, and said so.
    other = tmp_path / "other"
    w, _, _ = writer(other, {5: H[5]})
    await w.start((5, H[5]))
    assert read_checkpoint(other, KEY) == Checkpoint(5, H[5])
    assert "no audit checkpoint at" in caplog.text


async def test_start_keeps_a_checkpoint_past_the_log_as_evidence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "head"
    write_checkpoint(path, Checkpoint(7, H[7]), KEY)
    w, _, _ = writer(path, {5: H[5]})  # the log was cut to 5 while the server was down
    await w.start((5, H[5]))
    assert read_checkpoint(path, KEY) == Checkpoint(7, H[7])
    assert "cut or rewritten" in caplog.text


async def test_an_append_waits_for_the_file_once_it_lags_too_far(tmp_path: Path) -> None:
    path = tmp_path / "head"

    async def lookup(seq: int) -> str | None:
        return None

    clock, sleeps = Clock(100.0), Sleeps()
    w = CheckpointWriter(path, KEY, lookup, interval=1.0, lag=3, clock=clock, sleep=sleeps)
    await w.start(None)
    for seq in (1, 2, 3):  # within the lag: left to the throttled timer
        await w.advance(seq, H[seq])
    assert read_checkpoint(path, KEY) == Checkpoint(0, GENESIS)
    await w.advance(4, H[4])  # 4 records behind: this append waits for the write
    assert read_checkpoint(path, KEY) == Checkpoint(4, H[4])
    await w.advance(5, H[5])
    assert read_checkpoint(path, KEY) == Checkpoint(4, H[4])
    with pytest.raises(ValueError, match="at least one record"):
        CheckpointWriter(path, KEY, lookup, lag=0)


async def test_the_checkpoint_of_the_empty_log_moves_on_with_the_log(tmp_path: Path) -> None:
    path = tmp_path / "head"
    write_checkpoint(path, Checkpoint(0, GENESIS), KEY)  # the last run appended nothing
    w, _, _ = writer(path, {1: H[1]})
    await w.start(None)
    w.note(1, H[1])
    await w.flush()
    assert read_checkpoint(path, KEY) == Checkpoint(1, H[1])


async def test_past_half_the_lag_the_write_starts_at_once_without_holding_the_append(
    tmp_path: Path,
) -> None:
    path = tmp_path / "head"

    async def lookup(seq: int) -> str | None:
        return None

    clock, sleeps = Clock(100.0), Sleeps()
    w = CheckpointWriter(path, KEY, lookup, interval=1.0, lag=10, clock=clock, sleep=sleeps)
    await w.start(None)
    clock.now += 0.1
    await w.advance(3, H[3])  # within half the lag: the throttled timer, asleep for 0.9 s
    await asyncio.sleep(0)
    assert sleeps.asked == [pytest.approx(0.9)]
    await w.advance(6, H[6])  # past half: written now, in the background; nobody waits
    for _ in range(50):
        if read_checkpoint(path, KEY) == Checkpoint(6, H[6]):
            break
        await asyncio.sleep(0.01)
    assert read_checkpoint(path, KEY) == Checkpoint(6, H[6])
    assert not sleeps.gate.is_set()  # the throttled timer never had to wake up
