"""The audit trail: lifecycle events as records of an append-only, HMAC-chained log.

Record `seq` (1, 2, 3, ... without gaps) carries `prev`, the hash of record `seq - 1`
(`GENESIS`, 64 zeros, for the first), and `hash = HMAC-SHA256(key, canonical bytes)`. The
key lives outside the database, so whoever can write the database can neither forge nor
re-hash a record; `verify` finds what was touched.

Canonical bytes: the JSON object of `seq, prev, at, site, user, session, device, ip, kind,
reason, detail` with sorted keys, no whitespace, ASCII only (`\\uXXXX` escapes) and no NaN or
infinity. Numbers keep their JSON type: `at` is always a float and, like every float in
`detail`, is written as Python's `repr`, the shortest text that reads back to the same
double (`1` and `1.0` differ). A double survives SQLite REAL, PostgreSQL double precision and
a JSON line unchanged; `detail` is stored as JSON text (in PostgreSQL `text`, never `jsonb`,
which rewrites numbers), so a stored record re-encodes to exactly the bytes that were signed.

Modules: `records` (events, records, JSON lines), `chain` (canonical bytes, the HMAC chain
and its check), `checkpoint` (the signed head kept outside the database), `batch` (group
commit of appends). Nothing in `records` and `chain` does I/O; the keys come from
`seatguard.keys`.
"""

from .chain import (
    GENESIS,
    MIN_KEY_BYTES,
    Problem,
    ProblemKind,
    VerifyReport,
    canonical,
    chain,
    sign,
    verify,
)
from .records import (
    DETAIL_BYTES,
    AuditEvent,
    AuditKind,
    AuditRecord,
    Detail,
    Scalar,
    decode,
    from_json,
    to_json,
)

__all__ = [
    "DETAIL_BYTES",
    "GENESIS",
    "MIN_KEY_BYTES",
    "AuditEvent",
    "AuditKind",
    "AuditRecord",
    "Detail",
    "Problem",
    "ProblemKind",
    "Scalar",
    "VerifyReport",
    "canonical",
    "chain",
    "decode",
    "from_json",
    "sign",
    "to_json",
    "verify",
]
