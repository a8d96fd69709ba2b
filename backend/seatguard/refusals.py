"""Hellos refused because a site is set up wrong, told in the server's log.

A wrong site key, a page origin the site does not allow, or an identity token missing or
refused leaves the page usable without Seatguard: the SDK says so in the page's console,
and the server in its log, so that whoever set the site up finds out from either side.
Each line names the cause, the site key (public: it is in every page) and the page's
origin, never the token or a secret. Anyone can send such hellos, so each cause passes at
most once per interval (`RateLog`), the ones held back counted in the next line.
"""

from __future__ import annotations

import logging

from .errors import SeatguardError, close_code
from .protocol import CloseCode
from .ratelog import RateLog

__all__ = ["HINTS", "log_refused"]

log = logging.getLogger("seatguard")

HINTS: dict[CloseCode, str] = {
    CloseCode.unknown_site: "check the site key the page passes to Seatguard.load()",
    CloseCode.origin_not_allowed: "allow it: seatguard site update KEY --origin ... (each origin)",
    CloseCode.identity_required: "pass load() a token your backend signs",
    CloseCode.identity_invalid: "check the site's identity settings and its backend's tokens",
}
"""The causes that are a site's misconfiguration, and what to look at for each."""
_LINES = {code: RateLog(log) for code in HINTS}
_LONGEST = 200
"""Characters of a site key, origin or message the line keeps (a client wrote them)."""


def log_refused(error: SeatguardError, site: str, origin: str | None) -> None:
    """Log a hello refused with `error`, if its cause is a misconfiguration (see `HINTS`)."""
    code = close_code(error)
    line = _LINES.get(code)
    if line is not None:
        line(
            "refused a hello for site %s from origin %s: %s (%d %s); %s",
            _short(site),
            _short(origin),
            _cut(str(error)),  # the error's own text, whose client values are quoted
            code,
            code.name,
            HINTS[code],
        )


def _short(text: str | None) -> str:
    """A client's `text`, quoted with its control characters escaped, and cut."""
    return "(none)" if text is None else repr(_cut(text))


def _cut(text: str) -> str:
    return text if len(text) <= _LONGEST else text[:_LONGEST] + "…"
