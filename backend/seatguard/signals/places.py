"""A place on Earth as a GeoIP database gives it, and the great-circle distance between two."""

from __future__ import annotations

import math

import msgspec

__all__ = ["EARTH_RADIUS_KM", "Place", "distance_km", "separation_km"]

EARTH_RADIUS_KM = 6371.0088
"""The mean Earth radius (IUGG), which the haversine formula takes the Earth to be a sphere of."""


class Place(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where an address is: a country (ISO 3166-1 alpha-2), and a point with the radius in km
    around it the address is likely within. Country-only databases give no point."""

    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    accuracy_km: float | None = None

    def __post_init__(self) -> None:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("a place has both a latitude and a longitude, or neither")
        if self.latitude is not None and not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude {self.latitude!r} is not within -90..90")
        if self.longitude is not None and not -180.0 <= self.longitude <= 180.0:
            raise ValueError(f"longitude {self.longitude!r} is not within -180..180")
        if self.accuracy_km is not None and not 0.0 <= self.accuracy_km < math.inf:
            raise ValueError(f"accuracy radius {self.accuracy_km!r} is not a distance")

    @property
    def located(self) -> bool:
        """Whether the place has a point (a City database), not only a country."""
        return self.latitude is not None


def distance_km(a: Place, b: Place) -> float:
    """The great-circle distance between two located places (haversine), in km."""
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        raise ValueError("both places need a latitude and a longitude")
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def separation_km(a: Place, b: Place) -> float:
    """The least distance between two places once each may be anywhere in its accuracy radius:
    the great-circle distance less both radii, never below zero."""
    spread = (a.accuracy_km or 0.0) + (b.accuracy_km or 0.0)
    return max(0.0, distance_km(a, b) - spread)
