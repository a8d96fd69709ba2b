"""The sharing checks of one user's sessions: pure functions over plain data, `now` passed in.

`evaluate(activity, thresholds, now)` gives every current session its `Checks`; `changed`
tells which sessions' checks differ from the last evaluation, so a node can tell the first
session of a user that a second one, from another city, changed its checks too. `remember`
folds the current sessions into the user's history of devices and networks.

The history is kept as one interval per device and per network (first and last seen); an
interval is only extended across a gap shorter than the window, else it starts again, so
"seen within the window before this session started" can be read from it (see `remember`).
Work is O(n log n) in the sessions given; travel compares each session with at most
`Thresholds.max_compared` others (the most recently seen) and the previous session.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

import msgspec

from ..proxies import ip_address
from ..types import DeviceKey, DeviceType, SessionId, Timestamp
from .places import Place, separation_km

__all__ = [
    "CHECKS",
    "GEO_CHECKS",
    "Activity",
    "Checks",
    "DeviceSeen",
    "History",
    "Previous",
    "SessionView",
    "Thresholds",
    "changed",
    "evaluate",
    "network_key",
    "remember",
]

DAY = 86400.0
_S = TypeVar("_S", bound="Seen")
DEVICE_TYPES: tuple[DeviceType, ...] = ("computer", "tablet", "mobile")


def _finite(*times: float) -> None:
    for t in times:
        if not math.isfinite(t):
            raise ValueError(f"time {t!r} is not a finite number of seconds")


class Thresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What counts as new, and as impossible travel."""

    window: float = 30 * DAY  # seconds of history: a device or network unseen this long is new
    travel_speed: float = 1000.0  # km/h: faster travel between two sessions is impossible
    travel_min_km: float = 100.0  # separations (distance less accuracy radii) under this: never
    max_compared: int = 64  # other sessions each session's travel is checked against
    max_history: int = 1024  # devices and networks `remember` keeps per user (most recent)

    def __post_init__(self) -> None:
        if not (
            0 < self.window < math.inf
            and 0 < self.travel_speed < math.inf
            and 0 <= self.travel_min_km < math.inf
            and self.max_compared >= 1
            and self.max_history >= 1
        ):
            raise ValueError(
                "window and travel speed must be positive and finite, the minimum distance "
                "0 or more, max_compared and max_history at least 1"
            )


