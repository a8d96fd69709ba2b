"""What the end-to-end tests do with the demo site's pages: open devices, watch, read the
seat state."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from tests.helpers import Server, scaled

Device = Callable[..., BrowserContext]
"""Opens a browser context (a separate browser profile); the `device` fixture gives one."""

PLAYBACK = "#playback"
"""What the player says: `data-state` idle, playing or refused."""


def watch_url(demo: Server, user: str, **plan: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"user": user, **plan}.items())
    return f"{demo.http}/watch?{query}"


def seat_state(page: Page) -> str:
    return str(page.locator("#sg-state").get_attribute("data-state"))


def wait_state(page: Page, state: str, within: float = 10) -> None:
    page.wait_for_function(
        "s => document.getElementById('sg-state').dataset.state === s",
        arg=state,
        timeout=scaled(within) * 1000,
    )


def play(page: Page, state: str) -> str:
    """Press Play and return what the page says once it shows `state`."""
    page.locator(PLAYBACK).evaluate("el => { el.dataset.state = 'idle'; }")
    page.click("#play")
    expect(page.locator(PLAYBACK)).to_have_attribute("data-state", state)
    return str(page.locator(PLAYBACK).text_content())
