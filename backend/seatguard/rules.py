"""Where a user's rules come from, strongest first: identity token, server, page.

The site's defaults are the base. Where the site allows client settings, the `load()`
options of the page come next; then the server-side overrides for the user's org, role
and user id; then the claims of a signed identity token, which nothing overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .presence import RULE_FIELDS, Rules

__all__ = ["SCOPES", "Claims", "Override", "Scope", "resolve", "who"]

Scope = Literal["org", "role", "user"]
SCOPES: tuple[Scope, ...] = ("org", "role", "user")
"""Override scopes, weakest first."""


@dataclass(frozen=True, slots=True)
class Override:
    """Server-side rules for one org, role or user of a site; None leaves a field as is, a
    timeout of 0 turns it off."""

    scope: Scope
    name: str
    mode: str | None = None
    limit: int | None = None
    policy: str | None = None
    idle_timeout: float | None = None
    absolute_timeout: float | None = None

    def fields(self) -> dict[str, Any]:
        """The rule fields this override sets; a timeout of 0 sets it off (None)."""
        found = {n: getattr(self, n) for n in RULE_FIELDS if getattr(self, n) is not None}
        return {n: None if n.endswith("_timeout") and v == 0 else v for n, v in found.items()}


@dataclass(frozen=True, slots=True)
class Claims:
    """Who the user is and what they ask for, from one source (token or page)."""

    user: str
    org: str | None = None
    role: str | None = None
    mode: str | None = None
    limit: int | None = None
    policy: str | None = None
    sid: str | None = None  # identity provider session id (tokens only)

    def fields(self) -> dict[str, Any]:
        names = ("mode", "limit", "policy")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def who(page: Claims | None, token: Claims | None, user: str | None) -> Claims:
    """Who the overrides are looked up for: the token's user, else the page's."""
    return token or page or Claims(user or "")


def resolve(
    defaults: Rules,
    *,
    page: Claims | None,
    token: Claims | None,
    overrides: Mapping[tuple[Scope, str], Override],
    user: str | None = None,
) -> Rules:
    """The rules in force. `page` is None unless the site allows client settings; `user`
    names the account when neither the page nor a token does (a locked site)."""
    changes: dict[str, Any] = {}
    if page is not None:
        changes.update(page.fields())
    account = who(page, token, user)
    for scope, name in (("org", account.org), ("role", account.role), ("user", account.user)):
        found = overrides.get((scope, name)) if name else None  # type: ignore[arg-type]
        if found is not None:
            changes.update(found.fields())
    if token is not None:
        changes.update(token.fields())
    return dataclasses.replace(defaults, **changes) if changes else defaults
