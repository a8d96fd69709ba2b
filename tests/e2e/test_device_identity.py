"""Device keys in real Chromium: each browser profile proves a key of its own, kept in
IndexedDB, so two profiles are two devices and one profile stays one device; two profiles
of one machine (the same fingerprint, address and platform) count as one."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from tests.e2e.helpers import Device, wait_state, watch_url
from tests.helpers import Server, scaled

pytestmark = pytest.mark.e2e


def sessions(demo: Server, user: str) -> dict[str, dict[str, Any]]:
    """The user's browser sessions, as the demo's panel reads them, by id."""
    r = httpx.get(f"{demo.http}/demo/sessions", params={"user": user}, timeout=scaled(10))
    return {s["id"]: s for s in r.json()}


def session_of(page: Page) -> str:
    return str(page.evaluate("localStorage.getItem('seatguard:session')"))


def test_two_profiles_are_two_devices_and_one_keeps_its_id(demo: Server, device: Device) -> None:
    user = "e2e-" + secrets.token_hex(4)
    url = watch_url(demo, user, mode="device-limit", limit=2)
    # Another screen: another fingerprint, so nothing merges the two profiles.
    first = device().new_page()
    second = device(screen={"width": 1920, "height": 1080}).new_page()
    for page in (first, second):
        page.goto(url)
        wait_state(page, "admitted")
    seen = sessions(demo, user)
    a, b = seen[session_of(first)], seen[session_of(second)]
    assert a["device_proof"] == b["device_proof"] == "verified"
    assert a["device"].startswith("dk_") and b["device"].startswith("dk_")
    assert len(a["device"]) == 46
    assert a["device"] != b["device"]

    first.reload()
    wait_state(first, "admitted")
    assert sessions(demo, user)[session_of(first)]["device"] == a["device"]

    # A new browser session in the same profile (its session id gone): the same device key.
    first.evaluate("localStorage.removeItem('seatguard:session')")
    first.reload()
    wait_state(first, "admitted")
    renewed = session_of(first)
    assert renewed != a["id"]
    assert sessions(demo, user)[renewed]["device"] == a["device"]


def test_two_profiles_of_one_machine_are_one_device_by_the_fingerprint(
    demo: Server, device: Device
) -> None:
    """Same screen and everything: the page's fingerprint agrees with the address and the
    platform the server sees, so the second profile joins the first one's device."""
    user = "e2e-" + secrets.token_hex(4)
    url = watch_url(demo, user, mode="device-limit", limit=1)
    first, second = device().new_page(), device().new_page()
    for page in (first, second):
        page.goto(url)
        wait_state(page, "admitted")
    seen = sessions(demo, user)
    assert seen[session_of(first)]["device"] == seen[session_of(second)]["device"]
