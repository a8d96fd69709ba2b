"""`GET /.well-known/jwks.json`: the public keys that verify seat tokens.

Cached by verifiers for `JWKS_MAX_AGE` seconds (a rotated key signs only after that, see
`keyset.SWITCH_DELAY`), and readable from any origin: it holds public keys only.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .keyset import JWKS_MAX_AGE
from .tokens import SeatTokens

__all__ = ["JWKS_PATH", "routes"]

JWKS_PATH = "/.well-known/jwks.json"
HEADERS = {
    "Cache-Control": f"public, max-age={JWKS_MAX_AGE}",
    "Access-Control-Allow-Origin": "*",
}


async def jwks(request: Request) -> Response:
    tokens: SeatTokens = request.app.state.seat_tokens
    body = msgspec.json.encode(tokens.jwks())
    return Response(body, media_type="application/jwk-set+json", headers=HEADERS)


def routes() -> list[BaseRoute]:
    return [Route(JWKS_PATH, jwks)]
