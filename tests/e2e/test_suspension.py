"""A suspension in real Chromium through the demo: the open page shows its own overlay."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Device, wait_state, watch_url
from tests.helpers import Server, scaled, seatguard

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"


def test_a_suspended_users_open_page_shows_the_suspended_overlay_until_lifted(
    demo: Server, device: Device
) -> None:
    site = json.loads(  # a secret key of the test's own: the demo's cannot be read back
        seatguard(
            "site", "rotate-secret", "pk_demo_acme_stream", "--overlap", "0", "--db", str(demo.db)
        )
    )
    auth = {"Authorization": f"Bearer {site['secret']}"}
    u = "e2e-" + secrets.token_hex(4)
    page = device().new_page()
    page.goto(watch_url(demo, u))
    wait_state(page, "admitted")
    page.evaluate("window.__notReloaded = true")
    r = httpx.post(
        f"{demo.http}/api/v1/users/{u}/suspension",
        json={"reason": "shared the account"},
        headers=auth,
        timeout=scaled(10),
    )
    assert r.status_code == 201, r.text
    wait_state(page, "suspended", within=3)
    expect(page.locator(OVERLAY)).to_be_visible()
    expect(page.locator(f"{OVERLAY} .seatguard-title")).to_have_text("This account is suspended")
    assert page.evaluate("window.__notReloaded") is True
    # A reload is refused while the suspension lasts (the SDK does not retry 4015).
    page.reload()
    wait_state(page, "suspended")
    expect(page.locator(OVERLAY)).to_be_visible()
    r = httpx.delete(f"{demo.http}/api/v1/users/{u}/suspension", headers=auth, timeout=10)
    assert r.status_code == 204
    page.reload()
    wait_state(page, "admitted")
    expect(page.locator(OVERLAY)).to_have_count(0)
