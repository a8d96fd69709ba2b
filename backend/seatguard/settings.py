"""Server configuration, read once from the environment and CLI flags."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .presence import Timing
from .proxies import DEFAULT_TRUSTED_PROXIES, TrustedProxies
from .signals.checks import Thresholds

__all__ = ["ENV_PREFIX", "EVALUATION_IPS", "HEALTH_DETAILS", "MAX_DROP_GRACE", "Settings"]

ENV_PREFIX = "SEATGUARD_"
HEALTH_DETAILS = ("public", "local", "off")
"""Who sees the details of `/healthz` (node, tabs, admission times, collector): anyone, only
clients on the loopback interface, or nobody; the status is for everyone."""
MAX_DROP_GRACE = 600.0
"""The longest a dropped socket's browser may keep its seat: longer, and a browser gone for
good (a laptop closed mid-page) keeps others waiting for nothing."""
EVALUATION_IPS = ("full", "truncated")
"""How the address of a session is kept in its policy evaluations: as seen, or only its
network (IPv4 /24, IPv6 /48: `signals.evaluations.truncated_ip`)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of one server process. Environment: SEATGUARD_<FIELD NAME IN CAPS>."""

    host: str = "127.0.0.1"  # interface to listen on
    port: int = 8000  # TCP port to listen on
    db: str = "seatguard.db"  # SQLite file holding sites, overrides and the audit trail
    database_url: str = ""  # postgresql://... to keep them in PostgreSQL instead
    redis_url: str = ""  # redis://... to share presence with other nodes (default: memory)
    node_lease: float = 10.0  # a node silent this long is dead: its tabs are released
    redis_timeout: float = 2.0  # seconds before a Redis command counts as failed
    heartbeat_interval: float = 25.0  # seconds between heartbeats of each tab
    session_timeout: float = 75.0  # a tab silent this long is dropped and its seat freed
    reload_grace: float = 5.0  # a browser whose tabs all left keeps its seat this long
    unload_grace: float = 1.5  # the same after a goodbye with no hint of a next page
    drop_grace: float = 30.0  # the same after its socket closed without goodbye (up to 600)
    takeover_cooldown: float = 30.0  # a "use here" waits this long after the last (0: none)
    idle_warning: float = 60.0  # tabs warn this long before an idle timeout ends them (0: no)
    hello_timeout: float = 10.0  # a new socket must say hello within this many seconds
    handshake_timeout: float = 10.0  # a new connection must send its request head within this
    max_head_bytes: int = 32768  # larger request heads are refused (431)
    max_handshakes: int = 0  # connections not past their handshake at once (0: open files / 4)
    max_handshakes_per_ip: int = 64  # of those, from one address (IPv6: one /64)
    max_message_bytes: int = 16384  # larger frames (UTF-8 bytes) close the socket with 1009
    sweep_interval: float = 0.5  # seconds between expiry sweeps
    audit_key: str = ""  # HMAC key of the audit chain (hex or base64, >= 32 bytes)
    audit_key_file: str = ""  # file holding the audit key; default: <db>.audit-key
    audit_checkpoint_lag: int = 100  # records the head checkpoint may lag before appends wait
    secrets_key: str = ""  # hashes and seals the sites' secrets (hex or base64, >= 32 bytes)
    secrets_key_file: str = ""  # file holding the secrets key; default: <db>.secrets-key
    seat_keys: str = ""  # JWK Set (JSON) of the keys signing seat tokens (seat/source.py)
    seat_keys_file: str = ""  # file holding that JWK Set; default: <db>.seat-keys
    public_url: str = ""  # URL this server is reached at, the seat tokens' `iss` (see `issuer`)
    site_cache_ttl: float = 2.0  # seconds a site's settings are cached by each node
    jwks_refetch_interval: float = 30.0  # at most one fetch of a JWKS URI this often
    allow_private_urls: bool = False  # let sites' JWKS URIs and webhooks reach private addresses
    webhook_timeout: float = 5.0  # seconds one webhook attempt may take
    webhook_retry_base: float = 1.0  # the first retry waits up to this; each later one twice that
    webhook_retry_cap: float = 3600.0  # the longest wait between two attempts of a webhook
    webhook_retry_window: float = 259200.0  # a webhook still failing this long after it is dead
    webhook_lease: float = 60.0  # a node's claim on a webhook; then another node may retry it
    webhook_poll_interval: float = 1.0  # seconds between looks for due webhooks in the outbox
    event_streams_per_site: int = 16  # open event streams (GET /api/v1/events) of a site per node
    event_poll_interval: float = 1.0  # seconds between looks for events other nodes recorded
    event_heartbeat: float = 15.0  # seconds between heartbeat comments on an event stream
    gc_freeze_interval: float = 1.0  # seconds between freezes of survivors (0: as Python ships)
    gc_full_interval: float = 3600.0  # seconds between full garbage collections (0: never)
    trusted_proxies: str = DEFAULT_TRUSTED_PROXIES  # IPs and CIDRs whose X-Forwarded-* count
    health_details: str = "local"  # who sees /healthz's details: public, local (loopback) or off
    geoip_db: str = ""  # MaxMind DB file (GeoLite2-City, ...) for the geo checks; empty: off
    geoip_local: bool = False  # also locate private and loopback addresses with that file
    signals_window: float = 2592000.0  # seconds of device and IP history the checks look at
    travel_speed: float = 1000.0  # km/h faster than which travel between sessions is impossible
    travel_min_km: float = 100.0  # shorter distances (less accuracy radii) are never impossible
    evaluation_retention: float = 2592000.0  # seconds policy evaluations are kept (30 days)
    evaluation_ips: str = "full"  # addresses in evaluations: full, or truncated (/24, /48)
    demo: bool = False  # also serve the Acme Stream demo site
    log_level: str = "info"  # uvicorn log level

    def __post_init__(self) -> None:
        if (
            self.heartbeat_interval <= 0
            or self.reload_grace < 0
            or self.unload_grace < 0
            or self.hello_timeout <= 0
            or not 0 < self.handshake_timeout < math.inf
        ):
            raise ConfigError("timings must be positive")
        if not 0 <= self.drop_grace <= MAX_DROP_GRACE:
            raise ConfigError(f"the drop grace must be between 0 and {MAX_DROP_GRACE:g} seconds")
        if not (0 <= self.takeover_cooldown < math.inf and 0 <= self.idle_warning < math.inf):
            raise ConfigError("the take-over cooldown and idle warning must be 0 or positive")
        if self.session_timeout <= self.heartbeat_interval:
            raise ConfigError(
                f"session timeout ({self.session_timeout}s) must be longer than the "
                f"heartbeat interval ({self.heartbeat_interval}s)"
            )
        if self.max_message_bytes < 256:
            raise ConfigError("max message bytes must be at least 256")
        if self.audit_checkpoint_lag < 1:
            raise ConfigError("the audit checkpoint lag must be at least one record")
        if self.max_head_bytes < 1024:
            raise ConfigError("max head bytes must be at least 1024")
        if self.max_handshakes < 0 or self.max_handshakes_per_ip < 1:
            raise ConfigError("max handshakes must be 0 (automatic) or more; per IP at least 1")
        if self.sweep_interval <= 0:
            raise ConfigError("sweep interval must be positive")
        if self.node_lease <= 0 or self.redis_timeout <= 0:
            raise ConfigError("node lease and Redis timeout must be positive")
        if not 0 < self.jwks_refetch_interval < math.inf:
            raise ConfigError("the JWKS refetch interval must be positive")
        if not (0 <= self.gc_freeze_interval < math.inf and 0 <= self.gc_full_interval < math.inf):
            raise ConfigError("garbage collector intervals must be 0 or positive")
        if not (
            0 < self.webhook_timeout < self.webhook_lease < math.inf
            and 0 < self.webhook_retry_base <= self.webhook_retry_cap < math.inf
            and 0 < self.webhook_retry_window < math.inf
            and 0 < self.webhook_poll_interval < math.inf
        ):
            raise ConfigError(
                "webhook timings must be positive and finite, the lease longer than the "
                "timeout and the retry cap at least the retry base"
            )
        if self.event_streams_per_site < 1 or not (
            0 < self.event_poll_interval < math.inf and 0 < self.event_heartbeat < math.inf
        ):
            raise ConfigError(
                "event streams per site must be at least 1, their poll interval and "
                "heartbeat positive and finite"
            )
        if self.health_details not in HEALTH_DETAILS:
            raise ConfigError(
                f"health details must be one of {', '.join(HEALTH_DETAILS)}, "
                f"not {self.health_details!r}"
            )
        self.proxies  # noqa: B018 (a bad entry raises here, at start-up)
        if not (
            0 < self.signals_window < math.inf
            and 0 < self.travel_speed < math.inf
            and 0 <= self.travel_min_km < math.inf
        ):
            raise ConfigError(
                "the signals window and travel speed must be positive and finite, the "
                "travel minimum distance 0 or more"
            )
        if not 0 < self.evaluation_retention < math.inf:
            raise ConfigError("the evaluation retention must be a positive number of seconds")
        if self.evaluation_ips not in EVALUATION_IPS:
            raise ConfigError(
                f"evaluation IPs must be one of {', '.join(EVALUATION_IPS)}, "
                f"not {self.evaluation_ips!r}"
            )
        if self.public_url:
            _check_public_url(self.public_url)
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"not a Redis URL: {self.redis_url!r} (expected redis://host:port)")

    @property
    def database(self) -> str:
        """Where durable records live: the PostgreSQL URL if set, else the SQLite file."""
        return self.database_url or self.db

    @property
    def issuer(self) -> str:
        """The `iss` of seat tokens: `public_url` without a trailing slash, else
        `http://<host>:<port>` (`localhost` for a wildcard host). Give `public_url` behind
        a proxy and with several nodes: every node must sign with the same issuer."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def proxies(self) -> TrustedProxies:
        """The trusted proxies, parsed (`proxies.TrustedProxies`): read it once."""
        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def timing(self) -> Timing:
        return Timing(
            session_timeout=self.session_timeout,
            reload_grace=self.reload_grace,
            unload_grace=self.unload_grace,
            drop_grace=self.drop_grace,
            takeover_cooldown=self.takeover_cooldown,
        )

    @property
    def thresholds(self) -> Thresholds:
        """What the checks (signals/checks.py) count as new, and as impossible travel."""
        return Thresholds(
            window=self.signals_window,
            travel_speed=self.travel_speed,
            travel_min_km=self.travel_min_km,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from SEATGUARD_* variables; `overrides` (CLI flags, not None) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _check_public_url(url: str) -> None:
    """Refuse a `public_url` that is not a plain http(s) URL: no user, query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or "#" in url
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise ConfigError(
            f"public URL {url!r} must be an http(s) URL such as https://seats.example.com"
        )


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind: type[Any] = type(f.default)
    try:
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{f.name.upper()}: cannot read {raw!r}") from None
