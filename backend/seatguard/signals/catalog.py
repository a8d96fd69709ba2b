"""The checks a policy may name, and the type of each: one list, read by the risk, the
policies, their validation, the API's schemas and the docs' tables.

Checks reach the risk and the policies as a plain mapping from check name to value. A check
missing from the mapping reads as its neutral value (false, 0, null: nothing observed), so
that a check that is off (the geo checks without a GeoIP database) never fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, get_type_hints

import msgspec

from ..errors import InvalidPolicy
from ..protocol import explain
from . import checks

__all__ = [
    "BOOL_CHECKS",
    "CHECKS",
    "COUNTRY_PATTERN",
    "COUNT_CHECKS",
    "MAX_COUNT",
    "CheckKind",
    "CheckValue",
    "Checks",
    "ChecksIn",
    "Count",
    "Country",
    "convert_at",
    "join",
    "read",
]

S = TypeVar("S")

CheckKind = Literal["bool", "count", "country"]
"""What a check's value is: true or false, a count (an integer from 0), or a country
(ISO 3166-1 alpha-2 code, or null when unknown)."""


def _kind(annotation: Any) -> CheckKind:
    """The kind of a field of `checks.Checks`, from its type."""
    if annotation is bool or annotation == bool | None:
        return "bool"
    if annotation is int:
        return "count"
    if annotation == str | None:
        return "country"
    raise TypeError(f"a check of type {annotation!r} has no kind")  # a new check: say which


CHECKS: Mapping[str, CheckKind] = {
    name: _kind(annotation)
    for name, annotation in get_type_hints(checks.Checks).items()
    if name in checks.CHECKS
}
"""Every check by name, with its kind, in the order the docs list them: the fields of the
checks computed for a session (`checks.Checks`), so the list exists once."""

BOOL_CHECKS = tuple(n for n, k in CHECKS.items() if k == "bool")
COUNT_CHECKS = tuple(n for n, k in CHECKS.items() if k == "count")

MAX_COUNT = 1_000_000
"""The largest count a check or a condition holds."""
COUNTRY_PATTERN = "^[A-Z]{2}$"
"""An ISO 3166-1 alpha-2 country code, as GeoIP databases give them."""

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Country = Annotated[str, msgspec.Meta(pattern=COUNTRY_PATTERN)]

CheckValue = bool | int | str | None
Checks = Mapping[str, CheckValue]

_NEUTRAL: Mapping[CheckKind, CheckValue] = {"bool": False, "count": 0, "country": None}


def read(checks: Checks, name: str) -> CheckValue:
    """The value of check `name`: its neutral value if `checks` does not have it."""
    return checks.get(name, _NEUTRAL[CHECKS[name]])


class ChecksIn(msgspec.Struct, forbid_unknown_fields=True):
    """Checks as a request gives them; an absent check is its neutral value."""

    concurrent_sessions: bool = False
    device_count: Count = 0
    computer_device_count: Count = 0
    tablet_device_count: Count = 0
    mobile_device_count: Count = 0
    device_count_window: Count = 0
    computer_device_count_window: Count = 0
    tablet_device_count_window: Count = 0
    mobile_device_count_window: Count = 0
    is_new_device: bool = False
    is_new_ip: bool = False
    ip_country: Country | None = None
    impossible_travel: bool = False

    def mapping(self) -> dict[str, CheckValue]:
        return {n: getattr(self, n) for n in CHECKS}


def join(path: str, rest: str) -> str:
    """`rest` (`.field`, `[3]` or empty) after `path`, without a leading dot at the root."""
    return (path + rest).removeprefix(".")


def convert_at(raw: Any, kind: type[S], path: str) -> S:
    """`raw` (decoded JSON) as a `kind`; InvalidPolicy naming the path of what is wrong."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        message, _, where = explain(exc, kind).partition(" - at `$")
        where = where.removesuffix("`")
        raise InvalidPolicy(f"{join(path, where) or '(policy)'}: {message}") from None
