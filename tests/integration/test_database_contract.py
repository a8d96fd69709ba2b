"""One contract, two databases: SQLite in a file and PostgreSQL on a throwaway server.

Every test here runs against both (`backend` is parametrized); the PostgreSQL one gets a
fresh database of its own on the session's server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import asyncpg
import msgspec
import pytest

from seatguard.audit import AuditEvent, AuditKind, ProblemKind, VerifyReport, verify
from seatguard.db import Database, PostgresDatabase, SqliteDatabase, open_database
from seatguard.db import postgres as pg
from seatguard.db import sqlite as lite
from seatguard.db.rows import BACKLOG, SECRETS_SCHEMA
from seatguard.errors import ConfigError, InvalidPolicy
from seatguard.outbox import Backlog, Completion, Delivery, DeliveryState
from seatguard.presence import Rules
from seatguard.rules import Override
from seatguard.sealing import SecretBox
from seatguard.signals.checks import SessionView, Thresholds
from seatguard.signals.evaluations import DryRunOut, EvaluationRecord, RiskOut
from seatguard.signals.history import Stored, fold, trust
from seatguard.signals.places import Place
from seatguard.signals.policies import Policy, parse_policy
from seatguard.site_secrets import Rotating, opened
from seatguard.sites import Site, SiteConfig, new_site
from seatguard.suspension import Suspension
from seatguard.webhooks import EventType
from tests.helpers import fresh_postgres_database, scaled

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))
C, D, I, R = (  # noqa: E741
    ProblemKind.changed,
    ProblemKind.deleted,
    ProblemKind.inserted,
    ProblemKind.reordered,
)
COLUMNS = "at, site, user_id, session, device, ip, kind, reason, detail, prev, hash"


class Backend:
    """One kind of database under test: how to open it, and raw SQL from outside the app."""

    name: str
    target: str  # what `open_database` takes
    integrity_error: type[Exception]  # what a broken constraint or trigger raises
    migrations: int  # how many schema steps the backend has
    sealing: int  # the version of the step that seals secrets (the earlier ones keep them clear)

    async def open(self) -> Database:
        return await open_database(self.target)

    async def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements on a connection of their own; the rows of the last."""
        raise NotImplementedError

    async def drop_triggers(self) -> None:
        raise NotImplementedError

    async def schema_versions(self) -> list[int]:
        """The migrations recorded as done, in order."""
        raise NotImplementedError

    async def legacy(self, *statements: str) -> None:
        """Make the schema of the version before secrets were sealed, then run `statements`."""
        raise NotImplementedError

    async def tamper(self, *statements: str) -> None:
        """Edit rows the way an intruder with database access would: triggers first."""
        await self.drop_triggers()
        await self.sql(*statements)


class SqliteBackend(Backend):
    name, integrity_error, migrations = "sqlite", sqlite3.IntegrityError, len(lite.MIGRATIONS)
    sealing = lite.MIGRATIONS.index(SECRETS_SCHEMA) + 1

    def __init__(self, path: Path) -> None:
        self.target = str(path)

    async def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        async with aiosqlite.connect(self.target) as conn:
            await conn.execute(f"PRAGMA busy_timeout={int(scaled(10_000))}")
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = [tuple(r) for r in await conn.execute_fetchall(statement)]
            await conn.commit()
            return rows

    async def drop_triggers(self) -> None:
        await self.sql("DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete")

    async def schema_versions(self) -> list[int]:
        [(version,)] = await self.sql("PRAGMA user_version")
        return list(range(1, version + 1))

    async def legacy(self, *statements: str) -> None:
        steps = [x for step in lite.MIGRATIONS[: self.sealing - 1] for x in step]
        await self.sql(*steps, f"PRAGMA user_version={self.sealing - 1}", *statements)


