"""The seat check's parts: which tokens are this server's own, and what a snapshot says of
the session behind one. Plain data, the clock passed in."""

from __future__ import annotations

import pytest

from seatguard.errors import InvalidSeatToken, SeatTokenExpired
from seatguard.presence import Arrival, Rules, Timing, UserPresence, expire, join, logout, revoke
from seatguard.seat import SeatKeyRing, SeatKeySet, SeatTokens, check
from seatguard.seat.check import LEEWAY, VerifiedSeats, own_claims, verdict
from seatguard.seat.keyset import PUBLISHED_AFTER_RETIREMENT, new_key
from seatguard.verify import SeatClaims
from tests.unit.fakes import Clock

T0 = 1_800_000_000.0
ISSUER = "https://seats.example"
SITE = "pk_site"


def tokens_at(clock: Clock, keys: SeatKeySet | None = None) -> SeatTokens:
    return SeatTokens(SeatKeyRing(keys or SeatKeySet((new_key(T0),))), ISSUER, clock=clock)


def claims_of(session: str, device: str) -> SeatClaims:
    return SeatClaims(SITE, "alice", session, device, None, None, T0, T0 + 120, "j", ISSUER)


def reason(up: UserPresence, claims: SeatClaims) -> str | None:
    found = verdict(up, claims)
    return None if found is None else found[0]


def seated(up: UserPresence, session: str, now: float) -> None:
    join(up, Arrival(session, f"{session}-tab", f"{session}-dev"), rules=up.rules, now=now)


def test_a_token_of_this_server_gives_its_claims_until_it_expires() -> None:
    clock = Clock(T0)
    tokens = tokens_at(clock)
    token = tokens.issue(site=SITE, user="alice", session="s1", device="d1", org="acme").token
    claims = own_claims(tokens, token, audience=SITE, now=T0)
    assert (claims.user, claims.session, claims.device, claims.org) == ("alice", "s1", "d1", "acme")
    assert own_claims(tokens, token, audience=SITE, now=T0 + 120 + LEEWAY - 1).user == "alice"
    with pytest.raises(SeatTokenExpired):
        own_claims(tokens, token, audience=SITE, now=T0 + 120 + LEEWAY)
    with pytest.raises(InvalidSeatToken, match="audience mismatch") as refused:
        own_claims(tokens, token, audience="pk_other", now=T0 + 3600)  # expired too
    assert not isinstance(refused.value, SeatTokenExpired)  # another site's, never "expired"


def test_a_retired_key_verifies_while_it_is_published_and_not_after() -> None:
    clock = Clock(T0)
    old = tokens_at(clock)
    token = old.issue(site=SITE, user="alice", session="s1", device="d1", ttl=900).token
    rotated = tokens_at(clock, old.keys.current().rotated(T0, switch_delay=0))
    assert rotated.keys.current().signing(T0).kid != old.keys.current().signing(T0).kid
    assert own_claims(rotated, token, audience=SITE, now=T0 + 60).session == "s1"
    pruned = T0 + PUBLISHED_AFTER_RETIREMENT
    with pytest.raises(InvalidSeatToken, match="is unknown"):
        own_claims(rotated, token, audience=SITE, now=pruned)


def test_a_token_of_another_server_is_refused() -> None:
    clock = Clock(T0)
    theirs = tokens_at(clock).issue(site=SITE, user="alice", session="s1", device="d1").token
    with pytest.raises(InvalidSeatToken, match="is unknown"):
        own_claims(tokens_at(clock), theirs, audience=SITE, now=T0)


def test_the_session_must_hold_a_seat_now() -> None:
    up = UserPresence(rules=Rules(limit=1))
    seated(up, "s1", T0)
    seated(up, "s2", T0 + 1)
    assert verdict(up, claims_of("s1", "s1-dev")) is None
    assert verdict(up, claims_of("s2", "s2-dev")) == (
        "blocked",
        "the session waits for a seat (reason: limit)",
    )
    assert reason(up, claims_of("s1", "another-dev")) == "ended"
    assert reason(up, claims_of("never", "d")) == "ended"


