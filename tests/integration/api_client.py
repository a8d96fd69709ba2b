"""Helpers for talking to a test server's REST API and signing tokens."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import jwt

from tests.helpers import Server, scaled


def api(server: Server, site: dict[str, Any]) -> httpx.AsyncClient:
    """An API client authenticated with the site's secret key."""
    return httpx.AsyncClient(
        base_url=server.http + "/api/v1",
        headers={"Authorization": f"Bearer {site['secret']}"},
        timeout=scaled(10),
    )


def identity_token(site: dict[str, Any], sub: str, **claims: Any) -> str:
    """An HS256 identity token signed with the site's identity secret, valid for 5 minutes.

    Its issuer is the site key, what a site without its own `identity_issuer` expects.
    """
    now = int(time.time())
    payload = {"sub": sub, "aud": site["key"], "iss": site["key"], "iat": now, "exp": now + 300}
    payload.update(claims)
    return jwt.encode(payload, str(site["identity_secret"]), algorithm="HS256")


def logout_token(provider: dict[str, Any], **claims: Any) -> str:
    """A back-channel logout token of the `provider` fixture, with a fresh jti."""
    now = int(time.time())
    payload = {
        "iss": provider["issuer"],
        "aud": provider["client"],
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_hex(8),
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        **claims,
    }
    return jwt.encode(
        payload, provider["key"], algorithm="RS256", headers={"kid": "k1", "typ": "logout+jwt"}
    )
