"""The interactive API docs render in Chromium under their Content-Security-Policy: the
operations of the server's OpenAPI document are listed, no request fails, nothing is
blocked."""

from __future__ import annotations

from playwright.sync_api import ConsoleMessage, Response, expect

from tests.e2e.helpers import Device
from tests.helpers import Server


def test_the_docs_list_the_apis_operations(demo: Server, device: Device) -> None:
    page = device().new_page()
    failed: list[str] = []
    errors: list[str] = []

    def answered(r: Response) -> None:
        if r.status >= 400:
            failed.append(f"{r.status} {r.url}")

    def said(m: ConsoleMessage) -> None:
        if m.type == "error":
            errors.append(m.text)

    page.on("response", answered)
    page.on("console", said)
    page.goto(demo.http + "/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Seatguard")
    operation = page.locator(".opblock-summary-path", has_text="/users/{user}/evaluations")
    expect(operation.first).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    assert failed == [] and errors == [], (failed, errors)
