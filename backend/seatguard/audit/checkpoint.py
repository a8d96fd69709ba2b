"""The audit log's head checkpoint: its last (seq, hash), kept in a file outside the database.

The hash chain shows every change inside the log but not a cut tail: whoever deletes the
last rows leaves a shorter, valid chain. So the server writes the head it has appended to a
small file, signed with the audit key (whoever can write the file but not read the key
cannot forge it), and `seatguard audit verify` checks the log against it by default.

File format, one JSON line: `{"seq": 42, "hash": "<64 hex>", "mac": "<64 hex>"}`, where
`mac = HMAC-SHA256(key, "seatguard audit checkpoint v1\\n{seq}:{hash}")`. It is replaced
atomically (a temporary file in the same directory, then a rename), so a reader never
sees half a file.

Seq 0 with the hash `GENESIS` names the empty log: the server writes it at start-up on a
new database, so that from its first moment a missing file means a removed one.

`CheckpointWriter` writes the head at start-up (`start`), after appends at most once per
`interval` seconds, at once when the file has fallen more than `lag` records behind (the
append that finds it so waits for the write), and a final `flush()` at shutdown. So a crash
leaves at most `lag` records, or one interval's worth, past the checkpoint. It never moves a
checkpoint its log does not hold: if the record at the file's seq is missing or different
when the writer starts, the log was cut or rewritten, and the file is kept as the evidence
(remove it to accept the log as it stands).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .chain import GENESIS

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointWriter",
    "decode",
    "encode",
    "read_checkpoint",
    "write_checkpoint",
]

log = logging.getLogger("seatguard")

_CONTEXT = b"seatguard audit checkpoint v1\n"  # keeps these MACs apart from record hashes
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_BYTES = 1024


class CheckpointError(ValueError):
    """A checkpoint file that is unreadable, malformed or not signed with the audit key."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of the log at some moment: record `seq` had hash `hash`."""

    seq: int
    hash: str


def _mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, _CONTEXT + f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def encode(checkpoint: Checkpoint, key: bytes) -> bytes:
    """The file's content for `checkpoint`, signed with `key`."""
    seq, digest = checkpoint.seq, checkpoint.hash
    if not _is_head(seq, digest):
        raise ValueError(f"not a record head: seq {seq!r}, hash {digest!r}")
    doc = {"seq": seq, "hash": digest, "mac": _mac(key, seq, digest)}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def decode(content: bytes, key: bytes) -> Checkpoint:
    """The checkpoint in a file's content; CheckpointError unless `key` signed it."""
    try:
        doc = json.loads(content)
    except ValueError:
        raise CheckpointError("not a checkpoint (not JSON)") from None
    if not isinstance(doc, dict) or set(doc) != {"seq", "hash", "mac"}:
        raise CheckpointError("not a checkpoint (expected seq, hash and mac)")
    seq, digest, mac = doc["seq"], doc["hash"], doc["mac"]
    if not isinstance(digest, str) or not _is_head(seq, digest) or not isinstance(mac, str):
        raise CheckpointError(
            "not a checkpoint (seq must be a positive integer and hash 64 hex digits, or "
            "seq 0 with the genesis hash)"
        )
    if not hmac.compare_digest(_mac(key, seq, digest), mac):
        raise CheckpointError(
            f"its HMAC does not match the audit key (seq {seq}): forged, damaged, "
            "or the key changed"
        )
    return Checkpoint(seq, digest)


def _is_head(seq: object, digest: str) -> bool:
    """Whether (seq, digest) can head a log: a record's, or the empty log's (0, GENESIS)."""
    if type(seq) is not int or seq < 0 or not _HEX64.fullmatch(digest):
        return False
    return (seq == 0) == (digest == GENESIS)


def read_checkpoint(path: Path, key: bytes) -> Checkpoint | None:
    """The checkpoint in `path`, or None if there is no such file; CheckpointError if bad."""
    try:
        with path.open("rb") as f:
            content = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"cannot be read: {exc.strerror or exc}") from None
    if len(content) > _MAX_BYTES:
        raise CheckpointError("not a checkpoint (too long)")
    return decode(content, key)