class SessionView(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One current session of the user, as the checks see it."""

    session: SessionId
    device: DeviceKey
    device_type: DeviceType
    ip: str
    place: Place | None  # from GeoIP; None when unknown or the geo checks are off
    started: Timestamp
    last_seen: Timestamp
    active: bool  # connected now (a session whose tabs all left, in its grace, is not)

    def __post_init__(self) -> None:
        _finite(self.started, self.last_seen)

    @property
    def span(self) -> tuple[float, float]:
        """When the session was seen: from its start to its last sighting, or only at its
        start if a clock that went back stamped the last sighting earlier."""
        return self.started, max(self.started, self.last_seen)


class Seen(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A network's first and last sighting, with no gap as long as the window between."""

    first: Timestamp
    last: Timestamp

    def __post_init__(self) -> None:
        _finite(self.first, self.last)


class DeviceSeen(Seen, frozen=True, forbid_unknown_fields=True):
    """A device's first and last sighting, its type and country when last seen, and whether
    the operator or the site's backend trusts it: a trusted device is exempt from the device
    checks (it is never new, and no device count counts it)."""

    device_type: DeviceType = "computer"
    country: str | None = None
    trusted: bool = False


class History(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What is remembered of the user: devices by id, networks by `network_key`."""

    devices: dict[DeviceKey, DeviceSeen] = msgspec.field(default_factory=dict)
    networks: dict[str, Seen] = msgspec.field(default_factory=dict)


class Previous(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the user's last session before the current ones was, and when it was last seen."""

    place: Place
    at: Timestamp

    def __post_init__(self) -> None:
        _finite(self.at)


class Activity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the checks of one user read."""

    sessions: tuple[SessionView, ...]
    history: History = msgspec.field(default_factory=History)
    previous: Previous | None = None
    geo: bool = False  # a GeoIP database located the sessions; without one, geo checks are off


class Checks(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The checks of one session. Counts are of distinct device ids of the user: `device_count`
    and the typed counts among sessions active now, the `_window` ones among devices seen within
    the window (current sessions included). `ip_country` and `impossible_travel` are None when
    the geo checks are off (`geo == "off"`); `ip_country` is also None for an address with no
    country, and `impossible_travel` False for a session with no place."""

    concurrent_sessions: bool
    device_count: int
    computer_device_count: int
    tablet_device_count: int
    mobile_device_count: int
    device_count_window: int
    computer_device_count_window: int
    tablet_device_count_window: int
    mobile_device_count_window: int
    is_new_device: bool
    is_new_ip: bool
    ip_country: str | None
    impossible_travel: bool | None
    geo: Literal["on", "off"]

    @property
    def off(self) -> tuple[str, ...]:
        """The checks that are off (they need a GeoIP database), by name."""
        return GEO_CHECKS if self.geo == "off" else ()

    def values(self) -> dict[str, Any]:
        """Check name to value, as policies and evaluations name them."""
        return {name: getattr(self, name) for name in CHECKS}


CHECKS: tuple[str, ...] = tuple(f for f in Checks.__struct_fields__ if f != "geo")
"""Every check's name, in a fixed order."""
GEO_CHECKS: tuple[str, ...] = ("ip_country", "impossible_travel")
"""The checks that need a GeoIP database."""


def network_key(ip: str) -> str:
    """What counts as one IP: an IPv4 address, or an IPv6 /64 (the network a home or a phone
    is given, whose addresses rotate); an IPv4-mapped IPv6 address is its IPv4 address."""
    address = ip_address(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def evaluate(activity: Activity, thresholds: Thresholds, now: Timestamp) -> dict[SessionId, Checks]:
    """The checks of every session in `activity` at `now`."""
    _finite(now)
    sessions = activity.sessions
    keys = [network_key(s.ip) for s in sessions]
    window = thresholds.window

    # Concurrency: per device type, up to two distinct networks of the active sessions.
    active_networks: dict[DeviceType, set[str]] = {t: set() for t in DEVICE_TYPES}
    for s, key in zip(sessions, keys, strict=True):
        found = active_networks[s.device_type]
        if s.active and len(found) < 2:
            found.add(key)

    trusted = {d for d, seen in activity.history.devices.items() if seen.trusted}
    active_now = _count_types(
        {s.device: s.device_type for s in _by_last_seen(sessions) if s.active}, trusted
    )
    in_window: dict[DeviceKey, DeviceType] = {
        d: seen.device_type
        for d, seen in activity.history.devices.items()
        if seen.last >= now - window
    }
    in_window.update({s.device: s.device_type for s in _by_last_seen(sessions)})
    window_counts = _count_types(in_window, trusted)

    device_sightings = _Sightings((s.device, s) for s in sessions)
    network_sightings = _Sightings(zip(keys, sessions, strict=True))
    travel = _travel(activity, thresholds) if activity.geo else None

    checks: dict[SessionId, Checks] = {}
    for i, (s, key) in enumerate(zip(sessions, keys, strict=True)):
        others = active_networks[s.device_type]
        device = activity.history.devices.get(s.device)
        network = activity.history.networks.get(key)
        checks[s.session] = Checks(
            concurrent_sessions=len(others) > 1 or (len(others) == 1 and key not in others),
            device_count=active_now[0],
            computer_device_count=active_now[1],
            tablet_device_count=active_now[2],
            mobile_device_count=active_now[3],
            device_count_window=window_counts[0],
            computer_device_count_window=window_counts[1],
            tablet_device_count_window=window_counts[2],
            mobile_device_count_window=window_counts[3],
            is_new_device=not (
                s.device in trusted
                or _seen_before(device, s.started, window)
                or device_sightings.before(s.device, s.started, window)
            ),
            is_new_ip=not (
                _seen_before(network, s.started, window)
                or network_sightings.before(key, s.started, window)
            ),
            ip_country=(s.place.country if s.place else None) if activity.geo else None,
            impossible_travel=None if travel is None else travel[i],
            geo="on" if activity.geo else "off",
        )
    return checks


def changed(
    before: Mapping[SessionId, Checks], after: Mapping[SessionId, Checks]
) -> frozenset[SessionId]:
    """The sessions of `after` whose checks are new or differ from `before`."""
    return frozenset(sid for sid, c in after.items() if before.get(sid) != c)


def remember(
    history: History, sessions: Iterable[SessionView], thresholds: Thresholds, now: Timestamp
) -> History:
    """`history` with the sightings of `sessions` folded in, and what is older than the window
    (or past `max_history` entries, least recently seen first) forgotten; a trusted device is
    kept past the window (only the cap forgets it), and keeps its trust. A sighting more than
    the window after an entry's last one starts the entry again, so an entry's interval never
    spans a gap longer than the window. A device's type and country are those of its latest
    sighting (a sighting with no country keeps the one known)."""
    _finite(now)
    window = thresholds.window
    devices = dict(history.devices)
    networks = dict(history.networks)
    for s in sessions:
        lo, hi = s.span
        d = devices.get(s.device)
        country = s.place.country if s.place and s.place.country else None
        if d is not None and (d.last > hi or country is None):
            country = d.country  # a later sighting, or one with no country, says where it was
        first = lo if d is None or d.last < lo - window else min(d.first, lo)
        devices[s.device] = DeviceSeen(
            first=first,
            last=hi if d is None else max(d.last, hi),
            device_type=s.device_type if d is None or hi >= d.last else d.device_type,
            country=country,
            trusted=d is not None and d.trusted,
        )
        key = network_key(s.ip)
        n = networks.get(key)
        if n is None or n.last < lo - window:
            networks[key] = Seen(first=lo, last=hi)
        else:
            networks[key] = Seen(first=min(n.first, lo), last=max(n.last, hi))
    return History(
        devices=_recent(devices, now - window, thresholds.max_history),
        networks=_recent(networks, now - window, thresholds.max_history),
    )


def _recent(entries: dict[str, _S], since: float, limit: int) -> dict[str, _S]:
    kept = [
        (k, e)
        for k, e in entries.items()
        if e.last >= since or (isinstance(e, DeviceSeen) and e.trusted)
    ]
    if len(kept) > limit:
        kept.sort(key=lambda item: item[1].last, reverse=True)
        del kept[limit:]
    return dict(kept)


def _seen_before(seen: Seen | None, started: float, window: float) -> bool:
    """Whether `seen` covers some moment in [started - window, started)."""
    return seen is not None and seen.first < started and seen.last >= started - window


class _Sightings:
    """Current sessions by key (device or network), sorted by start, with the latest moment
    any of the first k of them was seen: "seen before t, within the window" in O(log n)."""

    def __init__(self, items: Iterable[tuple[str, SessionView]]) -> None:
        grouped: dict[str, list[tuple[float, float]]] = {}
        for key, s in items:
            grouped.setdefault(key, []).append((s.started, s.span[1]))
        self._starts: dict[str, list[float]] = {}
        self._latest: dict[str, list[float]] = {}
        for key, spans in grouped.items():
            spans.sort()
            latest, running = [], -math.inf
            for _, hi in spans:
                running = max(running, hi)
                latest.append(running)
            self._starts[key] = [start for start, _ in spans]
            self._latest[key] = latest

    def before(self, key: str, started: float, window: float) -> bool:
        """Whether another session with `key` started before `started` and was seen since
        `started - window` (a session never counts for itself: it did not start before)."""
        k = bisect.bisect_left(self._starts.get(key, ()), started)
        return k > 0 and self._latest[key][k - 1] >= started - window


def _by_last_seen(sessions: Iterable[SessionView]) -> list[SessionView]:
    """Oldest sighting first, so a device's type is its most recent session's."""
    return sorted(sessions, key=lambda s: s.span[1])


def _count_types(
    devices: Mapping[DeviceKey, DeviceType], trusted: set[DeviceKey]
) -> tuple[int, int, int, int]:
    """How many devices, and of each type, not counting the trusted ones."""
    counts = dict.fromkeys(DEVICE_TYPES, 0)
    for device, device_type in devices.items():
        if device not in trusted:
            counts[device_type] += 1
    return sum(counts.values()), counts["computer"], counts["tablet"], counts["mobile"]


def _travel(activity: Activity, thresholds: Thresholds) -> list[bool]:
    """For each session: whether it and another session (or the previous one) are farther
    apart than the time between them allows at the travel speed."""
    sessions = activity.sessions
    located = [i for i, s in enumerate(sessions) if s.place is not None and s.place.located]
    located.sort(key=lambda i: sessions[i].span[1], reverse=True)
    compared = located[: thresholds.max_compared]
    previous = activity.previous
    result = [False] * len(sessions)
    for i in located:
        s = sessions[i]
        place = s.place
        assert place is not None
        if previous is not None and previous.place.located:
            hours = max(0.0, s.span[0] - previous.at) / 3600
            if _too_fast(place, previous.place, hours, thresholds):
                result[i] = True
                continue
        for j in compared:
            if j == i:
                continue
            t = sessions[j]
            assert t.place is not None
            if _too_fast(place, t.place, _gap(s, t) / 3600, thresholds):
                result[i] = True
                break
    return result


def _gap(a: SessionView, b: SessionView) -> float:
    """Seconds between two sessions' sightings: 0 if they overlap."""
    (a_lo, a_hi), (b_lo, b_hi) = a.span, b.span
    return max(0.0, b_lo - a_hi, a_lo - b_hi)


def _too_fast(a: Place, b: Place, hours: float, thresholds: Thresholds) -> bool:
    distance = separation_km(a, b)
    return distance > thresholds.travel_min_km and distance > thresholds.travel_speed * hours
