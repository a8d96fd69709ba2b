"""Seat signing keys and tokens: where the keys are kept, rotation, what is published."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner

from seatguard.cli import main
from seatguard.errors import ConfigError
from seatguard.seat import SeatKeyRing, SeatKeySet, SeatTokens, Wanted, load_seat_keys
from seatguard.seat.keyset import (
    PUBLISHED_AFTER_RETIREMENT,
    SWITCH_DELAY,
    new_key,
    thumbprint,
)
from seatguard.seat.source import write
from seatguard.seat.tokens import SeatToken, TokenIds
from seatguard.settings import Settings
from seatguard.sites import SiteConfig
from tests.unit.fakes import Clock

T0 = 1_800_000_000.0
PUBLIC_MEMBERS = {"kty", "crv", "x", "y", "kid", "alg", "use"}


def one_key(now: float = T0) -> SeatKeySet:
    return SeatKeySet((new_key(now),))


def tokens(keys: SeatKeySet, clock: Clock) -> SeatTokens:
    return SeatTokens(SeatKeyRing(keys), "https://seats.example", clock=clock)


def test_a_new_key_file_is_owner_only_in_owner_only_directories(tmp_path: Path) -> None:
    db = tmp_path / "new" / "deeper" / "seatguard.db"
    ring = load_seat_keys(Settings(db=str(db)), create=True, now=T0)
    path = Path(str(db) + ".seat-keys")
    assert ring.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    # Read again, the same keys; without `create`, a missing file is an error.
    again = load_seat_keys(Settings(db=str(db)), create=False, now=T0)
    assert again.current().keys[0].kid == ring.current().keys[0].kid
    with pytest.raises(ConfigError, match="does not exist"):
        load_seat_keys(Settings(db=str(tmp_path / "other.db")), create=False, now=T0)


def test_postgresql_needs_the_keys_given() -> None:
    settings = Settings(database_url="postgresql://db/seatguard")
    with pytest.raises(ConfigError, match="SEATGUARD_SEAT_KEYS or SEATGUARD_SEAT_KEYS_FILE"):
        load_seat_keys(settings, create=True, now=T0)
    given = Settings(database_url="postgresql://db/seatguard", seat_keys=one_key().dumps())
    assert load_seat_keys(given, create=True, now=T0).path is None


def test_a_named_file_is_never_created(tmp_path: Path) -> None:
    named = tmp_path / "keys.json"
    settings = Settings(database_url="postgresql://db/sg", seat_keys_file=str(named))
    with pytest.raises(ConfigError, match="does not exist"):
        load_seat_keys(settings, create=True, now=T0)
    assert not named.exists()


def test_an_in_memory_database_gets_a_key_of_its_own(tmp_path: Path) -> None:
    a = load_seat_keys(Settings(db=":memory:"), create=True, now=T0)
    b = load_seat_keys(Settings(db=":memory:"), create=True, now=T0)
    assert a.path is None and a.current().keys[0].kid != b.current().keys[0].kid
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON"),
        ('{"keys": []}', "at least one key"),
        ('{"keys": [1]}', "not a JSON object"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "EC P-256"),
        ('{"keys": [{"kty": "EC", "crv": "P-384", "x": "", "y": "", "d": ""}]}', "EC P-256"),
        ('{"keys": [{"kty": "EC", "crv": "P-256", "alg": "HS256"}]}', "EC P-256"),
    ],
)
def test_what_is_not_a_private_p256_key_set_is_refused(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        SeatKeySet.parse(text, "SEATGUARD_SEAT_KEYS")


def test_a_public_key_alone_cannot_sign_and_kids_are_distinct() -> None:
    public = one_key().keys[0].public_jwk()
    with pytest.raises(ConfigError, match="no private part"):
        SeatKeySet.parse(json.dumps({"keys": [public]}), "keys")
    key = one_key().keys[0].private_jwk()
    with pytest.raises(ConfigError, match="same kid"):
        SeatKeySet.parse(json.dumps({"keys": [key, key]}), "keys")
    with pytest.raises(ConfigError, match="'created' must be seconds"):
        SeatKeySet.parse(json.dumps({"keys": [{**key, "created": "yesterday"}]}), "keys")


def test_the_key_file_round_trips_and_kids_are_rfc7638_thumbprints() -> None:
    keys = one_key().rotated(T0 + 10)
    again = SeatKeySet.parse(keys.dumps(), "file")
    assert [(k.kid, k.created, k.retired) for k in again.keys] == [
        (k.kid, k.created, k.retired) for k in keys.keys
    ]
    for key in again.keys:
        assert key.kid == thumbprint(key.public_jwk())
    # The EC key of RFC 7517 A.1, whose thumbprint other libraries (jose) compute the same.
    jwk = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "ignored"}  # fmt: skip
    assert thumbprint(jwk) == "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"


def test_the_published_set_has_no_private_member() -> None:
    keys = one_key().rotated(T0 + 10)
    published = keys.jwks(T0 + 20)
    assert len(published["keys"]) == 2
    for jwk in published["keys"]:
        assert set(jwk) == PUBLIC_MEMBERS, jwk
        assert (jwk["alg"], jwk["use"], jwk["crv"]) == ("ES256", "sig", "P-256")
    private = {k.private_jwk()["d"] for k in keys.keys}
    assert not any(d in json.dumps(published) for d in private)


def test_rotation_publishes_first_signs_later_and_prunes_after_the_last_token() -> None:
    first = one_key(T0)
    old = first.keys[0]
    at = T0 + 3600
    keys = first.rotated(at)
    new = keys.keys[1]
    # Until the switch, the old key signs and the new one is only published.
    assert keys.signing(at) is keys.keys[0] and keys.signing(at).kid == old.kid
    assert keys.signing(at + SWITCH_DELAY - 1).kid == old.kid
    assert {k["kid"] for k in keys.jwks(at)["keys"]} == {old.kid, new.kid}
    # Then the new one signs; the old one stays published while its tokens may live.
    assert keys.signing(at + SWITCH_DELAY).kid == new.kid
    last = at + SWITCH_DELAY + PUBLISHED_AFTER_RETIREMENT
    assert {k["kid"] for k in keys.jwks(last - 1)["keys"]} == {old.kid, new.kid}
    assert {k["kid"] for k in keys.jwks(last)["keys"]} == {new.kid}
    # The next rotation drops it from the file.
    assert [k.kid for k in keys.rotated(last).keys][:1] == [new.kid]


def test_a_key_rotated_at_once_signs_at_once() -> None:
    keys = one_key(T0).rotated(T0 + 5, switch_delay=0)
    assert keys.signing(T0 + 5).kid == keys.keys[1].kid
    assert len(keys.jwks(T0 + 5)["keys"]) == 2


def test_a_rotation_soon_after_another_keeps_the_signing_key_until_its_successor_is_ready() -> None:
    keys = one_key(T0).rotated(T0 + 1)
    assert keys.signing(T0 + 2).kid == keys.keys[0].kid
    twice = keys.rotated(T0 + 10)
    a, b, c = twice.keys
    assert a.retired == T0 + 1 + SWITCH_DELAY  # an earlier retirement stays
    assert twice.signing(T0 + 100).kid == a.kid
    assert twice.signing(T0 + 1 + SWITCH_DELAY).kid == b.kid
    assert twice.signing(T0 + 10 + SWITCH_DELAY).kid == c.kid


def test_a_set_with_every_key_retired_cannot_sign() -> None:
    keys = one_key(T0).rotated(T0, switch_delay=0)
    only_old = SeatKeySet(keys.keys[:1])
    with pytest.raises(ConfigError, match="seat-keys rotate"):
        only_old.signing(T0 + 1)


def test_a_changed_key_file_is_read_again_at_most_every_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys"
    write(path, one_key())
    clock = Clock(0.0)
    ring = SeatKeyRing(
        SeatKeySet.parse(path.read_text(), "f"), path, clock=clock, reload_interval=5
    )
    before = ring.current().keys[0].kid
    write(path, SeatKeySet.parse(path.read_text(), "f").rotated(T0))
    assert [k.kid for k in ring.current().keys] == [before]  # not looked at yet
    clock.now = 5.0
    assert len(ring.current().keys) == 2
    # A broken file keeps the last good set.
    path.write_text("{")
    clock.now = 10.0
    assert len(ring.current().keys) == 2
    assert "keeping the last good set" in caplog.text


def test_a_token_says_who_holds_the_seat_with_an_explicit_type() -> None:
    clock = Clock(T0)
    issuer = tokens(one_key(T0), clock)
    seat = issuer.issue(site="pk_site", user="alice", session="s1", device="d1", org="acme", ttl=60)
    header = jwt.get_unverified_header(seat.token)
    assert header == {"alg": "ES256", "kid": seat.kid, "typ": "seat+jwt"}
    claims: dict[str, Any] = jwt.decode(
        seat.token,
        issuer.keys.current().keys[0].private_key.public_key(),
        algorithms=["ES256"],
        audience="pk_site",
        issuer="https://seats.example",
        options={"verify_exp": False, "verify_iat": False},  # T0 is not today
    )
    jti = claims.pop("jti")
    assert claims == {
        "iss": "https://seats.example",
        "aud": "pk_site",
        "sub": "alice",
        "sid": "s1",
        "did": "d1",
        "org": "acme",
        "iat": int(T0),
        "exp": int(T0) + 60,
    }
    assert seat.expires_at == int(T0) + 60
    again = issuer.issue(site="pk_site", user="alice", session="s1", device="d1")
    assert jwt.decode(again.token, options={"verify_signature": False})["jti"] != jti


@pytest.mark.anyio
async def test_tokens_asked_for_in_one_turn_are_signed_together() -> None:
    """`issue_soon` signs in one callback every token asked for in the same turn; one that
    cannot be made fails alone, and one whose asker went away is not signed at all."""
    clock = Clock(T0)
    issuer = tokens(one_key(T0), clock)
    signed: list[str] = []
    issue = issuer.issue

    def counting(**kwargs: Any) -> Any:
        signed.append(kwargs["session"])
        return issue(**kwargs)

    issuer.issue = counting  # type: ignore[method-assign]
    gone = asyncio.ensure_future(issuer.issue_soon(Wanted("pk_site", "carol", "s9", "d9")))
    asked = [
        issuer.issue_soon(Wanted("pk_site", "alice", "s1", "d1", org="acme", ttl=60)),
        issuer.issue_soon(Wanted("pk_site", "bob", "s2", "d2", ttl=29)),  # out of bounds
        issuer.issue_soon(Wanted("pk_site", "alice", "s3", "d3")),
    ]
    await asyncio.sleep(0)  # `gone` has asked
    gone.cancel()
    first, refused, third = await asyncio.gather(*asked, return_exceptions=True)
    assert signed == ["s1", "s2", "s3"]  # one turn, in the order asked; never `s9`
    assert isinstance(refused, ConfigError) and "30 to 900" in str(refused)
    assert isinstance(first, SeatToken) and isinstance(third, SeatToken)
    claims = jwt.decode(first.token, options={"verify_signature": False})
    assert (claims["sub"], claims["sid"], claims["org"], claims["exp"]) == (
        "alice",
        "s1",
        "acme",
        int(T0) + 60,
    )
    # The next turn's asks form a batch of their own.
    assert isinstance(await issuer.issue_soon(Wanted("pk_site", "dan", "s4", "d4")), SeatToken)
    assert signed == ["s1", "s2", "s3", "s4"]


def test_token_ids_are_unique_within_a_node_and_across_nodes() -> None:
    # Each node (each process) draws its own random part; a counter does the rest.
    nodes = [TokenIds() for _ in range(3)]
    ids = [n.next() for _ in range(3_000) for n in nodes]
    assert len(set(ids)) == len(ids)
    assert len({i.split(".")[0] for i in ids}) == 3
    assert all(len(i.split(".")[0]) >= 22 for i in ids)  # 128 random bits


@pytest.mark.parametrize("ttl", [29, 901, 0, -1, True])
def test_a_token_lifetime_is_bounded(ttl: int) -> None:
    with pytest.raises(ConfigError, match="30 to 900"):
        tokens(one_key(), Clock(T0)).issue(site="s", user="u", session="x", device="d", ttl=ttl)
    with pytest.raises(ValueError, match="seat_token_ttl must be 30 to 900"):
        SiteConfig(seat_token_ttl=ttl)


def test_the_issuer_is_the_public_url_else_the_address_served() -> None:
    assert Settings(public_url="https://seats.example/").issuer == "https://seats.example"
    assert Settings(host="0.0.0.0", port=9000).issuer == "http://localhost:9000"
    assert Settings(host="::1", port=9000).issuer == "http://[::1]:9000"
    for bad in ("seats.example", "ftp://x", "https://u:p@x", "https://x/?q", "https://x/#f"):
        with pytest.raises(ConfigError, match="public URL"):
            Settings(public_url=bad)


def test_the_cli_rotates_the_file_and_lists_no_private_material(tmp_path: Path) -> None:
    db = str(tmp_path / "seatguard.db")
    runner = CliRunner()
    first = runner.invoke(main, ["seat-keys", "rotate", "--db", db])
    assert first.exit_code == 0, first.output
    assert "signs now" in first.output
    second = runner.invoke(main, ["seat-keys", "rotate", "--db", db])
    assert f"signs in {SWITCH_DELAY:g} s" in second.output
    path = Path(db + ".seat-keys")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = SeatKeySet.parse(path.read_text(), "file")
    listed = runner.invoke(main, ["seat-keys", "list", "--db", db])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [keys.keys[0].kid, "signing"],
        [keys.keys[1].kid, "next"],
    ]
    for key in keys.keys:
        jwk = key.private_jwk()
        assert jwk["d"] not in listed.output and jwk["x"] not in listed.output


def test_the_cli_does_not_rotate_keys_it_does_not_keep() -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["seat-keys", "rotate", "--db", "postgresql://db/sg"])
    assert done.exit_code == 2 and "--file" in done.output
    done = runner.invoke(
        main, ["seat-keys", "rotate"], env={"SEATGUARD_SEAT_KEYS": one_key().dumps()}
    )
    assert done.exit_code == 2 and "not kept in a file" in done.output


def test_a_sites_seat_token_ttl_is_set_with_the_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "seatguard.db")
    runner = CliRunner()
    create = ["site", "create", "--db", db, "--name", "S", "--origin", "*"]
    made = runner.invoke(main, [*create, "--seat-token-ttl", "60"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["seat_token_ttl"] == 60
    refused = runner.invoke(main, [*create, "--seat-token-ttl", "901"])
    assert refused.exit_code == 2 and "30<=x<=900" in refused.output


def test_a_site_turns_its_seat_tokens_off_and_on_with_the_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "seatguard.db")
    runner = CliRunner()
    create = ["site", "create", "--db", db, "--name", "S", "--origin", "*"]
    made = runner.invoke(main, [*create, "--no-seat-tokens"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)["key"]
    assert json.loads(made.output)["seat_tokens"] is False
    on = runner.invoke(main, ["site", "update", key, "--db", db, "--seat-tokens"])
    assert on.exit_code == 0, on.output
    shown = runner.invoke(main, ["site", "show", key, "--db", db])
    assert json.loads(shown.output).get("seat_tokens", True) is True
