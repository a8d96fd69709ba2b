"""End-to-end in Chromium: the overlay's actions on the demo site (Add a seat, Sign out here,
Sign in again), the action event a site counts, the overlay drawn again when the page removes
it, and the opaque backdrop."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import Device, opened, user, wait_state, watch_url
from tests.helpers import Server, scaled

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"


def counted(page: Page) -> None:
    """Keeps the page's `action` events in sessionStorage, where they outlive a navigation."""
    page.evaluate(
        """() => client.on('action', (e) => {
          const seen = JSON.parse(sessionStorage.getItem('actions') || '[]');
          sessionStorage.setItem('actions', JSON.stringify([...seen, e]));
        })"""
    )


def actions(page: Page) -> list[dict[str, str]]:
    return list(json.loads(page.evaluate("sessionStorage.getItem('actions') || '[]'")))


def test_a_blocked_browser_adds_a_seat_through_the_sites_upgrade_link(
    demo: Server, device: Device
) -> None:
    name = user()
    url = watch_url(demo, name)
    opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    counted(second)
    row = second.locator(f"{OVERLAY} .seatguard-actions > *")
    expect(row).to_have_text(["Add a seat", "Sign out here"])
    upgrade = second.locator(f"{OVERLAY} [data-action=upgrade]")
    expect(upgrade).to_be_focused()
    assert "limit=2" in str(upgrade.get_attribute("href"))
    upgrade.click()
    # The demo's sign-in page, with one seat more in the plan: signing in again gets a seat.
    second.wait_for_url("**/?user=*")
    expect(second.locator("input[name=limit]")).to_have_value("2")
    assert actions(second) == [{"action": "upgrade", "reason": "limit"}]
    second.click("button[type=submit]")
    wait_state(second, "admitted")


def test_sign_out_here_ends_this_browser_and_opens_the_sites_sign_out_page(
    demo: Server, device: Device
) -> None:
    name = user()
    url = watch_url(demo, name)
    first = opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    counted(second)
    sessions = "n => fetch('/demo/sessions?user=' + n).then(r => r.json()).then(l => l.length)"
    assert first.evaluate(sessions, name) == 2
    second.locator(f"{OVERLAY} [data-action=sign_out]").click()
    second.wait_for_url("**/?user=*")
    assert actions(second) == [{"action": "sign_out", "reason": "limit"}]
    # The browser session ended on the server: only the first browser is left.
    first.wait_for_function(
        f"() => ({sessions})({json.dumps(name)}).then(n => n === 1)", timeout=scaled(10) * 1000
    )


def test_a_revoked_browser_signs_in_again_on_the_sites_sign_in_page(
    demo: Server, device: Device
) -> None:
    name = user()
    page = opened(device().new_page(), watch_url(demo, name), "admitted")
    page.evaluate("n => fetch('/demo/revoke?user=' + n, { method: 'POST' })", name)
    wait_state(page, "revoked")
    expect(page.locator(f"{OVERLAY} .seatguard-title")).to_have_text("You have been signed out")
    sign_in = page.locator(f"{OVERLAY} [data-action=sign_in]")
    expect(sign_in).to_have_text("Sign in again")
    expect(sign_in).to_be_focused()
    sign_in.click()
    page.wait_for_url(f"{demo.http}/?user={name}")
    expect(page.locator("input[name=user]")).to_have_value(name)


def test_the_overlay_comes_back_when_the_page_removes_it(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    expect(second.locator(OVERLAY)).to_be_visible()
    for removal in (
        "document.getElementById('seatguard-overlay').remove()",
        "document.querySelector('.seatguard').remove()",
        "document.getElementById('seatguard-style').remove()",
        "document.querySelectorAll('[inert]').forEach((el) => { el.inert = false; })",
    ):
        second.evaluate(removal)
        expect(second.locator(OVERLAY)).to_be_visible(timeout=scaled(1) * 1000)
        expect(second.locator(".seatguard")).to_have_css("position", "fixed")
        expect(second.locator("main")).to_have_attribute("inert", "")
    # The page's own Sign out beneath stays out of reach.
    second.locator("#sign-out").click(force=True)
    assert second.url.startswith(url)


# The demo's stub-and-queue snippet, run before the page's own, that adds `backdrop: 'opaque'`
# to the page's load() options.
OPAQUE = """window.Seatguard = { q: [], load(k, o) {
  const c = { q: [], state: 'connecting' };
  for (const m of ['on', 'logout', 'destroy']) c[m] = (...args) => {
    const h = {};
    c.q.push([m, args, h]);
    return () => (h.off ? h.off() : (h.x = 1));
  };
  window.Seatguard.q.push([k, { ...o, backdrop: 'opaque' }, c]);
  return c;
} };"""


def test_an_opaque_backdrop_hides_the_page(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    opened(device().new_page(), url, "admitted")
    ctx = device()
    ctx.add_init_script(OPAQUE)
    second = opened(ctx.new_page(), url, "blocked")
    expect(second.locator(".seatguard")).to_have_css("background-color", "rgb(17, 24, 39)")
    # The default backdrop lets the page show through, at 75 %.
    third = opened(device().new_page(), url, "blocked")
    expect(third.locator(".seatguard")).to_have_css("background-color", "rgba(17, 24, 39, 0.75)")
