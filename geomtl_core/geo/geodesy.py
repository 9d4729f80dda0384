"""Great-circle geometry on a spherical Earth, vectorised over numpy arrays.

We use the haversine formula on a sphere of the IUGG mean Earth radius
(R1 = 6371.0088 km), the convention of geopy's ``great_circle`` that GeoEstimation
used for its published numbers.
"""

from __future__ import annotations

from geomtl_core.errors import InputError

import numpy as np
from numpy.typing import ArrayLike

EARTH_RADIUS_KM = 6371.0088
"""IUGG mean Earth radius R1 in kilometres."""


class InvalidCoordinatesError(InputError):
    """Raised when coordinates are NaN or out of range; names the offending rows."""

    def __init__(self, message: str, rows: np.ndarray):
        super().__init__(message)
        self.rows = rows


def _describe_rows(rows: np.ndarray, labels: ArrayLike | None, limit: int = 10) -> str:
    """Human-readable list of the first ``limit`` bad rows (by label if given)."""
    shown = rows[:limit]
    names = [str(np.asarray(labels)[r]) for r in shown] if labels is not None else [str(r) for r in shown]
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(names) + more


def validate_coordinates(
    lat: ArrayLike, lon: ArrayLike, *, what: str = "coordinates", labels: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(lat, lon)`` as float64 arrays, or raise naming every invalid row.

    Invalid means NaN/inf, ``|lat| > 90`` or ``|lon| > 180``. ``labels`` (e.g. image
    ids or CSV line numbers) replace positional indices in the error message.

    >>> validate_coordinates([0.0, 91.0], [0.0, 0.0])
    Traceback (most recent call last):
    ...
    geomtl_core.geo.geodesy.InvalidCoordinatesError: 1 invalid coordinates (NaN, |lat|>90 or |lon|>180) at rows: 1
    """
    lat_a = np.asarray(lat, dtype=np.float64)
    lon_a = np.asarray(lon, dtype=np.float64)
    if lat_a.shape != lon_a.shape:
        raise ValueError(f"{what}: latitude shape {lat_a.shape} != longitude shape {lon_a.shape}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(lat_a) | ~np.isfinite(lon_a) | (np.abs(lat_a) > 90) | (np.abs(lon_a) > 180)
    if bad.any():
        rows = np.flatnonzero(bad.ravel())
        raise InvalidCoordinatesError(
            f"{len(rows)} invalid {what} (NaN, |lat|>90 or |lon|>180) at rows: {_describe_rows(rows, labels)}",
            rows,
        )
    return lat_a, lon_a


def haversine_km(
    lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike, *, validate: bool = True
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (broadcasts).

    >>> round(float(haversine_km(0, 0, 0, 180)), 1)
    20015.1
    """
    if validate:
        lat1, lon1 = validate_coordinates(lat1, lon1, what="first coordinates")
        lat2, lon2 = validate_coordinates(lat2, lon2, what="second coordinates")
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def to_unit_vectors(lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """(N, 3) unit vectors on the sphere for latitudes/longitudes in degrees."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lmb = np.radians(np.asarray(lon, dtype=np.float64))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lmb), cos_phi * np.sin(lmb), np.sin(phi)], axis=-1)


def from_unit_vectors(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude/longitude in degrees of (not necessarily unit) 3-vectors."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon
