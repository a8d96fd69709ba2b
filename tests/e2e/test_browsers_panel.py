"""The watch page's "Your browsers" panel in Chromium: each browser by its name and system,
this one marked; the page loads without a failed request (its icon included) or a console
error, under its Content-Security-Policy."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Device, user, wait_state, watch_url, watched
from tests.helpers import Server, scaled

pytestmark = pytest.mark.e2e

PANEL = "#sg-browsers li"


def test_the_panel_names_each_browser_and_marks_this_one(demo: Server, device: Device) -> None:
    url = watch_url(demo, user(), mode="concurrence", limit=2)
    laptop = device().new_page()
    failed, errors = watched(laptop)
    laptop.goto(url)
    wait_state(laptop, "admitted")
    phone = device("iPhone 13").new_page()
    phone.goto(url)
    wait_state(phone, "admitted")

    for page in (laptop, phone):
        expect(page.locator(PANEL)).to_have_count(2)
        expect(page.locator(PANEL + "[data-this]")).to_have_count(1)
    computer = re.compile(
        r"^This browser: HeadlessChrome \d+ on Linux \(computer\) — admitted, 1 tab"
    )
    iphone = re.compile(r"^Mobile Safari \d+ on iOS \(mobile\) — admitted, 1 tab")
    expect(laptop.locator(PANEL + "[data-this]")).to_have_text(computer)
    expect(laptop.locator(PANEL + ":not([data-this])")).to_have_text(iphone)
    expect(phone.locator(PANEL + "[data-this]")).to_have_text(
        re.compile(r"^This browser: Mobile Safari \d+ on iOS \(mobile\)")
    )
    # The marked one is the page's own session, whose id the SDK keeps.
    mine = laptop.evaluate("localStorage.getItem('seatguard:session')")
    expect(laptop.locator(PANEL + "[data-this]")).to_have_attribute("data-session", mine)
    # Ids are no longer what a person reads; revoking still works by them.
    assert mine[:6] not in str(laptop.locator(PANEL + "[data-this]").text_content())
    phone.locator(PANEL + "[data-this] button.revoke").click()
    wait_state(phone, "revoked")
    expect(laptop.locator(PANEL)).to_have_count(1)
    assert failed == [] and errors == []


def test_the_icon_is_served_where_browsers_look(demo: Server) -> None:
    with httpx.Client(base_url=demo.http, timeout=scaled(10)) as client:
        for path in ("/favicon.ico", "/demo-static/favicon.svg"):
            r = client.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith("image/svg+xml")
            assert r.content.startswith(b"<svg")
        page = client.get("/").text
    assert '<link rel="icon" href="/demo-static/favicon.svg" type="image/svg+xml">' in page
