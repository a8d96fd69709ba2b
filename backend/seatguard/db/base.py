"""The durable database as the server uses it: sites, overrides, revocations, the audit log,
the webhook outbox.

Two implementations keep one contract (tests/integration/test_database_contract.py):
`SqliteDatabase`, an embedded file for a single process, and `PostgresDatabase`, shared by
the processes of a cluster. `open_database` picks one from its target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol

from ..audit import AuditEvent, AuditRecord
from ..outbox import Backlog, Completion, Delivery, DeliveryState
from ..rules import Override, Scope
from ..signals.evaluations import EvaluationRecord
from ..signals.history import Stored
from ..signals.policies import Policy
from ..site_secrets import SecretKind
from ..sites import Site
from ..suspension import Suspension
from ..webhooks import EventType

__all__ = ["AuditLog", "Database", "WebhookOutbox"]


class AuditLog(Protocol):
    """The append-only, HMAC-chained audit log (see `seatguard.audit`)."""

    async def append(self, events: Sequence[AuditEvent], key: bytes) -> list[AuditRecord]:
        """Chain `events` after the last record and store them in one transaction.

        Writers in every process are serialized, so seqs have no gaps. Once this returns the
        records are committed; on any error, including an invalid event (ValueError), nothing
        is stored.
        """
        ...

    async def records(
        self,
        *,
        site: str | None = None,
        user: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Records after `after_seq` in seq order, of one site and user if given."""
        ...

    def all_records(self) -> AsyncIterator[AuditRecord]:
        """Every record in storage order, read a page at a time (for `verify`)."""
        ...

    async def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record, to keep outside as an anchor; None when empty."""
        ...


class WebhookOutbox(Protocol):
    """Webhook messages until they are delivered or dead (see `seatguard.outbox`).

    Claims are leases: of claimers in any process, exactly one holds a due message until
    its claim runs out or is completed. Times are seconds since the epoch from the
    caller's clock.
    """

    async def add(self, deliveries: Sequence[Delivery]) -> None:
        """Store new pending messages, all or none; their ids must be unused."""
        ...

    async def claim(self, node: str, now: float, lease: float, limit: int) -> list[Delivery]:
        """Claim up to `limit` pending messages due at `now` and not claimed (or whose claim
        ran out), for `node` until `now + lease`; the most overdue first."""
        ...

    async def complete(self, claimed: Delivery, done: Completion) -> bool:
        """Write the outcome of an attempt and end the claim, if `claimed` (as `claim`
        returned it) is still the message's claim; False, writing nothing, if it is not
        (it ran out and another claim, or a redelivery, replaced it)."""
        ...

    async def release(self, node: str) -> None:
        """End every claim of `node` without an outcome, so that they are due at once."""
        ...

    async def redeliver(self, site: str, id: str, now: float) -> Delivery | None:
        """Make a message of `site` pending and due at `now` with a new retry window, ending
        any claim; the message as it is now, or None if `site` has no such message."""
        ...

    async def backlog(self) -> Backlog:
        """How many messages are pending and dead, and since when the longest-waiting
        pending one waits; one query over an index of state."""
        ...

    async def deliveries(
        self,
        site: str,
        *,
        state: DeliveryState | None = None,
        event: EventType | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """A site's messages, newest first, of one state and event type if given, with a
        `seq` below `before` if given."""
        ...


class Database(Protocol):
    """Sites, their server-side overrides and policies, what was revoked, who is suspended,
    which devices and networks each user was seen on, what the policies said of the sessions
    (evaluations), the ids of one-time tokens already used, the audit log and the webhook
    outbox; `close()` when done.

    Revocations and token ids are shared by every process on the database and survive
    restarts. Times are seconds since the epoch from the caller's clock.
    """

    @property
    def audit(self) -> AuditLog:
        """The audit log, in the same database."""
        ...

    @property
    def outbox(self) -> WebhookOutbox:
        """The webhook outbox, in the same database."""
        ...

    async def site(self, key: str) -> Site | None:
        """The site with this public key."""
        ...

    async def site_by_secret_hash(self, digest: str) -> Site | None:
        """The site whose secret key, current or replaced, has this keyed hash (see
        `site_secrets.authenticate` for whether it is still valid)."""
        ...

    async def rotate_secret(
        self,
        site: str,
        kind: SecretKind,
        expected: str | None,
        new: str,
        previous_until: float | None,
    ) -> bool:
        """Make `new` the stored current secret of `kind` if it is still `expected`.

        A compare-and-set in one statement: of rotations racing in any process, exactly one
        wins; False for the others, and for an unknown site. The replaced secret stays
        valid until `previous_until` (None: not at all, and it is forgotten).
        """
        ...

    async def sites(self) -> list[Site]:
        """Every site, oldest first."""
        ...

    async def add_site(self, site: Site) -> None:
        """Store a new site with its secrets; its key and secret key must be unused."""
        ...

    async def update_site(self, site: Site) -> None:
        """Replace a site's settings (keys, secrets and creation time stay)."""
        ...

    async def set_override(self, site: str, override: Override) -> None:
        """Store an override of an existing site, replacing one of the same scope and name."""
        ...

    async def delete_override(self, site: str, scope: Scope, name: str) -> bool:
        """Remove an override; False if there was none."""
        ...

    async def overrides(
        self, site: str, wanted: Mapping[Scope, str | None] | None = None
    ) -> dict[tuple[Scope, str], Override]:
        """A site's overrides; with `wanted`, only those for the given org, role and user."""
        ...

    async def policy(self, site: str) -> Policy | None:
        """A site's policy; None if it has never been set (see `Policy()`, the default)."""
        ...

    async def set_policy(self, site: str, policy: Policy) -> None:
        """Store the policy of an existing site, replacing the one it had."""
        ...

    async def history(self, site: str, user: str) -> Stored | None:
        """The user's remembered devices and networks (`signals.history`), in one query;
        None if nothing is remembered (or what is stored no longer decodes)."""
        ...

    async def histories(self, site: str, users: Sequence[str]) -> dict[str, Stored]:
        """The remembered histories of several users of one site, by user; users with none
        (or with one that no longer decodes) are left out. A few queries for any number."""
        ...

    async def update_history(
        self, site: str, user: str, change: Callable[[Stored | None], Stored | None]
    ) -> Stored | None:
        """Store `change(current)` as the user's history, unless it is None; what was stored.

        A compare-and-set on the user's one row, retried with the fresh history when another
        writer (in any process) came first, so that no writer's change is lost; `change` is
        pure and may run several times. HistoryConflict after `HISTORY_TRIES` lost races.
        """
        ...

    async def add_evaluations(self, records: Sequence[EvaluationRecord]) -> None:
        """Store evaluation records, all or none."""
        ...

    async def evaluations(
        self, site: str, user: str, *, limit: int, before: float | None = None
    ) -> list[EvaluationRecord]:
        """Up to `limit` of the user's evaluation records, newest first (by `at`, then the
        latest stored), of those before `before` if given; over an index."""
        ...

    async def purge_evaluations(self, older_than: float) -> int:
        """Delete the evaluation records of every site from before `older_than`; how many."""
        ...

    async def remember_token(
        self, site: str, issuer: str, jti: str, until: float, *, now: float
    ) -> bool:
        """Remember the id of a one-time token until `until`; False if it is remembered already.

        Insert-if-absent in one step: of callers in any process with the same (site, issuer,
        jti), exactly one gets True. Ids remembered until `now` or earlier are forgotten
        first, so an expired one counts as absent.
        """
        ...

    async def forget_token(self, site: str, issuer: str, jti: str) -> None:
        """Forget a remembered token id (its use failed, so the sender's retry must pass)."""
        ...

    async def add_revocations(
        self, site: str, user: str, sessions: Sequence[str], at: float, until: float
    ) -> None:
        """Record browser sessions of a user as revoked at `at`, to be refused until `until`.

        A session revoked again keeps the later `until`. Records whose `until` is at or
        before `at` are dropped meanwhile.
        """
        ...

    async def revoked_sessions(self, site: str, sessions: Sequence[str], now: float) -> set[str]:
        """Which of `sessions` are revoked and still refused at `now`."""
        ...

    async def revoke_user_before(self, site: str, user: str, at: float) -> None:
        """Refuse the user's identity tokens issued before `at`; a cut-off only moves later."""
        ...

    async def user_revoked_before(self, site: str, user: str) -> float | None:
        """The user's cut-off: identity tokens issued before it are refused; None if none."""
        ...

    async def suspend(self, suspension: Suspension) -> tuple[Suspension, bool]:
        """Store a user's suspension unless one is stored already (insert-if-absent: of
        callers in any process, exactly one gets True); the stored one, and whether it is
        this one."""
        ...

    async def suspension(self, site: str, user: str) -> Suspension | None:
        """The user's suspension, None if the user is not suspended."""
        ...

    async def suspensions(self, site: str, limit: int) -> list[Suspension]:
        """Up to `limit` suspensions of a site, the oldest first."""
        ...

    async def lift_suspension(
        self, site: str, user: str, since: float | None = None
    ) -> Suspension | None:
        """Remove the user's suspension (only if it began at `since`, if given); the one
        removed, None if there was none (of callers racing, one gets it)."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...
