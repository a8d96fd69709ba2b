"""What the end-to-end tests do with the demo site's pages: open devices, watch, read the
seat state."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Response, expect

from tests.helpers import Server, scaled, start_server

Device = Callable[..., BrowserContext]
"""Opens a browser context (a separate browser profile); the `device` fixture gives one."""

PLAYBACK = "#playback"
"""What the player says: `data-state` idle, playing or refused."""


def demo_with(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str], **timings: float
) -> Iterator[Server]:
    """The demo site on a free port, for a module fixture to `yield from`, with these
    timings in seconds, scaled: `session_timeout=30.0` is `SEATGUARD_SESSION_TIMEOUT`."""
    env = {**server_env, **{f"SEATGUARD_{k.upper()}": str(scaled(v)) for k, v in timings.items()}}
    s = start_server(tmp_path_factory.mktemp("demo"), "demo", env)
    yield s
    s.stop()


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


def user() -> str:
    """A new user id, so that no test meets another's sessions."""
    return "e2e-" + secrets.token_hex(4)


def opened(page: Page, url: str, state: str) -> Page:
    """`page` at `url`, once its seat state is `state`."""
    page.goto(url)
    wait_state(page, state)
    return page


def watched(page: Page) -> tuple[list[str], list[str]]:
    """The requests of `page` that failed (4xx, 5xx) and its console errors, as they come."""
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
    return failed, errors


def play_past_the_overlay(page: Page) -> None:
    """Do what a sharer would: take the overlay out of the DOM and every `inert` off, then
    press Play at once (the SDK draws the overlay again, but the click is in first)."""
    page.evaluate(
        """() => {
          document.getElementById('seatguard-overlay').remove();
          for (const el of document.querySelectorAll('[inert]')) el.inert = false;
          document.getElementById('play').click();
        }"""
    )
