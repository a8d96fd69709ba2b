"""Admission of a hello: every way it is refused, and what an admitted one resolves to.

`admit` runs against fake sources (sites, overrides, revocations, key sets) and a fake
clock; the sites and their identity secrets are real, sealed in a throwaway box.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from seatguard.admission import Admitted, Refused, Sources, Verdict, admit, rules_for
from seatguard.errors import KeysUnavailable
from seatguard.identity.jws import KeySet
from seatguard.presence import Rules
from seatguard.protocol import PROTOCOL_VERSION, CloseCode, Hello
from seatguard.rules import Claims, Override, Scope
from seatguard.sealing import SecretBox
from seatguard.site_secrets import Rotating, fresh, stored
from seatguard.sites import Site, SiteConfig, new_site
from seatguard.suspension import Suspension

from .fakes import Clock

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
ORIGIN = "https://acme.example"
OWN = "https://seats.example"
JWKS_URI = "https://login.acme.example/jwks.json"
BOX = SecretBox.ephemeral()
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- fakes -------------------------------------------------------------------------------


@dataclass
class FakeSites:
    known: dict[str, Site] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def get(self, key: str) -> Site | None:
        self.asked.append(key)
        return self.known.get(key)


@dataclass
class FakeOverrides:
    kept: dict[tuple[Scope, str], Override] = field(default_factory=dict)
    asked: list[tuple[str, dict[Scope, str | None]]] = field(default_factory=list)

    def add(self, scope: Scope, name: str, **fields: Any) -> None:
        self.kept[(scope, name)] = Override(scope, name, **fields)

    async def get(
        self, site: str, wanted: Mapping[Scope, str | None]
    ) -> Mapping[tuple[Scope, str], Override]:
        self.asked.append((site, dict(wanted)))
        return {(s, n): self.kept[(s, n)] for s, n in wanted.items() if n and (s, n) in self.kept}


@dataclass
class FakeRevocations:
    sessions: set[tuple[str, str]] = field(default_factory=set)  # (site, session)
    cutoffs: dict[tuple[str, str], float] = field(default_factory=dict)  # (site, user)
    asked: list[tuple[str, ...]] = field(default_factory=list)
    failing: bool = False

    async def revoked(self, site: str, session: str, now: float) -> bool:
        self.asked.append(("session", site, session, str(now)))
        if self.failing:
            raise RuntimeError("database unreachable")
        return (site, session) in self.sessions

    async def user_revoked_before(self, site: str, user: str) -> float | None:
        self.asked.append(("user", site, user))
        return self.cutoffs.get((site, user))


@dataclass
class FakeSuspensions:
    kept: dict[tuple[str, str], Suspension] = field(default_factory=dict)  # (site, user)
    failing: bool = False

    def suspend(self, site: str, user: str, since: float) -> Suspension:
        s = self.kept[(site, user)] = Suspension(site, user, since, "sharing", "api")
        return s

    async def get(self, site: str, user: str) -> Suspension | None:
        if self.failing:
            raise RuntimeError("database unreachable")
        return self.kept.get((site, user))


@dataclass
class FakeKeys:
    document: dict[str, Any] | None = None  # None: the URL cannot be fetched
    asked: list[tuple[str, tuple[str, ...], object]] = field(default_factory=list)

    async def keys(self, url: str, algorithms: tuple[str, ...], *, kid: object = None) -> KeySet:
        self.asked.append((url, algorithms, kid))
        if self.document is None:
            raise KeysUnavailable(
                f"{url} answered 500 from 10.0.0.7", reason="status 500", retry_after=30
            )
        return KeySet.from_jwks(self.document, algorithms)


@dataclass
class World:
    """A site of each kind behind fake sources, at NOW on a fake clock."""

    clock: Clock = field(default_factory=lambda: Clock(NOW))
    sites: FakeSites = field(default_factory=FakeSites)
    overrides: FakeOverrides = field(default_factory=FakeOverrides)
    revocations: FakeRevocations = field(default_factory=FakeRevocations)
    keys: FakeKeys = field(default_factory=FakeKeys)
    suspensions: FakeSuspensions = field(default_factory=FakeSuspensions)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # shown at creation

    def site(
        self,
        key: str,
        *,
        origins: tuple[str, ...] = (ORIGIN,),
        rules: Rules | None = None,
        client_settings: bool = False,
        **config: Any,
    ) -> Site:
        site, shown = new_site(
            key,
            origins,
            rules or Rules(limit=2),
            client_settings=client_settings,
            now=NOW - 60,
            box=BOX,
            key=key,
            config=SiteConfig(**config),
        )
        self.sites.known[key] = site
        self.secrets[key] = shown
        return site

    @property
    def sources(self) -> Sources:
        return Sources(
            self.sites,
            self.overrides,
            self.revocations,
            self.keys,
            BOX,
            self.clock,
            self.suspensions,
        )

    async def admit(self, hello: Hello, origin: str | None = ORIGIN) -> Verdict:
        return await admit(hello, self.sources, origin=origin, own_origin=OWN)

    def token(self, site: str, secret: str | None = None, **changes: Any) -> str:
        """An HS256 identity token for `site`, signed with its identity secret."""
        key = secret if secret is not None else self.secrets[site]["identity_secret"]
        return jwt.encode(claims(site, **changes), key, algorithm="HS256")


def claims(site: str, **changes: Any) -> dict[str, Any]:
    """Valid identity claims for `site`; a change of None removes the claim."""
    base: dict[str, Any] = {"sub": "alice", "aud": site, "iss": site, "iat": NOW, "exp": NOW + 300}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hello(site: str, **fields: Any) -> Hello:
    base: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "site": site,
        "session": "s1",
        "tab": "t1",
        "device": "d1",
        "user": "alice",
    }
    base.update(fields)
    return Hello(**base)


def refused(verdict: Verdict) -> Refused:
    assert isinstance(verdict, Refused), verdict
    return verdict


def admitted(verdict: Verdict) -> Admitted:
    assert isinstance(verdict, Admitted), verdict
    return verdict


@pytest.fixture
def world() -> World:
    w = World()
    w.site("pk_open", client_settings=True)
    w.site("pk_locked")
    w.site("pk_signed", identity_required=True)
    return w


# --- refusals ----------------------------------------------------------------------------


async def test_another_protocol_version_is_refused_before_anything_is_read(world: World) -> None:
    r = refused(await world.admit(hello("pk_open", v=PROTOCOL_VERSION + 1)))
    assert r.code is CloseCode.unsupported_version
    assert (r.key, r.reason) == (None, None)
    assert world.sites.asked == []


async def test_an_unknown_site_is_refused_and_not_written_down(world: World) -> None:
    r = refused(await world.admit(hello("pk_nope", token=world.token("pk_open"))))
    assert r.code is CloseCode.unknown_site
    assert r.message == "unknown site key 'pk_nope'"
    assert (r.key, r.reason) == (None, None)  # no site to file it under
    assert world.keys.asked == [] and world.revocations.asked == []


@pytest.mark.parametrize(
    "origin",
    [
        None,  # no Origin header
        "null",  # a sandboxed frame or a file: page
        "https://evil.example",
        "https://acme.example.evil.example",
        "https://acme.example:8443",
        "http://acme.example",  # the same host over plain HTTP
        OWN,  # the server's own origin, not allowed unless the site lists "self"
    ],
)
async def test_a_page_from_an_origin_the_site_does_not_allow_is_refused(
    world: World, origin: str | None
) -> None:
    r = refused(await world.admit(hello("pk_open", token=world.token("pk_open")), origin))
    assert r.code is CloseCode.origin_not_allowed
    assert r.message == f"origin {origin!r} is not allowed for this site"
    assert (r.key, r.reason) == (("pk_open", "alice"), "origin_not_allowed")
    assert world.keys.asked == [] and world.revocations.asked == []


async def test_origins_are_compared_without_case_and_self_is_the_servers_own(
    world: World,
) -> None:
    world.site("pk_self", origins=("self",))
    admitted(await world.admit(hello("pk_open"), "HTTPS://ACME.EXAMPLE"))
    admitted(await world.admit(hello("pk_self"), OWN))
    refused(await world.admit(hello("pk_self"), ORIGIN))
    world.site("pk_any", origins=("*",))
    admitted(await world.admit(hello("pk_any"), None))


async def test_a_site_that_requires_a_token_refuses_a_plain_user_id(world: World) -> None:
    r = refused(await world.admit(hello("pk_signed")))
    assert r.code is CloseCode.identity_required
    assert (r.key, r.reason) == (("pk_signed", "alice"), "identity_required")
    r = refused(await world.admit(hello("pk_signed", user=None)))
    assert (r.code, r.key) == (CloseCode.identity_required, ("pk_signed", ""))


async def test_a_hello_with_neither_user_id_nor_token_is_malformed(world: World) -> None:
    for user in (None, ""):
        r = refused(await world.admit(hello("pk_open", user=user)))
        assert r.code is CloseCode.bad_message
        assert r.message == "hello needs a user id or an identity token"
        assert (r.key, r.reason) == (None, None)
    assert world.revocations.asked == []


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda w: w.token("pk_signed", secret="sk_" + "f" * 43), "signature"),  # forged
        (lambda w: w.token("pk_signed", secret=w.secrets["pk_signed"]["secret"]), "signature"),
        (lambda w: w.token("pk_signed", secret=w.secrets["pk_open"]["identity_secret"]), ""),
        (lambda w: w.token("pk_signed", exp=NOW - 120), "expired"),
        (lambda w: w.token("pk_signed", aud="pk_open"), "aud"),
        (lambda w: w.token("pk_signed", iss="pk_open"), "iss"),
        (lambda w: w.token("pk_signed", sub=None), "sub"),
        (lambda w: w.token("pk_signed", exp=NOW + 86_400), "lives too long"),
        (lambda w: jwt.encode(claims("pk_signed"), "", algorithm="none"), ""),
        (lambda w: jwt.encode(claims("pk_signed"), SIGNER, algorithm="RS256"), ""),
        (lambda w: "not.a.token", ""),
    ],
    ids=[
        "forged",
        "signed-with-the-secret-key",
        "another-sites-secret",
        "expired",
        "another-audience",
        "another-issuer",
        "no-subject",
        "too-long-lived",
        "alg-none",
        "another-algorithm",
        "garbage",
    ],
)
async def test_a_bad_identity_token_is_refused_and_written_down(
    world: World, token: Any, why: str
) -> None:
    r = refused(await world.admit(hello("pk_signed", user=None, token=token(world))))
    assert r.code is CloseCode.identity_invalid
    assert why in r.message
    assert (r.key, r.reason) == (("pk_signed", ""), "identity_invalid")
    assert world.revocations.asked == []


async def test_a_token_expires_by_the_clock_it_is_checked_with(world: World) -> None:
    token = world.token("pk_signed", exp=NOW + 60)
    admitted(await world.admit(hello("pk_signed", token=token)))
    world.clock.now = NOW + 3600
    r = refused(await world.admit(hello("pk_signed", token=token)))
    assert r.code is CloseCode.identity_invalid and "expired" in r.message


async def test_a_user_id_that_is_not_the_tokens_subject_is_refused(world: World) -> None:
    token = world.token("pk_signed", sub="alice")
    r = refused(await world.admit(hello("pk_signed", user="mallory", token=token)))
    assert r.code is CloseCode.identity_invalid
    assert r.message == "the user id does not match the identity token's subject"
    assert (r.key, r.reason) == (("pk_signed", "mallory"), "identity_invalid")


async def test_a_revoked_session_is_refused_under_the_tokens_account(world: World) -> None:
    world.revocations.sessions.add(("pk_signed", "s1"))
    token = world.token("pk_signed", sub="alice")
    r = refused(await world.admit(hello("pk_signed", user=None, token=token)))
    assert r.code is CloseCode.revoked
    assert r.message == "this browser session was revoked; sign in again"
    assert (r.key, r.reason) == (("pk_signed", "alice"), "revoked")
    assert world.revocations.asked == [("session", "pk_signed", "s1", str(NOW))]
    assert world.overrides.asked == []


async def test_a_session_revoked_on_another_site_is_not_refused_here(world: World) -> None:
    world.revocations.sessions.add(("pk_locked", "s1"))
    admitted(await world.admit(hello("pk_open")))


async def test_a_token_issued_before_the_users_revocation_is_refused(world: World) -> None:
    world.revocations.cutoffs[("pk_signed", "alice")] = NOW - 10
    r = refused(await world.admit(hello("pk_signed", token=world.token("pk_signed", iat=NOW - 20))))
    assert r.code is CloseCode.revoked
    assert "issued before the user's sessions were revoked" in r.message
    assert (r.key, r.reason) == (("pk_signed", "alice"), "token_revoked")
    anonymous = hello("pk_signed", user=None, token=world.token("pk_signed", iat=NOW - 20))
    assert refused(await world.admit(anonymous)).key == ("pk_signed", "alice")  # the token's
    no_iat = world.token("pk_signed", iat=None, exp=NOW + 60)  # cannot show it came after
    assert refused(await world.admit(hello("pk_signed", token=no_iat))).reason == "token_revoked"
    fresh = world.token("pk_signed", iat=NOW)
    admitted(await world.admit(hello("pk_signed", token=fresh)))


async def test_a_users_cutoff_does_not_touch_a_plain_user_id(world: World) -> None:
    world.revocations.cutoffs[("pk_open", "alice")] = NOW + 1000
    admitted(await world.admit(hello("pk_open")))
    assert [a[0] for a in world.revocations.asked] == ["session"]


async def test_the_database_failing_is_raised_not_taken_for_a_verdict(world: World) -> None:
    world.revocations.failing = True
    with pytest.raises(RuntimeError, match="database unreachable"):
        await world.admit(hello("pk_open"))


# --- suspensions ------------------------------------------------------------------------


async def test_a_suspended_user_is_refused_with_its_own_close_code(world: World) -> None:
    world.suspensions.suspend("pk_open", "alice", NOW - 10)
    r = refused(await world.admit(hello("pk_open")))
    assert r.code is CloseCode.suspended
    assert r.message == "this user is suspended"
    assert (r.key, r.reason) == (("pk_open", "alice"), "suspended")
    # Another user of the site, and the same user id on another site, are not.
    admitted(await world.admit(hello("pk_open", user="bob")))
    world.suspensions.suspend("pk_locked", "carol", NOW - 10)
    admitted(await world.admit(hello("pk_open", user="carol")))


async def test_a_page_cannot_name_another_user_to_dodge_a_suspension(world: World) -> None:
    """The suspension is looked up under the token's account, not the hello's user id."""
    world.suspensions.suspend("pk_signed", "alice", NOW - 10)
    old = world.token("pk_signed", iat=NOW - 20)
    r = refused(await world.admit(hello("pk_signed", user=None, token=old)))
    assert (r.key, r.code) == (("pk_signed", "alice"), CloseCode.suspended)


async def test_only_an_identity_token_issued_after_the_suspension_lifts_it(world: World) -> None:
    suspension = world.suspensions.suspend("pk_signed", "alice", NOW - 10.5)
    for iat in (NOW - 20, NOW - 11, None):  # before it, its very second, no iat at all
        changes: dict[str, Any] = {"iat": iat} if iat is not None else {"iat": None}
        if iat is None:
            changes["exp"] = NOW + 60
        r = refused(
            await world.admit(hello("pk_signed", token=world.token("pk_signed", **changes)))
        )
        assert r.code is CloseCode.suspended, iat
        assert "issued before the user was suspended" in r.message
    verdict = admitted(await world.admit(hello("pk_signed", token=world.token("pk_signed"))))
    assert verdict.lifts == suspension  # the channel lifts it, then joins


async def test_a_plain_user_id_never_lifts_a_suspension(world: World) -> None:
    world.suspensions.suspend("pk_open", "alice", NOW - 3600)
    world.clock.now = NOW + 86400
    assert refused(await world.admit(hello("pk_open"))).code is CloseCode.suspended


async def test_an_unreadable_suspension_fails_the_hello_closed(world: World) -> None:
    world.suspensions.failing = True
    with pytest.raises(RuntimeError, match="database unreachable"):
        await world.admit(hello("pk_open"))


async def test_a_revoked_session_is_refused_as_revoked_before_suspension(world: World) -> None:
    world.revocations.sessions.add(("pk_open", "s1"))
    world.suspensions.suspend("pk_open", "alice", NOW - 10)
    assert refused(await world.admit(hello("pk_open"))).code is CloseCode.revoked


# --- keys fetched from a jwks_uri --------------------------------------------------------


def rs256(site: str, key: rsa.RSAPrivateKey = SIGNER, kid: str = "k1", **changes: Any) -> str:
    return jwt.encode(claims(site, **changes), key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def fetched(world: World) -> World:
    world.site("pk_jwks", identity_algorithm="RS256", identity_jwks_uri=JWKS_URI)
    jwk = {**RSAAlgorithm.to_jwk(SIGNER.public_key(), as_dict=True), "kid": "k1"}
    world.keys.document = {"keys": [jwk]}
    return world


async def test_keys_are_fetched_for_the_tokens_kid_and_the_sites_algorithm(
    fetched: World,
) -> None:
    a = admitted(await fetched.admit(hello("pk_jwks", token=rs256("pk_jwks"))))
    assert a.key == ("pk_jwks", "alice")
    assert fetched.keys.asked == [(JWKS_URI, ("RS256",), "k1")]


async def test_no_keys_are_fetched_without_a_token(fetched: World) -> None:
    admitted(await fetched.admit(hello("pk_jwks")))
    assert fetched.keys.asked == []


async def test_a_token_signed_by_a_key_not_in_the_set_is_refused(fetched: World) -> None:
    r = refused(await fetched.admit(hello("pk_jwks", token=rs256("pk_jwks", ATTACKER))))
    assert (r.code, r.reason) == (CloseCode.identity_invalid, "identity_invalid")


async def test_unavailable_keys_refuse_without_telling_the_page_why(fetched: World) -> None:
    fetched.keys.document = None
    r = refused(await fetched.admit(hello("pk_jwks", token=rs256("pk_jwks"))))
    assert r.code is CloseCode.identity_invalid
    assert r.message == "identity token keys could not be fetched; try again later"
    assert isinstance(r.error, KeysUnavailable)
    assert (r.error.reason, r.error.retry_after) == ("status 500", 30)  # for the log
    assert (r.key, r.reason) == (("pk_jwks", "alice"), "identity_invalid")


# --- what an admitted hello resolves to --------------------------------------------------


async def test_a_locked_site_ignores_what_the_page_asks_for(world: World) -> None:
    world.overrides.add("org", "vip", limit=50)
    world.overrides.add("user", "alice", policy="evict-oldest")
    h = hello("pk_locked", org="vip", role="admin", mode="device-limit", limit=9, policy="monitor")
    a = admitted(await world.admit(h))
    assert a.page is None and a.token is None and a.identity is None
    assert a.account == Claims("alice")
    assert a.key == ("pk_locked", "alice")
    assert a.rules == Rules(limit=2, policy="evict-oldest")  # the org the page named is ignored
    assert world.overrides.asked == [("pk_locked", {"org": None, "role": None, "user": "alice"})]


async def test_an_open_site_takes_the_pages_claims_below_its_overrides(world: World) -> None:
    world.overrides.add("org", "acme", limit=5)
    h = hello("pk_open", org="acme", role="staff", mode="device-limit", limit=9, policy="monitor")
    a = admitted(await world.admit(h))
    assert a.page == Claims(
        "alice", org="acme", role="staff", mode="device-limit", limit=9, policy="monitor"
    )
    assert a.account == a.page
    assert a.rules == Rules(mode="device-limit", limit=5, policy="monitor")
    assert world.overrides.asked == [("pk_open", {"org": "acme", "role": "staff", "user": "alice"})]


async def test_the_tokens_claims_beat_the_overrides_and_the_page(world: World) -> None:
    world.overrides.add("org", "acme", limit=5, policy="evict-idle", idle_timeout=600)
    world.overrides.add("org", "vip", limit=50)  # the page claims an org the token does not
    token = world.token(
        "pk_open", sub="alice", org="acme", role="staff", limit=3, sid="idp-1", iat=NOW - 5
    )
    h = hello("pk_open", token=token, org="vip", mode="device-limit", limit=9)
    a = admitted(await world.admit(h))
    assert a.token == Claims("alice", org="acme", role="staff", limit=3, sid="idp-1")
    assert a.account == a.token
    assert a.identity is not None and a.identity.issued_at == NOW - 5
    # The page's mode stands; the token's org picks the overrides; the token's limit wins.
    assert a.rules == Rules(mode="device-limit", limit=3, policy="evict-idle", idle_timeout=600)
    assert world.overrides.asked == [("pk_open", {"org": "acme", "role": "staff", "user": "alice"})]


async def test_a_token_alone_names_the_account(world: World) -> None:
    a = admitted(await world.admit(hello("pk_signed", user=None, token=world.token("pk_signed"))))
    assert a.key == ("pk_signed", "alice")
    assert a.rules == Rules(limit=2)


async def test_the_replaced_identity_secret_counts_until_its_overlap_ends(
    world: World,
) -> None:
    site = world.sites.known["pk_signed"]
    new = fresh("identity")
    rotating = Rotating(
        current=stored(BOX, site.key, "identity", new),
        previous=site.secrets.identity.current,
        previous_until=NOW + 60,
    )
    world.sites.known[site.key] = replace(site, secrets=replace(site.secrets, identity=rotating))
    old = world.token("pk_signed", exp=NOW + 600)
    admitted(await world.admit(hello("pk_signed", token=old)))
    admitted(await world.admit(hello("pk_signed", token=world.token("pk_signed", secret=new))))
    world.clock.now = NOW + 60
    r = refused(await world.admit(hello("pk_signed", token=old)))
    assert (r.code, r.reason) == (CloseCode.identity_invalid, "identity_invalid")


# --- rules_for, shared with Node.refresh_rules -------------------------------------------


async def test_rules_for_stacks_site_page_org_role_user_token(world: World) -> None:
    site = world.sites.known["pk_open"]
    world.overrides.add("org", "acme", limit=4, policy="evict-oldest", idle_timeout=60)
    world.overrides.add("role", "staff", limit=6, idle_timeout=120)
    world.overrides.add("user", "alice", limit=8)
    page = Claims("alice", org="acme", role="staff", mode="device-limit", limit=20)
    token = Claims("alice", org="acme", role="staff", policy="monitor")
    assert await rules_for(world.overrides, site, page=page, token=None, user="alice") == Rules(
        mode="device-limit", limit=8, policy="evict-oldest", idle_timeout=120
    )
    assert await rules_for(world.overrides, site, page=page, token=token, user="alice") == Rules(
        mode="device-limit", limit=8, policy="monitor", idle_timeout=120
    )
    assert await rules_for(world.overrides, site, page=None, token=None, user="bob") == site.rules


async def test_rules_for_looks_up_the_tokens_org_and_role_not_the_pages(world: World) -> None:
    site = world.sites.known["pk_open"]
    world.overrides.add("org", "vip", limit=50)
    world.overrides.add("role", "owner", limit=40)
    page = Claims("alice", org="vip", role="owner")
    token = Claims("alice", org="acme")
    rules = await rules_for(world.overrides, site, page=page, token=token, user="alice")
    assert rules == site.rules
    assert world.overrides.asked == [("pk_open", {"org": "acme", "role": None, "user": "alice"})]