def test_revoked_signed_out_and_timed_out_sessions_have_no_seat() -> None:
    up = UserPresence(rules=Rules(limit=3, idle_timeout=60))
    for session in ("s1", "s2", "s3"):
        seated(up, session, T0)
    revoke(up, sessions=["s1"], timing=Timing(), now=T0 + 1)
    logout(up, session="s2", now=T0 + 1)
    expire(up, Timing(session_timeout=3600), T0 + 61)  # s3 idle past 60 s
    assert verdict(up, claims_of("s1", "s1-dev")) == ("revoked", "the session was revoked")
    assert reason(up, claims_of("s2", "s2-dev")) == "ended"
    assert reason(up, claims_of("s3", "s3-dev")) == "ended"


# --- tokens verified once (VerifiedSeats) ------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature the check verifies (`own_claims`), in order."""
    seen: list[str] = []
    real = check.own_claims

    def counted(tokens: SeatTokens, token: str, *, audience: str, now: float) -> SeatClaims:
        seen.append(token)
        return real(tokens, token, audience=audience, now=now)

    monkeypatch.setattr(check, "own_claims", counted)
    return seen


def test_a_token_is_verified_once_and_its_expiry_checked_at_every_use(
    verifications: list[str],
) -> None:
    tokens = tokens_at(Clock(T0))
    token = tokens.issue(site=SITE, user="alice", session="s1", device="d1").token
    kept = VerifiedSeats()
    for now in (T0, T0 + 10, T0 + 120 + LEEWAY - 1):
        assert kept.claims(tokens, token, audience=SITE, now=now).session == "s1"
    assert verifications == [token]
    with pytest.raises(SeatTokenExpired):  # the same boundary as `own_claims`
        kept.claims(tokens, token, audience=SITE, now=T0 + 120 + LEEWAY)
    with pytest.raises(SeatTokenExpired):  # and again, verified anew
        kept.claims(tokens, token, audience=SITE, now=T0 + 120 + LEEWAY)
    assert verifications == [token, token]


def test_a_kept_token_is_still_another_sites_and_refused_as_such(verifications: list[str]) -> None:
    tokens = tokens_at(Clock(T0))
    token = tokens.issue(site=SITE, user="alice", session="s1", device="d1").token
    kept = VerifiedSeats()
    kept.claims(tokens, token, audience=SITE, now=T0)
    for _ in range(2):
        with pytest.raises(InvalidSeatToken, match="audience mismatch") as refused:
            kept.claims(tokens, token, audience="pk_other", now=T0 + 3600)  # expired too
        assert not isinstance(refused.value, SeatTokenExpired)


def test_a_kept_token_whose_key_is_no_longer_published_is_refused() -> None:
    clock = Clock(T0)
    old = tokens_at(clock)
    token = old.issue(site=SITE, user="alice", session="s1", device="d1", ttl=900).token
    ring = SeatKeyRing(old.keys.current().rotated(T0, switch_delay=0))
    rotated = SeatTokens(ring, ISSUER, clock=clock)
    kept = VerifiedSeats()
    assert kept.claims(rotated, token, audience=SITE, now=T0 + 60).session == "s1"
    pruned = T0 + PUBLISHED_AFTER_RETIREMENT  # the token itself would still be unexpired
    with pytest.raises(InvalidSeatToken, match="is unknown"):
        kept.claims(rotated, token, audience=SITE, now=pruned)


def test_refused_tokens_are_never_kept(verifications: list[str]) -> None:
    tokens = tokens_at(Clock(T0))
    good = tokens.issue(site=SITE, user="alice", session="s1", device="d1").token
    head, body, signature = good.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    theirs = tokens_at(Clock(T0)).issue(site=SITE, user="alice", session="s1", device="d1").token
    kept = VerifiedSeats()
    for bad in (forged, theirs, forged, theirs):
        with pytest.raises(InvalidSeatToken):
            kept.claims(tokens, bad, audience=SITE, now=T0)
    assert verifications == [forged, theirs, forged, theirs]


def test_at_most_size_tokens_are_kept_the_oldest_dropped_first(verifications: list[str]) -> None:
    tokens = tokens_at(Clock(T0))
    first, second, third = (
        tokens.issue(site=SITE, user="alice", session=s, device="d").token
        for s in ("s1", "s2", "s3")
    )
    kept = VerifiedSeats(size=2)
    for token in (first, second, third, second, third, first):
        kept.claims(tokens, token, audience=SITE, now=T0)
    assert verifications == [first, second, third, first]
