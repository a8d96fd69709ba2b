"""The policies a visitor of the demo may try ("Try a policy"): a few presets, each a
policy as a site would write it (docs/policies.md), applied to the whole demo site.

A preset is chosen by name, never sent as a policy: the demo's visitors pick among rules
the demo wrote, so nobody can store an arbitrary policy through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from seatguard.signals.policies import Policy, parse_policy

__all__ = ["PRESETS", "Preset", "preset_of"]


@dataclass(frozen=True, slots=True)
class Preset:
    """A policy the demo offers, with the words its form shows."""

    label: str
    policy: Policy


def _preset(label: str, *rules: dict[str, Any]) -> Preset:
    return Preset(label, parse_policy({"rules": list(rules)}))


PRESETS: dict[str, Preset] = {
    "challenge-elsewhere": _preset(
        "Challenge a second computer elsewhere",
        {
            "name": "second-computer-elsewhere",
            "when": {"check": "concurrent_sessions"},
            "verdict": "challenge",
        },
    ),
    "block-third-device": _preset(
        "Block a third device",
        {
            "name": "third-device",
            "when": {"check": "device_count", "op": ">=", "value": 3},
            "verdict": "block",
        },
    ),
    "suspend-impossible-travel": _preset(
        "Suspend on impossible travel",
        {"name": "impossible-travel", "when": {"check": "impossible_travel"}, "verdict": "suspend"},
    ),
    "monitor": _preset(
        "Monitor only (flag a medium risk, block nothing)",
        {"name": "flag-sharing", "when": {"risk": "medium"}, "verdict": "monitor"},
    ),
    "none": _preset("No policy"),
}
"""The presets by the name the form sends, in the form's order (parsed at import: a preset
that is no valid policy fails there)."""


def preset_of(policy: Policy) -> str | None:
    """The name of the preset that is `policy`; None if it is none of them (set through
    the REST API, say)."""
    encoded = msgspec.json.encode(policy)
    return next((n for n, p in PRESETS.items() if msgspec.json.encode(p.policy) == encoded), None)
