"""Vectorised S2 ids are bit-identical to s2sphere."""

from geomtl_core.geo import s2

import numpy as np
import pytest
import s2sphere


def _reference_ids(lat, lon, levels):
    out = np.empty(len(lat), dtype=np.uint64)
    for k, (a, b, lvl) in enumerate(zip(lat.tolist(), lon.tolist(), levels.tolist(), strict=True)):
        out[k] = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)).parent(lvl).id()
    return out


def _special_points():
    """Poles, the antimeridian, face edges and centres, and exact cell corners."""
    lat = [90, -90, 0, 0, 0, 0, 45, -45, 35.264389682754654, -35.264389682754654, 0, 0, 89.999999, -89.999999]
    lon = [0, 0, 180, -180, 45, -45, 45, -135, 45, 135, 90, -90, 179.999999, -179.999999]
    # corners of random cells at several levels (exact vertices are the hardest case)
    rng = np.random.default_rng(7)
    ids = s2.parent(s2.cell_ids(rng.uniform(-90, 90, 400), rng.uniform(-180, 180, 400)), rng.integers(0, 20, 400))
    clat, clon = s2.cell_corners(ids)
    edge = np.linspace(-89.5, 89.5, 200)
    return (
        np.concatenate([lat, clat.ravel(), edge, edge, edge]),
        np.concatenate([lon, clon.ravel(), np.full(200, 45.0), np.full(200, 180.0), np.full(200, -135.0)]),
    )


@pytest.mark.slow
def test_bit_identical_to_s2sphere_on_a_million_points():
    """1M+ random points plus special ones: ids and parents at random levels equal s2sphere's."""
    rng = np.random.default_rng(2018)
    n = 1_000_000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    slat, slon = _special_points()
    lat, lon = np.concatenate([lat, slat]), np.concatenate([lon, slon])
    levels = rng.integers(0, 31, len(lat))
    got = s2.parent(s2.cell_ids(lat, lon), levels)
    ref = _reference_ids(lat, lon, levels)
    assert np.array_equal(got, ref), f"{(got != ref).sum()} mismatches"


def test_special_points_at_leaf_level():
    """Every special point's leaf id equals s2sphere's."""
    lat, lon = _special_points()
    levels = np.full(len(lat), 30)
    assert np.array_equal(s2.cell_ids(lat, lon), _reference_ids(lat, lon, levels))


def test_tokens_round_trip_and_match_s2sphere():
    """Tokens are s2sphere's and parse back to the same ids."""
    rng = np.random.default_rng(1)
    ids = s2.parent(s2.cell_ids(rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500)), 9)
    toks = s2.to_token(ids)
    assert toks == [s2sphere.CellId(int(i)).to_token() for i in ids]
    assert np.array_equal(s2.from_token(toks), ids)


@pytest.mark.parametrize("token", ["", "xyz", "12345678901234567", "0", "f0"])
def test_malformed_tokens_are_refused(token):
    """Non-hex, too long, zero or face>5 tokens raise ValueError naming the token."""
    with pytest.raises(ValueError, match="token"):
        s2.from_token(["8744", token])


def test_levels_children_and_ranges():
    """level_of, children and ranges agree with s2sphere."""
    rng = np.random.default_rng(3)
    lv = rng.integers(0, 30, 300)
    ids = s2.parent(s2.cell_ids(rng.uniform(-90, 90, 300), rng.uniform(-180, 180, 300)), lv)
    assert np.array_equal(s2.level_of(ids), lv)
    kids = s2.children(ids)
    for k in range(4):
        assert [int(x) for x in kids[:, k]] == [s2sphere.CellId(int(i)).child(k).id() for i in ids]
    assert [int(x) for x in s2.range_min(ids)] == [s2sphere.CellId(int(i)).range_min().id() for i in ids]
    assert [int(x) for x in s2.range_max(ids)] == [s2sphere.CellId(int(i)).range_max().id() for i in ids]


def test_corners_match_s2sphere_vertices():
    """Cell corners equal s2sphere's Cell.get_vertex within 1e-9 degrees."""
    rng = np.random.default_rng(4)
    ids = s2.parent(s2.cell_ids(rng.uniform(-90, 90, 50), rng.uniform(-180, 180, 50)), rng.integers(1, 25, 50))
    lat, lon = s2.cell_corners(ids)
    for n, i in enumerate(ids):
        cell = s2sphere.Cell(s2sphere.CellId(int(i)))
        for k in range(4):
            ll = s2sphere.LatLng.from_point(cell.get_vertex(k))
            assert lat[n, k] == pytest.approx(ll.lat().degrees, abs=1e-9)
            if abs(ll.lat().degrees) < 89.999:
                assert (lon[n, k] - ll.lng().degrees + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)


def test_polygons_contain_their_cell():
    """Each cell's centre lies inside its own outline (antimeridian cells included)."""
    import shapely

    ids = s2.parent(s2.cell_ids(np.array([0.0, 10, -60, 65]), np.array([179.9, -179.9, 0, 170])), 5)
    polys = shapely.polygons(s2.cell_polygons(ids))
    clat, clon = s2.cell_centers(ids)
    for poly, a, b in zip(polys, clat, clon, strict=True):
        assert poly.contains(shapely.Point(b, a)) or poly.contains(shapely.Point(b + 360, a)) or poly.contains(
            shapely.Point(b - 360, a)
        )
