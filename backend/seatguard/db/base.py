"""The durable database as the server uses it: sites, overrides and the audit log.

Two implementations keep one contract (tests/integration/test_database_contract.py):
`SqliteDatabase`, an embedded file for a single process, and `PostgresDatabase`, shared by
the processes of a cluster. `open_database` picks one from its target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from ..audit import AuditEvent, AuditRecord
from ..rules import Override, Scope
from ..sites import Site

__all__ = ["AuditLog", "Database"]


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


class Database(Protocol):
    """Sites, their server-side overrides, and the audit log; `close()` when done."""

    @property
    def audit(self) -> AuditLog:
        """The audit log, in the same database."""
        ...

    async def site(self, key: str) -> Site | None:
        """The site with this public key."""
        ...

    async def site_by_secret(self, secret: str) -> Site | None:
        """The site with this secret key."""
        ...

    async def sites(self) -> list[Site]:
        """Every site, oldest first."""
        ...

    async def add_site(self, site: Site) -> None:
        """Store a new site; its key and secret must be unused."""
        ...

    async def update_site(self, site: Site) -> None:
        """Replace a site's settings (keys and creation time stay)."""
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

    async def close(self) -> None:
        """Release the connections."""
        ...
