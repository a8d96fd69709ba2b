"""The audit hash chain: canonical bytes, the HMAC of a record, and checking a whole log.

`verify` walks records once, in storage order, and names every problem with the seq of the
row to look at. It judges each row by its HMAC first: a row whose content matches its hash
is authentic (only the key holder could have written it), so what is wrong around it is its
place: a gap (`deleted`), a second copy (`inserted`), a late arrival (`reordered`). A row
that does not match is `changed`, unless it matches as another seq (a copied or moved row,
or an edited seq). A changed row's link to the next row proves nothing either way, so it is
never reported twice. A log that no row matches is reported once: the key is probably wrong.

Memory stays bounded: the last `WINDOW` authentic hashes are kept to recognise copies and
moves; a copy of an older record is still reported, as `changed`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from .records import AuditEvent, AuditRecord, normalized

__all__ = [
    "GENESIS",
    "MIN_KEY_BYTES",
    "WINDOW",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "canonical",
    "chain",
    "sign",
    "verify",
]

GENESIS = "0" * 64
"""The `prev` of record 1."""

MIN_KEY_BYTES = 32
"""The shortest audit key accepted: as long as the HMAC-SHA256 output."""

WINDOW = 10_000
"""How many recent records `verify` remembers to recognise a copied or moved row."""

_HASH = re.compile(r"[0-9a-f]{64}")
_K = TypeVar("_K")
_V = TypeVar("_V")


def canonical(seq: int, prev: str, event: AuditEvent) -> bytes:
    """The bytes a record's HMAC covers; TypeError or ValueError if they cannot be formed."""
    if not isinstance(event.at, float) or not isinstance(event.detail, Mapping):
        raise TypeError("at must be a float and detail a mapping")
    doc = {
        "seq": seq,
        "prev": prev,
        "at": event.at,
        "site": event.site,
        "user": event.user,
        "session": event.session,
        "device": event.device,
        "ip": event.ip,
        "kind": event.kind,
        "reason": event.reason,
        "detail": dict(event.detail),
    }
    text = json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def sign(key: bytes, seq: int, prev: str, event: AuditEvent) -> str:
    """HMAC-SHA256 of the canonical bytes, in lowercase hex."""
    return hmac.new(key, canonical(seq, prev, event), hashlib.sha256).hexdigest()


def chain(prev: str, seq: int, event: AuditEvent, key: bytes) -> AuditRecord:
    """Record `seq` of the log, linked to the record whose hash is `prev` and signed.

    The event is checked and normalised first (`at` a float, `kind` an `AuditKind`, `detail`
    a private copy); ValueError says what is wrong with it.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the audit key needs at least {MIN_KEY_BYTES} bytes")
    if type(seq) is not int or seq < 1:
        raise ValueError(f"seq must be a positive integer, not {seq!r}")
    if not _HASH.fullmatch(prev) or (seq == 1) != (prev == GENESIS):
        raise ValueError(f"record {seq} cannot follow {prev!r}")
    event = normalized(event)
    return AuditRecord(seq, prev, sign(key, seq, prev, event), event)


class ProblemKind(StrEnum):
    """What is wrong with a log."""

    changed = "changed"  # a row's content does not match its hash
    deleted = "deleted"  # records missing from the sequence
    inserted = "inserted"  # a copied row, or a valid record that does not link to the chain
    reordered = "reordered"  # an authentic record stored out of its place
    truncated = "truncated"  # the log stops short of, or differs at, an external anchor


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. `seq` is the stored seq of the row to look at; for `deleted` the first
    missing seq, for `truncated` where the log stops matching its anchor."""

    seq: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of `verify`: how many rows, the last record's (seq, hash), every problem."""

    count: int
    head: tuple[int, str] | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """A report for humans: one summary line, then one line per problem."""
        head = f"head seq {self.head[0]} hash {self.head[1]}" if self.head else "no records"
        if self.ok:
            return f"audit log OK: {self.count} records, {head}"
        lines = [f"audit log BROKEN: {len(self.problems)} problem(s) in {self.count} records"]
        lines += [f"  seq {p.seq}: {p.kind}: {p.message}" for p in self.problems]
        lines.append(f"  ({head})")
        return "\n".join(lines)


