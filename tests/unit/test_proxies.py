"""The client behind trusted proxies: the setting, the walk from the right, the middleware."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from seatguard.errors import ConfigError
from seatguard.handshakes import Handshakes
from seatguard.proxies import ProxyHeaders, TrustedProxies, parse_ip
from seatguard.settings import Settings

LB = TrustedProxies.parse("10.0.0.0/8, 192.0.2.7, fd00::/8, ::1, 127.0.0.1")


@pytest.mark.parametrize(
    ("text", "trusted", "untrusted"),
    [
        ("127.0.0.1,::1", ["127.0.0.1", "::1", "::ffff:127.0.0.1"], ["127.0.0.2", "::2", ""]),
        ("127.0.0.0/8", ["127.0.0.1", "127.255.0.9"], ["128.0.0.1", "::1"]),
        (" 10.1.0.0/16 , 2001:db8::/32 ", ["10.1.2.3", "2001:db8::5"], ["10.2.0.1", "2001:db9::"]),
        ("192.0.2.7", ["192.0.2.7", "192.0.2.7:443", "[::ffff:192.0.2.7]:1"], ["192.0.2.8"]),
        ("fe80::/10", ["fe80::1%eth0"], ["fe7f::1"]),
        ("", [], ["127.0.0.1", "::1"]),  # nobody
        (",,", [], ["127.0.0.1"]),
    ],
)
def test_the_setting_lists_addresses_and_networks(
    text: str, trusted: list[str], untrusted: list[str]
) -> None:
    proxies = TrustedProxies.parse(text)
    for ip in trusted:
        assert ip in proxies, ip
    for ip in untrusted:
        assert ip not in proxies, ip


@pytest.mark.parametrize(
    "text",
    [
        "localhost",
        "10.0.0.0/33",
        "10.0.0.1/8",  # host bits set: a typo for 10.0.0.0/8 or for 10.0.0.1?
        "300.1.1.1",
        "10.0.0.0/8;192.0.2.1",
        "::1/129",
        "*",
        "127.0.0.1 ::1",
    ],
)
def test_a_bad_setting_is_a_clear_error_at_start_up(text: str) -> None:
    with pytest.raises(ConfigError, match=r"SEATGUARD_TRUSTED_PROXIES: .* is not an IP address"):
        Settings.from_env({"SEATGUARD_TRUSTED_PROXIES": text})


def test_the_default_trusts_a_proxy_on_this_host_only() -> None:
    proxies = Settings().proxies
    assert "127.0.0.1" in proxies and "::1" in proxies
    assert "127.0.0.2" not in proxies and "10.0.0.1" not in proxies
    assert Settings.from_env({"SEATGUARD_TRUSTED_PROXIES": "10.0.0.0/8"}).proxies == (
        TrustedProxies.parse("10.0.0.0/8")
    )


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        # An untrusted peer's header is not read at all.
        ("198.51.100.9", ["203.0.113.5"], "198.51.100.9"),
        ("127.0.0.2", ["203.0.113.5"], "127.0.0.2"),
        # One trusted proxy: the last address is the client.
        ("10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", [""], "10.0.0.1"),
        # What the client said is left of its own address, and never read.
        ("10.0.0.1", ["6.6.6.6, 203.0.113.5"], "203.0.113.5"),
        ("10.0.0.1", ["10.0.0.2, 203.0.113.5"], "203.0.113.5"),
        ("10.0.0.1", ["garbage, 203.0.113.5"], "203.0.113.5"),
        # A chain of trusted proxies is walked through.
        ("10.0.0.1", ["203.0.113.5, 10.9.9.9, 192.0.2.7"], "203.0.113.5"),
        ("10.0.0.1", ["6.6.6.6, 203.0.113.5", "10.9.9.9"], "203.0.113.5"),  # two header lines
        ("::1", ["2001:db8::1, fd00::5"], "2001:db8::1"),
        # Forms proxies write: ports, brackets, upper case, spaces, empty entries.
        ("10.0.0.1", ["203.0.113.5:51234"], "203.0.113.5"),
        ("10.0.0.1", ["[2001:DB8::1]:443"], "2001:db8::1"),
        ("10.0.0.1", ["[2001:db8::1]"], "2001:db8::1"),
        ("10.0.0.1", ["  203.0.113.5  ,, "], "203.0.113.5"),
        ("10.0.0.1", ["::ffff:203.0.113.5"], "203.0.113.5"),
        # Nothing but trusted proxies: a trusted machine asked itself.
        ("10.0.0.1", ["10.0.0.2, 192.0.2.7"], "10.0.0.1"),
        # What is not an address ends the walk, and nothing left of it is believed.
        ("10.0.0.1", ["203.0.113.5, unknown"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, 10.0.0.3, unknown"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, 10.0.0.3:x"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, [::1"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, [::1]x"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, 1" * 100], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, example.com"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.5, 2001:db8::1%eth0" + "0" * 80], "10.0.0.1"),
    ],
)
def test_the_client_is_the_rightmost_untrusted_address(
    peer: str, header: list[str], client: str
) -> None:
    assert LB.client(peer, header) == client


def test_a_huge_header_costs_only_what_it_names() -> None:
    header = ", ".join(["6.6.6.6"] * 5000 + ["203.0.113.5"])
    assert LB.client("10.0.0.1", [header]) == "203.0.113.5"


@pytest.mark.parametrize(
    ("peer", "proto", "scheme"),
    [
        ("10.0.0.1", "https", "https"),
        ("10.0.0.1", " HTTPS ", "https"),
        ("10.0.0.1", "https, http", "https"),
        ("10.0.0.1", "gopher", "http"),
        ("10.0.0.1", "", "http"),
        ("10.0.0.1", None, "http"),
        ("198.51.100.9", "https", "http"),  # an untrusted peer's word
    ],
)
def test_forwarded_proto_counts_from_a_trusted_peer(
    peer: str, proto: str | None, scheme: str
) -> None:
    assert LB.scheme(peer, proto, "http") == scheme


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("203.0.113.5", "203.0.113.5"),
        (" 2001:DB8::1 ", "2001:db8::1"),
        ("[::1]:8000", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("1.2.3.4:", None),
        ("1.2.3.4:٣", None),
        ("::1:80:x", None),
        ("", None),
        ("x" * 100, None),
    ],
)
def test_parse_ip(text: str, ip: str | None) -> None:
    assert parse_ip(text) == ip


# Property: whatever a client sends, it cannot choose what the server takes it for.

NETWORKS = st.sampled_from(
    ["10.0.0.0/8", "192.0.2.0/24", "127.0.0.1", "::1", "fd00::/8", "198.51.100.7"]
)
ADDRESSES = st.ip_addresses().map(str)
JUNK = st.text(st.characters(codec="latin-1"), max_size=40) | ADDRESSES
CLIENT_PART = st.lists(JUNK, max_size=6).map(", ".join)


@given(
    networks=st.lists(NETWORKS, min_size=1, max_size=4),
    client=ADDRESSES,
    chain=st.lists(ADDRESSES, max_size=3),
    claimed=CLIENT_PART,
    data=st.data(),
)
def test_a_client_cannot_choose_its_address(
    networks: list[str], client: str, chain: list[str], claimed: str, data: st.DataObject
) -> None:
    """client -> proxies... -> peer -> server, each proxy trusted and appending the address
    it got the request from. Whatever the client wrote (`claimed`), the server takes it for
    its own address: never a trusted proxy's, nor one the client wrote left of it."""
    trusted = TrustedProxies.parse(",".join(networks))
    assume(client not in trusted)
    proxies = [p for p in chain if p in trusted]
    peer = data.draw(st.sampled_from([n.partition("/")[0] for n in networks]))
    hops = [client, *proxies]  # what the trusted proxies appended, in order
    header = ", ".join([claimed, *hops] if claimed else hops)
    assert trusted.client(peer, [header]) == parse_ip(client)


