"""The `account_sharing` risk: a score from weighted checks, and its level.

Each true/false check adds its weight when true; each count adds its weight for every unit
over its allowance (`device_count` 5 with an allowance of 3 and a weight of 10 adds 20).
The level is the highest whose cutoff the score reaches: `low` below `medium`'s cutoff,
then `medium`, `high`, `maximum`. `ip_country` has no weight: a country is not a risk by
itself (a policy can still name it).

A site keeps its own weights, allowances and cutoffs (`RiskSettings`, inside its policy);
what it leaves out takes the defaults below, chosen so that one strong sign (two sessions
of one device type on two IPs at once) is `medium`, that sign with a new device or an
impossible journey alone is `high`, and both together are `maximum`:

| check | weight | allowance |
| --- | --- | --- |
| `concurrent_sessions` | 40 | |
| `impossible_travel` | 60 | |
| `is_new_device` | 10 | |
| `is_new_ip` | 5 | |
| `device_count` | 0 | 3 |
| `computer_device_count` | 15 | 1 |
| `tablet_device_count` | 10 | 1 |
| `mobile_device_count` | 10 | 1 |

Cutoffs: `medium` 20, `high` 50, `maximum` 80; they must rise strictly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..errors import InvalidPolicy
from .catalog import BOOL_CHECKS, CHECKS, COUNT_CHECKS, Checks, convert_at, join, read

__all__ = [
    "LEVELS",
    "MAX_SCORE",
    "MAX_WEIGHT",
    "Allowances",
    "Cutoffs",
    "Level",
    "Risk",
    "RiskSettings",
    "Weights",
    "account_sharing",
    "at_least",
    "parse_risk_settings",
]

Level = Literal["low", "medium", "high", "maximum"]
LEVELS: tuple[Level, ...] = ("low", "medium", "high", "maximum")
"""The levels, lowest first."""
_RANK = {level: i for i, level in enumerate(LEVELS)}

MAX_WEIGHT = 1000
MAX_SCORE = 1_000_000
Weight = Annotated[int, msgspec.Meta(ge=0, le=MAX_WEIGHT)]
Allowance = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Cutoff = Annotated[int, msgspec.Meta(ge=1, le=MAX_SCORE)]


class Weights(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What each true/false check, and each unit of a count over its allowance, adds."""

    concurrent_sessions: Weight = 40
    device_count: Weight = 0
    computer_device_count: Weight = 15
    tablet_device_count: Weight = 10
    mobile_device_count: Weight = 10
    device_count_window: Weight = 0
    computer_device_count_window: Weight = 0
    tablet_device_count_window: Weight = 0
    mobile_device_count_window: Weight = 0
    is_new_device: Weight = 10
    is_new_ip: Weight = 5
    impossible_travel: Weight = 60


class Allowances(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How many of each count add nothing."""

    device_count: Allowance = 3
    computer_device_count: Allowance = 1
    tablet_device_count: Allowance = 1
    mobile_device_count: Allowance = 1
    device_count_window: Allowance = 5
    computer_device_count_window: Allowance = 2
    tablet_device_count_window: Allowance = 2
    mobile_device_count_window: Allowance = 2


class Cutoffs(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The lowest score of each level above `low`; strictly rising."""

    medium: Cutoff = 20
    high: Cutoff = 50
    maximum: Cutoff = 80


class RiskSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A site's weights, allowances and cutoffs; what is left out takes the defaults."""

    weights: Weights = msgspec.field(default_factory=Weights)
    allowances: Allowances = msgspec.field(default_factory=Allowances)
    cutoffs: Cutoffs = msgspec.field(default_factory=Cutoffs)

    def __post_init__(self) -> None:
        c = self.cutoffs
        if not c.medium < c.high < c.maximum:
            raise InvalidPolicy(
                f"cutoffs: medium < high < maximum must hold, not {c.medium}, {c.high}, {c.maximum}"
            )


class Risk(msgspec.Struct, frozen=True):
    """The `account_sharing` risk of a session."""

    score: int
    level: Level


def parse_risk_settings(raw: Any, path: str = "risk") -> RiskSettings:
    """Risk settings from decoded JSON; InvalidPolicy naming the bad path."""
    if isinstance(raw, dict):
        for part, known in (("weights", BOOL_CHECKS + COUNT_CHECKS), ("allowances", COUNT_CHECKS)):
            given = raw.get(part)
            for name in given if isinstance(given, dict) else ():
                if name not in known:
                    where = join(path, f".{part}.{name}")
                    if name in CHECKS:
                        raise InvalidPolicy(f"{where}: check {name!r} has no {part[:-1]}")
                    raise InvalidPolicy(f"{where}: unknown check {name!r}")
    try:
        return convert_at(raw, RiskSettings, path)
    except InvalidPolicy as exc:
        message = str(exc)
        if message.startswith("cutoffs:"):  # from __post_init__, which knows no path
            message = f"{join(path, '.')}{message}"
        raise InvalidPolicy(message) from None


def account_sharing(checks: Checks, settings: RiskSettings) -> Risk:
    """The score of `checks` under `settings`, and its level."""
    weights, allowances = settings.weights, settings.allowances
    score = 0
    for name in BOOL_CHECKS:
        if read(checks, name) is True:
            score += getattr(weights, name)
    for name in COUNT_CHECKS:
        value = read(checks, name)
        if isinstance(value, int):
            score += getattr(weights, name) * max(0, value - getattr(allowances, name))
    score = min(score, MAX_SCORE)
    c = settings.cutoffs
    level: Level = (
        "maximum"
        if score >= c.maximum
        else "high"
        if score >= c.high
        else "medium"
        if score >= c.medium
        else "low"
    )
    return Risk(score, level)


def at_least(level: Level, floor: Level) -> bool:
    """Whether `level` is `floor` or above."""
    return _RANK[level] >= _RANK[floor]