class PostgresBackend(Backend):
    name, migrations = "postgres", len(pg.MIGRATIONS)
    sealing = pg.MIGRATIONS.index(SECRETS_SCHEMA) + 1
    integrity_error = asyncpg.IntegrityConstraintViolationError

    def __init__(self, url: str) -> None:
        self.target = url

    async def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(self.target)
        try:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = [tuple(r) for r in await conn.fetch(statement)]
            return rows
        finally:
            await conn.close()

    async def drop_triggers(self) -> None:
        await self.sql(
            "DROP TRIGGER audit_no_update ON audit", "DROP TRIGGER audit_no_delete ON audit"
        )

    async def schema_versions(self) -> list[int]:
        rows = await self.sql("SELECT version FROM schema_version ORDER BY version")
        return [v for (v,) in rows]

    async def legacy(self, *statements: str) -> None:
        steps = [x for step in pg.MIGRATIONS[: self.sealing - 1] for x in step]
        versions = [
            f"INSERT INTO schema_version (version) VALUES ({v})" for v in range(1, self.sealing)
        ]
        await self.sql(pg._SCHEMA_VERSION, *steps, *versions, *statements)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> str | None:
    """The throwaway PostgreSQL server's URL for the postgres runs (started only for them)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def backend(server: str | None, tmp_path: Path) -> AsyncIterator[Backend]:
    """An empty store: a new SQLite file, or a new database on the PostgreSQL server."""
    if server is None:
        yield SqliteBackend(tmp_path / "seatguard.db")
        return
    async with fresh_postgres_database(server) as url:
        yield PostgresBackend(url)


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Database]:
    database = await backend.open()
    yield database
    await database.close()


def event(n: int, *, user: str = "alice", site: str = "site-a", **detail: Any) -> AuditEvent:
    return AuditEvent(
        at=1_700_000_000.0 + n / 10,
        site=site,
        user=user,
        session=f"s{n}",
        device="dev-1",
        ip="203.0.113.7",
        kind=AuditKind.blocked,
        reason="limit",
        detail={"n": n, **detail},
    )


async def check(db: Database, key: bytes = KEY, **kw: Any) -> VerifyReport:
    return verify([r async for r in db.audit.all_records()], key, **kw)


JWKS = {
    "keys": [
        {"kty": "RSA", "kid": "k1", "use": "sig", "n": "0vx7agoebGcQSuuPiLJXZpt", "e": "AQAB"},
        {"kty": "EC", "kid": "k2", "crv": "P-256", "x": "f83OJ3D2", "y": "x_FEzRu9", "n": 1.5},
    ]
}


BOX = SecretBox(bytes(range(32, 64)))


def a_site(name: str, now: float, **config: Any) -> Site:
    site, _ = new_site(
        name,
        [f"https://{name.lower()}.example", "self"],
        Rules("device-limit", 3, "evict-oldest", idle_timeout=900.5, absolute_timeout=86400),
        client_settings=True,
        now=now,
        box=BOX,
        config=SiteConfig(**config),
    )
    return site


# --- sites -------------------------------------------------------------------------------


async def test_sites_are_added_found_listed_and_updated(db: Database, backend: Backend) -> None:
    full = a_site(
        "Stream",
        1_700_000_000.25,
        identity_required=True,
        identity_algorithm="RS256",
        identity_jwks=JWKS,
        identity_issuer="https://id.example",
        oidc_issuer="https://op.example",
        oidc_client_id="seatguard",
        oidc_jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "ext": True, "size": 256}]},
        webhook_url="https://hooks.example/in",
    )
    sealed = BOX.seal("whsec_" + "A" * 32, site=full.key, purpose="webhook")
    full = dataclasses.replace(
        full,
        secrets=dataclasses.replace(full.secrets, webhook=Rotating(sealed, "s1:old", 1e9 + 0.5)),
    )
    plain, _ = new_site("Plain", ["*"], Rules(), client_settings=False, now=1.7e9 + 100, box=BOX)
    older = a_site("News", 1_600_000_000.0)
    assert await db.sites() == []
    for site in (full, plain, older):
        await db.add_site(site)
    assert await db.site(full.key) == full
    assert await db.site(plain.key) == plain
    digest = full.secrets.secret_key.current
    assert digest is not None and digest.startswith("h1:")
    assert await db.site_by_secret_hash(digest) == full
    assert await db.site("pk_missing") is None
    assert await db.site_by_secret_hash(full.key) is None
    assert await db.site_by_secret_hash(digest + "\x00") is None
    assert await db.sites() == [older, full, plain]  # oldest first
    stored = await db.site(full.key)
    assert stored is not None and stored.config.identity_jwks == JWKS

    updated = dataclasses.replace(
        full,
        name="Stream Plus",
        origins=("https://plus.example",),
        rules=Rules(limit=2),
        client_settings=False,
        config=SiteConfig(identity_jwks={"keys": []}),
        secrets=plain.secrets,  # keys, secrets and creation time stay as they are
        created_at=1.0,
    )
    await db.update_site(updated)
    expected = dataclasses.replace(updated, secrets=full.secrets, created_at=full.created_at)
    assert await db.site(full.key) == expected
    assert await db.site_by_secret_hash(digest) == expected
    assert await db.site(plain.key) == plain


async def test_keys_and_secrets_are_unique(db: Database, backend: Backend) -> None:
    site = a_site("Shop", 1.0)
    await db.add_site(site)
    with pytest.raises(backend.integrity_error):
        other = dataclasses.replace(site.secrets, secret_key=Rotating("h1:other"))
        await db.add_site(dataclasses.replace(site, secrets=other))
    with pytest.raises(backend.integrity_error):
        await db.add_site(dataclasses.replace(site, key="pk_other"))  # the same secret key
    assert await db.sites() == [site]


# --- secrets -----------------------------------------------------------------------------


async def test_a_rotation_is_a_compare_and_set_keeping_the_replaced_secret_until_told(
    db: Database, backend: Backend
) -> None:
    site = a_site("Rotating", 1.0)
    await db.add_site(site)
    old = site.secrets.secret_key.current
    assert await db.rotate_secret(site.key, "secret_key", old, "h1:new", 100.0)
    got = await db.site(site.key)
    assert got is not None and got.secrets.secret_key == Rotating("h1:new", old, 100.0)
    assert got.secrets.identity == site.secrets.identity  # the other secrets stay
    assert old is not None and await db.site_by_secret_hash(old) == got  # overlap: the caller's
    # A rotation that read the secret before the first one changed it loses, and changes nothing.
    assert not await db.rotate_secret(site.key, "secret_key", old, "h1:late", None)
    assert await db.site(site.key) == got
    # Without an overlap the replaced secret is forgotten at once.
    assert await db.rotate_secret(site.key, "secret_key", "h1:new", "h1:newer", None)
    now = await db.site(site.key)
    assert now is not None and now.secrets.secret_key == Rotating("h1:newer")
    assert await db.site_by_secret_hash("h1:new") is None
    assert await db.site_by_secret_hash(old) is None
    # A site without a webhook gets its first webhook secret the same way, once.
    assert await db.rotate_secret(site.key, "webhook", None, "s1:first", None)
    assert not await db.rotate_secret(site.key, "webhook", None, "s1:second", None)
    assert not await db.rotate_secret("pk_missing", "identity", None, "s1:x", None)
    # Rotations racing from two processes: exactly one wins.
    other = await backend.open()
    try:
        current = site.secrets.identity.current
        results = await asyncio.gather(
            *(
                (db, other)[i % 2].rotate_secret(site.key, "identity", current, f"s1:{i}", 5.0)
                for i in range(10)
            )
        )
    finally:
        await other.close()
    assert results.count(True) == 1
    won = await db.site(site.key)
    assert won is not None and won.secrets.identity.current == f"s1:{results.index(True)}"


def legacy_site(secret: str, config: str = "{}") -> str:
    """A site row as the version before sealing wrote it: its secret key in the clear."""
    return (
        "INSERT INTO sites (key, secret, name, origins, mode, seat_limit, policy, "
        "client_settings, created_at, config) VALUES ('pk_old', "
        f"'{secret}', 'Old', '[\"*\"]', 'concurrence', 1, 'block-new', false, 1.0, '{config}')"
    )


async def test_secrets_kept_in_the_clear_by_an_earlier_version_are_sealed_on_opening(
    backend: Backend,
) -> None:
    # A database as the version before sealing left it, with one site in it.
    webhook = "whsec_" + "QUJD" * 11
    config = f'{{"webhook_url":"https://hooks.example/in","webhook_secret":"{webhook}"}}'
    secret = "sk_" + "L" * 43
    await backend.legacy(legacy_site(secret, config))
    with pytest.raises(ConfigError, match="open it once with the secrets key"):
        await open_database(backend.target)  # without the key: refused, nothing changed
    assert await backend.schema_versions() == list(range(1, backend.sealing))
    database = await open_database(backend.target, BOX)
    try:
        site = await database.site("pk_old")
        assert site is not None and site.config.webhook_url == "https://hooks.example/in"
        # The secret key opens the API as before, found by its keyed hash only...
        assert await database.site_by_secret_hash(BOX.digest(secret)) == site
        # ...it became the identity secret, so HS256 tokens signed as before still verify...
        assert opened(BOX, site, "identity", 2.0) == (secret,)
        # ...and the webhook secret left the settings, sealed.
        assert opened(BOX, site, "webhook", 2.0) == (webhook,)
    finally:
        await database.close()
    rows = await backend.sql(
        "SELECT secret_hash, identity_secret, webhook_secret, config FROM sites"
    )
    assert not any(secret in str(v) or webhook in str(v) for v in rows[0]), rows
    assert await backend.schema_versions() == list(range(1, backend.migrations + 1))


# --- overrides ---------------------------------------------------------------------------


async def test_overrides_are_set_replaced_queried_and_deleted(db: Database) -> None:
    site, other = a_site("A", 1.0), a_site("B", 2.0)
    await db.add_site(site)
    await db.add_site(other)
    org = Override("org", "acme", mode="device-limit", limit=5, policy="challenge")
    role = Override("role", "admin", limit=10, idle_timeout=60.5, absolute_timeout=3600)
    user = Override("user", "alice", policy="monitor")
    same_name = Override("user", "acme", limit=2)  # a user called like the org
    for o in (org, role, user, same_name):
        await db.set_override(site.key, o)
    await db.set_override(other.key, Override("org", "acme", limit=99))
    everything = {("org", "acme"): org, ("role", "admin"): role}
    everything |= {("user", "alice"): user, ("user", "acme"): same_name}
    assert await db.overrides(site.key) == everything

    replaced = Override("org", "acme", limit=7)  # unset fields become None again
    await db.set_override(site.key, replaced)
    assert (await db.overrides(site.key))[("org", "acme")] == replaced

    wanted = await db.overrides(site.key, {"org": "acme", "role": None, "user": "alice"})
    assert wanted == {("org", "acme"): replaced, ("user", "alice"): user}
    assert await db.overrides(site.key, {"user": "acme"}) == {("user", "acme"): same_name}
    assert await db.overrides(site.key, {"org": "nobody", "role": "admin"}) == {
        ("role", "admin"): role
    }
    assert await db.overrides(site.key, {"org": None, "role": None, "user": None}) == {}
    assert await db.overrides(site.key, {}) == {}
    assert await db.overrides("pk_missing") == {}
    assert await db.overrides(other.key) == {("org", "acme"): Override("org", "acme", limit=99)}

    assert await db.delete_override(site.key, "org", "acme") is True
    assert await db.delete_override(site.key, "org", "acme") is False
    assert await db.delete_override(site.key, "role", "alice") is False
    assert ("org", "acme") not in await db.overrides(site.key)
    assert ("org", "acme") in await db.overrides(other.key)


async def test_an_override_needs_its_site(db: Database, backend: Backend) -> None:
    with pytest.raises(backend.integrity_error):
        await db.set_override("pk_missing", Override("user", "alice", limit=2))


# --- policies ----------------------------------------------------------------------------

A_POLICY = parse_policy(
    {
        "rules": [
            {"name": "travel", "when": {"check": "impossible_travel"}, "verdict": "suspend"},
            {
                "name": "shared",
                "when": {"check": "ip_country", "op": "not in", "value": ["FR", "DE"]},
                "verdict": "challenge",
                "dry_run": True,
            },
        ],
        "orgs": {"a/b ünï": [{"name": "high", "when": {"risk": "high"}, "verdict": "block"}]},
        "risk": {"weights": {"is_new_ip": 0}, "cutoffs": {"maximum": 500}},
    }
)


async def test_a_policy_is_set_replaced_and_read_per_site(db: Database) -> None:
    site, other = a_site("A", 1.0), a_site("B", 2.0)
    await db.add_site(site)
    await db.add_site(other)
    assert await db.policy(site.key) is None
    await db.set_policy(site.key, A_POLICY)
    assert await db.policy(site.key) == A_POLICY
    assert await db.policy(other.key) is None
    await db.set_policy(other.key, Policy())
    replaced = Policy(rules=A_POLICY.rules[:1])
    await db.set_policy(site.key, replaced)
    assert await db.policy(site.key) == replaced
    assert await db.policy(other.key) == Policy()
    assert await db.policy("pk_missing") is None
    assert await db.policy("pk_\x00") is None


async def test_a_policy_needs_its_site(db: Database, backend: Backend) -> None:
    with pytest.raises(backend.integrity_error):
        await db.set_policy("pk_missing", A_POLICY)


async def test_a_stored_policy_that_no_longer_holds_is_refused_as_it_is_read(
    db: Database, backend: Backend
) -> None:
    site = a_site("A", 1.0)
    await db.add_site(site)
    await db.set_policy(site.key, A_POLICY)
    document = '{"rules": [{"name": "x", "when": {"check": "gone"}, "verdict": "block"}]}'
    await backend.sql(f"UPDATE policies SET document = '{document}'")
    with pytest.raises(InvalidPolicy, match=r"rules\[0\]\.when\.check: unknown check 'gone'"):
        await db.policy(site.key)


# --- one-time token ids -------------------------------------------------------------------


async def test_a_token_id_is_remembered_once_per_site_and_issuer(db: Database) -> None:
    assert await db.remember_token("pk_a", "https://op", "j1", until=200, now=100) is True
    assert await db.remember_token("pk_a", "https://op", "j1", until=200, now=101) is False
    # jti values are unique per issuer only, and each site keeps its own.
    assert await db.remember_token("pk_a", "https://other-op", "j1", until=200, now=101) is True
    assert await db.remember_token("pk_b", "https://op", "j1", until=200, now=101) is True
    assert await db.remember_token("pk_a", "https://op", "j2", until=200, now=101) is True


async def test_a_forgotten_token_id_is_accepted_again(db: Database) -> None:
    assert await db.remember_token("pk_a", "https://op", "j1", until=200, now=100) is True
    await db.forget_token("pk_a", "https://op", "j1")
    await db.forget_token("pk_a", "https://op", "never-seen")  # forgetting nothing is fine
    assert await db.remember_token("pk_a", "https://op", "j1", until=200, now=101) is True
    assert await db.remember_token("pk_a", "https://op", "j1", until=200, now=102) is False


async def test_expired_token_ids_are_pruned(db: Database, backend: Backend) -> None:
    # Timeline: j1 is kept until 150, j2 until 300; at 150 j1 could not pass any more.
    assert await db.remember_token("pk_a", "iss", "j1", until=150, now=100) is True
    assert await db.remember_token("pk_a", "iss", "j2", until=300, now=100) is True
    assert await db.remember_token("pk_a", "iss", "j1", until=150, now=149) is False
    assert await db.remember_token("pk_a", "iss", "j3", until=400, now=150) is True
    assert sorted(r[0] for r in await backend.sql("SELECT jti FROM seen_tokens")) == ["j2", "j3"]
    assert await db.remember_token("pk_a", "iss", "j1", until=500, now=150) is True


async def test_one_token_id_racing_through_two_connections_is_taken_once(
    backend: Backend,
) -> None:
    first, second = await backend.open(), await backend.open()
    try:
        with anyio.fail_after(scaled(30)):
            answers = await asyncio.gather(
                *(
                    database.remember_token("pk_a", "iss", f"j{n % 5}", until=200, now=100)
                    for n in range(20)
                    for database in (first, second)
                )
            )
        assert sum(answers) == 5  # one winner per jti among 8 callers each
    finally:
        await first.close()
        await second.close()


# --- revocations -------------------------------------------------------------------------


async def test_revoked_sessions_are_refused_until_they_expire(db: Database) -> None:
    assert await db.revoked_sessions("pk_a", ["s1"], now=100) == set()
    await db.add_revocations("pk_a", "alice", ["s1", "s2", "s1"], at=100, until=200)
    await db.add_revocations("pk_b", "alice", ["s3"], at=100, until=200)
    await db.add_revocations("pk_a", "bob", [], at=100, until=200)  # nothing to record
    assert await db.revoked_sessions("pk_a", ["s1", "s2", "s3", "s9"], now=150) == {"s1", "s2"}
    assert await db.revoked_sessions("pk_b", ["s1", "s3"], now=150) == {"s3"}
    assert await db.revoked_sessions("pk_a", [], now=150) == set()
    assert await db.revoked_sessions("pk_a", ["s1"], now=199.5) == {"s1"}
    assert await db.revoked_sessions("pk_a", ["s1"], now=200) == set()  # refused until 200


async def test_a_session_revoked_again_keeps_the_later_expiry(db: Database) -> None:
    await db.add_revocations("pk_a", "alice", ["s1", "s2"], at=100, until=300)
    await db.add_revocations("pk_a", "alice", ["s1"], at=110, until=200)  # earlier: no change
    await db.add_revocations("pk_a", "alice", ["s2"], at=120, until=400)  # later: extends
    assert await db.revoked_sessions("pk_a", ["s1", "s2"], now=250) == {"s1", "s2"}
    assert await db.revoked_sessions("pk_a", ["s1", "s2"], now=350) == {"s2"}


async def test_expired_revocations_are_pruned(db: Database, backend: Backend) -> None:
    await db.add_revocations("pk_a", "alice", ["old"], at=100, until=150)
    await db.add_revocations("pk_a", "alice", ["new"], at=150, until=300)
    rows = await backend.sql("SELECT session, user_id, revoked_at FROM revoked_sessions")
    assert rows == [("new", "alice", 150.0)]


async def test_many_sessions_are_revoked_and_found_at_once(db: Database) -> None:
    sessions = [f"s{n:04}" for n in range(1234)]
    await db.add_revocations("pk_a", "alice", sessions[::2], at=100, until=200)
    assert await db.revoked_sessions("pk_a", sessions, now=150) == set(sessions[::2])


async def test_a_user_cutoff_only_moves_later(db: Database) -> None:
    assert await db.user_revoked_before("pk_a", "alice") is None
    await db.revoke_user_before("pk_a", "alice", at=100.5)
    assert await db.user_revoked_before("pk_a", "alice") == 100.5
    await db.revoke_user_before("pk_a", "alice", at=50)  # a late, older call changes nothing
    assert await db.user_revoked_before("pk_a", "alice") == 100.5
    await db.revoke_user_before("pk_a", "alice", at=200)
    assert await db.user_revoked_before("pk_a", "alice") == 200
    assert await db.user_revoked_before("pk_a", "bob") is None
    assert await db.user_revoked_before("pk_b", "alice") is None


async def test_revocations_and_token_ids_outlive_the_connection(backend: Backend) -> None:
    first = await backend.open()
    try:
        await first.add_revocations("pk_a", "alice", ["s1"], at=100, until=200)
        await first.revoke_user_before("pk_a", "alice", at=100)
        assert await first.remember_token("pk_a", "iss", "j1", until=200, now=100) is True
    finally:
        await first.close()
    again = await backend.open()  # a restart, or another server process
    try:
        assert await again.revoked_sessions("pk_a", ["s1"], now=150) == {"s1"}
        assert await again.user_revoked_before("pk_a", "alice") == 100
        assert await again.remember_token("pk_a", "iss", "j1", until=200, now=150) is False
    finally:
        await again.close()


# --- suspensions -------------------------------------------------------------------------


async def test_a_suspension_is_stored_once_and_lifted_once(db: Database) -> None:
    first = Suspension("pk_a", "alice", 100.25, "shared the account", "api")
    assert await db.suspension("pk_a", "alice") is None
    assert await db.suspend(first) == (first, True)
    later = Suspension("pk_a", "alice", 200.0, "again", "ops")
    assert await db.suspend(later) == (first, False)  # the one in force is kept
    assert await db.suspension("pk_a", "alice") == first
    assert await db.suspension("pk_b", "alice") is None  # another site's user
    assert await db.suspension("pk_a", "bob") is None
    assert await db.lift_suspension("pk_a", "alice", since=99.0) is None  # an older one
    assert await db.lift_suspension("pk_a", "alice") == first
    assert await db.lift_suspension("pk_a", "alice") is None
    assert await db.suspension("pk_a", "alice") is None


async def test_suspending_at_once_from_two_connections_makes_one(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    try:
        results = await asyncio.gather(
            *(
                db.suspend(Suspension("pk_a", "alice", 100.0 + n, f"r{n}", "api"))
                for n, db in enumerate([first, second, first, second])
            )
        )
        assert sum(created for _, created in results) == 1
        assert len({s for s, _ in results}) == 1
        lifts = await asyncio.gather(
            first.lift_suspension("pk_a", "alice"), second.lift_suspension("pk_a", "alice")
        )
        assert sum(lift is not None for lift in lifts) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_sites_suspensions_are_listed_oldest_first(db: Database) -> None:
    for n, user in enumerate(["carol", "alice", "bob"]):
        await db.suspend(Suspension("pk_a", user, 100.0 + n, "", "api"))
    await db.suspend(Suspension("pk_b", "dave", 50.0, "", "api"))
    assert [s.user for s in await db.suspensions("pk_a", 10)] == ["carol", "alice", "bob"]
    assert [s.user for s in await db.suspensions("pk_a", 2)] == ["carol", "alice"]
    assert await db.suspensions("pk_c", 10) == []


async def test_suspension_text_round_trips_and_nul_finds_nothing(db: Database) -> None:
    odd = Suspension("pk_a", "zoë/ü", 1.5, "pärtage «x» 🙂" + "x" * 120, "ops")
    await db.suspend(odd)
    assert await db.suspension("pk_a", "zoë/ü") == odd
    assert await db.suspension("pk_a", "zoë/ü\x00") is None
    assert await db.lift_suspension("pk_a", "zoë/ü\x00") is None


# --- device and network history ------------------------------------------------------------

SEEN = SessionView(
    session="s1", device="laptop01", device_type="tablet", ip="81.0.0.1",
    place=Place("FR", 48.85, 2.35, 20.0), started=100.0, last_seen=160.0, active=True,
)  # fmt: skip


def seen(stored: Stored | None) -> Stored:
    return fold(stored, [SEEN], [], Thresholds(), 200.0)


async def test_a_history_is_stored_per_site_and_user_and_updated(db: Database) -> None:
    assert await db.history("pk_a", "alice") is None
    first = await db.update_history("pk_a", "alice", seen)
    assert first is not None and await db.history("pk_a", "alice") == first
    assert first.history.devices["laptop01"].country == "FR"
    assert await db.history("pk_b", "alice") is None
    assert await db.history("pk_a", "bob") is None
    trusted = await db.update_history("pk_a", "alice", lambda h: trust(h, "laptop01", True))
    assert trusted is not None and trusted.history.devices["laptop01"].trusted
    assert await db.history("pk_a", "alice") == trusted
    # A change that gives None writes nothing (an unknown device).
    assert await db.update_history("pk_a", "alice", lambda h: trust(h, "nope0000", True)) is None
    assert await db.update_history("pk_b", "alice", lambda h: trust(h, "laptop01", True)) is None
    assert await db.history("pk_a", "alice") == trusted
    assert await db.history("pk_b", "alice") is None


async def test_histories_of_many_users_are_read_together(db: Database) -> None:
    users = [f"user-{n:04d}" for n in range(1200)]  # more than one chunk of SQLite's
    for u in users[::100]:
        await db.update_history("pk_a", u, seen)
    await db.update_history("pk_b", users[1], seen)
    await db.update_history("pk_a", "zoë/ü", seen)
    found = await db.histories("pk_a", [*users, users[0], "zoë/ü", "zoë/ü\x00", "nobody"])
    assert sorted(found) == sorted([*users[::100], "zoë/ü"])
    assert found[users[0]] == await db.history("pk_a", users[0])
    assert await db.histories("pk_b", users[:3]) == {users[1]: await db.history("pk_b", users[1])}
    assert await db.histories("pk_a", []) == {}
    assert await db.histories("pk_a\x00", users[:1]) == {}


async def test_history_writers_on_two_connections_lose_no_change(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    try:

        def add(device: str) -> Callable[[Stored | None], Stored]:
            view = msgspec.structs.replace(SEEN, device=device)
            return lambda h: fold(h, [view], [], Thresholds(), 200.0)

        devices = [f"device{n:02d}" for n in range(12)]
        await asyncio.gather(
            *(
                db.update_history("pk_a", "alice", add(d))
                for db, d in zip(itertools.cycle([first, second]), devices, strict=False)
            )
        )
        stored = await first.history("pk_a", "alice")
        assert stored is not None and sorted(stored.history.devices) == devices
    finally:
        await first.close()
        await second.close()


async def test_an_unreadable_history_reads_as_none_and_is_replaced(
    db: Database, backend: Backend
) -> None:
    await db.update_history("pk_a", "alice", seen)
    await backend.sql("UPDATE user_history SET document = '{\"format\": 99}'")
    assert await db.history("pk_a", "alice") is None
    assert await db.histories("pk_a", ["alice"]) == {}
    replaced = await db.update_history("pk_a", "alice", seen)
    assert replaced is not None and await db.history("pk_a", "alice") == replaced


async def test_history_text_round_trips_and_nul_finds_nothing(db: Database) -> None:
    stored = await db.update_history("pk_a", "zoë/ü", seen)
    assert await db.history("pk_a", "zoë/ü") == stored
    assert await db.history("pk_a", "zoë/ü\x00") is None


# --- policy evaluations --------------------------------------------------------------------


def evaluation(
    at: float, *, user: str = "alice", site: str = "pk_a", n: int = 0
) -> EvaluationRecord:
    return EvaluationRecord(
        site=site, user=user, session=f"s{n}", device="laptop01", ip="203.0.113.7", at=at,
        trigger="hello" if n % 2 == 0 else "change",
        checks={"concurrent_sessions": True, "device_count": n, "ip_country": None},
        geo="off", risk=RiskOut(40 + n, "medium"), rule="two-at-once" if n else None,
        verdict="block" if n else "allow", applied=n % 3 != 0,
        dry_run=[DryRunOut("shadow", "suspend")] if n else [],
    )  # fmt: skip


async def test_evaluations_come_back_exactly_newest_first_per_site_and_user(
    db: Database,
) -> None:
    assert await db.evaluations("pk_a", "alice", limit=10) == []
    await db.add_evaluations([])
    stored = [evaluation(100.0 + n, n=n) for n in range(5)]
    await db.add_evaluations(stored[:2])
    await db.add_evaluations(
        [*stored[2:], evaluation(103.5, user="bob"), evaluation(103.5, site="pk_b")]
    )
    assert await db.evaluations("pk_a", "alice", limit=10) == stored[::-1]
    assert await db.evaluations("pk_a", "alice", limit=2) == stored[:2:-1]
    # `before` is exclusive: the page after the record at 103 starts with the one at 102.
    assert await db.evaluations("pk_a", "alice", limit=2, before=103.0) == stored[2::-1][:2]
    assert await db.evaluations("pk_a", "alice", limit=10, before=100.0) == []
    assert [r.user for r in await db.evaluations("pk_a", "bob", limit=10)] == ["bob"]
    assert [r.site for r in await db.evaluations("pk_b", "alice", limit=10)] == ["pk_b"]
    assert await db.evaluations("pk_c", "alice", limit=10) == []
    assert await db.evaluations("pk_a", "carol", limit=10) == []


async def test_evaluations_of_one_instant_are_newest_stored_first(db: Database) -> None:
    first, second, third = (evaluation(50.0, n=n) for n in (1, 2, 3))
    await db.add_evaluations([first, second])
    await db.add_evaluations([third])
    assert await db.evaluations("pk_a", "alice", limit=10) == [third, second, first]


async def test_old_evaluations_of_every_site_are_purged(db: Database) -> None:
    await db.add_evaluations([evaluation(10.0 * n, n=n) for n in range(1, 6)])
    await db.add_evaluations([evaluation(15.0, site="pk_b"), evaluation(45.0, user="bob")])
    assert await db.purge_evaluations(30.0) == 3  # 10, 15 and 20; 30 stays
    assert [r.at for r in await db.evaluations("pk_a", "alice", limit=10)] == [50.0, 40.0, 30.0]
    assert await db.evaluations("pk_b", "alice", limit=10) == []
    assert [r.at for r in await db.evaluations("pk_a", "bob", limit=10)] == [45.0]
    assert await db.purge_evaluations(30.0) == 0


async def test_evaluation_text_round_trips_and_nul_finds_nothing(db: Database) -> None:
    odd = [
        msgspec.structs.replace(
            evaluation(1.5, user=user, n=1), ip="2001:db8:7::", device="dk_" + "x" * 43
        )
        for user in ("a/b", "zoë/ü 🙂", "x" * 256)
    ]
    odd[0] = msgspec.structs.replace(odd[0], checks={"ip_country": "FR", "note": "«\x00»"})
    await db.add_evaluations(odd)
    for record in odd:
        assert await db.evaluations("pk_a", record.user, limit=5) == [record]
    assert await db.evaluations("pk_a", "a/b\x00", limit=5) == []
    assert await db.evaluations("pk_a\x00", "a/b", limit=5) == []


async def test_evaluations_are_added_all_or_none_in_batches(db: Database, backend: Backend) -> None:
    good = evaluation(1.0, n=1)
    bad = msgspec.structs.replace(evaluation(2.0, n=2), user="mallory\x00")
    if backend.name == "postgres":  # PostgreSQL text holds no NUL: refused before writing
        with pytest.raises(ValueError):
            await db.add_evaluations([good, bad])
        assert await db.evaluations("pk_a", "alice", limit=5) == []
    many = [evaluation(float(n), n=n) for n in range(500)]
    await db.add_evaluations(many)
    assert len(await db.evaluations("pk_a", "alice", limit=1000)) == 500


# --- audit -------------------------------------------------------------------------------


async def test_audit_appends_are_chained_and_verify(db: Database) -> None:
    audit = db.audit
    assert await audit.head() is None
    assert await audit.append([], KEY) == []
    appended = []
    for batch in ([event(1), event(2), event(3)], [event(4)], [event(5), event(6)]):
        appended += await audit.append(batch, KEY)
    assert [r.seq for r in appended] == [1, 2, 3, 4, 5, 6]
    assert appended[3].prev == appended[2].hash
    assert await audit.records() == appended
    assert [r async for r in audit.all_records()] == appended
    assert await audit.head() == (6, appended[-1].hash)
    report = await check(db, expected_head=(6, appended[-1].hash))
    assert (report.ok, report.count, report.head) == (True, 6, (6, appended[-1].hash))


async def test_audit_values_come_back_exactly(db: Database) -> None:
    """Numbers keep their type and every digit (this is why `detail` is text, not jsonb)."""
    detail = {
        "int": 1,
        "float": 1.0,
        "tiny": 1e-7,
        "sum": 0.1 + 0.2,
        "big": 2**53 + 1,
        "neg": -0.0,
        "yes": True,
        "none": None,
        "text": 'é ✓ "q" \\ \n\t\x01 😀',
    }
    odd = AuditEvent(1_700_000_000.123456789, "s", "ü", None, None, None, AuditKind.ended, None)
    weird = dataclasses.replace(odd, at=1e-300, detail=detail, session="", reason="ok")
    appended = await db.audit.append([odd, weird, dataclasses.replace(odd, at=1700000000)], KEY)
    stored = await db.audit.records()
    assert stored == appended
    types = {name: type(value) for name, value in stored[1].event.detail.items()}
    assert types == {name: type(value) for name, value in detail.items()}
    assert stored[2].event.at == 1_700_000_000.0 and isinstance(stored[2].event.at, float)
    assert (await check(db)).ok


async def test_audit_records_filter_by_site_user_and_seq(db: Database) -> None:
    who = [("site-a", "alice"), ("site-a", "bob"), ("site-b", "alice")] * 4
    await db.audit.append([event(n, site=s, user=u) for n, (s, u) in enumerate(who)], KEY)
    alice_a = await db.audit.records(site="site-a", user="alice")
    assert [r.seq for r in alice_a] == [1, 4, 7, 10]
    assert [r.seq for r in await db.audit.records(user="alice", after_seq=4, limit=2)] == [6, 7]
    assert [r.seq for r in await db.audit.records(site="site-b")] == [3, 6, 9, 12]
    assert await db.audit.records(after_seq=12) == []
    assert await db.audit.records(site="site-c") == []
    with pytest.raises(ValueError, match="positive"):
        await db.audit.records(limit=0)


async def test_audit_all_records_streams_every_page(db: Database) -> None:
    await db.audit.append([event(n) for n in range(1203)], KEY)
    assert [r.seq async for r in db.audit.all_records()] == list(range(1, 1204))
    assert (await check(db)).ok


async def test_a_failed_append_stores_nothing(db: Database) -> None:
    await db.audit.append([event(1)], KEY)
    broken = AuditEvent(float("nan"), "site-a", "alice", None, None, None, AuditKind.ended, None)
    with pytest.raises(ValueError, match="finite"):
        await db.audit.append([event(2), broken], KEY)
    with pytest.raises(ValueError, match="key"):
        await db.audit.append([event(2)], b"short")
    assert [r.seq for r in await db.audit.records()] == [1]
    assert [r.seq for r in await db.audit.append([event(3)], KEY)] == [2]
    assert (await check(db)).ok


@pytest.mark.parametrize(
    "statement", ["UPDATE audit SET user_id = 'mallory'", "DELETE FROM audit WHERE seq = 1"]
)
async def test_the_audit_table_refuses_update_and_delete(
    db: Database, backend: Backend, statement: str
) -> None:
    await db.audit.append([event(1), event(2)], KEY)
    with pytest.raises(backend.integrity_error, match="append-only"):
        await backend.sql(statement)
    assert len(await db.audit.records()) == 2
    assert (await check(db)).ok


SWAP = (  # every column but seq exchanged between rows {a} and {b}
    "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN ({a}, {b})",
    f"UPDATE audit SET ({COLUMNS}) = (SELECT {COLUMNS} FROM t"
    " WHERE t.seq = CASE audit.seq WHEN {a} THEN {b} ELSE {a} END) WHERE seq IN ({a}, {b})",
)
COPY = (
    f"INSERT INTO audit (seq, {COLUMNS})"
    f" SELECT (SELECT max(seq) + 1 FROM audit), {COLUMNS} FROM audit WHERE seq = 3"
)
TAMPERING: list[tuple[str, tuple[str, ...], list[tuple[int, ProblemKind]]]] = [
    ("user", ("UPDATE audit SET user_id = 'mallory' WHERE seq = 5",), [(5, C)]),
    ("time", ("UPDATE audit SET at = at - 3600 WHERE seq = 5",), [(5, C)]),
    ("kind", ("UPDATE audit SET kind = 'admitted' WHERE seq = 5",), [(5, C)]),
    ("unknown kind", ("UPDATE audit SET kind = 'teleported' WHERE seq = 5",), [(5, C)]),
    ("reason", ("UPDATE audit SET reason = NULL WHERE seq = 5",), [(5, C)]),
    ("detail", ("UPDATE audit SET detail = '{\"n\":5.0}' WHERE seq = 5",), [(5, C)]),
    ("broken detail", ("UPDATE audit SET detail = '{' WHERE seq = 5",), [(5, C)]),
    ("hash", ("UPDATE audit SET hash = prev WHERE seq = 5",), [(5, C)]),
    ("seq", ("UPDATE audit SET seq = 100 WHERE seq = 3",), [(100, C)]),
    ("delete", ("DELETE FROM audit WHERE seq = 5",), [(5, D)]),
    ("delete first", ("DELETE FROM audit WHERE seq = 1",), [(1, D)]),
    ("delete three", ("DELETE FROM audit WHERE seq BETWEEN 4 AND 6",), [(4, D)]),
    ("copy", (COPY,), [(11, I)]),
    ("swap 4 and 5", tuple(s.format(a=4, b=5) for s in SWAP), [(4, R), (5, R)]),
    ("swap 3 and 8", tuple(s.format(a=3, b=8) for s in SWAP), [(3, R), (8, R)]),
]


@pytest.mark.parametrize(
    ("statements", "expected"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
async def test_tampering_by_sql_is_reported(
    db: Database, backend: Backend, statements: tuple[str, ...], expected: list[Any]
) -> None:
    await db.audit.append([event(n) for n in range(1, 11)], KEY)
    assert (await check(db)).ok
    await backend.tamper(*statements)
    report = await check(db)
    assert [(p.seq, p.kind) for p in report.problems] == expected, report.format()


async def test_a_cut_tail_is_found_against_the_anchor(db: Database, backend: Backend) -> None:
    await db.audit.append([event(n) for n in range(1, 11)], KEY)
    anchor = await db.audit.head()
    assert anchor is not None
    await backend.tamper("DELETE FROM audit WHERE seq > 8")
    assert (await check(db)).ok  # without the anchor, a cut tail is invisible
    report = await check(db, expected_head=anchor)
    assert [(p.seq, p.kind) for p in report.problems] == [(9, ProblemKind.truncated)]
    # The server goes on appending after the cut: the anchor still tells.
    await db.audit.append([event(n) for n in range(20, 23)], KEY)
    report = await check(db, expected_head=anchor)
    assert [(p.seq, p.kind) for p in report.problems] == [(10, ProblemKind.truncated)]


async def test_a_wrong_key_is_reported_once(db: Database) -> None:
    await db.audit.append([event(n) for n in range(5)], KEY)
    report = await check(db, bytes(32))
    assert [(p.seq, p.kind) for p in report.problems] == [(1, C)]
    assert "key" in report.problems[0].message


async def test_concurrent_appenders_on_two_connections_build_one_chain(
    db: Database, backend: Backend
) -> None:
    """Two databases opened on one store (two pools, as two processes would) append at once."""
    second = await backend.open()

    async def write(database: Database, writer: str) -> None:
        n = 0
        for size in itertools.islice(itertools.cycle((1, 2, 3, 4)), 80):
            await database.audit.append([event(n + i, writer=writer) for i in range(size)], KEY)
            n += size
        assert n == 200

    try:
        with anyio.fail_after(scaled(120)):
            await asyncio.gather(write(db, "one"), write(second, "two"))
    finally:
        await second.close()
    records = [r async for r in db.audit.all_records()]
    assert [r.seq for r in records] == list(range(1, 401))
    report = verify(records, KEY)
    assert report.ok, report.format()
    for writer in ("one", "two"):
        mine = [r.event.detail["n"] for r in records if r.event.detail["writer"] == writer]
        assert mine == list(range(200))


async def test_many_appends_through_one_database_at_once_stay_gapless(db: Database) -> None:
    async def write(k: int) -> None:
        for n in range(10):
            await db.audit.append([event(n, writer=k), event(n, writer=k, second=True)], KEY)

    with anyio.fail_after(scaled(60)):
        await asyncio.gather(*(write(k) for k in range(20)))
    records = [r async for r in db.audit.all_records()]
    assert [r.seq for r in records] == list(range(1, 401))
    assert verify(records, KEY).ok


# --- migrations --------------------------------------------------------------------------


async def test_migrations_run_once_and_keep_the_data(backend: Backend) -> None:
    first = await backend.open()
    site = a_site("Keep", 5.0)
    try:
        await first.add_site(site)
        await first.audit.append([event(1)], KEY)
    finally:
        await first.close()
    expected = list(range(1, backend.migrations + 1))
    assert await backend.schema_versions() == expected
    for _ in range(2):
        again = await backend.open()
        try:
            assert await again.sites() == [site]
            assert [r.seq for r in await again.audit.records()] == [1]
        finally:
            await again.close()
    assert await backend.schema_versions() == expected


async def test_a_database_of_the_previous_schema_is_upgraded(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = lite if backend.name == "sqlite" else pg
    await backend.legacy(legacy_site("sk_" + "O" * 43))
    with monkeypatch.context() as m:
        m.setattr(module, "MIGRATIONS", module.MIGRATIONS[: backend.sealing - 1])
        old = await backend.open()
        try:
            await old.audit.append([event(1)], KEY)
        finally:
            await old.close()
    assert await backend.schema_versions() == list(range(1, backend.sealing))
    upgraded = await open_database(backend.target, BOX)
    try:
        assert await backend.schema_versions() == list(range(1, backend.migrations + 1))
        assert [s.key for s in await upgraded.sites()] == ["pk_old"]
        assert (await check(upgraded)).ok
        await upgraded.add_revocations("pk_old", "alice", ["s1"], at=10, until=20)
        assert await upgraded.revoked_sessions("pk_old", ["s1"], now=15) == {"s1"}
    finally:
        await upgraded.close()


async def test_racing_opens_migrate_exactly_once(backend: Backend) -> None:
    with anyio.fail_after(scaled(60)):
        opened = await asyncio.gather(*(backend.open() for _ in range(4)))
    try:
        assert await backend.schema_versions() == list(range(1, backend.migrations + 1))
        site = a_site("Race", 1.0)
        await opened[0].add_site(site)
        for database in opened:
            assert await database.site(site.key) == site
    finally:
        for database in opened:
            await database.close()


async def test_open_database_picks_the_backend(backend: Backend) -> None:
    targets: Sequence[str] = [backend.target]
    if backend.name == "postgres":
        targets = [backend.target, backend.target.replace("postgresql://", "postgres://", 1)]
    for target in targets:
        database = await open_database(target)
        try:
            kind = PostgresDatabase if backend.name == "postgres" else SqliteDatabase
            assert isinstance(database, kind)
            assert await database.sites() == []
        finally:
            await database.close()


# --- webhook outbox ----------------------------------------------------------------------


T = 1_700_000_000.0


def message(n: int, *, site: str = "pk_a", at: float = T, **fields: Any) -> Delivery:
    """A pending message made at `at` and due then."""
    made = Delivery(
        id=f"msg_{n:032x}",
        site=site,
        endpoint=f"https://{site}.example/hooks",
        event=EventType.seat_blocked,
        payload=f'{{"type":"seat.blocked","data":{{"n":{n}}}}}',
        created_at=at,
        next_attempt_at=at,
        retrying_since=at,
        updated_at=at,
    )
    return dataclasses.replace(made, **fields)


def done(state: DeliveryState, at: float, due: float | None = None, n: int = 1) -> Completion:
    status, error = (204, None) if state is DeliveryState.delivered else (503, "HTTP 503")
    return Completion(state, n, due, status, error, at)


async def test_outbox_messages_are_claimed_by_one_node_for_a_lease_then_completed(
    db: Database,
) -> None:
    first, second, later = message(1), message(2, at=T + 1), message(3, at=T + 60)
    await db.outbox.add([first, second, later])
    # Timeline: at T+2 the first two are due, the third is not; node A takes them for 30 s.
    claimed = await db.outbox.claim("node-a", T + 2, 30.0, 10)
    assert [d.id for d in claimed] == [first.id, second.id]  # the most overdue first
    assert {(d.claimed_by, d.claimed_until) for d in claimed} == {("node-a", T + 32)}
    assert claimed[0] == dataclasses.replace(
        first, claimed_by="node-a", claimed_until=T + 32, seq=claimed[0].seq
    )
    assert await db.outbox.claim("node-b", T + 3, 30.0, 10) == []  # held by A
    # A delivers the first; the second failed and is due again at T+10.
    assert await db.outbox.complete(claimed[0], done(DeliveryState.delivered, T + 4))
    assert await db.outbox.complete(claimed[1], done(DeliveryState.pending, T + 4, due=T + 10))
    assert not await db.outbox.complete(claimed[0], done(DeliveryState.dead, T + 5))  # done
    assert await db.outbox.claim("node-b", T + 9, 30.0, 10) == []  # not due yet
    retry = await db.outbox.claim("node-b", T + 10, 30.0, 10)
    assert [(d.id, d.attempts, d.last_status, d.last_error) for d in retry] == [
        (second.id, 1, 503, "HTTP 503")
    ]
    assert await db.outbox.complete(retry[0], done(DeliveryState.dead, T + 11, n=2))
    # Delivered and dead messages are never claimed again; the third comes in its time.
    assert [d.id for d in await db.outbox.claim("node-b", T + 100, 30.0, 10)] == [later.id]
    rows = await db.outbox.deliveries("pk_a")
    assert [(d.id, d.state, d.attempts, d.next_attempt_at) for d in rows] == [
        (later.id, DeliveryState.pending, 0, T + 60),
        (second.id, DeliveryState.dead, 2, None),
        (first.id, DeliveryState.delivered, 1, None),
    ]
    assert rows[1].claimed_by is None and rows[1].updated_at == T + 11


async def test_a_claim_that_ran_out_goes_to_another_node_and_the_first_loses_it(
    db: Database,
) -> None:
    await db.outbox.add([message(1)])
    [a] = await db.outbox.claim("node-a", T, 5.0, 10)
    assert await db.outbox.claim("node-b", T + 4.9, 5.0, 10) == []
    # Node A went quiet (killed, or stuck past its lease): at T+5 node B may take it.
    [b] = await db.outbox.claim("node-b", T + 5, 5.0, 10)
    assert (b.id, b.claimed_by, b.claimed_until) == (a.id, "node-b", T + 10)
    assert not await db.outbox.complete(a, done(DeliveryState.dead, T + 6))  # A's came late
    assert await db.outbox.complete(b, done(DeliveryState.delivered, T + 6))
    [row] = await db.outbox.deliveries("pk_a")
    assert row.state is DeliveryState.delivered
    # The same node claiming again after its own lease ran out is a new claim as well.
    await db.outbox.add([message(2)])
    [old] = await db.outbox.claim("node-a", T, 5.0, 10)
    [new] = await db.outbox.claim("node-a", T + 6, 5.0, 10)
    assert not await db.outbox.complete(old, done(DeliveryState.delivered, T + 7))
    assert await db.outbox.complete(new, done(DeliveryState.delivered, T + 7))


async def test_two_nodes_claiming_at_once_never_get_the_same_message(
    db: Database, backend: Backend
) -> None:
    await db.outbox.add([message(n) for n in range(60)])
    other = await backend.open()
    try:
        claims = await asyncio.gather(
            *((db, other)[i % 2].outbox.claim(f"node-{i % 2}", T, 30.0, 4) for i in range(20))
        )
    finally:
        await other.close()
    ids = [d.id for claimed in claims for d in claimed]
    assert len(ids) == len(set(ids)) == 60, sorted(ids)
    assert await db.outbox.claim("node-x", T, 30.0, 10) == []


async def test_release_ends_a_nodes_claims_so_they_are_due_at_once(db: Database) -> None:
    await db.outbox.add([message(1), message(2)])
    await db.outbox.claim("node-a", T, 60.0, 1)
    [b] = await db.outbox.claim("node-b", T, 60.0, 1)
    await db.outbox.release("node-a")
    assert [d.id for d in await db.outbox.claim("node-c", T + 1, 60.0, 10)] == [message(1).id]
    assert await db.outbox.complete(b, done(DeliveryState.delivered, T + 1))  # B's stays


async def test_redelivery_makes_a_message_of_the_site_due_now_with_a_new_window(
    db: Database, backend: Backend
) -> None:
    mine, theirs = message(1), message(2, site="pk_b", at=T + 1000)
    await db.outbox.add([mine, theirs])
    [claimed] = await db.outbox.claim("node-a", T, 30.0, 1)
    assert await db.outbox.complete(claimed, done(DeliveryState.dead, T + 1))
    assert await db.outbox.redeliver("pk_b", mine.id, T + 50) is None  # another site's
    assert await db.outbox.redeliver("pk_a", "msg_" + "f" * 32, T + 50) is None
    assert await db.outbox.redeliver("pk_a", mine.id + "\x00", T + 50) is None
    other = await backend.open()
    try:  # twice at once, from two processes: one message, due now, both answered
        both = await asyncio.gather(
            db.outbox.redeliver("pk_a", mine.id, T + 100),
            other.outbox.redeliver("pk_a", mine.id, T + 100),
        )
    finally:
        await other.close()
    for again in both:
        assert again is not None
        assert (again.id, again.state, again.next_attempt_at, again.retrying_since) == (
            mine.id,
            DeliveryState.pending,
            T + 100,
            T + 100,
        )
        assert (again.attempts, again.last_error) == (1, "HTTP 503")  # the history stays
    assert len(await db.outbox.deliveries("pk_a")) == 1
    # Redelivered while an attempt is in flight: that attempt's outcome no longer counts.
    [inflight] = await db.outbox.claim("node-a", T + 100, 30.0, 10)
    assert await db.outbox.redeliver("pk_a", mine.id, T + 101) is not None
    assert not await db.outbox.complete(inflight, done(DeliveryState.dead, T + 102))
    [due] = await db.outbox.claim("node-b", T + 101, 30.0, 10)
    assert due.id == mine.id
    [untouched] = await db.outbox.deliveries("pk_b")
    assert untouched.state is DeliveryState.pending and untouched.attempts == 0


async def test_the_history_is_newest_first_filtered_and_paged_by_cursor(db: Database) -> None:
    kinds = [EventType.seat_blocked, EventType.session_revoked]
    await db.outbox.add([message(n, event=kinds[n % 2]) for n in range(7)])
    await db.outbox.add([message(100, site="pk_b")])
    everything = await db.outbox.deliveries("pk_a")
    assert [d.id for d in everything] == [message(n).id for n in reversed(range(7))]
    assert [d.seq for d in everything] == sorted((d.seq for d in everything), reverse=True)
    pages, before = [], None
    while True:
        page = await db.outbox.deliveries("pk_a", before=before, limit=3)
        pages.append([d.id for d in page])
        if len(page) < 3:
            break
        before = page[-1].seq
    assert [i for page in pages for i in page] == [d.id for d in everything]
    assert len(pages) == 3
    revoked = await db.outbox.deliveries("pk_a", event=EventType.session_revoked)
    assert [d.id for d in revoked] == [message(n).id for n in (5, 3, 1)]
    [claimed, *_] = await db.outbox.claim("node-a", T, 30.0, 2)
    assert await db.outbox.complete(claimed, done(DeliveryState.delivered, T + 1))
    delivered = await db.outbox.deliveries("pk_a", state=DeliveryState.delivered)
    assert [d.id for d in delivered] == [claimed.id]
    blocked_pending = await db.outbox.deliveries(
        "pk_a", state=DeliveryState.pending, event=EventType.seat_blocked
    )
    assert claimed.id not in [d.id for d in blocked_pending]
    assert len(blocked_pending) == 3 + (claimed.event is not EventType.seat_blocked)
    assert [d.site for d in await db.outbox.deliveries("pk_b")] == ["pk_b"]
    assert await db.outbox.deliveries("pk_none") == []


async def test_messages_are_added_all_or_none(db: Database, backend: Backend) -> None:
    await db.outbox.add([message(1)])
    with pytest.raises(backend.integrity_error):
        await db.outbox.add([message(2), message(1)])  # the id of the first, again
    assert [d.id for d in await db.outbox.deliveries("pk_a")] == [message(1).id]
    await db.outbox.add([])


async def test_the_backlog_counts_pending_and_dead_messages_over_an_index(
    db: Database, backend: Backend
) -> None:
    assert await db.outbox.backlog() == Backlog(0, 0, None)
    await db.outbox.add([message(n, at=T + n) for n in range(1, 5)])
    await db.outbox.add([message(9, site="pk_b", at=T + 0.5)])
    claimed = await db.outbox.claim("node-a", T + 10, 30.0, 3)  # 9, 1, 2: the most overdue
    assert await db.outbox.complete(claimed[0], done(DeliveryState.dead, T + 11))
    assert await db.outbox.complete(claimed[1], done(DeliveryState.delivered, T + 11))
    assert await db.outbox.complete(claimed[2], done(DeliveryState.dead, T + 11))
    # Pending: 3 and 4 (made at T+3, T+4); dead: 9 and 2; delivered: 1.
    assert await db.outbox.backlog() == Backlog(pending=2, dead=2, waiting_since=T + 3)
    await db.outbox.redeliver("pk_a", message(2).id, T + 20)  # waiting since it was redelivered
    await db.outbox.redeliver("pk_b", message(9).id, T + 1)
    assert await db.outbox.backlog() == Backlog(pending=4, dead=0, waiting_since=T + 1)
    if backend.name == "sqlite":  # the query plan reads the index, not the table
        plan = await backend.sql(f"EXPLAIN QUERY PLAN {BACKLOG}")
        assert any("COVERING INDEX webhook_outbox_state" in str(row) for row in plan), plan
