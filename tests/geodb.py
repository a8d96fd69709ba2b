"""Small MaxMind DB files the tests write themselves (mmdb-writer), in the GeoIP2 layouts.

`write_city_db` maps one loopback /24 to each of a few cities (`ADDRESSES`), so clients
connecting from 127.0.1.x are in Paris, 127.0.2.x in Berlin and so on (the whole 127.0.0.0/8
range is local), plus a few public networks for lookups of global addresses. Servers need
`geoip_local` to look loopback addresses up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbF64, MmdbU16, MMDBWriter
from netaddr import IPSet

__all__ = ["CITIES", "NETWORKS", "City", "address", "write_city_db", "write_country_db"]


@dataclass(frozen=True)
class City:
    name: str
    country: str
    latitude: float
    longitude: float
    accuracy_km: int | None = 20


CITIES: dict[str, City] = {
    "paris": City("Paris", "FR", 48.8566, 2.3522),
    "versailles": City("Versailles", "FR", 48.8049, 2.1204),
    "berlin": City("Berlin", "DE", 52.5200, 13.4050),
    "new-york": City("New York", "US", 40.7128, -74.0060, 50),
    "sydney": City("Sydney", "AU", -33.8688, 151.2093, None),
}
"""Paris-Berlin is 878 km, Paris-New York 5,837 km, Paris-Versailles 17 km."""

NETWORKS: dict[str, str] = {
    "127.0.1.0/24": "paris",
    "127.0.2.0/24": "berlin",
    "127.0.3.0/24": "new-york",
    "127.0.4.0/24": "sydney",
    "127.0.5.0/24": "versailles",
    "81.0.0.0/16": "paris",  # public networks, for lookups without `geoip_local`
    "2001:db8:1::/48": "berlin",  # documentation range: not global, needs `geoip_local`
    "2a00:1450::/32": "new-york",
}


def address(city: str, host: int = 1) -> str:
    """A loopback address the test database puts in `city`."""
    for network, name in NETWORKS.items():
        if name == city and network.startswith("127."):
            return network.rsplit(".", 1)[0] + f".{host}"
    raise KeyError(city)


def _city_record(city: City) -> dict[str, Any]:
    location: dict[str, Any] = {
        "latitude": MmdbF64(city.latitude),
        "longitude": MmdbF64(city.longitude),
        "time_zone": "Europe/Paris",
    }
    if city.accuracy_km is not None:
        location["accuracy_radius"] = MmdbU16(city.accuracy_km)
    return {
        "city": {"geoname_id": 1, "names": {"en": city.name}},
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "country": {"iso_code": city.country, "names": {"en": city.country}},
        "registered_country": {"iso_code": city.country, "names": {"en": city.country}},
        "location": location,
    }


def write_city_db(
    path: Path,
    networks: Mapping[str, str] = NETWORKS,
    *,
    records: Mapping[str, Any] | None = None,
    database_type: str = "GeoLite2-City",
) -> Path:
    """A City database at `path` mapping each network to a city of CITIES; `records` maps
    more networks to raw records (to test damaged ones)."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description="Seatguard test cities",
    )
    for network, city in networks.items():
        writer.insert_network(IPSet([network]), _city_record(CITIES[city]))
    for network, record in (records or {}).items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def write_country_db(path: Path, networks: Mapping[str, str]) -> Path:
    """A Country database (no locations) mapping each network to an ISO country code."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-Country",
        languages=["en"],
        description="Seatguard test countries",
    )
    for network, code in networks.items():
        record = {"country": {"iso_code": code, "names": {"en": code}}}
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path
