"""Reference points for every result: the prior (most frequent cell), random guessing, and the
oracle (the true cell's mean coordinate: the best a partitioning allows)."""

from __future__ import annotations

from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.metrics import GeoSummary, summarize_errors
from geomtl_core.geo.partitioning import Partitioning

import numpy as np


def prior_baseline(part: Partitioning, lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Always predict the mean coordinate of the partitioning's most populated cell."""
    c = int(np.argmax(part.counts))
    return summarize_errors(haversine_km(lat, lon, part.lat_mean[c], part.lon_mean[c]), with_ci=with_ci)


def random_baseline(part: Partitioning, lat: np.ndarray, lon: np.ndarray, seed: int = 0,
                    with_ci: bool = False) -> GeoSummary:
    """Predict a uniformly random cell of the partitioning."""
    c = np.random.default_rng(seed).integers(0, len(part), len(lat))
    return summarize_errors(haversine_km(lat, lon, part.lat_mean[c], part.lon_mean[c]), with_ci=with_ci)


def oracle_baseline(part: Partitioning, lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Predict the true cell's mean coordinate (images in no cell: the nearest cell mean)."""
    c = part.assign(lat, lon)
    missing = np.flatnonzero(c < 0)
    if len(missing):
        d = haversine_km(lat[missing, None], lon[missing, None], part.lat_mean[None, :], part.lon_mean[None, :])
        c[missing] = d.argmin(axis=1)
    return summarize_errors(haversine_km(lat, lon, part.lat_mean[c], part.lon_mean[c]), with_ci=with_ci)
