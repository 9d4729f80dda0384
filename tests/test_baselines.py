"""Baselines that mean something: floors, a label-only and a retrieval reference, and two oracles."""

from geomtl_core.geo import baselines as B
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.partitioning import build_partitionings

import numpy as np
import pytest

rng = np.random.default_rng(0)
CITIES = np.array([(48.8, 2.3), (40.7, -74.0), (-33.9, 151.2), (35.7, 139.7), (-23.5, -46.6)])


def _points(n, seed=0):
    r = np.random.default_rng(seed)
    c = r.integers(0, len(CITIES), n)
    return CITIES[c, 0] + r.normal(0, 1.0, n), CITIES[c, 1] + r.normal(0, 1.0, n), c


def test_nearest_cell_oracle_is_the_ceiling():
    lat, lon, _ = _points(4000)
    part = build_partitionings(lat, lon, tau_max=[80], tau_min=5)[0]
    tl, tn, _ = _points(800, seed=1)
    near, true = B.nearest_cell_oracle(part, tl, tn), B.true_cell_oracle(part, tl, tn)
    assert all(near.accuracy[t] >= true.accuracy[t] for t in near.accuracy)
    assert near.median_km <= true.median_km and near.accuracy[25] > true.accuracy[25]  # strictly better somewhere


def test_best_single_point_is_the_discrete_geographic_median():
    lat, lon, _ = _points(300)
    blat, blon = B.best_single_point(lat, lon, n_candidates=300, n_sample=300)
    mean_d = haversine_km(lat[:, None], lon[:, None], lat[None], lon[None]).mean(axis=1)
    assert mean_d[np.flatnonzero((lat == blat) & (lon == blon))[0]] == pytest.approx(mean_d.min())


def test_label_only_uses_the_label_and_knn_retrieves():
    lat, lon, c = _points(2000)
    tl, tn, tc = _points(500, seed=2)
    informative = B.label_only_baseline(lat, lon, c, tc, tl, tn)
    shuffled = B.label_only_baseline(lat, lon, rng.permutation(c), tc, tl, tn)
    assert informative.accuracy[750] > 0.95 and shuffled.accuracy[750] < 0.5
    feats = np.eye(len(CITIES))[c] + rng.normal(0, 0.01, (len(c), len(CITIES)))
    knn = B.knn_baseline(feats, lat, lon, np.eye(len(CITIES))[tc], tl, tn, with_ci=True)
    assert knn.accuracy[750] > 0.95 and knn.ci[750][0] <= knn.accuracy[750] <= knn.ci[750][1]
