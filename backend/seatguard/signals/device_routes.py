"""`GET /api/v1/users/{user}/devices` (the user's device history) and `PUT` / `DELETE
/api/v1/users/{user}/devices/{device}/trust` (mark a device trusted, or no longer).

The history is what the node recorded of the user's sessions (`signals.recording`): a
device appears once one of its sessions was created, admitted or ended, a moment after. A
trusted device is exempt from the device checks (`signals.checks.evaluate`); only a device
in the history can be trusted (404 otherwise), and it stays trusted, and remembered, past
the window until it is untrusted or the history's cap forgets it. Each change of trust is
written to the audit trail (`device_trusted`, `device_untrusted`) with who made it; a
request that changes nothing writes no row.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..audit import AuditEvent, AuditKind
from ..db.rows import HistoryConflict
from ..inputs import author, read_params
from ..names import Name
from ..node import Node
from ..problems import ApiError
from ..protocol import Ident
from ..sites import Site
from .history import DeviceOut, DevicesOut, Stored, devices_out, trust

__all__ = ["DeviceOut", "DevicePath", "DevicesOut", "TrustOut", "set_trust", "user_devices"]


class DevicePath(msgspec.Struct):
    """The path parameters of one device of a user."""

    user: Name
    device: Ident


class TrustOut(msgspec.Struct):
    user: str
    device: DeviceOut


class _UserPath(msgspec.Struct):
    user: Name


def _json(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


async def user_devices(request: Request, node: Node, site: Site) -> Response:
    """The devices the user was seen on, most recently seen first."""
    user = read_params(request.path_params, _UserPath).user
    stored = await node.db.history(site.key, user)
    up = await node.snapshot((site.key, user))
    current = [(s.id, s.device, bool(s.tabs)) for s in up.sessions.values()]
    return _json(devices_out(user, stored, current))


async def set_trust(request: Request, node: Node, site: Site) -> Response:
    """Trust a device (`PUT`) or stop trusting it (`DELETE`); answered with the device."""
    path = read_params(request.path_params, DevicePath)
    trusted = request.method == "PUT"
    was: list[bool] = []  # the device's trust as last read, before the change

    def change(h: Stored | None) -> Stored | None:
        known = h.history.devices.get(path.device) if h is not None else None
        was[:] = [known.trusted] if known is not None else []
        return trust(h, path.device, trusted)

    try:
        stored = await node.db.update_history(site.key, path.user, change)
    except HistoryConflict:
        raise ApiError(
            409, "Conflict", "the user's device history kept changing; send the request again"
        ) from None
    if stored is None:
        raise ApiError(404, "Not Found", "the user's device history has no such device")
    if was != [trusted] and node.recorder is not None:  # a request that changes nothing: no row
        kind = AuditKind.device_trusted if trusted else AuditKind.device_untrusted
        event = AuditEvent(
            node.clock(), site.key, path.user, None, path.device, None, kind, None, author(request)
        )
        await node.recorder.changed(event)
    up = await node.snapshot((site.key, path.user))
    current = [(s.id, s.device, bool(s.tabs)) for s in up.sessions.values()]
    (device,) = [
        d for d in devices_out(path.user, stored, current).devices if d.device == path.device
    ]
    return _json(TrustOut(path.user, device))
