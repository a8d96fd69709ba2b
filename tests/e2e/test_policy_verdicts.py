"""A policy tried on the demo, in real Chromium: a second computer elsewhere is asked to
sign in again, a phone is not, and the first computer's checks panel says why.

The demo runs with a GeoIP database the test writes (`tests.geodb`: 127.0.1.x in Paris,
127.0.2.x in Berlin, 127.0.3.x in New York). Every browser connects from 127.0.0.1, a
trusted proxy by default, so each context says where it is with `X-Forwarded-For`, which
Chromium sends with the page's requests and the SDK's WebSocket upgrade alike: the panel
showing each session's own address is what proves the upgrade carried it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.helpers import PLAYBACK, Device, play, play_past_the_overlay, wait_state, watch_url
from tests.geodb import address, write_city_db
from tests.helpers import Server, scaled, start_server

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"
RULE = "second-computer-elsewhere"


@pytest.fixture(scope="module")
def geo_demo(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("geo-demo")
    env = {
        **server_env,
        "SEATGUARD_SESSION_TIMEOUT": str(scaled(3.0)),
        "SEATGUARD_GEOIP_DB": str(write_city_db(tmp / "cities.mmdb")),
        "SEATGUARD_GEOIP_LOCAL": "1",
    }
    s = start_server(tmp, "demo", env)
    yield s
    s.stop()


def located(device: Device, city: str, preset: str | None = None) -> BrowserContext:
    """A browser context whose requests come, as the server sees them, from `city`."""
    return device(preset, extra_http_headers={"X-Forwarded-For": address(city)})


def session_of(page: Page) -> str:
    return str(page.evaluate("localStorage.getItem('seatguard:session')"))


def cell(session: str, name: str) -> str:
    """The checks panel's cell for `session` and `name` (a check, `seat` or `ip`)."""
    return f'#sg-checks td[data-session="{session}"][data-check="{name}"]'


def test_a_second_computer_elsewhere_is_challenged_and_a_phone_is_not(
    geo_demo: Server, device: Device
) -> None:
    user = "e2e-" + secrets.token_hex(4)
    url = watch_url(geo_demo, user, limit=3)
    # Laptop 1, in Paris, signs in and watches; then tries the policy through the form.
    laptop = located(device, "paris").new_page()
    laptop.goto(url)
    wait_state(laptop, "admitted")
    laptop.check('input[name="preset"][value="challenge-elsewhere"]')
    laptop.click("#sg-policy-form button[type=submit]")
    expect(laptop.locator("#sg-policy-status")).to_have_text("Applied: challenge-elsewhere.")
    expect(laptop.locator("#sg-policy")).to_contain_text(f'"name": "{RULE}"')
    assert "The Long Night Train" in play(laptop, "playing")

    # Laptop 2, a computer in Berlin, same user: challenged, held without a seat.
    second = located(device, "berlin").new_page()
    second.goto(url)
    wait_state(second, "blocked")
    expect(second.locator(f"{OVERLAY} .seatguard-title")).to_have_text(
        "This account is in use elsewhere"
    )
    expect(second.locator(f"{OVERLAY} .seatguard-text")).to_contain_text(
        "Sign in again to use it on this"
    )
    # Past the overlay (taken out, `inert` off), the player is still refused: no seat token.
    play_past_the_overlay(second)
    expect(second.locator(PLAYBACK)).to_have_attribute("data-state", "refused")
    expect(second.locator(PLAYBACK)).to_contain_text("holds no seat")

    # A phone in New York, same user: another device type, so no concurrent session.
    phone = located(device, "new-york", "iPhone 13").new_page()
    phone.goto(url)
    wait_state(phone, "admitted")
    expect(phone.locator(OVERLAY)).to_have_count(0)
    assert "The Long Night Train" in play(phone, "playing")

    # Laptop 1 still plays, and its panel says what each browser's checks are.
    assert "The Long Night Train" in play(laptop, "playing")
    mine, theirs, phones = session_of(laptop), session_of(second), session_of(phone)
    panel = laptop.locator("#sg-checks")
    expect(panel.locator(f'th[data-session="{mine}"]')).to_contain_text("(this browser)")
    for session, city, country in (
        (mine, "paris", "FR"),
        (theirs, "berlin", "DE"),
        (phones, "new-york", "US"),
    ):
        expect(laptop.locator(cell(session, "ip"))).to_have_text(address(city))
        expect(laptop.locator(cell(session, "ip_country"))).to_have_text(country)
    expect(laptop.locator(cell(mine, "concurrent_sessions"))).to_have_text("yes")
    expect(laptop.locator(cell(phones, "concurrent_sessions"))).to_have_text("no")
    expect(laptop.locator(cell(mine, "seat"))).to_have_text("holds a seat")
    expect(laptop.locator(cell(theirs, "seat"))).to_have_text(
        f"asked to sign in again (policy rule {RULE})"
    )
    expect(laptop.locator(cell(phones, "device_count"))).to_have_text("3: 2, 0, 1")
    # Recent verdicts: the stored evaluations, the second computer's challenge among them.
    held = laptop.locator(f'#sg-verdicts li[data-session="{theirs}"][data-verdict="challenge"]')
    expect(held.filter(has_text=f"hello: challenge by rule {RULE}")).to_have_count(1)
    expect(laptop.locator(f'#sg-verdicts li[data-session="{phones}"]').first).to_contain_text(
        "allowed (no rule matched)"
    )
