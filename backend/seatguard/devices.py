"""Device type (computer, tablet, mobile) from the user agent and User-Agent Client Hints.

The user agent string is read by `ua-parser` (the maintained uap-core rules); what a device
*is* from its parts (an Android without "Mobile" is a tablet) is decided here. Browsers that
send client hints say more than their string, which Chrome reduces to a fixed shape:

1. `Sec-CH-UA-Form-Factors` naming `Tablet`, `Mobile` or `Desktop` decides (in that order
   when it names several, as a foldable may);
2. `Sec-CH-UA-Mobile: ?1` is a phone; `?0` with `Sec-CH-UA-Platform` Android a tablet, with
   a desktop platform (Windows, macOS, Linux, Chrome OS) a computer;
3. otherwise the user agent string. An iPad asks for desktop pages with a Mac's user agent,
   which no header tells apart: there the page's `navigator.maxTouchPoints` (hello field
   `touch`) decides, over 1 being a tablet (Macs report 0).

The page's word counts only there, where the headers leave it open: it never turns a phone
or a tablet into anything else. Bots, empty and unreadable agents count as computers.
Malformed hint values are ignored, as if not sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import ua_parser

from .types import DeviceType

__all__ = [
    "NO_HINTS",
    "Hints",
    "browser_family",
    "browser_of",
    "device_type",
    "hints_from_headers",
    "os_family",
]

MAX_USER_AGENT = 512
"""Characters of a user agent that are read (real ones are shorter; the rest is noise)."""


@dataclass(frozen=True, slots=True)
class Hints:
    """What the browser says of its device besides its user agent string: the client hint
    headers of the WebSocket upgrade (None: not sent or malformed) and the page's touch
    points from the hello."""

    mobile: bool | None = None  # Sec-CH-UA-Mobile
    platform: str | None = None  # Sec-CH-UA-Platform, unquoted
    form_factors: frozenset[str] = frozenset()  # Sec-CH-UA-Form-Factors
    touch: int | None = None  # the page's navigator.maxTouchPoints


NO_HINTS = Hints()

_SF_STRING = re.compile(r'"([\x20\x21\x23-\x5b\x5d-\x7e]{0,64})"')  # no escapes in real ones
_FORM_FACTORS = frozenset({"Desktop", "Automotive", "Mobile", "Tablet", "XR", "EInk", "Watch"})
_DESKTOP_PLATFORMS = frozenset({"Windows", "macOS", "Linux", "Chrome OS", "Chromium OS"})


def hints_from_headers(mobile: str | None, platform: str | None, form_factors: str | None) -> Hints:
    """The client hints of a request from its `Sec-CH-UA-Mobile` (an sf-boolean),
    `Sec-CH-UA-Platform` (an sf-string) and `Sec-CH-UA-Form-Factors` (a list of
    sf-strings) values; a value that is not well formed counts as not sent."""
    if mobile is None and platform is None and form_factors is None:
        return NO_HINTS
    is_mobile = {"?1": True, "?0": False}.get(mobile.strip()) if mobile is not None else None
    name = None
    if platform is not None and (m := _SF_STRING.fullmatch(platform.strip())):
        name = m.group(1)
    factors: frozenset[str] = frozenset()
    if form_factors is not None and len(form_factors) <= 256:
        items = [_SF_STRING.fullmatch(item.strip()) for item in form_factors.split(",")]
        if all(items):
            factors = frozenset(m.group(1) for m in items if m) & _FORM_FACTORS
    return Hints(mobile=is_mobile, platform=name, form_factors=factors)


def device_type(user_agent: str, hints: Hints = NO_HINTS) -> DeviceType:
    """Computer, tablet or mobile, from a user agent string and `hints` (see the module)."""
    return _device_type(_head(user_agent), hints)


def os_family(user_agent: str) -> str:
    """The operating system a user agent string claims (ua-parser's family: "Windows",
    "Mac OS X", "Android", "iOS", ...; "Other" when it tells none)."""
    return _os_family(_head(user_agent))


def browser_of(user_agent: str) -> str:
    """The browser and operating system a user agent string claims, in words a person
    recognises: "Firefox 121 on Windows", "Mobile Safari 17 on iOS"; "Unknown browser" when
    it tells none (ua-parser's families, the browser's major version)."""
    return _browser(_head(user_agent))


def browser_family(user_agent: str) -> str:
    """The browser a user agent string claims (ua-parser's family: "Chrome", "Firefox",
    "Mobile Safari", "Edge", ...; "Other" when it tells none)."""
    return _browser_family(_head(user_agent))


def _head(user_agent: str) -> str:
    """What is read of a user agent: its first `MAX_USER_AGENT` characters, in ASCII."""
    head = user_agent[:MAX_USER_AGENT]
    if not head.isascii():  # real agents are ASCII; header bytes past it come as surrogates
        head = head.encode("ascii", "replace").decode()
    return head


@lru_cache(maxsize=2048)
def _os_family(user_agent: str) -> str:
    result = ua_parser.parse_os(user_agent)
    return result.family if result else "Other"


_MAX_NAME = 40
"""Characters of a browser's or a system's name kept: the rules copy some from the agent."""


@lru_cache(maxsize=2048)
def _browser(user_agent: str) -> str:
    agent = ua_parser.parse_user_agent(user_agent)
    if agent is None or agent.family == "Other":
        name = "Unknown browser"
    else:
        name = _printable(f"{agent.family} {agent.major}" if agent.major else agent.family)
    os = _printable(_os_family(user_agent))
    return name if os in ("Other", "") else f"{name} on {os}"


def _printable(name: str) -> str:
    return "".join(c for c in name if c.isprintable()).strip()[:_MAX_NAME]


@lru_cache(maxsize=2048)
def _browser_family(user_agent: str) -> str:
    result = ua_parser.parse_user_agent(user_agent)
    return result.family if result else "Other"


@lru_cache(maxsize=2048)
def _device_type(user_agent: str, hints: Hints) -> DeviceType:
    factors = hints.form_factors
    if factors:
        for factor, kind in _BY_FACTOR:
            if factor in factors:
                return kind
    if hints.mobile is True:
        return "mobile"
    if hints.mobile is False:
        if hints.platform == "Android":
            return "tablet"
        if hints.platform in _DESKTOP_PLATFORMS:
            return "computer"
    kind, mac = _from_user_agent(user_agent)
    if kind == "computer" and mac and hints.touch is not None and hints.touch > 1:
        return "tablet"  # an iPad asking for desktop pages
    return kind


_BY_FACTOR: tuple[tuple[str, DeviceType], ...] = (
    ("Tablet", "tablet"),
    ("Mobile", "mobile"),
    ("Watch", "mobile"),
    ("Desktop", "computer"),
)

_TABLET_DEVICES = frozenset(
    {"iPad", "Kindle", "Kindle Fire", "Kindle Fire HD", "Galaxy Tab", "Xoom", "Dell Streak"}
)
_TABLET_DEVICES_LOWER = frozenset(d.lower() for d in _TABLET_DEVICES) | {"blackberry playbook"}
_MOBILE_DEVICES = frozenset({"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"})
_MOBILE_OS = frozenset(
    {
        "iOS",
        "Windows Phone",
        "Windows Mobile",
        "Windows CE",
        "Symbian OS",
        "Symbian^3",
        "BlackBerry OS",
        "Bada",
        "Maemo",
        "KaiOS",
        "Firefox OS",
        "Sailfish",
    }
)
_MOBILE_BROWSERS = frozenset(
    {
        "IE Mobile",
        "Opera Mobile",
        "Opera Mini",
        "Chrome Mobile",
        "Chrome Mobile WebView",
        "Chrome Mobile iOS",
        "Firefox iOS",
        "Edge Mobile",
    }
)
_ANDROID_MOBILE = re.compile(r"\bMobile\b|Android [^;)]*; Mobile;")
_ANDROID_TABLET = re.compile(r"\bTablet\b")


def _from_user_agent(user_agent: str) -> tuple[DeviceType, bool]:
    """The type the user agent string alone tells, and whether it claims to be a Mac."""
    result = ua_parser.parse(user_agent)
    device = result.device.family if result.device else ""
    os = result.os.family if result.os else ""
    browser = result.user_agent.family if result.user_agent else ""
    if device == "Spider":
        return "computer", False  # crawlers, even those posing as a phone
    if (
        device in _TABLET_DEVICES
        or device.lower() in _TABLET_DEVICES_LOWER
        or "Silk/" in user_agent
    ):
        return "tablet", False
    if os in _MOBILE_OS or device in _MOBILE_DEVICES:
        return "mobile", False
    if os == "Android":
        if _ANDROID_TABLET.search(user_agent):
            return "tablet", False
        if _ANDROID_MOBILE.search(user_agent):
            return "mobile", False
        return "tablet", False  # Android browsers mark phones "Mobile"; the rest are tablets
    if browser in _MOBILE_BROWSERS:
        return "mobile", False
    return "computer", os == "Mac OS X"
