"""Reference points for every result, each a :class:`~geomtl_core.geo.metrics.GeoSummary` on the test
locations (CIs over 5-degree blocks):

- floors: the **prior** (the most populated cell's mean), **random** cells, the **best single point**
  (one training location for every image: the one with the least mean error to the training set);
- what a label alone carries: **label-only** (per auxiliary label value, that best point of the training
  images with the value);
- retrieval: **kNN** (the location of the nearest training image in a feature space);
- ceilings of a cell classifier: the **true-cell oracle** (the true cell's mean) and the
  **nearest-cell-mean oracle** (the closest class coordinate: what a perfect classifier of this
  partitioning could reach at best, since the true cell's mean is not always the closest).
"""

from __future__ import annotations

from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.metrics import GeoSummary, summarize_errors
from geomtl_core.geo.partitioning import Partitioning
from geomtl_core.geo.retrieval import Gallery, knn_locate
from geomtl_core.geo.stats import spatial_blocks

import numpy as np


def _summary(lat: np.ndarray, lon: np.ndarray, plat, plon, with_ci: bool) -> GeoSummary:
    blocks = spatial_blocks(lat, lon) if with_ci else None
    return summarize_errors(haversine_km(lat, lon, plat, plon), with_ci=with_ci, blocks=blocks)


def prior_baseline(part: Partitioning, lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Always predict the mean coordinate of the partitioning's most populated cell."""
    c = int(np.argmax(part.counts))
    return _summary(lat, lon, part.lat_mean[c], part.lon_mean[c], with_ci)


def random_baseline(part: Partitioning, lat: np.ndarray, lon: np.ndarray, seed: int = 0,
                    with_ci: bool = False) -> GeoSummary:
    """Predict a uniformly random cell of the partitioning."""
    c = np.random.default_rng(seed).integers(0, len(part), len(lat))
    return _summary(lat, lon, part.lat_mean[c], part.lon_mean[c], with_ci)


def true_cell_oracle(part: Partitioning, lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Predict the true cell's mean coordinate (images in no cell: the nearest cell mean)."""
    c = part.assign(lat, lon)
    missing = np.flatnonzero(c < 0)
    if len(missing):
        c[missing] = _nearest_class(part, lat[missing], lon[missing])
    return _summary(lat, lon, part.lat_mean[c], part.lon_mean[c], with_ci)


def nearest_cell_oracle(part: Partitioning, lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Predict the class coordinate nearest to the true location: the ceiling of any classifier over
    this partitioning's class coordinates."""
    c = _nearest_class(part, lat, lon)
    return _summary(lat, lon, part.lat_mean[c], part.lon_mean[c], with_ci)


def _nearest_class(part: Partitioning, lat: np.ndarray, lon: np.ndarray, chunk: int = 2048) -> np.ndarray:
    out = np.empty(len(lat), np.int64)
    for s in range(0, len(lat), chunk):
        d = haversine_km(lat[s : s + chunk, None], lon[s : s + chunk, None], part.lat_mean[None], part.lon_mean[None],
                         validate=False)
        out[s : s + chunk] = d.argmin(axis=1)
    return out


def best_single_point(lat: np.ndarray, lon: np.ndarray, n_candidates: int = 1000, n_sample: int = 10_000,
                      seed: int = 0) -> tuple[float, float]:
    """The location, among a seeded sample of the given ones, with the least mean great-circle distance
    to (a seeded sample of) all of them: a discrete geographic median."""
    rng = np.random.default_rng(seed)
    cand = rng.choice(len(lat), size=min(n_candidates, len(lat)), replace=False)
    pts = rng.choice(len(lat), size=min(n_sample, len(lat)), replace=False)
    d = haversine_km(lat[cand, None], lon[cand, None], lat[None, pts], lon[None, pts], validate=False)
    best = cand[int(d.mean(axis=1).argmin())]
    return float(lat[best]), float(lon[best])


def single_point_baseline(train_lat: np.ndarray, train_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                          with_ci: bool = False) -> GeoSummary:
    """Predict the training set's best single point for every image."""
    plat, plon = best_single_point(train_lat, train_lon)
    return _summary(lat, lon, plat, plon, with_ci)


def label_only_baseline(train_lat: np.ndarray, train_lon: np.ndarray, train_label: np.ndarray,
                        label: np.ndarray, lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Predict, from an image's auxiliary label alone, the best single point of the training images with
    that label (a label unseen in training: the best point of all): how much location the label carries."""
    fallback = best_single_point(train_lat, train_lon)
    plat, plon = np.full(len(lat), fallback[0]), np.full(len(lat), fallback[1])
    for v in np.unique(label):
        members = train_label == v
        if members.any():
            plat[label == v], plon[label == v] = best_single_point(train_lat[members], train_lon[members])
    return _summary(lat, lon, plat, plon, with_ci)


def knn_baseline(train_feats: np.ndarray, train_lat: np.ndarray, train_lon: np.ndarray, feats: np.ndarray,
                 lat: np.ndarray, lon: np.ndarray, with_ci: bool = False) -> GeoSummary:
    """Predict the location of the nearest training image by cosine similarity of features: retrieval's
    :func:`~geomtl_core.geo.retrieval.knn_locate` with k=1 over a gallery of every training image."""
    gallery = Gallery.build(train_feats, train_lat, train_lon, np.zeros(len(train_feats), np.int64), n_cells=1)
    plat, plon = knn_locate(gallery, feats, k=1)
    return _summary(lat, lon, plat, plon, with_ci)