def verify(
    records: Iterable[AuditRecord],
    key: bytes,
    *,
    expected_head: tuple[int, str] | None = None,
    checkpoint: tuple[int, str] | None = None,
) -> VerifyReport:
    """Check a log in storage order against its anchors, each a (seq, hash) kept outside it:
    `expected_head` given by hand, `checkpoint` from the server's head checkpoint file."""
    anchors = [("anchor", expected_head), ("checkpoint", checkpoint)]
    walk = _Walk(key, {(name, *a) for name, a in anchors if a is not None})
    for record in records:
        walk.add(record)
    return walk.finish()


class _Walk:
    """The state of one pass: where the chain stands, gaps, and recent authentic hashes."""

    def __init__(self, key: bytes, anchors: set[tuple[str, int, str]]) -> None:
        self.key = key
        self.anchors = sorted(anchors)  # (name, seq, hash)
        self.anchored = {seq for _, seq, _ in anchors}
        self.at_anchor: dict[int, tuple[str, bool]] = {}  # seq -> (hash, flagged) there
        self.count = self.authentic = 0
        self.first = 0
        self.next = 1  # the seq the chain expects next
        self.last = GENESIS  # stored hash of the row at seq next - 1
        self.last_flagged = False  # that row has a problem, so its link proves nothing
        self.head: tuple[int, str] | None = None
        self.gaps: list[tuple[int, int, str | None]] = []  # missing lo..hi, hash of hi
        self.recent: dict[str, int] = {}  # hash -> seq of recent authentic records
        self.changed: dict[int, tuple[int, AuditRecord]] = {}  # seq -> (problem, row)
        self.run: tuple[int, int] | None = None  # (problem, seq) if the last row came late
        self.late_run: tuple[int, int] | None = None  # the same, for this row
        self.problems: list[Problem] = []

    def add(self, r: AuditRecord) -> None:
        self.count += 1
        self.run, self.late_run = self.late_run, None
        if self.count == 1:
            self.first = r.seq
        s = r.seq
        a = s if self.valid(r, s) else self.identify(r)
        copy = a is not None and self.recent.get(r.hash) == a
        if a is not None:
            self.authentic += 1
            _bounded_put(self.recent, r.hash, a)
        if a == s:
            self.intact(r)
        elif a is None:
            index = self.report(s, ProblemKind.changed, f"record {s} does not match its hash")
            if self.place(s, r, flagged=True):
                _bounded_put(self.changed, s, (index, r))
        elif copy:
            self.report(s, ProblemKind.inserted, f"row {s} is a copy of record {a}")
        elif a == self.next or self._in_gap(a):
            self.report(s, ProblemKind.changed, f"row {s} holds record {a}: its seq was changed")
            self.place(a, r, flagged=True)
        else:
            traded = self.swapped(a, s)
            note = f"rows {a} and {s} hold each other's records" if traded else ""
            self.report(s, ProblemKind.reordered, note or f"row {s} holds record {a}")
            self.place(s, r, flagged=True)

    def intact(self, r: AuditRecord) -> None:
        """Place a row that matches its hash as stored."""
        s = r.seq
        if s < self.next:
            if self._fill(s):
                self.late(s)
            else:
                self.report(s, ProblemKind.inserted, f"record {s} is stored twice")
        elif s == self.next and not self.last_flagged and r.prev != self.last:
            to = f"record {s - 1}" if s > 1 else "the start of the log"
            self.report(s, ProblemKind.inserted, f"record {s} is valid but does not link to {to}")
            self.place(s, r, flagged=True)
        else:
            self.place(s, r, flagged=False)

    def late(self, s: int) -> None:
        """Report a record stored after a later one; a run of them is one problem."""
        after = f"stored after record {self.next - 1}"
        if self.run is not None and self.run[1] == s - 1:
            index, first = self.run[0], self.problems[self.run[0]].seq
            self.problems[index] = Problem(
                first, ProblemKind.reordered, f"records {first} to {s} are {after}"
            )
        else:
            index = self.report(s, ProblemKind.reordered, f"record {s} is {after}")
        self.late_run = (index, s)

    def valid(self, r: AuditRecord, seq: int) -> bool:
        """Whether the row's content, read as record `seq`, matches its stored hash."""
        try:
            mac = sign(self.key, seq, r.prev, r.event)
        except (TypeError, ValueError):
            return False
        return r.hash.isascii() and hmac.compare_digest(mac, r.hash)

    def identify(self, r: AuditRecord) -> int | None:
        """The seq whose record a mismatching row holds, if it is a copied or moved one."""
        guesses = [self.recent.get(r.hash)]
        guesses += [hi for _, hi, digest in self.gaps if digest == r.hash]
        before = 0 if r.prev == GENESIS else self.recent.get(r.prev)
        guesses.append(None if before is None else before + 1)
        for seq in dict.fromkeys(guesses):
            if seq is not None and seq != r.seq and self.valid(r, seq):
                return seq
        return None

    def swapped(self, a: int, s: int) -> bool:
        """Whether the changed row at seq `a` holds record `s`: the two traded places."""
        found = self.changed.pop(a, None)
        if found is None or not self.valid(found[1], s):
            return False
        index, row = found
        self.authentic += 1
        note = f"rows {a} and {s} hold each other's records"
        self.problems[index] = Problem(row.seq, ProblemKind.reordered, note)
        return True

    def place(self, p: int, r: AuditRecord, *, flagged: bool) -> bool:
        """Put a row at seq `p` of the chain; False if that place is already taken."""
        if p < self.next and not self._fill(p):
            return False
        if p >= self.next:
            if p > self.next:
                self.gaps.append((self.next, p - 1, None if flagged else r.prev))
            self.next, self.last, self.last_flagged = p + 1, r.hash, flagged
            self.head = (p, r.hash)
        if p in self.anchored:
            self.at_anchor[p] = (r.hash, flagged)
        return True

    def report(self, seq: int, kind: ProblemKind, message: str) -> int:
        self.problems.append(Problem(seq, kind, message))
        return len(self.problems) - 1

    def finish(self) -> VerifyReport:
        for lo, hi, _ in self.gaps:
            missing = f"record {lo} is" if lo == hi else f"records {lo} to {hi} are"
            self.report(lo, ProblemKind.deleted, f"{missing} missing")
        for name, seq, digest in self.anchors:
            self._check_anchor(name, seq, digest)
        problems = self.problems
        if self.count and not self.authentic:
            hint = "the audit key is probably wrong (or every record was changed)"
            note = f"none of the {self.count} records matches its hash: {hint}"
            problems = [Problem(self.first, ProblemKind.changed, note)]
        return VerifyReport(self.count, self.head, sorted(problems, key=lambda p: p.seq))

    def _check_anchor(self, name: str, seq: int, digest: str) -> None:
        end = self.head[0] if self.head else 0
        found = self.at_anchor.get(seq)
        if end < seq:
            cut = f"records {end + 1} to {seq}" if end + 1 < seq else f"record {seq}"
            note = f"the log ends at seq {end}, before its {name} at seq {seq}: {cut} cut off"
            self.report(end + 1, ProblemKind.truncated, note)
        elif found is not None and found[0] != digest and not found[1]:
            # (a flagged row at the anchor is reported already)
            note = f"record {seq} is not the one of the {name}: the log was cut and rewritten"
            self.report(seq, ProblemKind.truncated, note)

    def _in_gap(self, seq: int) -> bool:
        return any(lo <= seq <= hi for lo, hi, _ in self.gaps)

    def _fill(self, seq: int) -> bool:
        """Take `seq` out of the gaps; False if it was not missing."""
        for i, (lo, hi, digest) in enumerate(self.gaps):
            if lo <= seq <= hi:
                parts = [(lo, seq - 1, None), (seq + 1, hi, digest)]
                self.gaps[i : i + 1] = [g for g in parts if g[0] <= g[1]]
                return True
        return False


def _bounded_put(d: dict[_K, _V], key: _K, value: _V) -> None:
    """Store, forgetting the oldest entry past `WINDOW`."""
    d[key] = value
    if len(d) > WINDOW:
        del d[next(iter(d))]
