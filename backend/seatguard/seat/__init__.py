"""Seat tokens: the keys that sign them and the tokens themselves.

Modules: `keyset` (the ES256 key set, its rotation and what it publishes: pure), `source`
(where the keys are kept, never the database, and reloading a changed key file), `tokens`
(issuing a token), `routes` (`/.well-known/jwks.json`), `check` (`POST /api/v1/seats/check`,
the live answer for a token). Site backends verify tokens offline with `seatguard.verify`.
"""

from .keyset import DEFAULT_TTL, MAX_TTL, MIN_TTL, SeatKey, SeatKeySet
from .source import SeatKeyRing, load_seat_keys
from .tokens import HEADER, TOKEN_TYPE, SeatToken, SeatTokens, Wanted

__all__ = [
    "DEFAULT_TTL",
    "HEADER",
    "MAX_TTL",
    "MIN_TTL",
    "TOKEN_TYPE",
    "SeatKey",
    "SeatKeyRing",
    "SeatKeySet",
    "SeatToken",
    "SeatTokens",
    "Wanted",
    "load_seat_keys",
]
