"""Acme Stream in real Chromium: one browser context per device."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import Device, seat_state, user, wait_state, watch_url
from tests.helpers import Server, scaled

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"


def open_watch(ctx_page: Page, url: str, state: str) -> Page:
    ctx_page.goto(url)
    wait_state(ctx_page, state)
    return ctx_page


def test_second_browser_is_blocked_with_an_overlay_and_first_is_not(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user(), mode="concurrence", limit=1, policy="block-new")
    first = open_watch(device().new_page(), url, "admitted")
    second = open_watch(device().new_page(), url, "blocked")

    overlay = second.locator(OVERLAY)
    expect(overlay).to_be_visible()
    expect(overlay).to_have_attribute("role", "alertdialog")
    expect(overlay).to_have_attribute("aria-modal", "true")
    expect(second.locator(f"{OVERLAY} .seatguard-title")).to_contain_text("in use")
    expect(first.locator(OVERLAY)).to_have_count(0)
    # The content beneath the overlay is inert.
    assert second.evaluate("document.querySelector('main').inert") is True
    assert seat_state(first) == "admitted"


def test_closing_the_first_browser_unblocks_the_second_without_a_reload(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user())
    first_ctx = device()
    open_watch(first_ctx.new_page(), url, "admitted")
    second = open_watch(device().new_page(), url, "blocked")
    second.evaluate("window.__notReloaded = true")
    first_ctx.close()  # within the unload grace (1 s), not the reload grace (5 s)
    wait_state(second, "admitted", within=4)
    expect(second.locator(OVERLAY)).to_be_hidden()
    assert second.evaluate("window.__notReloaded") is True
    assert second.evaluate("document.querySelector('main').inert") is False


def test_two_tabs_of_one_browser_never_block_each_other(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    ctx = device()
    tab1 = open_watch(ctx.new_page(), url, "admitted")
    tab2 = open_watch(ctx.new_page(), url, "admitted")
    tab2.wait_for_timeout(scaled(1) * 1000)
    assert seat_state(tab1) == seat_state(tab2) == "admitted"
    expect(tab1.locator(OVERLAY)).to_have_count(0)
    expect(tab2.locator(OVERLAY)).to_have_count(0)


def test_a_reload_keeps_the_seat(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    first = open_watch(device().new_page(), url, "admitted")
    second = open_watch(device().new_page(), url, "blocked")
    for _ in range(3):
        first.reload()
        wait_state(first, "admitted")
    # The waiting browser never got the seat, not even for a moment.
    second.wait_for_timeout(scaled(1.5) * 1000)
    assert seat_state(second) == "blocked"
    events = second.locator("#sg-events").inner_text()
    assert "unblocked" not in events


def test_device_limit_blocks_a_third_device_until_one_signs_out(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user(), mode="device-limit", limit=2)
    laptop = open_watch(device().new_page(), url, "admitted")
    phone = open_watch(device("Pixel 7").new_page(), url, "admitted")
    tablet = open_watch(device("iPad Pro 11").new_page(), url, "blocked")
    expect(tablet.locator(OVERLAY)).to_be_visible()
    # A second browser profile on the laptop is the same device: admitted too.
    again = open_watch(device().new_page(), url, "admitted")
    assert seat_state(again) == "admitted"

    # Signing out frees the phone's seat at once, not after the 5 s reload grace that its
    # navigation to the home page would start.
    phone.click("#sign-out")
    wait_state(tablet, "admitted", within=3)
    expect(tablet.locator(OVERLAY)).to_be_hidden()
    assert seat_state(laptop) == "admitted"


def test_focus_stays_inside_the_overlay_and_escape_does_not_close_it(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user())
    open_watch(device().new_page(), url, "admitted")
    page = open_watch(device().new_page(), url, "blocked")
    overlay = page.locator(OVERLAY)
    expect(overlay).to_be_visible()
    inside = "el => el.contains(document.activeElement)"
    assert overlay.evaluate(inside)
    for key in ["Tab", "Tab", "Shift+Tab", "Tab", "Tab", "Tab"]:
        page.keyboard.press(key)
        assert overlay.evaluate(inside), f"focus left the overlay after {key}"
    page.keyboard.press("Escape")
    expect(overlay).to_be_visible()
    # Clicks on the page beneath do nothing: the play button is inert.
    assert page.evaluate("document.getElementById('play').closest('[inert]') !== null")


def language_packs(page: Page) -> list[str]:
    """The language packs `page` asks for, as it asks."""
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/sdk/v1/lang/" in r.url else None)
    return urls


def test_overlay_speaks_the_browser_language(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    english = device(locale="en-US").new_page()
    english_packs = language_packs(english)
    open_watch(english, url, "admitted")
    page = device(locale="fr-FR").new_page()
    packs = language_packs(page)
    open_watch(page, url, "blocked")
    overlay = page.locator(OVERLAY)
    expect(overlay.locator(".seatguard-title")).to_have_text("Ce compte est utilisé ailleurs")
    expect(overlay.locator(".seatguard-text")).to_contain_text("1 navigateur à la fois")
    assert overlay.evaluate("el => el.contains(document.activeElement)")
    # The French pack came from the server that served the SDK; English needs none.
    assert packs == [demo.http + "/sdk/v1/lang/fr.json"]
    assert english_packs == []


def test_sign_in_form_leads_to_the_watch_page(demo: Server, device: Device) -> None:
    page = device().new_page()
    page.goto(demo.http + "/")
    page.fill("input[name=user]", user())
    page.select_option("select[name=mode]", "device-limit")
    page.fill("input[name=limit]", "2")
    page.click("button[type=submit]")
    wait_state(page, "admitted")
    expect(page.locator("#sg-plan")).to_contain_text("device-limit, limit 2")


def test_the_demo_refuses_a_bad_plan_clearly(demo: Server, device: Device) -> None:
    page = device().new_page()
    response = page.goto(demo.http + "/watch?user=bob&limit=0")
    assert response is not None and response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("Limit must be")


def csp_violations(page: Page) -> list[str]:
    """The Content-Security-Policy violations `page` reports, as they come."""
    found: list[str] = []
    page.on(
        "console", lambda m: found.append(m.text) if "Content Security Policy" in m.text else None
    )
    return found


def test_the_demo_runs_under_its_content_security_policy(demo: Server, device: Device) -> None:
    url = watch_url(demo, user())
    first = device().new_page()
    first_violations = csp_violations(first)
    open_watch(first, url, "admitted")
    second = device().new_page()
    second_violations = csp_violations(second)
    open_watch(second, url, "blocked")
    # The overlay's own stylesheet applies: the dialog covers the page.
    overlay = second.locator(".seatguard")
    expect(overlay).to_be_visible()
    assert overlay.evaluate("el => getComputedStyle(el).position") == "fixed"
    # The panel's fetches and its revoke (a same-origin POST, Origin checked) work.
    expect(first.locator("#sg-browsers li")).to_have_count(2)
    first.click("#revoke-all")
    wait_state(second, "revoked")
    wait_state(first, "revoked")
    assert first_violations == [] and second_violations == []


def test_another_page_cannot_frame_the_demo(demo: Server, device: Device) -> None:
    page = device().new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.set_content(
        f'<iframe src="{demo.http}/"></iframe>'  # the sign-in form: framed, it could be clickjacked
        f'<iframe src="{watch_url(demo, user())}"></iframe>'
    )
    page.wait_for_timeout(scaled(1) * 1000)
    assert any("frame-ancestors 'none'" in text for text in messages), messages
    for frame in page.frames[1:]:
        assert "Acme" not in frame.content(), frame.url
