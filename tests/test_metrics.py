"""Distances and accuracies exactly as the literature computes them."""

import csv
import json
import math

from geomtl_core.data.predictions import read_predictions
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import EARTH_RADIUS_KM, InvalidCoordinatesError, haversine_km, validate_coordinates
from geomtl_core.geo.metrics import (
    THRESHOLDS_KM,
    accuracy_at,
    bootstrap_accuracy_ci,
    geoscore,
    summarize_errors,
    summarize_predictions,
)
from geomtl_core.geo.stats import BLOCK_DEG, spatial_blocks

import numpy as np
import pytest
from geographiclib.geodesic import Geodesic
from hypothesis import given, settings
from hypothesis import strategies as st

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
SPHERE = Geodesic(EARTH_RADIUS_KM * 1000.0, 0.0)  # geodesic on a sphere: an independent formula


@given(lats, lons, lats, lons)
def test_distance_is_symmetric(a, b, c, d):
    """d(p, q) == d(q, p)."""
    assert haversine_km(a, b, c, d) == pytest.approx(haversine_km(c, d, a, b), rel=1e-12, abs=1e-9)


@given(lats, lons)
def test_distance_zero_on_identical_points(a, b):
    """d(p, p) == 0."""
    assert haversine_km(a, b, a, b) == 0.0


@given(lats, lons)
def test_antipodes_are_half_circumference(a, b):
    """The antipode is pi * R away (~20015 km)."""
    lon2 = b - 180 if b > 0 else b + 180
    d = float(haversine_km(a, b, -a, lon2))
    assert d == pytest.approx(math.pi * EARTH_RADIUS_KM, rel=1e-6)
    assert d == pytest.approx(20015.1, abs=0.1)


@settings(max_examples=300)
@given(lats, lons, lats, lons)
def test_agrees_with_geodesic_on_a_sphere(a, b, c, d):
    """Haversine equals Karney's geodesic on a sphere of the same radius within 1e-6 relative."""
    ref = SPHERE.Inverse(a, b, c, d)["s12"] / 1000.0
    assert float(haversine_km(a, b, c, d)) == pytest.approx(ref, rel=1e-6, abs=1e-6)


def test_distance_is_vectorised_and_broadcasts():
    """Arrays against a scalar point give one distance per row."""
    d = haversine_km(np.array([0.0, 0.0, 10.0]), np.array([0.0, 1.0, 0.0]), 0.0, 0.0)
    assert d.shape == (3,)
    assert d[0] == 0.0 and d[1] == pytest.approx(111.195, abs=1e-3)


@pytest.mark.parametrize("lat, lon", [(float("nan"), 0.0), (90.5, 0.0), (0.0, -180.01), (0.0, float("inf"))])
def test_invalid_coordinates_name_the_rows(lat, lon):
    """A bad coordinate is an error that names its row, never a number."""
    with pytest.raises(InvalidCoordinatesError, match=r"rows: 2") as info:
        validate_coordinates([0.0, 10.0, lat], [0.0, 10.0, lon])
    assert info.value.rows.tolist() == [2]
    with pytest.raises(InvalidCoordinatesError):
        haversine_km([0.0, lat], [0.0, lon], 0.0, 0.0)


def test_invalid_rows_use_labels():
    """Labels (image ids) replace indices in the message."""
    with pytest.raises(InvalidCoordinatesError, match="img_b"):
        summarize_predictions([0, 95], [0, 0], [0, 0], [0, 0], labels=["img_a", "img_b"])


def test_accuracy_counts_threshold_inclusive():
    """An error equal to a threshold counts as within it."""
    acc = accuracy_at([1.0, 25.0, 200.0, 750.0, 2500.0, 2500.1])
    assert acc.tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])


@pytest.mark.parametrize(("km", "points"), [(0.0, 5000.0), (25.0, 4916.96), (100.0, 4676.01), (750.0, 3025.25),
                                            (1000.0, 2558.73), (2500.0, 936.71), (20015.1, 0.0075)])
def test_geoscore_matches_hand_computed_values(km, points):
    """GeoGuessr's score 5000 * exp(-d / 1492.7 km) (PIGEON, OSV-5M), worked out by hand to 0.01 points:
    e.g. 1000 km: exp(-0.66993) = 0.511746 -> 2558.73; it halves near 1034.66 km (= 1492.7 ln 2)."""
    assert geoscore([km]) == pytest.approx(points, abs=0.005)


def test_geoscore_is_the_mean_and_halves_near_1035_km():
    """The mean over images, not of distances: {0, 2500 km} -> (5000 + 936.71) / 2, not the score of 1250 km."""
    assert geoscore([0.0, 2500.0]) == pytest.approx(2968.356, abs=0.005)
    assert geoscore([1034.66]) == pytest.approx(2500.0, abs=0.01)


