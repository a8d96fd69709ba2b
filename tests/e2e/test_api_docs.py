"""The interactive API docs render in Chromium under their Content-Security-Policy: the
operations of the server's OpenAPI document are listed, no request fails, nothing is
blocked."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.helpers import Device, watched
from tests.helpers import Server


def test_the_docs_list_the_apis_operations(demo: Server, device: Device) -> None:
    page = device().new_page()
    failed, errors = watched(page)
    page.goto(demo.http + "/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Seatguard")
    operation = page.locator(".opblock-summary-path", has_text="/users/{user}/evaluations")
    expect(operation.first).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    assert failed == [] and errors == [], (failed, errors)
