"""End-to-end fixtures: the demo site on a free port, Chromium contexts as devices."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

from tests.e2e.helpers import Device, demo_with
from tests.helpers import Server, scaled

CHROMIUM = os.environ.get("SEATGUARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if executable is None:
        raise RuntimeError("Chromium is missing: `make test` installs Debian's chromium")
    b = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Server]:
    # A long reload grace, so a seat that frees at once (sign-out, a closed tab's unload
    # grace) is told apart from one that merely waited for the grace to run out; a drop
    # grace longer still, as by default, that outlasts a network drop of 10 s.
    yield from demo_with(
        tmp_path_factory,
        server_env,
        session_timeout=3.0,
        reload_grace=5.0,
        unload_grace=1.0,
        drop_grace=20.0,
    )


@pytest.fixture
def device(browser: Browser, playwright: Playwright) -> Iterator[Device]:
    """Open a browser context (a separate browser profile); `preset` names a device."""
    contexts: list[BrowserContext] = []

    def open_device(preset: str | None = None, **options: Any) -> BrowserContext:
        settings: dict[str, Any] = dict(playwright.devices[preset]) if preset else {}
        settings.pop("default_browser_type", None)
        settings.update(options)
        ctx = browser.new_context(**settings)
        ctx.set_default_timeout(scaled(10) * 1000)
        contexts.append(ctx)
        return ctx

    yield open_device
    for ctx in contexts:
        ctx.close()
