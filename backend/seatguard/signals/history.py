"""A user's remembered devices and networks, as stored: pure code over plain data.

What is kept of a (site, user) is one `Stored` document: the `History` the checks read
(devices with first and last sighting, type, last country and trust; networks by
`network_key`), and the `Previous` session's place and time for the travel check. It is kept
as one document, not as rows per device and network, so that the checks read a user's whole
history in one query by primary key, and a change is one compare-and-set on one row (see
`Database.update_history`); `Thresholds.max_history` bounds its size (about 100 bytes an
entry). `format` numbers the document's shape, so that a later shape can read this one.

`fold` puts what the node saw (sessions admitted, sessions ended) into a document; `trust`
marks a device trusted or not; `devices_out` lists the devices for the REST API;
`current_checks` gives the checks of the user's sessions now.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import msgspec

from ..isotime import IsoTime, iso
from ..types import DeviceKey, DeviceType, SessionId, Timestamp
from .checks import (
    Activity,
    Checks,
    DeviceSeen,
    History,
    Previous,
    SessionView,
    Thresholds,
    evaluate,
    remember,
)
from .places import Place

__all__ = [
    "FORMAT",
    "DeviceOut",
    "DevicesOut",
    "Ended",
    "Stored",
    "current_checks",
    "decode_stored",
    "devices_out",
    "encode_stored",
    "fold",
    "trust",
]

FORMAT = 1
"""The shape of `Stored` written now."""


class Stored(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything remembered of one user."""

    format: int = FORMAT
    history: History = msgspec.field(default_factory=History)
    previous: Previous | None = None


class Ended(msgspec.Struct, frozen=True):
    """A session that ended: on which device and address, where that was, and when."""

    device: DeviceKey
    ip: str
    place: Place | None
    at: Timestamp


def encode_stored(stored: Stored) -> str:
    """The document as stored (JSON text)."""
    return msgspec.json.encode(stored).decode()


def decode_stored(text: str | bytes) -> Stored:
    """A stored document; ValueError for one that is not a `Stored` of a known format."""
    try:
        stored = msgspec.json.decode(text, type=Stored)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a stored history does not decode: {exc}") from None
    if stored.format != FORMAT:
        raise ValueError(f"a stored history has format {stored.format}, not {FORMAT}")
    return stored


def fold(
    stored: Stored | None,
    sessions: Iterable[SessionView],
    ended: Iterable[Ended],
    thresholds: Thresholds,
    now: Timestamp,
) -> Stored:
    """`stored` with the user's current `sessions` and the `ended` ones remembered: each
    ended session is a sighting of its device and network at its end, and the latest ended
    one with a place is the `previous` session."""
    stored = stored or Stored()
    sightings = list(sessions)
    previous = stored.previous
    devices = stored.history.devices
    for e in ended:
        known = devices.get(e.device)
        device_type: DeviceType = known.device_type if known else "computer"
        sightings.append(
            SessionView(
                session="", device=e.device, device_type=device_type, ip=e.ip,
                place=e.place, started=e.at, last_seen=e.at, active=False,
            )
        )  # fmt: skip
        if e.place is not None and (previous is None or e.at >= previous.at):
            previous = Previous(place=e.place, at=e.at)
    history = remember(stored.history, sightings, thresholds, now)
    return Stored(history=history, previous=previous)


def trust(stored: Stored | None, device: DeviceKey, trusted: bool) -> Stored | None:
    """`stored` with `device` trusted or not; None if it has no such device."""
    if stored is None or device not in stored.history.devices:
        return None
    devices = dict(stored.history.devices)
    devices[device] = msgspec.structs.replace(devices[device], trusted=trusted)
    history = History(devices=devices, networks=stored.history.networks)
    return msgspec.structs.replace(stored, history=history)


class DeviceOut(msgspec.Struct):
    """One device of the user's history."""

    device: str
    device_type: DeviceType
    first_seen: float
    last_seen: float
    country: str | None  # ISO 3166-1 alpha-2, where last seen; null: unknown or no GeoIP
    trusted: bool  # exempt from the device checks
    active: bool  # a session of it is connected now
    sessions: list[SessionId]  # its current sessions
    first_seen_iso: IsoTime
    last_seen_iso: IsoTime


class DevicesOut(msgspec.Struct):
    user: str
    devices: list[DeviceOut]  # most recently seen first


def devices_out(
    user: str, stored: Stored | None, current: Collection[tuple[SessionId, DeviceKey, bool]]
) -> DevicesOut:
    """The user's devices, most recently seen first: those remembered, with which of their
    `current` sessions (id, device, connected) there are and whether one is connected."""
    sessions: dict[DeviceKey, list[SessionId]] = {}
    active: set[DeviceKey] = set()
    for session, device, connected in current:
        sessions.setdefault(device, []).append(session)
        if connected:
            active.add(device)
    devices = stored.history.devices if stored else {}
    ordered = sorted(devices.items(), key=lambda item: (-item[1].last, item[0]))
    return DevicesOut(
        user=user,
        devices=[_device_out(d, seen, d in active, sessions.get(d, [])) for d, seen in ordered],
    )


def _device_out(device: str, seen: DeviceSeen, active: bool, sessions: list[str]) -> DeviceOut:
    return DeviceOut(
        device=device,
        device_type=seen.device_type,
        first_seen=seen.first,
        last_seen=seen.last,
        country=seen.country,
        trusted=seen.trusted,
        active=active,
        sessions=sorted(sessions),
        first_seen_iso=iso(seen.first),
        last_seen_iso=iso(seen.last),
    )


def current_checks(
    sessions: Iterable[SessionView],
    stored: Stored | None,
    place_of: Callable[[str], Place | None] | None,
    thresholds: Thresholds,
    now: Timestamp,
) -> dict[SessionId, Checks]:
    """The checks of the user's current `sessions` at `now`, against what is remembered of
    the user (`stored`), each session located by `place_of` (its GeoIP; None: the geo checks
    are off)."""
    located = tuple(
        msgspec.structs.replace(s, place=place_of(s.ip)) if place_of is not None else s
        for s in sessions
    )
    memory = stored if stored is not None else Stored()
    activity = Activity(
        sessions=located,
        history=memory.history,
        previous=memory.previous,
        geo=place_of is not None,
    )
    return evaluate(activity, thresholds, now)
