"""A site set up wrong is told in the server's log: hellos refused for a wrong site key, an
origin the site does not allow, or an identity token missing or refused, one line per cause
at most every 10 s, naming the site key and origin and never the token or a secret."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import jwt
import pytest

from tests.helpers import Server, scaled, start_server
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab, ident

pytestmark = pytest.mark.anyio

PAGE = "https://shop.example"


async def refused(
    server: Server, site: str, origin: str, fields: dict[str, str], browser: Browser | None = None
) -> int:
    """Say a hello (of `browser`, or a new one) from a page of `origin`; the close code it
    gets (an error frame first)."""
    browser = browser or Browser("")
    t = Tab(await Tab.connect(server.ws, origin), browser, ident())
    await t.send({"t": "hello", "v": 1, "site": site, "session": browser.session,
                  "tab": t.tab, "device": browser.device, **fields})  # fmt: skip
    frame = await t.recv()
    assert frame["t"] == "error", frame
    code, _, _ = await t.closed()
    return code


async def log_lines(server: Server, containing: str, count: int) -> list[str]:
    """The server log's lines with `containing`, once there are `count` of them."""
    with anyio.fail_after(scaled(5)):
        while True:
            lines = [ln for ln in server.log.read_text().splitlines() if containing in ln]
            if len(lines) >= count:
                return lines
            await anyio.sleep(0.05)


async def test_each_misconfiguration_is_logged_once_per_interval(server: Server) -> None:
    shop = server.create_site("--name", "Shop", "--origin", PAGE)["key"]
    strict = server.create_site("--name", "Strict", "--origin", "*", "--require-identity")
    forged = jwt.encode({"sub": "u1", "iat": int(time.time())}, "not-the-secret" * 4, "HS256")
    causes = [
        ("pk_no_such_site", PAGE, {"user": "u1"}, 4003),
        (shop, "https://evil.example", {"user": "u1"}, 4004),
        (strict["key"], PAGE, {"user": "u1"}, 4012),
        (strict["key"], PAGE, {"token": forged}, 4013),
    ]
    for site, origin, fields, code in causes:
        for _ in range(3):  # the second and third within the interval: held back
            assert await refused(server, site, origin, fields) == code
    lines = await log_lines(server, "refused a hello", 4)
    assert len(lines) == 4, lines
    unknown, origin, required, invalid = lines
    assert (
        "refused a hello for site 'pk_no_such_site' from origin 'https://shop.example': "
        "unknown site key 'pk_no_such_site' (4003 unknown_site); check the site key the page "
        "passes to Seatguard.load()"
    ) in unknown
    assert f"for site {shop!r} from origin 'https://evil.example'" in origin
    assert "(4004 origin_not_allowed); allow it: seatguard site update" in origin
    assert f"for site {strict['key']!r}" in required and "(4012 identity_required)" in required
    assert f"for site {strict['key']!r}" in invalid and "(4013 identity_invalid)" in invalid
    log = server.log.read_text()
    assert forged not in log and forged.split(".")[2] not in log
    assert str(strict["secret"]) not in log and str(strict["identity_secret"]) not in log


@pytest.fixture
def fresh(tmp_path: Path, server_env: dict[str, str]) -> Iterator[Server]:
    """A server of the test's own, whose log lines no other test held back."""
    s = start_server(tmp_path, "serve", server_env)
    yield s
    s.stop()


async def test_the_line_keeps_a_clients_text_short(fresh: Server) -> None:
    origin = "https://" + "a" * 300 + ".example"
    assert await refused(fresh, "pk_long_origin", origin, {"user": "u1"}) == 4003
    (line,) = await log_lines(fresh, "pk_long_origin", 1)
    assert "'https://" + "a" * 192 + "…'" in line and "a" * 193 not in line


async def test_a_revoked_session_is_not_a_misconfiguration(server: Server) -> None:
    site = server.create_site("--name", "Revoking", "--origin", PAGE)
    browser = Browser("u-" + ident())
    await Tab.open(server.ws, site["key"], browser, origin=PAGE)
    async with api(server, site) as client:
        r = await client.delete(f"/users/{browser.user}/sessions/{browser.session}")
        assert r.status_code == 200, r.text
    assert await refused(server, site["key"], PAGE, {"user": browser.user}, browser) == 4010
    assert not [ln for ln in server.log.read_text().splitlines() if site["key"] in ln]
