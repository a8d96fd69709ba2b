"""Settings from the environment, and site rules and origins."""

from __future__ import annotations

import pytest

from seatguard.errors import ConfigError
from seatguard.presence import Rules
from seatguard.protocol import Hello
from seatguard.rules import Claims
from seatguard.settings import Settings
from seatguard.sites import SiteConfig, identity_config, new_site, normalize_origin


def test_settings_read_the_environment_and_flags_win() -> None:
    env = {"SEATGUARD_PORT": "9000", "SEATGUARD_RELOAD_GRACE": "2.5", "SEATGUARD_DEMO": "yes"}
    s = Settings.from_env(env, port=9100)
    assert (s.port, s.reload_grace, s.demo) == (9100, 2.5, True)
    assert s.timing.reload_grace == 2.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEATGUARD_PORT": "eighty"}, "SEATGUARD_PORT"),
        ({"SEATGUARD_SESSION_TIMEOUT": "5", "SEATGUARD_HEARTBEAT_INTERVAL": "10"}, "longer"),
        ({"SEATGUARD_MAX_MESSAGE_BYTES": "10"}, "at least"),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Example.com", "https://example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("self", "self"),
        ("*", "*"),
    ],
)
def test_origins_are_normalized(raw: str, origin: str) -> None:
    assert normalize_origin(raw) == origin


@pytest.mark.parametrize("raw", ["example.com", "ftp://x.org", "https://x.org/path", ""])
def test_non_origins_are_refused(raw: str) -> None:
    with pytest.raises(ConfigError):
        normalize_origin(raw)


def hello(**changes: object) -> Hello:
    base: dict[str, object] = dict(
        v=1, site="k", user="u", session="s" * 8, tab="t" * 8, device="d" * 8
    )
    base.update(changes)
    return Hello(**base)  # type: ignore[arg-type]


def test_site_origin_checks() -> None:
    site = new_site("Shop", ["https://shop.example", "self"], Rules(), client_settings=False, now=0)
    own = "http://127.0.0.1:8000"
    assert site.allows_origin("https://shop.example", own)
    assert site.allows_origin("HTTPS://SHOP.EXAMPLE", own)
    assert site.allows_origin(own, own)
    assert not site.allows_origin("https://evil.example", own)
    assert not site.allows_origin(None, own)


def test_client_settings_apply_only_where_allowed() -> None:
    rules = Rules(limit=2)
    locked = new_site("A", ["*"], rules, client_settings=False, now=0)
    open_ = new_site("B", ["*"], rules, client_settings=True, now=0)
    asked = hello(limit=5, mode="device-limit", org="acme")
    assert locked.page_claims(asked) is None
    assert open_.page_claims(asked) == Claims("u", org="acme", mode="device-limit", limit=5)
    assert open_.page_claims(hello(user=None)) is None


def test_new_sites_get_distinct_keys() -> None:
    a = new_site("A", ["*"], Rules(), client_settings=False, now=0)
    b = new_site("B", ["*"], Rules(), client_settings=False, now=0)
    assert a.key.startswith("pk_") and a.secret.startswith("sk_")
    assert a.key != b.key and a.secret != b.secret
    with pytest.raises(ConfigError):
        new_site(" ", ["*"], Rules(), client_settings=False, now=0)


def test_identity_issuer_defaults_to_the_site_key() -> None:
    site = new_site("A", ["*"], Rules(), client_settings=False, now=0)
    assert identity_config(site).issuer == site.key
    own = SiteConfig(identity_issuer="https://id.example")
    site = new_site("B", ["*"], Rules(), client_settings=False, now=0, config=own)
    assert identity_config(site).issuer == "https://id.example"
