"""The authority order of rules: token, then server overrides, then page options."""

from __future__ import annotations

import pytest

from seatguard.presence import Rules
from seatguard.rules import Claims, Override, Scope, resolve

DEFAULTS = Rules(limit=1, policy="block-new")
OVERRIDES: dict[tuple[Scope, str], Override] = {
    ("org", "acme"): Override("org", "acme", limit=5, idle_timeout=900),
    ("role", "admin"): Override("role", "admin", limit=2, policy="evict-oldest"),
    ("user", "alice"): Override("user", "alice", mode="device-limit"),
}


def test_defaults_apply_when_nothing_else_does() -> None:
    assert resolve(DEFAULTS, page=None, token=None, overrides={}) == DEFAULTS


def test_page_options_apply_only_when_given() -> None:
    page = Claims("bob", limit=3, policy="monitor")
    assert resolve(DEFAULTS, page=page, token=None, overrides={}) == Rules(
        limit=3, policy="monitor"
    )


def test_overrides_beat_page_options_and_go_org_then_role_then_user() -> None:
    page = Claims("alice", org="acme", role="admin", limit=9)
    rules = resolve(DEFAULTS, page=page, token=None, overrides=OVERRIDES)
    assert rules == Rules(mode="device-limit", limit=2, policy="evict-oldest", idle_timeout=900)


def test_token_claims_beat_everything() -> None:
    page = Claims("alice", org="acme", limit=9, policy="monitor")
    token = Claims("alice", org="acme", role="admin", limit=4)
    rules = resolve(DEFAULTS, page=page, token=token, overrides=OVERRIDES)
    assert (rules.limit, rules.policy, rules.mode) == (4, "evict-oldest", "device-limit")


def test_token_org_is_used_for_overrides_not_the_page_org() -> None:
    page = Claims("carol", org="acme")
    token = Claims("carol", org="other")
    assert resolve(DEFAULTS, page=page, token=token, overrides=OVERRIDES).limit == 1


def test_a_resolved_bad_value_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        resolve(DEFAULTS, page=Claims("x", limit=0), token=None, overrides={})


def test_a_locked_site_applies_the_overrides_of_the_named_user() -> None:
    rules = resolve(DEFAULTS, page=None, token=None, overrides=OVERRIDES, user="alice")
    assert rules.mode == "device-limit"