def test_bootstrap_ci_contains_estimate_and_shrinks_with_n():
    """The 95% interval brackets the point estimate and narrows with more images."""
    rng = np.random.default_rng(1)
    small = rng.exponential(800, size=200)
    large = rng.exponential(800, size=5000)
    ci_s = bootstrap_accuracy_ci(small, seed=0, blocks=None)  # i.i.d., asked for explicitly
    ci_l = bootstrap_accuracy_ci(large, seed=0, blocks=None)
    acc_s = accuracy_at(small)
    assert np.all(ci_s[:, 0] <= acc_s + 1e-12) and np.all(acc_s <= ci_s[:, 1] + 1e-12)
    assert np.all((ci_l[:, 1] - ci_l[:, 0])[1:] < (ci_s[:, 1] - ci_s[:, 0])[1:])


def test_empty_errors_are_refused():
    """An empty prediction set is an error, not NaN."""
    with pytest.raises(ValueError, match="empty"):
        summarize_errors([])


def _published_summary(path):
    """The accuracy row after the blank line of a GeoEstimation result file."""
    rows = list(csv.reader(path.open()))
    blank = next(i for i, r in enumerate(rows) if not r)
    header, values = rows[blank + 1], rows[blank + 2]
    assert header[0].startswith("street acc (1km)")
    return [float(v) for v in values[:5]], float(values[5])


def test_reproduces_every_published_im2gps_summary(shared):
    """Our accuracies from the per-image rows equal GeoEstimation's summary rows to 6 decimals."""
    files = sorted((shared / "geoestimation/results/im2gps").glob("*.csv"))
    assert len(files) == 6
    for path in files:
        expected, mean_dev = _published_summary(path)
        preds = read_predictions(path)
        assert len(preds.img_id) == 237
        s = summarize_errors(preds.errors_km)
        got = [round(s.accuracy[t], 6) for t in THRESHOLDS_KM]
        assert got == pytest.approx(expected, abs=5e-7), path.name
        assert s.mean_km == pytest.approx(mean_dev, abs=0.01), path.name


def test_api_interval_is_the_cli_block_bootstrap(shared, capsys):
    """Catches the API's image-level intervals differing from `geomtl score --ci` (today: 1 km CI [0.094, 0.116]
    from summarize_predictions against [0.079, 0.132] from the CLI on the same file)."""
    from geomtl_core.cli import main

    path = shared / "geoestimation/results/im2gps/ISNs_M-fstar-S3.csv"
    preds = read_predictions(path)
    api = summarize_predictions(preds.true_lat, preds.true_lon, preds.pred_lat, preds.pred_lon, with_ci=True)
    assert main(["score", str(path), "--json", "--ci"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert api.to_json_dict() == cli  # identical numbers, intervals included
    iid = summarize_predictions(preds.true_lat, preds.true_lon, preds.pred_lat, preds.pred_lon, with_ci=True,
                                block_deg=None)
    assert iid.ci != api.ci and iid.accuracy == api.accuracy  # the i.i.d. bootstrap only when asked for
    wide = [api.ci[t][1] - api.ci[t][0] for t in THRESHOLDS_KM]
    narrow = [iid.ci[t][1] - iid.ci[t][0] for t in THRESHOLDS_KM]
    assert sum(wide) > sum(narrow)  # clustered images: blocks give wider intervals


def test_block_size_is_a_parameter_and_errors_alone_need_blocks():
    """Catches an interval silently computed i.i.d. when the errors come without locations."""
    rng = np.random.default_rng(3)
    lat, lon = rng.uniform(-60, 60, 300), rng.uniform(-180, 180, 300)
    plat, plon = np.clip(lat + rng.normal(0, 2, 300), -90, 90), np.clip(lon + rng.normal(0, 2, 300), -180, 180)
    s5 = summarize_predictions(lat, lon, plat, plon, with_ci=True)
    s5b = summarize_predictions(lat, lon, plat, plon, with_ci=True, block_deg=BLOCK_DEG)
    s20 = summarize_predictions(lat, lon, plat, plon, with_ci=True, block_deg=20.0)
    assert s5 == s5b and s20.ci != s5.ci
    blocks = spatial_blocks(lat, lon, 20.0)
    err = haversine_km(lat, lon, plat, plon)
    assert summarize_errors(err, with_ci=True, blocks=blocks).ci == s20.ci
    with pytest.raises(InputError, match="spatial blocks"):
        summarize_errors(err, with_ci=True)
    assert summarize_errors(err).ci is None  # no interval asked for: no blocks needed
