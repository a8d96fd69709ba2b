"""A user's suspension: what is kept of it, and when coming back lifts it (pure).

A suspended user's sessions end on every node and every hello of that user is refused
(close code 4015) until the suspension is lifted: through the API, or by the user coming
back with an identity token issued after the suspension began (re-authentication). A plain
user id hello never lifts it. The suspension is kept in the database (it holds across
restarts and a presence store that was lost) and marked in the user's presence snapshot
(so that a hello that passed admission just before the suspension was written is refused
when it joins): see `Node.suspend_user` and `presence.suspend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .identity import Identity

__all__ = ["REASON_MAX", "Suspension", "lifted_by"]

REASON_MAX = 140
"""The longest reason a suspension may carry, in characters (it goes in an audit row's
detail, which is bounded: `audit.DETAIL_BYTES`)."""


@dataclass(frozen=True, slots=True)
class Suspension:
    """A user of a site suspended since `since` (seconds since the epoch), why, and by whom
    (`api`, an operator's name from the CLI, `policy`...)."""

    site: str
    user: str
    since: float
    reason: str
    by: str


def lifted_by(identity: Identity | None, suspension: Suspension) -> bool:
    """Whether a hello proving `identity` lifts `suspension`: its identity token was issued
    after the suspension began.

    `iat` counts whole seconds, so a token of the very second of the suspension cannot show
    it came after it and does not lift it; nor does a token without `iat`, nor a hello
    without a token.
    """
    if identity is None or identity.issued_at is None:
        return False
    return identity.issued_at > suspension.since
