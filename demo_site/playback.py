"""The demo's content route: Acme Stream plays only for a browser that holds a seat.

This is what a site's backend does (see the README, "Enforce on your backend"): the page
sends its seat token in the `Seatguard-Seat` header; the route checks it offline with
`seatguard.verify` against the server's published keys, and, for a token older than
`CHECK_AFTER`, also asks the server whether its session holds a seat right now
(`POST /api/v1/seats/check` with the site's secret key). A browser that removed the
overlay, or blocked the SDK, has no token; one revoked a moment ago still has an
unexpired token, which the check refuses.

Why one second: a tab gets its token the moment its session is seated and drops it the
moment it is told otherwise, within milliseconds, so a token younger than a second says
what the check would. An older one may be a leftover of a session that lost its seat
since, so it is checked: a revoked or blocked browser's requests fail within a second,
whatever its token's expiry. With two-minute tokens nearly every request is checked; a
busier site would cache the check's answer for that second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from seatguard.seat import HEADER
from seatguard.seat.routes import JWKS_PATH
from seatguard.settings import Settings
from seatguard.verify import InvalidSeatToken, KeysUnavailable, SeatVerifier

__all__ = ["CHECK_AFTER", "CHECK_PATH", "Playback"]

CHECK_AFTER = 1.0
"""Seconds after its `iat` from which a token is also checked with the server."""

CHECK_PATH = "/api/v1/seats/check"

TITLE = "The Long Night Train"

NO_STORE = {"Cache-Control": "no-store"}

_WHY = {
    "no_token": "This browser holds no seat: no seat token came with the request.",
    "blocked": "Your account is in use in another browser: this one waits for a seat.",
    "revoked": "This browser's session was revoked: sign in again.",
    "ended": "This browser's session has ended: sign in again.",
    "expired": "The seat token has expired: this browser no longer holds a seat.",
    "invalid": "The seat token was refused.",
    "unavailable": "The seat could not be checked just now: try again in a moment.",
    "no_secret": "The demo has no secret key to check seats with.",
    "secret_refused": "The server refused the demo's secret key (rotated since the demo "
    "started, or by another demo node): restart the demo to check seats.",
}
"""What the player says for each reason it refuses to play."""


def local_url(settings: Settings) -> str:
    """The server's own address, for the demo's backend to reach it (never the request's
    Host header, which the browser chooses)."""
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


class Playback:
    """The route `GET /demo/play` and the clients it checks seats with; `aclose()` closes
    them."""

    def __init__(
        self,
        settings: Settings,
        site_key: str,
        secret: str | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        base = local_url(settings)
        self.site_key = site_key
        self.secret = secret  # the site's secret key; None: nothing can be checked
        self.check_url = base + CHECK_PATH
        self.verifier = SeatVerifier(base + JWKS_PATH, settings.issuer, site_key, clock=clock)
        self.http = httpx.AsyncClient(timeout=5.0)
        self._clock = clock

    async def aclose(self) -> None:
        await self.verifier.aclose()
        await self.http.aclose()

    async def play(self, request: Request) -> Response:
        """The stream for a browser that holds a seat; else 401, 403 or 503, and why."""
        tokens = request.headers.getlist(HEADER)
        if len(tokens) != 1 or not tokens[0]:
            return _refused(401, "no_token")
        try:
            seat = await self.verifier.verify(tokens[0])
        except InvalidSeatToken as exc:
            return _refused(401, "invalid", str(exc))
        except KeysUnavailable:
            return _refused(503, "unavailable")
        if self._clock() - seat.issued_at >= CHECK_AFTER:
            refusal = await self._check(tokens[0])
            if refusal is not None:
                return refusal
        return JSONResponse(
            {"playing": True, "title": TITLE, "user": seat.user, "session": seat.session},
            headers=NO_STORE,
        )

    async def _check(self, token: str) -> Response | None:
        """None if the server says the token's session holds a seat now; else the refusal."""
        if self.secret is None:
            return _refused(503, "no_secret")
        try:
            r = await self.http.post(
                self.check_url,
                json={"token": token},
                headers={"Authorization": f"Bearer {self.secret}"},
            )
        except httpx.HTTPError:
            return _refused(503, "unavailable")
        if r.status_code == 401:
            return _refused(503, "secret_refused")
        if r.status_code != 200:
            return _refused(503, "unavailable")
        answer: dict[str, Any] = r.json()
        if answer.get("active") is True:
            return None
        reason = str(answer.get("reason", "invalid"))
        detail = answer.get("detail")
        return _refused(403, reason if reason in _WHY else "invalid", detail)


def _refused(status: int, reason: str, detail: object = None) -> JSONResponse:
    message = _WHY[reason]
    if reason == "invalid" and isinstance(detail, str) and detail:
        message = f"The seat token was refused: {detail}."
    return JSONResponse({"playing": False, "reason": reason, "message": message}, status, NO_STORE)