@given(networks=st.lists(NETWORKS, min_size=1, max_size=4), header=CLIENT_PART, data=st.data())
def test_the_answer_is_the_peer_or_an_untrusted_address(
    networks: list[str], header: str, data: st.DataObject
) -> None:
    trusted = TrustedProxies.parse(",".join(networks))
    peer = data.draw(st.sampled_from([n.partition("/")[0] for n in networks]))
    found = trusted.client(peer, [header])
    assert found == peer or (found not in trusted and parse_ip(found) == found)


@given(peer=ADDRESSES, header=st.lists(st.text(max_size=200), max_size=3))
def test_an_untrusted_peer_is_the_client_whatever_it_sends(peer: str, header: list[str]) -> None:
    if peer in LB:
        return
    assert LB.client(peer, header) == peer


# The middleware, as the HTTP routes see it.


async def _seen(scope: Scope) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(client=scope.get("client"), scheme=scope.get("scheme"))

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    await ProxyHeaders(app, LB)(scope, receive, send)
    return seen


def _scope(peer: str, *headers: tuple[bytes, bytes]) -> Scope:
    return {
        "type": "http",
        "scheme": "http",
        "client": (peer, 5000),
        "headers": list(headers),
    }


@pytest.mark.anyio
async def test_http_requests_see_the_forwarded_client() -> None:
    scope = _scope(
        "10.0.0.1",
        (b"x-forwarded-for", b"6.6.6.6, 203.0.113.5"),
        (b"x-forwarded-proto", b"https"),
    )
    assert await _seen(scope) == {"client": ("203.0.113.5", 0), "scheme": "https"}
    assert scope["client"] == ("10.0.0.1", 5000)  # the server's own scope is left alone
    untrusted = _scope(
        "198.51.100.9", (b"x-forwarded-for", b"203.0.113.5"), (b"x-forwarded-proto", b"https")
    )
    assert await _seen(untrusted) == {"client": ("198.51.100.9", 5000), "scheme": "http"}
    plain = _scope("10.0.0.1")
    assert await _seen(plain) == {"client": ("10.0.0.1", 5000), "scheme": "http"}
    bad = _scope("10.0.0.1", (b"x-forwarded-for", b"203.0.113.5, \xff\xfe"))
    assert await _seen(bad) == {"client": ("10.0.0.1", 5000), "scheme": "http"}


def test_trusted_proxies_are_exempt_from_the_per_address_cap() -> None:
    gate = Handshakes(
        timeout=10.0,
        max_head=32768,
        limit=100,
        per_ip=2,
        proxies=TrustedProxies.parse("10.0.0.0/8"),
    )
    assert [gate.enter("10.1.2.3") for _ in range(5)] == [""] * 5
    assert [gate.enter("127.0.0.1") for _ in range(3)] == ["127.0.0.1", "127.0.0.1", None]
