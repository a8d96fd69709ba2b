"""GeoIP: places of addresses from MaxMind DB files the tests write, and the errors a missing
or broken file gives at start-up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seatguard.errors import ConfigError
from seatguard.settings import Settings
from seatguard.signals.geo import GeoIP, open_geoip, place_of_record
from seatguard.signals.places import Place, distance_km, separation_km
from tests.geodb import CITIES, address, write_city_db, write_country_db

PARIS = Place("FR", 48.8566, 2.3522, 20.0)


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_city_db(tmp_path_factory.mktemp("geo") / "cities.mmdb")


def test_loopback_addresses_are_in_the_test_cities_when_local_is_set(city_db: Path) -> None:
    geo = GeoIP(str(city_db), local=True)
    assert geo.kind == "GeoLite2-City"
    assert geo.place(address("paris")) == PARIS
    assert geo.place(address("berlin", 200)) == Place("DE", 52.52, 13.405, 20.0)
    assert geo.place(address("new-york")) == Place("US", 40.7128, -74.006, 50.0)
    # No accuracy radius in the record: none in the place.
    assert geo.place(address("sydney")) == Place("AU", -33.8688, 151.2093, None)
    # An IPv4-mapped IPv6 address is its IPv4 address.
    assert geo.place("::ffff:" + address("paris")) == PARIS
    assert geo.place("2001:db8:1::5") is not None
    # Loopback addresses outside the mapped networks have no place.
    assert geo.place("127.0.0.1") is None
    geo.close()


def test_private_and_loopback_addresses_have_no_place_by_default(city_db: Path) -> None:
    geo = GeoIP(str(city_db))
    for ip in (address("paris"), "10.1.2.3", "192.168.0.1", "::1", "fe80::1", "2001:db8:1::5"):
        assert geo.place(ip) is None, ip
    # Public addresses in the file are located.
    assert geo.place("81.0.200.1") == PARIS
    assert geo.place("2a00:1450::1") is not None
    # A public address the file does not hold has no place.
    assert geo.place("8.8.8.8") is None


@pytest.mark.parametrize(
    "ip", ["", "not an ip", "999.1.1.1", "1.2.3", "::g", "127.0.1.1/24", "\x00", "a" * 10000]
)
def test_what_is_not_an_address_has_no_place(city_db: Path, ip: str) -> None:
    assert GeoIP(str(city_db), local=True).place(ip) is None


def test_lookups_are_cached_and_the_cache_is_bounded(city_db: Path) -> None:
    geo = GeoIP(str(city_db), local=True, cache_size=8)
    for _ in range(3):
        geo.place(address("paris"))
    assert geo.cache_info().hits == 2
    for host in range(1, 100):
        geo.place(address("berlin", host))
    assert geo.cache_info().currsize == 8


def test_a_country_database_gives_countries_without_places(tmp_path: Path) -> None:
    path = write_country_db(
        tmp_path / "countries.mmdb", {"81.0.0.0/16": "FR", "127.0.2.0/24": "de"}
    )
    geo = GeoIP(str(path), local=True)
    assert geo.kind == "GeoLite2-Country"
    place = geo.place("81.0.0.9")
    assert place == Place(country="FR")
    assert place is not None and not place.located
    # A lower-case code is read as its upper-case one.
    assert geo.place("127.0.2.1") == Place(country="DE")


def test_damaged_records_give_what_they_can(tmp_path: Path) -> None:
    path = write_city_db(
        tmp_path / "odd.mmdb",
        {},
        records={
            "127.0.7.0/24": {"country": {"iso_code": "FRA"}, "location": {"latitude": 1.0}},
            "127.0.8.0/24": "a string, not a map",
            "127.0.9.0/24": {
                "registered_country": {"iso_code": "IT"},
                "location": {"latitude": 91.0, "longitude": 0.0, "accuracy_radius": 5},
            },
        },
    )
    geo = GeoIP(str(path), local=True)
    assert geo.place("127.0.7.1") is None  # a three-letter code and half a point
    assert geo.place("127.0.8.1") is None
    # The registered country stands in for a missing country; a latitude past 90 is no point.
    assert geo.place("127.0.9.1") == Place(country="IT")


def test_records_of_the_wrong_types_are_read_as_missing() -> None:
    assert place_of_record(None) is None
    assert place_of_record({"country": "FR"}) is None
    assert place_of_record({"location": {"latitude": True, "longitude": 2.0}}) is None
    assert place_of_record(
        {"country": {"iso_code": "FR"}, "location": {"latitude": math.nan, "longitude": 2.0}}
    ) == Place(country="FR")
    assert place_of_record(
        {"location": {"latitude": 1, "longitude": 2, "accuracy_radius": -5}}
    ) == Place(None, 1.0, 2.0, None)


def test_a_missing_or_broken_file_is_a_clear_error_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        GeoIP(str(tmp_path / "missing.mmdb"))
    with pytest.raises(ConfigError, match="is a directory"):
        GeoIP(str(tmp_path))
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"\x00" * 4096)
    with pytest.raises(ConfigError, match="not a MaxMind DB file"):
        GeoIP(str(broken))
    empty = tmp_path / "empty.mmdb"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="not a MaxMind DB file"):
        GeoIP(str(empty))
    truncated = tmp_path / "truncated.mmdb"
    whole = write_city_db(tmp_path / "whole.mmdb").read_bytes()
    truncated.write_bytes(whole[len(whole) // 2 :])
    with pytest.raises(ConfigError, match="not a MaxMind DB file"):
        GeoIP(str(truncated))


def test_the_setting_turns_geoip_on(city_db: Path, tmp_path: Path) -> None:
    assert open_geoip(Settings()) is None
    env = {"SEATGUARD_GEOIP_DB": str(city_db), "SEATGUARD_GEOIP_LOCAL": "1"}
    geo = open_geoip(Settings.from_env(env))
    assert geo is not None and geo.local and geo.place(address("paris")) == PARIS
    with pytest.raises(ConfigError, match="does not exist"):
        open_geoip(Settings(geoip_db=str(tmp_path / "nope.mmdb")))


def test_the_check_settings_are_validated() -> None:
    assert Settings().thresholds.travel_speed == 1000.0
    for bad in (
        {"signals_window": 0.0},
        {"signals_window": math.inf},
        {"travel_speed": -1.0},
        {"travel_speed": math.nan},
        {"travel_min_km": -1.0},
    ):
        with pytest.raises(ConfigError, match="travel"):
            Settings(**bad)  # type: ignore[arg-type]


def test_known_distances() -> None:
    paris = Place("FR", CITIES["paris"].latitude, CITIES["paris"].longitude)
    berlin = Place("DE", CITIES["berlin"].latitude, CITIES["berlin"].longitude)
    assert distance_km(paris, berlin) == pytest.approx(878, abs=2)
    assert separation_km(PARIS, Place("DE", 52.52, 13.405, 20.0)) == pytest.approx(838, abs=2)
    assert separation_km(PARIS, Place("FR", 48.85, 2.35, 20.0)) == 0.0
    with pytest.raises(ValueError, match="latitude and a longitude"):
        distance_km(paris, Place(country="FR"))


def test_impossible_places_are_refused() -> None:
    for bad in (
        {"latitude": 91.0, "longitude": 0.0},
        {"latitude": 0.0, "longitude": -181.0},
        {"latitude": math.nan, "longitude": 0.0},
        {"latitude": 1.0},
        {"latitude": 0.0, "longitude": 0.0, "accuracy_km": math.inf},
    ):
        with pytest.raises(ValueError):
            Place(**bad)  # type: ignore[arg-type]


points = st.builds(
    Place,
    country=st.none(),
    latitude=st.floats(-90, 90),
    longitude=st.floats(-180, 180),
    accuracy_km=st.none() | st.floats(0, 1000),
)


@given(points, points, points)
def test_distance_is_a_metric(a: Place, b: Place, c: Place) -> None:
    ab = distance_km(a, b)
    assert ab == pytest.approx(distance_km(b, a), abs=1e-6)
    assert 0 <= ab <= math.pi * 6371.0088 + 1e-6
    assert distance_km(a, a) == pytest.approx(0, abs=1e-6)
    assert distance_km(a, c) <= ab + distance_km(b, c) + 1e-6
    assert 0 <= separation_km(a, b) <= ab
