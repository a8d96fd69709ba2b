"""Caps on unfinished handshakes: overall, per address, local proxies exempt."""

from __future__ import annotations

import pytest

from seatguard.errors import ConfigError
from seatguard.handshakes import Handshakes, client_key, default_limit, head_size, plain_response
from seatguard.settings import Settings


def gate(limit: int = 10, per_ip: int = 3) -> Handshakes:
    return Handshakes(timeout=10.0, max_head=32768, limit=limit, per_ip=per_ip)


def test_one_address_is_held_to_its_cap_and_the_others_are_not() -> None:
    g = gate()
    keys = [g.enter("198.51.100.7") for _ in range(3)]
    assert keys == ["198.51.100.7"] * 3
    assert g.enter("198.51.100.7") is None  # its fourth
    assert g.enter("198.51.100.8") == "198.51.100.8"  # another address
    g.leave("198.51.100.7")
    assert g.enter("198.51.100.7") == "198.51.100.7"  # a place freed
    assert (g.count, g.refused) == (4, 1)


def test_past_the_overall_cap_every_address_is_turned_away() -> None:
    g = gate(limit=4, per_ip=3)
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
        assert g.enter(ip) is not None
    assert g.enter("192.0.2.5") is None
    assert g.enter("127.0.0.1") is None  # a local proxy too: the overall cap holds for all
    g.leave("192.0.2.1")
    assert g.enter("192.0.2.5") == "192.0.2.5"


def test_local_proxies_are_exempt_from_the_per_address_cap() -> None:
    g = gate(limit=100, per_ip=2)
    keys = [g.enter("127.0.0.1") for _ in range(5)] + [g.enter("::1") for _ in range(5)]
    assert keys == [""] * 10
    assert g.enter("127.0.0.2") == "127.0.0.2"  # any other loopback address is not a proxy
    for key in keys:
        assert key is not None
        g.leave(key)
    assert g.count == 1 and g.stats()["unfinished"] == 1


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"  # IPv4 on a dual-stack socket
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("") == ""
    g = gate(per_ip=2)
    assert g.enter("2001:db8::1") and g.enter("2001:db8::2")
    assert g.enter("2001:db8::3") is None  # same /64: one client rotating addresses


def test_the_default_cap_is_a_quarter_of_the_open_files() -> None:
    assert default_limit(256) == 64
    assert default_limit(1_048_576) == 262_144
    assert default_limit(20) == 16  # never none at all
    settings = Settings(max_handshakes_per_ip=5)
    g = Handshakes.from_settings(settings, open_files=1024)
    assert (g.limit, g.per_ip, g.timeout, g.max_head) == (256, 5, 10.0, 32768)
    assert Handshakes.from_settings(Settings(max_handshakes=50), 1024).limit == 50


@pytest.mark.parametrize(
    "changes",
    [
        {"handshake_timeout": 0},
        {"handshake_timeout": float("inf")},
        {"max_head_bytes": 100},
        {"max_handshakes": -1},
        {"max_handshakes_per_ip": 0},
    ],
)
def test_bad_handshake_settings_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Settings(**changes)  # type: ignore[arg-type]


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "SEATGUARD_HANDSHAKE_TIMEOUT": "3.5",
            "SEATGUARD_MAX_HEAD_BYTES": "8192",
            "SEATGUARD_MAX_HANDSHAKES": "500",
            "SEATGUARD_MAX_HANDSHAKES_PER_IP": "20",
        }
    )
    assert (settings.handshake_timeout, settings.max_head_bytes) == (3.5, 8192)
    assert (settings.max_handshakes, settings.max_handshakes_per_ip) == (500, 20)


def test_head_size_and_plain_responses() -> None:
    assert head_size(b"/ws/v1", [(b"host", b"h"), (b"x", b"yy")]) == 6 + (4 + 1 + 4) + (1 + 2 + 4)
    response = plain_response(503, "Service Unavailable", "busy\n", "Retry-After: 1")
    assert response == (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n"
        b"Connection: close\r\n\r\nbusy\n"
    )