def write_checkpoint(path: Path, checkpoint: Checkpoint, key: bytes) -> None:
    """Replace `path` with `checkpoint`, atomically, readable by its owner only."""
    content = encode(checkpoint, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp makes it 0600
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


Lookup = Callable[[int], Awaitable[str | None]]
"""The stored hash of record `seq`, or None if the log has no such record."""


class CheckpointWriter:
    """Keeps the checkpoint file up with the log's head: `start()` when the server starts,
    `advance()` after every append, `flush()` at shutdown."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        lookup: Lookup,
        *,
        interval: float = 1.0,
        lag: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if lag is not None and lag < 1:
            raise ValueError("the checkpoint lag must be at least one record")
        self.path = path
        self.key = key
        self.lookup = lookup
        self.interval = interval  # at most one write per this many seconds, but see `lag`
        self.lag = lag  # records the file may fall behind before an append waits for it
        self.clock = clock
        self.sleep = sleep
        self._pending: Checkpoint | None = None  # the newest head not yet written
        self._written = 0  # the seq of the newest head in the file, as far as we know
        self._last_write = -float("inf")
        self._timer: asyncio.Task[None] | None = None
        self._timer_due = 0.0  # how long that timer was asked to sleep (0: writing now)
        self._lock = asyncio.Lock()
        self._checked = False  # whether the file found at start was held up against the log
        self._stuck = False  # the log does not hold the file's record: keep it as evidence
        self._failing = False  # the last write failed: retried by the timer, not every append

    async def start(self, head: tuple[int, str] | None) -> None:
        """Write the log's head as the server starts (`None`: the log is empty).

        A crash may have come before the last appends were written down; and a new log
        gets its file at once, so that a checkpoint that is missing later was removed.
        """
        if head is not None:
            with contextlib.suppress(CheckpointError):  # a bad file is reported by `_write`
                if await asyncio.to_thread(read_checkpoint, self.path, self.key) is None:
                    log.warning(
                        "no audit checkpoint at %s although the log holds %d records: writing "
                        "one now (if it was removed, check the log against a copy kept "
                        "elsewhere: `seatguard audit verify --expect-head`)",
                        self.path,
                        head[0],
                    )
        self._pending = None
        self.note(*(head or (0, GENESIS)))
        await self.flush()

    async def advance(self, seq: int, digest: str) -> None:
        """Records up to `seq` (whose hash is `digest`) are committed: write them down soon,
        at once (in the background) past half the `lag`, and now if the file is more than
        `lag` records behind (then the caller waits). At a steady rate the background write
        keeps the file within the lag, so that appends seldom wait."""
        self.note(seq, digest)
        if self.lag is None or self._stuck or self._failing:
            return
        behind = seq - self._written
        if behind > self.lag:
            await self.flush()
        elif 2 * behind > self.lag and self._timer is not None and self._timer_due > 0:
            self._timer.cancel()  # still asleep: wake it now
            self._timer = asyncio.create_task(self._write_later(0.0))
            self._timer_due = 0.0

    def note(self, seq: int, digest: str) -> None:
        """Records up to `seq` (whose hash is `digest`) are committed: write them down soon.

        The write happens in the background, so that no action waits for the file.
        """
        if self._pending is not None and seq <= self._pending.seq:
            return
        self._pending = Checkpoint(seq, digest)
        if self._timer is None:
            wait = max(0.0, self._last_write + self.interval - self.clock())
            self._timer = asyncio.create_task(self._write_later(wait))
            self._timer_due = wait

    async def flush(self) -> None:
        """Write the newest head now (at shutdown), and wait for any write under way."""
        if self._timer is not None:
            self._timer.cancel()  # still asleep: a timer that woke up has let go of it
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self._write()

    async def _write_later(self, wait: float) -> None:
        if wait > 0:
            await self.sleep(wait)
        self._timer = None
        await self._write()

    async def _write(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, None
            if pending is None or self._stuck:
                return
            self._last_write = self.clock()
            try:
                if not self._checked:
                    self._stuck = not await self._agrees_with_the_log()
                    self._checked = True
                    if self._stuck:
                        return
                self._written = max(self._written, await asyncio.to_thread(self._replace, pending))
                self._failing = False
            except Exception:
                self._failing = True
                if self._pending is None:  # tried again with the next append, or at flush()
                    self._pending = pending
                # The rows are committed already; a checkpoint that lags is only weaker.
                log.exception("could not write the audit checkpoint %s", self.path)

    def _replace(self, checkpoint: Checkpoint) -> int:
        """Write `checkpoint` unless the file already holds a later head (another process's);
        return the seq the file holds now."""
        with contextlib.suppress(CheckpointError):
            found = read_checkpoint(self.path, self.key)
            if found is not None and found.seq >= checkpoint.seq:
                return found.seq
        write_checkpoint(self.path, checkpoint, self.key)
        return checkpoint.seq

    async def _agrees_with_the_log(self) -> bool:
        """Whether the checkpoint found at start names a record the log holds, as it was."""
        try:
            found = await asyncio.to_thread(read_checkpoint, self.path, self.key)
        except CheckpointError as exc:
            log.error(
                "the audit checkpoint %s is not valid (%s); it is kept for inspection and no "
                "longer updated: run `seatguard audit verify`, then remove it",
                self.path,
                exc,
            )
            return False
        if found is None or found.seq == 0 or await self.lookup(found.seq) == found.hash:
            return True  # (every log holds the empty log)
        log.error(
            "the audit log does not hold record %d of its checkpoint %s: it was cut or rewritten."
            " The checkpoint is kept as evidence and no longer updated: run `seatguard audit"
            " verify`, and remove the checkpoint only to accept the log as it stands",
            found.seq,
            self.path,
        )
        return False
