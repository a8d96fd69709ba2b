"""Headers every HTTP answer gets, whichever route (or none) gave it: a pure ASGI middleware.

- `X-Content-Type-Options: nosniff` on every response, so that no browser reads a JSON or
  text answer as a script or a page;
- `Cache-Control: no-store` on every answer under `/api/` that says nothing of caching: they
  carry IP addresses, user agents and session ids, and so may their error answers;
- `WWW-Authenticate: Bearer` on a 401 that has no challenge of its own (RFC 6750; the API
  sends its own, with an `error` where one fits).

The app (`app.App`) puts it outside even Starlette's error middleware, so that 404, 405 and
500 answers get the headers too.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import API_PREFIX

__all__ = ["CHALLENGE", "SecurityHeaders"]

CHALLENGE = 'Bearer realm="seatguard"'
"""The plain RFC 6750 challenge of a 401."""


class SecurityHeaders:
    """Adds the headers above to every HTTP response of `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = str(scope["path"]).startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if private:
                    headers.setdefault("Cache-Control", "no-store")
                if message["status"] == 401:
                    headers.setdefault("WWW-Authenticate", CHALLENGE)
            await send(message)

        await self.app(scope, receive, send_with_headers)
