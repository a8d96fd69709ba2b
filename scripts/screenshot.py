"""Regenerate docs/overlay.png: a second browser of one account, blocked by the overlay.

Run from the repository root after `make demo` has installed everything:
    .venv/bin/python scripts/screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, wait_state  # noqa: E402


def main() -> None:
    server = start_server(Path(tempfile.mkdtemp()), "demo", {"SEATGUARD_LOG_LEVEL": "warning"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            url = f"{server.http}/watch?user=alice&mode=concurrence&limit=1"
            first = browser.new_context().new_page()
            first.goto(url)
            wait_state(first, "admitted")
            second = browser.new_context(viewport={"width": 1000, "height": 640}).new_page()
            second.goto(url)
            wait_state(second, "blocked")
            second.wait_for_timeout(400)
            second.screenshot(path=str(ROOT / "docs" / "overlay.png"))
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
