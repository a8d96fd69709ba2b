"""Offline GeoIP: an address to its country and place, from a MaxMind DB file.

The file is one the operator supplies (GeoLite2-City or GeoIP2-City for places, a Country
database for countries alone), read with MaxMind's `maxminddb` reader. Private, loopback,
link-local and other non-public addresses have no place unless `local` is set, for a database
of one's own that maps internal networks (and for tests, which map 127.0.0.0/8 to cities).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import maxminddb

from ..errors import ConfigError
from ..proxies import ip_address
from .places import Place

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["GeoIP", "open_geoip", "place_of_record"]

CACHE_SIZE = 4096
"""Addresses whose places each node keeps (least recently used go first)."""


class GeoIP:
    """Places of addresses, read from one MaxMind DB file; answers are cached (LRU)."""

    def __init__(self, path: str, *, local: bool = False, cache_size: int = CACHE_SIZE) -> None:
        if os.path.isdir(path):
            raise ConfigError(f"GeoIP database {path!r} is a directory, not a file")
        try:
            self._reader = maxminddb.open_database(path)
        except FileNotFoundError:
            raise ConfigError(f"GeoIP database {path!r} does not exist") from None
        except PermissionError:
            raise ConfigError(f"GeoIP database {path!r} cannot be read (permission)") from None
        except (maxminddb.InvalidDatabaseError, ValueError, OSError):
            raise ConfigError(
                f"GeoIP database {path!r} is not a MaxMind DB file: expected a "
                "GeoLite2-City, GeoIP2-City or Country .mmdb"
            ) from None
        self.path = path
        self.local = local
        self.kind: str = str(self._reader.metadata().database_type)
        self._lookup = lru_cache(maxsize=cache_size)(self._read)

    def place(self, ip: str) -> Place | None:
        """The place of `ip`, or None: not an address, not public, or not in the database."""
        return self._lookup(ip)

    def cache_info(self) -> Any:
        return self._lookup.cache_info()

    def close(self) -> None:
        self._lookup.cache_clear()
        self._reader.close()

    def _read(self, ip: str) -> Place | None:
        address = ip_address(ip)
        if address is None:
            return None
        if not self.local and not address.is_global:
            return None
        try:
            record = self._reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError):
            # An IPv6 address in an IPv4-only file, or a damaged record: no place.
            return None
        return place_of_record(record)


def place_of_record(record: object) -> Place | None:
    """A City or Country record (GeoIP2 layout) to a Place; fields of the wrong type count as
    missing, so a damaged or foreign record gives no place rather than an error."""
    if not isinstance(record, Mapping):
        return None
    country = _iso_code(record.get("country")) or _iso_code(record.get("registered_country"))
    location = record.get("location")
    latitude = longitude = accuracy = None
    if isinstance(location, Mapping):
        lat, lon = _number(location.get("latitude")), _number(location.get("longitude"))
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            latitude, longitude = lat, lon
            radius = _number(location.get("accuracy_radius"))
            accuracy = radius if radius is not None and radius >= 0 else None
    if country is None and latitude is None:
        return None
    return Place(country=country, latitude=latitude, longitude=longitude, accuracy_km=accuracy)


def open_geoip(settings: Settings) -> GeoIP | None:
    """The server's GeoIP database (`geoip_db`), or None when none is set: the geo checks are
    then off. A missing or unreadable file raises ConfigError, so the server does not start."""
    if not settings.geoip_db:
        return None
    return GeoIP(settings.geoip_db, local=settings.geoip_local)


def _iso_code(value: object) -> str | None:
    if isinstance(value, Mapping):
        code = value.get("iso_code")
        if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha():
            return code.upper()
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
