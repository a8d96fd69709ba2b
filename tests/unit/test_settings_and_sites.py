"""Settings from the environment, and site rules and origins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from seatguard.cli.main import main
from seatguard.errors import ConfigError
from seatguard.presence import Rules
from seatguard.protocol import Hello
from seatguard.rules import Claims
from seatguard.sealing import SecretBox
from seatguard.settings import Settings
from seatguard.sites import (
    Site,
    SiteConfig,
    changed_config,
    check_identity,
    identity_config,
    new_site,
    normalize_origin,
)

BOX = SecretBox(bytes(range(32)))


def make(name: str, origins: list[str], rules: Rules | None = None, **options: Any) -> Site:
    """A new site (its secrets in the clear are left aside)."""
    options.setdefault("client_settings", False)
    site, _ = new_site(name, origins, rules or Rules(), now=0, box=BOX, **options)
    return site


def test_health_details_are_for_loopback_clients_unless_told() -> None:
    assert Settings().health_details == "local"
    for who in ("public", "local", "off"):
        assert Settings.from_env({"SEATGUARD_HEALTH_DETAILS": who}).health_details == who


def test_evaluations_are_kept_30_days_with_full_addresses_unless_told() -> None:
    assert (Settings().evaluation_retention, Settings().evaluation_ips) == (30 * 86400, "full")
    env = {"SEATGUARD_EVALUATION_RETENTION": "3600.5", "SEATGUARD_EVALUATION_IPS": "truncated"}
    s = Settings.from_env(env)
    assert (s.evaluation_retention, s.evaluation_ips) == (3600.5, "truncated")


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
        ({"SEATGUARD_JWKS_REFETCH_INTERVAL": "0"}, "JWKS refetch interval"),
        ({"SEATGUARD_JWKS_REFETCH_INTERVAL": "nan"}, "JWKS refetch interval"),
        ({"SEATGUARD_GC_FREEZE_INTERVAL": "-1"}, "garbage collector intervals"),
        ({"SEATGUARD_GC_FULL_INTERVAL": "inf"}, "garbage collector intervals"),
        ({"SEATGUARD_HEALTH_DETAILS": "everyone"}, "health details must be one of public"),
        ({"SEATGUARD_HEALTH_DETAILS": "LOCAL"}, "health details must be one of public"),
        ({"SEATGUARD_EVALUATION_RETENTION": "0"}, "evaluation retention must be a positive"),
        ({"SEATGUARD_EVALUATION_RETENTION": "-86400"}, "evaluation retention"),
        ({"SEATGUARD_EVALUATION_RETENTION": "inf"}, "evaluation retention"),
        ({"SEATGUARD_EVALUATION_RETENTION": "nan"}, "evaluation retention"),
        ({"SEATGUARD_EVALUATION_RETENTION": "30d"}, "SEATGUARD_EVALUATION_RETENTION"),
        ({"SEATGUARD_EVALUATION_IPS": "partial"}, "evaluation IPs must be one of full, truncated"),
        ({"SEATGUARD_EVALUATION_IPS": "Truncated"}, "evaluation IPs must be one of full"),
        ({"SEATGUARD_DROP_GRACE": "-1"}, "drop grace must be between 0 and 600 seconds"),
        ({"SEATGUARD_DROP_GRACE": "600.5"}, "drop grace must be between 0 and 600 seconds"),
        ({"SEATGUARD_DROP_GRACE": "inf"}, "drop grace must be between 0 and 600 seconds"),
        ({"SEATGUARD_DROP_GRACE": "nan"}, "drop grace must be between 0 and 600 seconds"),
        ({"SEATGUARD_DROP_GRACE": "30s"}, "SEATGUARD_DROP_GRACE: cannot read '30s'"),
        ({"SEATGUARD_TAKEOVER_COOLDOWN": "-0.5"}, "take-over cooldown and idle warning must"),
        ({"SEATGUARD_TAKEOVER_COOLDOWN": "inf"}, "take-over cooldown and idle warning must"),
        ({"SEATGUARD_TAKEOVER_COOLDOWN": "nan"}, "take-over cooldown and idle warning must"),
        ({"SEATGUARD_TAKEOVER_COOLDOWN": "soon"}, "SEATGUARD_TAKEOVER_COOLDOWN: cannot read"),
        ({"SEATGUARD_IDLE_WARNING": "-60"}, "take-over cooldown and idle warning must"),
        ({"SEATGUARD_IDLE_WARNING": "inf"}, "take-over cooldown and idle warning must"),
        ({"SEATGUARD_IDLE_WARNING": "nan"}, "take-over cooldown and idle warning must"),
        ({"SEATGUARD_IDLE_WARNING": "1m"}, "SEATGUARD_IDLE_WARNING: cannot read '1m'"),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_drop_grace_cooldown_and_idle_warning_take_their_bounds_and_0() -> None:
    env = {"SEATGUARD_DROP_GRACE": "600", "SEATGUARD_TAKEOVER_COOLDOWN": "0"}
    s = Settings.from_env({**env, "SEATGUARD_IDLE_WARNING": "0"})
    assert (s.drop_grace, s.takeover_cooldown, s.idle_warning) == (600.0, 0.0, 0.0)
    assert (s.timing.drop_grace, s.timing.takeover_cooldown) == (600.0, 0.0)
    assert Settings.from_env({"SEATGUARD_DROP_GRACE": "0"}).drop_grace == 0.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--drop-grace", "601"], "the drop grace must be between 0 and 600 seconds"),
        (["--drop-grace", "-1"], "the drop grace must be between 0 and 600 seconds"),
        (["--takeover-cooldown", "-5"], "take-over cooldown and idle warning must be 0 or"),
        (["--idle-warning", "-1"], "take-over cooldown and idle warning must be 0 or"),
        (["--idle-warning", "nan"], "take-over cooldown and idle warning must be 0 or"),
        (["--idle-warning", "soon"], "'soon' is not a valid float"),
        (["--takeover-cooldown", "1e999"], "take-over cooldown and idle warning must be 0 or"),
    ],
)
def test_bad_drop_grace_cooldown_and_idle_warning_flags_stop_serve_with_exit_2(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    done = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "s.db"), *flags])
    assert done.exit_code == 2, done.output
    assert message in done.output
    assert "Traceback" not in done.output and not (tmp_path / "s.db").exists()


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


@pytest.mark.parametrize(
    "raw",
    ["example.com", "ftp://x.org", "https://x.org/path", "", "http://x.org:port", "http://x:99999"],
)
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
    site = make("Shop", ["https://shop.example", "self"])
    own = "http://127.0.0.1:8000"
    assert site.allows_origin("https://shop.example", own)
    assert site.allows_origin("HTTPS://SHOP.EXAMPLE", own)
    assert site.allows_origin(own, own)
    assert not site.allows_origin("https://evil.example", own)
    assert not site.allows_origin(None, own)


def test_client_settings_apply_only_where_allowed() -> None:
    rules = Rules(limit=2)
    locked = make("A", ["*"], rules)
    open_ = make("B", ["*"], rules, client_settings=True)
    asked = hello(limit=5, mode="device-limit", org="acme")
    assert locked.page_claims(asked) is None
    assert open_.page_claims(asked) == Claims("u", org="acme", mode="device-limit", limit=5)
    assert open_.page_claims(hello(user=None)) is None


def test_new_sites_get_distinct_keys_and_keep_their_secrets_only_hashed_or_sealed() -> None:
    a, shown_a = new_site("A", ["*"], Rules(), client_settings=False, now=0, box=BOX)
    b, shown_b = new_site("B", ["*"], Rules(), client_settings=False, now=0, box=BOX)
    assert a.key.startswith("pk_") and shown_a["secret"].startswith("sk_")
    assert shown_a["identity_secret"].startswith("ik_")
    assert a.key != b.key and shown_a != shown_b
    assert shown_a["secret"] != shown_a["identity_secret"]
    kept = repr(a)
    assert shown_a["secret"] not in kept and shown_a["identity_secret"] not in kept
    assert a.secrets.secret_key.current == BOX.digest(shown_a["secret"])
    assert a.secrets.webhook.current is None  # none until a webhook is set
    with pytest.raises(ConfigError):
        new_site(" ", ["*"], Rules(), client_settings=False, now=0, box=BOX)


def test_identity_issuer_defaults_to_the_site_key() -> None:
    secret = ("ik_" + "x" * 43,)
    site = make("A", ["*"])
    assert identity_config(site, secrets=secret).issuer == site.key
    own = SiteConfig(identity_issuer="https://id.example")
    site = make("B", ["*"], config=own)
    assert identity_config(site, secrets=secret).issuer == "https://id.example"


# Keys fetched from a JWKS URI: one source of keys per purpose.

JWKS = {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k1"}]}  # only stored here
URI = "https://login.example.com/jwks"


def test_jwks_uris_are_checked_when_a_site_config_is_made() -> None:
    assert SiteConfig(identity_jwks_uri=URI, oidc_jwks_uri="http://127.0.0.1:8080/k").oidc_jwks_uri
    with pytest.raises(ValueError, match=r"identity_jwks_uri: .* must use https"):
        SiteConfig(identity_jwks_uri="http://login.example.com/jwks")
    with pytest.raises(ValueError, match="oidc_jwks_uri and oidc_jwks are exclusive"):
        SiteConfig(oidc_jwks_uri=URI, oidc_jwks=JWKS)
    with pytest.raises(ValueError, match="identity_jwks_uri and identity_public_key are excl"):
        SiteConfig(identity_jwks_uri=URI, identity_public_key="-----BEGIN PUBLIC KEY-----")
    with pytest.raises(msgspec.ValidationError, match="must use https"):
        msgspec.json.decode(b'{"oidc_jwks_uri": "http://op.example/k"}', type=SiteConfig)


def test_a_key_source_given_replaces_the_others_of_its_purpose() -> None:
    stored = SiteConfig(identity_algorithm="RS256", identity_jwks=JWKS, oidc_jwks=JWKS)
    moved = changed_config(stored, {"identity_jwks_uri": URI})
    assert (moved.identity_jwks_uri, moved.identity_jwks, moved.oidc_jwks) == (URI, None, JWKS)
    back = changed_config(moved, {"identity_public_key": "PEM"})
    assert (back.identity_public_key, back.identity_jwks_uri) == ("PEM", None)
    cleared = changed_config(
        changed_config(stored, {"oidc_jwks_uri": URI}), {"oidc_jwks_uri": None}
    )
    assert (cleared.oidc_jwks_uri, cleared.oidc_jwks) == (None, None)
    with pytest.raises(ConfigError, match="oidc_jwks and oidc_jwks_uri are exclusive"):
        changed_config(stored, {"oidc_jwks": JWKS, "oidc_jwks_uri": URI})
    with pytest.raises(ConfigError, match="must use https"):
        changed_config(stored, {"oidc_jwks_uri": "http://op.example/jwks"})


def test_identity_keys_from_a_uri_are_for_public_key_algorithms() -> None:
    def site(**config: Any) -> Site:
        return make("A", ["*"], config=SiteConfig(**config))

    check_identity(site(identity_algorithm="RS256", identity_jwks_uri=URI))
    check_identity(site(identity_algorithm="ES256", identity_jwks_uri=URI, identity_required=True))
    with pytest.raises(ConfigError, match="RS256/ES256"):
        check_identity(site(identity_jwks_uri=URI))  # HS256
    with pytest.raises(ConfigError, match="one of public_key or jwks"):
        check_identity(site(identity_algorithm="RS256"))
    with pytest.raises(ConfigError, match="fetch them first"):
        identity_config(site(identity_algorithm="RS256", identity_jwks_uri=URI))
