"""The fingerprint as a hint: it joins another session's device only where the server's own
observations (network prefix, platform) agree with it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from seatguard.devicehint import device_hint, merged_device, network_of, platform_of
from seatguard.devices import Hints
from seatguard.presence import Arrival, Rules, UserPresence, join

WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0"
MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36"
)
AGENTS = [WINDOWS_CHROME, WINDOWS_FIREFOX, MAC_CHROME, LINUX_FIREFOX, IPHONE, ANDROID, ""]
IPS = [
    "192.0.2.10",
    "192.0.2.200",  # the same /24
    "198.51.100.7",
    "::ffff:192.0.2.11",  # the first /24, mapped into IPv6
    "2001:db8:1:2::1",
    "2001:db8:1:ffff::9",  # the same /48
    "2001:db8:2::1",
    "",
]
FPS = ["fp-aaaa", "fp-bbbb", None]


def test_networks_are_v4_slash_24_and_v6_slash_48() -> None:
    assert network_of("192.0.2.10") == network_of("192.0.2.200") == "192.0.2.0/24"
    assert network_of("::ffff:192.0.2.11") == "192.0.2.0/24"
    assert network_of("192.0.3.10") != network_of("192.0.2.10")
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert network_of("2001:db8:2::1") != network_of("2001:db8:1::1")
    assert network_of("") == "" and network_of("not-an-ip") == "not-an-ip"


def test_two_browsers_of_one_computer_share_a_platform() -> None:
    assert platform_of(WINDOWS_CHROME) == platform_of(WINDOWS_FIREFOX) == "computer/Windows"
    assert platform_of(MAC_CHROME) != platform_of(WINDOWS_CHROME)
    assert platform_of(IPHONE) == "mobile/iOS"
    assert platform_of(ANDROID) != platform_of(LINUX_FIREFOX)


def test_the_platform_reads_the_client_hints_as_the_device_type_does() -> None:
    # An iPad presents the desktop Safari string; its touch points tell it from a Mac.
    assert platform_of(MAC_SAFARI, Hints(touch=5)) == "tablet/Mac OS X"
    assert platform_of(MAC_SAFARI, Hints(touch=0)) == platform_of(MAC_SAFARI) == "computer/Mac OS X"
    # Chrome's reduced Android string is the same for a phone and a tablet; the hints are not.
    phone = platform_of(ANDROID, Hints(mobile=True, platform="Android"))
    assert phone != platform_of(ANDROID, Hints(mobile=False, platform="Android"))
    ipad = device_hint("fp-aaaa", "192.0.2.10", platform_of(MAC_SAFARI, Hints(touch=5)))
    mac = device_hint("fp-aaaa", "192.0.2.10", platform_of(MAC_SAFARI))
    assert merged_device("mac", mac, [("ipad", ipad)]) == "mac"


def test_an_fp_merges_only_with_the_same_network_and_platform() -> None:
    first = device_hint("fp-aaaa", "192.0.2.10", platform_of(WINDOWS_CHROME))
    others = [("dk_first", first)]
    same = device_hint("fp-aaaa", "192.0.2.99", platform_of(WINDOWS_FIREFOX))
    assert merged_device("dk_second", same, others) == "dk_first"
    elsewhere = device_hint("fp-aaaa", "198.51.100.7", platform_of(WINDOWS_FIREFOX))
    assert merged_device("dk_second", elsewhere, others) == "dk_second"
    other_os = device_hint("fp-aaaa", "192.0.2.99", platform_of(MAC_CHROME))
    assert merged_device("dk_second", other_os, others) == "dk_second"
    other_fp = device_hint("fp-bbbb", "192.0.2.99", platform_of(WINDOWS_FIREFOX))
    assert merged_device("dk_second", other_fp, others) == "dk_second"
    assert merged_device("dk_second", None, others) == "dk_second"
    assert merged_device("dk_second", None, [("dk_first", None)]) == "dk_second"


_browser = st.tuples(st.sampled_from(FPS), st.sampled_from(IPS), st.sampled_from(AGENTS))


@settings(max_examples=300, deadline=None)
@given(st.lists(_browser, max_size=6), _browser, st.integers(min_value=1, max_value=3))
def test_a_page_never_joins_a_device_from_another_network_or_platform(
    earlier: list[tuple[str | None, str, str]],
    page: tuple[str | None, str, str],
    limit: int,
) -> None:
    """Whatever `fp` a page sends, in device-limit mode it counts as its own device or as
    the device of a session seen from its network prefix and platform with that `fp`."""
    up = UserPresence()
    rules = Rules(mode="device-limit", limit=limit)
    for i, (fp, ip, agent) in enumerate(earlier):
        hint = device_hint(fp, ip, platform_of(agent))
        arrival = Arrival(f"session-{i:04}", "tab-00001", f"dk_own{i:04}", ip=ip, hint=hint)
        join(up, arrival, rules=rules, now=1000.0 + i)
    fp, ip, agent = page
    hint = device_hint(fp, ip, platform_of(agent))
    arrival = Arrival("session-page", "tab-00001", "dk_page000", ip=ip, user_agent=agent, hint=hint)
    join(up, arrival, rules=rules, now=2000.0)
    device = up.sessions["session-page"].device
    if device == "dk_page000":
        return
    assert fp is not None
    sharing = [s for s in up.sessions.values() if s.id != "session-page" and s.device == device]
    assert any(
        s.hint == hint
        and network_of(earlier[int(s.id[-4:])][1]) == network_of(ip)
        and platform_of(earlier[int(s.id[-4:])][2]) == platform_of(agent)
        for s in sharing
    )
