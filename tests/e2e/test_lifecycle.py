"""Session control in real Chromium through the demo: policies, takeover, revocation, idle."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Device, opened, seat_state, user, wait_state, watch_url
from tests.helpers import Server, scaled, seatguard

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"
USE_HERE = f"{OVERLAY} .seatguard-takeover"


def test_evict_oldest_moves_the_overlay_to_the_older_browser_and_use_here_takes_it_back(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user(), policy="evict-oldest")
    older = opened(device().new_page(), url, "admitted")
    newer = opened(device().new_page(), url, "admitted")
    # The newcomer got the seat: the overlay moved to the older browser, which is told why.
    wait_state(older, "blocked")
    expect(older.locator(OVERLAY)).to_be_visible()
    expect(older.locator(f"{OVERLAY} .seatguard-title")).to_contain_text("another browser")
    expect(newer.locator(OVERLAY)).to_have_count(0)
    # "Use here" on the older browser takes the seat back; the newer one is blocked.
    button = older.locator(USE_HERE)
    expect(button).to_be_focused()
    button.click()
    wait_state(older, "admitted")
    wait_state(newer, "blocked")
    expect(older.locator(OVERLAY)).to_be_hidden()
    expect(newer.locator(USE_HERE)).to_be_visible()


def test_challenge_offers_continue_here(demo: Server, device: Device) -> None:
    url = watch_url(demo, user(), policy="challenge")
    first = opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    button = second.locator(USE_HERE)
    expect(button).to_contain_text("Continue here")
    button.click()
    wait_state(second, "admitted")
    wait_state(first, "blocked")


def test_block_new_offers_no_use_here(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    expect(second.locator(OVERLAY)).to_be_visible()
    expect(second.locator(USE_HERE)).to_have_count(0)


def test_revocation_through_the_api_ends_a_live_page_without_a_reload(
    demo: Server, device: Device
) -> None:
    site = json.loads(  # a secret key of the test's own: the demo's cannot be read back
        seatguard(
            "site", "rotate-secret", "pk_demo_acme_stream", "--overlap", "0", "--db", str(demo.db)
        )
    )
    u = user()
    page = opened(device().new_page(), watch_url(demo, u), "admitted")
    page.evaluate("window.__notReloaded = true")
    r = httpx.post(
        f"{demo.http}/api/v1/users/{u}/revoke",
        json={},
        headers={"Authorization": f"Bearer {site['secret']}"},
        timeout=scaled(10),
    )
    assert r.status_code == 200 and len(r.json()["revoked"]) == 1
    wait_state(page, "revoked", within=3)
    expect(page.locator(OVERLAY)).to_be_visible()
    expect(page.locator(OVERLAY)).to_contain_text("signed out")
    assert page.evaluate("window.__notReloaded") is True
    # A reload starts a new browser session (the site would ask for a sign-in first).
    page.reload()
    wait_state(page, "admitted")


def test_the_demo_panel_revokes_another_browser(demo: Server, device: Device) -> None:
    url = watch_url(demo, user(), limit=2)
    mine = opened(device().new_page(), url, "admitted")
    other = opened(device().new_page(), url, "admitted")
    session = other.evaluate("localStorage.getItem('seatguard:session')")
    row = mine.locator(f"#sg-browsers li[data-session='{session}']")
    expect(row).to_have_count(1, timeout=scaled(5) * 1000)
    row.locator("button.revoke").click()
    wait_state(other, "revoked")
    expect(other.locator(OVERLAY)).to_contain_text("signed out")
    assert seat_state(mine) == "admitted"


def test_idle_timeout_ends_an_untouched_session_and_spares_an_active_one(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user(), limit=2, idle=2)
    active = opened(device().new_page(), url, "admitted")
    untouched = opened(device().new_page(), url, "admitted")
    # Timeline: the active page moves its mouse every 300 ms for 4.5 s; the other is left alone.
    for i in range(15):
        active.mouse.move(100 + (i % 2) * 50, 200)
        active.keyboard.press("Shift")
        active.wait_for_timeout(300)
    wait_state(untouched, "expired", within=3)
    expect(untouched.locator(OVERLAY)).to_contain_text("inactivity")
    assert seat_state(active) == "admitted"
