"""Instants as the REST API gives them beside seconds since the epoch: every timestamp
`x` of an answer has a sibling `x_iso`, the same instant in ISO 8601, UTC, to the
millisecond (`2026-01-01T12:00:00.250Z`), null where `x` is null."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, overload

import msgspec

__all__ = ["IsoTime", "iso"]

IsoTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
"""An instant in ISO 8601, UTC (RFC 3339 `date-time`)."""


@overload
def iso(at: float) -> str: ...
@overload
def iso(at: None) -> None: ...
def iso(at: float | None) -> str | None:
    """`at` (seconds since the epoch) in ISO 8601, UTC, to the millisecond; None: None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
