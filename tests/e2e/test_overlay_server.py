"""What the server tells a page, shown in real Chromium through the demo: where the account
is in use, the take-over cooldown, the idle countdown and the "Reconnecting…" notice while
a dropped socket keeps its seat."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Device, demo_with, opened, seat_state, user, wait_state, watch_url
from tests.helpers import Server, scaled

pytestmark = pytest.mark.e2e

OVERLAY = "#seatguard-overlay"
USE_HERE = f"{OVERLAY} .seatguard-takeover"
STATUS = "body > div[role=status]"  # the SDK's notice at the foot of the page


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Server]:
    # The default timings' order, scaled: a session timeout (30 s) longer than the drop
    # grace (20 s), longer than the reload grace (5 s). A network drop that closes nothing
    # (the server's socket merely falls silent, as with Chromium's offline mode) is seen
    # only after the session timeout, as in production; one that closes the socket, after
    # the drop grace (tests/integration/test_seats.py).
    yield from demo_with(
        tmp_path_factory, server_env, session_timeout=30.0, reload_grace=5.0, drop_grace=20.0
    )


def test_a_blocked_browser_is_told_where_the_account_is_in_use(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user())
    opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    # Headless Chromium on Linux holds the seat; its user agent names it HeadlessChrome.
    held = re.compile(r"In use on a computer \(HeadlessChrome on Linux\) since \d{1,2}:\d\d")
    expect(second.locator(OVERLAY)).to_contain_text(held)


def test_use_here_right_after_a_take_over_says_when_to_try_again(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user(), policy="challenge")
    first = opened(device().new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    second.locator(USE_HERE).click()
    wait_state(second, "admitted")
    wait_state(first, "blocked")
    # The first browser takes it back at once: refused within the cooldown (30 s), told
    # when to try again; nobody's seat moves.
    first.locator(USE_HERE).click()
    expect(first.locator(OVERLAY)).to_contain_text(re.compile(r"Try again in ([12]\d|30) s\."))
    assert (seat_state(first), seat_state(second)) == ("blocked", "admitted")


def test_the_idle_countdown_comes_before_the_timeout_and_input_dismisses_it(
    demo: Server, device: Device
) -> None:
    # An idle timeout of 6 s: the warning (60 s by default) is capped at half of it, so the
    # countdown shows from 3 s after the last input.
    page = opened(device().new_page(), watch_url(demo, user(), idle=scaled(6)), "admitted")
    status = page.locator(STATUS)
    expect(status).to_contain_text(
        re.compile(r"Inactive: signing out in [1-3] s\."), timeout=scaled(5) * 1000
    )
    page.mouse.move(120, 220)
    page.keyboard.press("Shift")
    expect(status).to_be_hidden()
    assert seat_state(page) == "admitted"
    # Left alone again, it counts down once more, and the idle timeout ends the session.
    expect(status).to_contain_text("Inactive: signing out in", timeout=scaled(5) * 1000)
    wait_state(page, "expired", within=6)
    expect(page.locator(OVERLAY)).to_contain_text("inactivity")
    expect(status).to_be_hidden()


def test_a_browser_whose_network_drops_keeps_its_seat_and_says_it_is_reconnecting(
    demo: Server, device: Device
) -> None:
    url = watch_url(demo, user())
    holder = device()
    first = opened(holder.new_page(), url, "admitted")
    second = opened(device().new_page(), url, "blocked")
    # The network goes away for 10 s, longer than the reload grace (5 s). The page says it
    # is reconnecting; the waiting browser stays blocked.
    holder.set_offline(True)
    wait_state(first, "reconnecting")
    expect(first.locator(STATUS)).to_have_text("Reconnecting…")
    end = time.monotonic() + scaled(10)
    while time.monotonic() < end:
        assert seat_state(second) == "blocked"
        second.wait_for_timeout(500)
    holder.set_offline(False)
    wait_state(first, "admitted")
    expect(first.locator(STATUS)).to_be_hidden()
    expect(first.locator(OVERLAY)).to_have_count(0)
    second.wait_for_timeout(scaled(1) * 1000)
    assert seat_state(second) == "blocked"
