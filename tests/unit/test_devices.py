"""Device type from user agents and client hints: real agents, hints, and hostile input."""

# ruff: noqa: E501 (the user agents are kept whole, one to a line)

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seatguard.devices import (
    MAX_USER_AGENT,
    NO_HINTS,
    Hints,
    browser_of,
    device_type,
    hints_from_headers,
)
from seatguard.types import DeviceType

# Real user agent strings (name, agent, what the device is).
AGENTS: list[tuple[str, str, DeviceType]] = [
    (
        "chrome-win",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "computer",
    ),
    (
        "chrome-mac",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "computer",
    ),
    (
        "chrome-linux",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "computer",
    ),
    (
        "chrome-chromeos",
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "computer",
    ),
    (
        "chrome-chromeos-arm",
        "Mozilla/5.0 (X11; CrOS aarch64 15359.58.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.5938.157 Safari/537.36",
        "computer",
    ),
    (
        "chrome-win-old",
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.5414.120 Safari/537.36",
        "computer",
    ),
    (
        "chrome-win32",
        "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36",
        "computer",
    ),
    (
        "firefox-win",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "computer",
    ),
    (
        "firefox-mac",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
        "computer",
    ),
    (
        "firefox-linux",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "computer",
    ),
    (
        "firefox-ubuntu",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
        "computer",
    ),
    (
        "firefox-esr-win",
        "Mozilla/5.0 (Windows NT 10.0; rv:115.0) Gecko/20100101 Firefox/115.0",
        "computer",
    ),
    (
        "safari-mac",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
        "computer",
    ),
    (
        "safari-mac-old",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15",
        "computer",
    ),
    (
        "edge-win",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
        "computer",
    ),
    (
        "edge-mac",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
        "computer",
    ),
    (
        "edge-legacy",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
        "computer",
    ),
    (
        "opera-win",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0",
        "computer",
    ),
    (
        "vivaldi-linux",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Vivaldi/6.6.3271.61",
        "computer",
    ),
    ("ie11", "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko", "computer"),
    (
        "electron",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.36.140 Chrome/120.0.6099.291 Electron/28.2.1 Safari/537.36",
        "computer",
    ),
    (
        "chrome-android-reduced-phone",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "chrome-android-reduced-tablet",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "pixel-chrome",
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "galaxy-s9-chrome",
        "Mozilla/5.0 (Linux; Android 9; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.157 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "samsung-internet-phone",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "samsung-internet-phone-old",
        "Mozilla/5.0 (Linux; Android 9; SAMSUNG SM-G960U) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/10.1 Chrome/71.0.3578.99 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "firefox-android-phone",
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
        "mobile",
    ),
    (
        "android-webview",
        "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "xiaomi-miui",
        "Mozilla/5.0 (Linux; U; Android 12; en-us; M2101K6G Build/SKQ1.210908.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.5.2-gn",
        "mobile",
    ),
    (
        "opera-mobile-android",
        "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 OPR/79.0.4195.76894",
        "mobile",
    ),
    (
        "huawei-browser",
        "Mozilla/5.0 (Linux; Android 10; ELS-NX9; HMSCore 6.11.0.302) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.0.322 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "edge-android",
        "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
        "mobile",
    ),
    (
        "opera-mini",
        "Opera/9.80 (J2ME/MIDP; Opera Mini/5.1.21214/28.2725; U; ru) Presto/2.8.119 Version/11.10",
        "mobile",
    ),
    (
        "kaios",
        "Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i;Android; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5",
        "mobile",
    ),
    (
        "windows-phone",
        "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
        "mobile",
    ),
    (
        "galaxy-tab-s8-chrome",
        "Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "samsung-internet-tablet",
        "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "firefox-android-tablet",
        "Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0",
        "tablet",
    ),
    (
        "lenovo-tab",
        "Mozilla/5.0 (Linux; Android 11; Lenovo TB-J606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "pixel-tablet",
        "Mozilla/5.0 (Linux; Android 14; Pixel Tablet) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "kindle-fire-silk",
        "Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.2.1 like Chrome/124.0.6367.179 Safari/537.36",
        "tablet",
    ),
    (
        "galaxy-tab-a7-lite",
        "Mozilla/5.0 (Linux; Android 13; SM-T220) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "huawei-matepad",
        "Mozilla/5.0 (Linux; Android 10; BAH3-W09; HMSCore 6.11.0.302) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.0.322 Safari/537.36",
        "tablet",
    ),
    (
        "iphone-safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "iphone-chrome",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "iphone-firefox",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
        "mobile",
    ),
    (
        "iphone-edge",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/124.2478.71 Mobile/15E148 Safari/605.1.15",
        "mobile",
    ),
    (
        "iphone-instagram",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 295.0.0.32.119 (iPhone13,2; iOS 16_6; en_US; en; scale=3.00; 1170x2532; 500183785)",
        "mobile",
    ),
    (
        "ipod",
        "Mozilla/5.0 (iPod touch; CPU iPhone OS 15_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "ipad-mobile-ua",
        "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
    (
        "ipad-chrome",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
    (
        "ipad-desktop-ua-no-touch-info",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "computer",
    ),
    (
        "googlebot",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "computer",
    ),
    (
        "googlebot-smartphone",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "computer",
    ),
    (
        "bingbot",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "computer",
    ),
    ("curl", "curl/8.5.0", "computer"),
    ("python-requests", "python-requests/2.31.0", "computer"),
    (
        "headless-chrome",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
        "computer",
    ),
    ("empty", "", "computer"),
    ("garbage", "ÿþ not a browser ;;; ((( ", "computer"),
]

MAC_SAFARI = next(ua for name, ua, _ in AGENTS if name == "safari-mac")
IPHONE = next(ua for name, ua, _ in AGENTS if name == "iphone-safari")
REDUCED_PHONE = next(ua for name, ua, _ in AGENTS if name == "chrome-android-reduced-phone")
REDUCED_TABLET = next(ua for name, ua, _ in AGENTS if name == "chrome-android-reduced-tablet")
CHROME_WINDOWS = next(ua for name, ua, _ in AGENTS if name == "chrome-win")
CHROME_LINUX = next(ua for name, ua, _ in AGENTS if name == "chrome-linux")


def test_the_table_has_fifty_real_agents_of_every_kind() -> None:
    assert len(AGENTS) >= 50
    assert len({name for name, _, _ in AGENTS}) == len(AGENTS)
    assert {kind for _, _, kind in AGENTS} == {"computer", "tablet", "mobile"}


@pytest.mark.parametrize(("name", "agent", "kind"), AGENTS, ids=[a[0] for a in AGENTS])
def test_real_user_agents(name: str, agent: str, kind: DeviceType) -> None:
    assert device_type(agent) == kind


@pytest.mark.parametrize(
    ("agent", "hints", "kind"),
    [
        # Chrome's reduced string says "Android 10; K" for every device: the hints say more.
        (REDUCED_PHONE, Hints(mobile=True, platform="Android"), "mobile"),
        (REDUCED_TABLET, Hints(mobile=False, platform="Android"), "tablet"),
        # A tablet asking for desktop pages sends a Linux desktop agent, and its hints.
        (CHROME_LINUX, Hints(mobile=False, platform="Android"), "tablet"),
        (CHROME_LINUX, Hints(form_factors=frozenset({"Tablet"})), "tablet"),
        (CHROME_WINDOWS, Hints(mobile=False, platform="Windows"), "computer"),
        (CHROME_WINDOWS, Hints(mobile=False, platform="macOS"), "computer"),
        (CHROME_WINDOWS, Hints(mobile=False, platform="Chrome OS"), "computer"),
        # Form factors decide first; a foldable may name several.
        (REDUCED_PHONE, Hints(mobile=True, form_factors=frozenset({"Tablet"})), "tablet"),
        (REDUCED_TABLET, Hints(form_factors=frozenset({"Mobile", "Tablet"})), "tablet"),
        (CHROME_WINDOWS, Hints(form_factors=frozenset({"Mobile"})), "mobile"),
        (REDUCED_TABLET, Hints(form_factors=frozenset({"Desktop"})), "computer"),
        (CHROME_WINDOWS, Hints(form_factors=frozenset({"Watch"})), "mobile"),
        # XR alone says nothing of the three: the rest decides.
        (REDUCED_PHONE, Hints(form_factors=frozenset({"XR"})), "mobile"),
        # ?0 with a platform that says nothing leaves it to the agent.
        (REDUCED_PHONE, Hints(mobile=False), "mobile"),
        (REDUCED_PHONE, Hints(mobile=False, platform="Unknown"), "mobile"),
        (IPHONE, Hints(mobile=False, platform=""), "mobile"),
        # An iPad asking for desktop pages: a Mac's agent and touch points.
        (MAC_SAFARI, Hints(touch=5), "tablet"),
        (MAC_SAFARI, Hints(touch=2), "tablet"),
        (MAC_SAFARI, Hints(touch=1), "computer"),
        (MAC_SAFARI, Hints(touch=0), "computer"),
        (MAC_SAFARI, NO_HINTS, "computer"),
        # The page's word counts only for a Mac agent the headers leave open.
        (IPHONE, Hints(touch=0), "mobile"),
        (REDUCED_PHONE, Hints(touch=0), "mobile"),
        (REDUCED_TABLET, Hints(touch=0), "tablet"),
        (CHROME_WINDOWS, Hints(touch=10), "computer"),  # a touch screen laptop
        (CHROME_LINUX, Hints(touch=10), "computer"),
        (MAC_SAFARI, Hints(mobile=False, platform="macOS", touch=5), "computer"),
        (MAC_SAFARI, Hints(form_factors=frozenset({"Desktop"}), touch=5), "computer"),
    ],
)
def test_client_hints_and_touch(agent: str, hints: Hints, kind: DeviceType) -> None:
    assert device_type(agent, hints) == kind


@pytest.mark.parametrize(
    ("headers", "hints"),
    [
        ((None, None, None), NO_HINTS),
        (("?1", '"Android"', None), Hints(mobile=True, platform="Android")),
        (("?0", '"Windows"', '"Desktop"'), Hints(False, "Windows", frozenset({"Desktop"}))),
        ((" ?0 ", ' "macOS" ', None), Hints(mobile=False, platform="macOS")),
        ((None, None, '"Tablet", "Mobile"'), Hints(form_factors=frozenset({"Tablet", "Mobile"}))),
        ((None, None, '"XR","Desktop"'), Hints(form_factors=frozenset({"XR", "Desktop"}))),
        ((None, None, '""'), NO_HINTS),  # an empty list
        # Malformed values count as not sent.
        (("1", "Android", None), NO_HINTS),
        (("?2", '"Android', None), NO_HINTS),
        (("true", "'Android'", None), NO_HINTS),
        (("?1?1", '"And"roid"', None), NO_HINTS),
        ((None, '"' + "A" * 65 + '"', None), NO_HINTS),
        ((None, '"Andr\\oid"', None), NO_HINTS),
        ((None, '"Android\x00"', None), NO_HINTS),
        ((None, None, "Tablet"), NO_HINTS),
        ((None, None, '"Tablet", Mobile'), NO_HINTS),  # one bad item spoils the list
        ((None, None, '"Tablet",'), NO_HINTS),
        ((None, None, '"Phablet"'), NO_HINTS),  # not a form factor
        ((None, None, ", ".join(['"Tablet"'] * 100)), NO_HINTS),  # over 256 characters
    ],
)
def test_hint_headers_are_parsed_strictly(
    headers: tuple[str | None, str | None, str | None], hints: Hints
) -> None:
    got = hints_from_headers(*headers)
    assert (got.mobile, got.platform, got.form_factors) == (
        hints.mobile,
        hints.platform,
        hints.form_factors,
    )


@pytest.mark.parametrize(
    "agent",
    [
        "x" * 10_000,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)" + " ;(" * 5000,
        "(" * 10_000,
        "Mozilla/5.0 (Linux; Android 13)\x00\x01\x1b[31m\r\n Mobile",
        "\ud800\udfff\ufffd" * 100,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)" + "A" * 10_000,
    ],
    ids=["10kb", "nested-iphone", "parens", "control-chars", "surrogates", "long-mac"],
)
def test_hostile_agents_are_classified_quickly_without_error(agent: str) -> None:
    kind = device_type(agent)
    assert kind in ("computer", "tablet", "mobile")
    assert device_type(agent, Hints(touch=256)) in ("computer", "tablet", "mobile")
    named = browser_of(agent)
    assert named.isprintable() and len(named) <= 84  # two names of 40 and " on "


BROWSERS = {
    "chrome-win": "Chrome 124 on Windows",
    "chrome-linux": "Chrome 124 on Linux",
    "curl": "curl 8",
    "empty": "Unknown browser",
    "garbage": "Unknown browser",
}
"""What people read of some of `AGENTS`: the browser, its major version, the system."""


@pytest.mark.parametrize(("name", "expected"), BROWSERS.items())
def test_browser_and_system_in_words(name: str, expected: str) -> None:
    (agent,) = [ua for n, ua, _ in AGENTS if n == name]
    assert browser_of(agent) == expected


def test_browser_of_phones_and_tablets() -> None:
    assert browser_of(IPHONE) == "Mobile Safari 17 on iOS"
    ipad = "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
    assert browser_of(ipad) == "Mobile Safari 17 on iOS"
    firefox_android = "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"
    assert browser_of(firefox_android) == "Firefox Mobile 125 on Android"


def test_only_the_head_of_a_long_agent_is_read() -> None:
    padded = IPHONE + " " + "x" * 10_000
    assert device_type(padded) == "mobile"
    assert device_type("x" * MAX_USER_AGENT + " iPhone Mobile") == "computer"


KINDS = st.sampled_from(["computer", "tablet", "mobile"])


@given(
    agent=st.sampled_from([ua for _, ua, _ in AGENTS]) | st.text(max_size=300),
    touch=st.integers(0, 256),
)
def test_the_page_never_makes_a_device_anything_but_a_tablet(agent: str, touch: int) -> None:
    """Touch points only ever turn a computer into a tablet: a phone stays a phone and a
    tablet a tablet, whatever the page says."""
    alone = device_type(agent)
    with_touch = device_type(agent, Hints(touch=touch))
    assert with_touch == alone or (alone, with_touch) == ("computer", "tablet")


@given(
    mobile=st.one_of(st.none(), st.text(max_size=8)),
    platform=st.one_of(st.none(), st.text(max_size=80)),
    form_factors=st.one_of(st.none(), st.text(max_size=300)),
)
def test_any_hint_headers_parse_to_hints(
    mobile: str | None, platform: str | None, form_factors: str | None
) -> None:
    hints = hints_from_headers(mobile, platform, form_factors)
    assert hints.mobile in (None, True, False)
    assert hints.form_factors <= {
        "Desktop",
        "Automotive",
        "Mobile",
        "Tablet",
        "XR",
        "EInk",
        "Watch",
    }
    assert device_type(IPHONE, hints) in ("computer", "tablet", "mobile")
