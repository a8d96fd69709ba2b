"""Seat tokens a real server gives its tabs verify against its own published keys; a
waiting browser gets none until it is seated."""

from __future__ import annotations

import secrets

import pytest

from seatguard.seat.routes import JWKS_PATH
from seatguard.verify import InvalidSeatToken, SeatVerifier
from tests.helpers import Server
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio


async def test_a_seated_tab_gets_a_token_that_verifies_and_a_waiting_one_gets_none(
    server: Server, site: str
) -> None:
    user = "user-" + secrets.token_hex(4)
    first, browser = Browser(user), Browser(user)
    a, welcome = await Tab.open(server.ws, site, first, org="acme", role="viewer")
    assert welcome["state"] == "admitted"
    seat = await a.seat()
    async with SeatVerifier(server.http + JWKS_PATH, server.http, site) as verifier:
        claims = await verifier.verify(seat["token"])
        assert (claims.site, claims.user, claims.session) == (site, user, first.session)
        assert (claims.device, claims.org, claims.role) == (first.device, "acme", "viewer")
        assert claims.expires_at == seat["exp"] == claims.issued_at + 120
        with pytest.raises(InvalidSeatToken):  # another site's verifier refuses it
            async with SeatVerifier(server.http + JWKS_PATH, server.http, "pk_other") as other:
                await other.verify(seat["token"])

        b, welcome = await Tab.open(server.ws, site, browser)
        assert welcome["state"] == "blocked"
        await b.expect_nothing(0.5)
        assert b.seats == []
        assert await a.bye("close") == 1000
        assert await b.recv() == {"t": "unblock"}
        claims = await verifier.verify((await b.seat())["token"])
        assert claims.session == browser.session
